"""Predict tab: drop in images; per framework, the Space's reference model and the visitor's own
latest model side by side, with where they disagree, each model's latency and each model's card.

Reference models (`AVP_MODELS_DIR`) are the Space owner's, trained with the CLI; the app never
writes them, so a first-time visitor can predict at once. A visitor's own models are those of their
last run (their workspace). Models load when the tab is first opened or at the first prediction.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from trainer import FRAMEWORKS, data
from trainer.constants import MAX_IMAGE_SIZE
from ui import shared, text

MAX_IMAGES = 12
MAX_REQUEST_PIXELS = 120_000_000  # declared pixels one request may make the server decode (3 at the cap)
NAMES = {"keras": "Keras", "pytorch": "PyTorch"}
SOURCES = {"reference": "reference model", "yours": "your model"}


def model_sets(workspace_id: str | None) -> dict[str, Path]:
    """Which models folders a visitor predicts with: the reference one, and theirs if they have one."""
    sets = {"reference": shared.MODELS_DIR}
    space = shared.workspaces().open(workspace_id)
    if space is not None:
        sets["yours"] = space.models
    return sets


def card(framework: str, source: str, meta: dict | None) -> str:
    title = f"#### {NAMES[framework]}: {SOURCES[source]}"
    if meta is None:
        missing = ("none on this server" if source == "reference"
                   else "none yet: train one in the Train tab")
        return f"{title}\n{missing}."
    accuracy = meta.get("val_accuracy")
    accuracy_text = f"**{accuracy:.3f}**" if isinstance(accuracy, (int, float)) else "?"
    return (f"{title}\n- trained {text.md(meta.get('trained_at', '?'))} on {text.md(meta.get('device', '?'))}\n"
            f"- validation accuracy {accuracy_text} on {text.md(meta.get('val_images', '?'))} images\n"
            f"- pretrained: {'yes (ImageNet)' if meta.get('pretrained') else '**no** (random initialisation)'}\n"
            f"- classes: {text.md_list(meta.get('classes', []))}; "
            f"{text.md(meta.get('config', {}).get('image_size', '?'))} px")


def model_cards(workspace_id: str | None = None) -> str:
    """Every model's card, from metadata: nothing is loaded to show them."""
    cards = []
    for source, folder in model_sets(workspace_id).items():
        try:
            present = shared.predictor(folder).saved()
        except (OSError, ValueError, KeyError) as error:  # a damaged metadata file must not take the page down
            cards.append(f"**The {SOURCES[source]}s could not be read:** {text.md(shared.public_error(error))}")
            continue
        cards += [card(fw, source, present.get(fw)) for fw in FRAMEWORKS]
    return "\n\n".join(cards)


def predict_files(workspace_id: str | None, paths: list | None) -> list[dict]:
    """Per image: its name, and per model set ("reference", "yours") each framework's probabilities
    and seconds; or an error naming the image."""
    paths = [p if isinstance(p, str) else getattr(p, "path", None) or p.name for p in (paths or [])][:MAX_IMAGES]
    if not paths:
        raise gr.Error("Add one or more images first.")
    predictors = {}
    for source, folder in model_sets(workspace_id).items():
        predictor = shared.predictor(folder)  # held for this request, even if others evict it meanwhile
        try:
            if predictor.refresh():
                predictors[source] = predictor
        except Exception as error:  # noqa: BLE001 - a damaged model file: say which, keep the page
            raise gr.Error(f"The {SOURCES[source]}s could not be loaded: "
                           f"{text.plain(shared.public_error(error), 300)}") from None
    if not predictors:
        raise gr.Error("No trained model yet: train one in the Train tab first.")
    results = []
    budget = data.PixelBudget(MAX_REQUEST_PIXELS, scope="one Predict request")
    for path in paths:
        name = display_name(path)
        try:
            image = data.load_rgb(path, name, max_side=MAX_IMAGE_SIZE, budget=budget)
        except data.ImageError as error:
            results.append({"image": name, "error": text.plain(str(error), 300)})
            continue
        results.append({"image": name, "file": path,
                        **{source: p.predict(image) for source, p in predictors.items()}})
    return results


def display_name(path: str) -> str:
    """A name a visitor recognises: the file's own name, with its folder when the file is one of
    the examples (`alien/13.jpg` and `predator/13.jpg` must not look alike)."""
    path = Path(path)
    examples = {Path(p) for p in shared.example_images(3)}
    return text.plain("/".join(path.parts[-2:]) if path in examples else path.name, 120)


def load_models_in_background(workspace_id: str | None) -> None:
    """Load (or reload) the models while the visitor picks images. Not at start-up: loading
    TensorFlow, torch and two ResNet-50s takes both cores for seconds, which a training started
    meanwhile would wait for."""
    for folder in model_sets(workspace_id).values():
        shared.predictor(folder).refresh_in_background()


def verdict(result: dict) -> str:
    """Which models agree, and how long each took."""
    tops, latency = {}, []
    for source in SOURCES:
        for framework in FRAMEWORKS:
            if framework in result.get(source, {}):
                r = result[source][framework]
                tops[(source, framework)] = max(r["probabilities"], key=r["probabilities"].get)
                latency.append(f"{NAMES[framework]} ({SOURCES[source]}) {r['seconds'] * 1000:.0f} ms")
    if not tops:
        return "No model"
    said = "### ⚠ The models disagree" if len(set(tops.values())) > 1 else (
        f"{'All say' if len(tops) > 1 else 'The only model says'} **{text.md(next(iter(tops.values())))}**")
    return f"{said}\n\n{' · '.join(latency)}"


def build(tab: gr.Tab, browser: gr.BrowserState) -> list:
    """Build the tab; models start loading when `tab` is selected."""
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            files = gr.File(file_count="multiple", file_types=["image"], label="Images", height=180,
                            elem_id="predict-files")
            examples = shared.example_images(3)
            gr.Examples([[[p]] for p in examples], inputs=files, label="Examples",
                        example_labels=["/".join(Path(p).parts[-2:]) for p in examples])
            predict_button = gr.Button("Predict", variant="primary")
            cards = gr.Markdown(elem_id="model-cards")
        with gr.Column(scale=3, elem_id="predictions"):
            results = gr.JSON([], visible=False)

            @gr.render(inputs=results)
            def show(items):
                if not items:
                    gr.Markdown("Predictions appear here.")
                for item in items:
                    show_one(item)

    predict_button.click(predict_files, [browser, files], results, api_name="predict",
                         concurrency_limit=4, concurrency_id="predict").then(
        model_cards, browser, cards, api_visibility="private")
    files.upload(predict_files, [browser, files], results, api_visibility="private", concurrency_limit=4,
                 concurrency_id="predict")
    tab.select(load_models_in_background, browser, None, api_visibility="private", queue=False)
    tab.select(model_cards, browser, cards, api_visibility="private", queue=False)
    return [(model_cards, browser, cards)]


def show_one(item: dict) -> None:
    with gr.Row(equal_height=True):
        if "error" in item:
            gr.Textbox(f"{item['image']}: refused: {item['error']}", show_label=False, interactive=False)
            return
        gr.Image(item["file"], label=item["image"], height=170, scale=1, interactive=False)
        for framework in FRAMEWORKS:
            with gr.Column(scale=2, min_width=160):
                for source in SOURCES:
                    if framework in item.get(source, {}):
                        gr.Label(item[source][framework]["probabilities"],
                                 label=f"{NAMES[framework]}: {SOURCES[source]}")
        gr.Markdown(verdict(item), elem_classes=["verdict"])
