"""The Code tab's notebooks run: each is executed top to bottom in a Python kernel (nbclient) on tiny
generated images with random initialisation; the model it saves loads in the app's predictor and
gives the probabilities its last cell printed; it reaches the validation accuracy the app's own
trainer reaches on the same data and settings."""

import json
import time

import pytest

from conftest import make_dataset
from trainer import recipe, runner
from trainer.config import TrainConfig

pytestmark = pytest.mark.slow
FRAMEWORKS = ("keras", "pytorch")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A working folder with data/ (separable classes), the run's settings, and what the app's
    trainer reaches with them."""
    work = tmp_path_factory.mktemp("notebooks")
    make_dataset(work / "data", per_class=(16, 6), size=40)
    config = TrainConfig(data_dir=str(work / "data"), out_dir=str(work / "app-models"), epochs=4, batch_size=8,
                         image_size=32, head_units=16, weights="none", allow_random_init=True,
                         precision="float32")
    app = runner.train(config)
    return work, config, {fw: app[fw]["val_accuracy"] for fw in FRAMEWORKS}


def execute(book, folder) -> float:
    from nbclient import NotebookClient
    started = time.perf_counter()
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return time.perf_counter() - started


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_notebook_runs_saves_a_model_the_app_loads_and_learns_as_the_app(framework, setup):
    from trainer.predictor import Predictor
    work, config, app_accuracy = setup
    book = recipe.notebook(config, framework)
    seconds = execute(book, work)  # a failing cell raises CellExecutionError, naming the cell
    print(f"{framework} notebook executed in {seconds:.1f} s")
    last = book.cells[-1]
    printed = [json.loads(line) for output in last.outputs if output.get("name") == "stdout"
               for line in output["text"].splitlines() if line.startswith("{")]
    assert len(printed) == recipe.PREVIEW_IMAGES

    predictor = Predictor(work / "models")
    assert framework in predictor.refresh()
    for line in printed:
        app = predictor.predict_file(work / line["image"])[framework]["probabilities"]
        assert app.keys() == line["probabilities"].keys()
        for name, probability in line["probabilities"].items():
            assert app[name] == pytest.approx(probability, abs=1e-4), (line["image"], name)

    metadata = json.loads((work / "models" / framework / "metadata.json").read_text())
    assert metadata["pretrained"] is False and metadata["classes"] == ["bright", "dark"]
    assert abs(metadata["val_accuracy"] - app_accuracy[framework]) <= 0.05, (metadata["val_accuracy"], app_accuracy)
