"""Predict tab: drop in images; Keras and PyTorch probabilities side by side, where they disagree,
each model's latency, and each model's card. Models load when the tab is first opened (or at the
first prediction), once, and reload when a run saves new ones."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from trainer import FRAMEWORKS, data
from ui import shared

MAX_IMAGES = 12
NAMES = {"keras": "Keras", "pytorch": "PyTorch"}


def model_cards() -> str:
    """The saved models' cards, from their metadata: no model is loaded to show them."""
    try:
        present = shared.predictor().saved()
    except Exception as error:  # a damaged metadata file must not take the page down
        return f"**Saved models could not be read:** {shared.public_error(error)}"
    cards = []
    for framework in FRAMEWORKS:
        meta = present.get(framework)
        if meta is None:
            cards.append(f"#### {NAMES[framework]}\nNo {NAMES[framework]} model yet: train one in the Train tab.")
            continue
        accuracy = meta.get("val_accuracy")
        cards.append(
            f"#### {NAMES[framework]}\n- trained {meta.get('trained_at', '?')} on {meta.get('device', '?')}\n"
            f"- validation accuracy **{accuracy:.3f}** on {meta.get('val_images', '?')} images\n"
            f"- pretrained: {'yes (ImageNet)' if meta.get('pretrained') else '**no** (random initialisation)'}\n"
            f"- classes: {', '.join(meta['classes'])}; {meta['config']['image_size']} px")
    return "\n\n".join(cards)


def predict_files(paths: list[str] | None) -> list[dict]:
    """Per image: its name, each framework's probabilities and seconds, or an error naming it."""
    paths = [p if isinstance(p, str) else p.name for p in (paths or [])][:MAX_IMAGES]
    if not paths:
        raise gr.Error("Add one or more images first.")
    predictor = shared.predictor()
    try:
        present = predictor.refresh()
    except Exception as error:  # a damaged model file: say so, keep the page
        raise gr.Error(f"Saved models could not be loaded: {shared.public_error(error)}") from None
    if not present:
        raise gr.Error("No trained model yet: train one in the Train tab first.")
    results = []
    for path in paths:
        name = Path(path).name
        try:
            image = data.load_rgb(path, name)
        except data.ImageError as error:
            results.append({"image": name, "file": path, "error": str(error)})
            continue
        results.append({"image": name, "file": path, **predictor.predict(image)})
    return results


def load_models_in_background() -> None:
    """Load (or reload) the saved models while the user picks images. Not at start-up: loading
    TensorFlow, torch and two ResNet-50s takes ~10 s of both cores here, which a training started
    meanwhile would wait for."""
    shared.predictor().refresh_in_background()


def verdict(result: dict) -> str:
    present = [fw for fw in FRAMEWORKS if fw in result]
    tops = {fw: max(result[fw]["probabilities"], key=result[fw]["probabilities"].get) for fw in present}
    latency = " · ".join(f"{NAMES[fw]} {result[fw]['seconds'] * 1000:.0f} ms" for fw in present)
    missing = [NAMES[fw] for fw in FRAMEWORKS if fw not in result]
    if missing:
        return f"Only {', '.join(NAMES[fw] for fw in present)} ({', '.join(missing)} model missing) · {latency}"
    if len(set(tops.values())) > 1:
        return f"### ⚠ The models disagree\n{latency}"
    return f"Both say **{next(iter(tops.values()))}** · {latency}"


def build(tab: gr.Tab) -> list:
    """Build the tab's contents; models start loading when `tab` is selected."""
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            files = gr.File(file_count="multiple", file_types=["image"], label="Images", height=180, elem_id="predict-files")
            examples = shared.example_images(3)
            gr.Examples([[p] for p in examples], inputs=files, label="Examples",
                        example_labels=["/".join(Path(p).parts[-2:]) for p in examples])
            predict_button = gr.Button("Predict", variant="primary")
            cards = gr.Markdown(elem_id="model-cards")
        with gr.Column(scale=3, elem_id="predictions"):
            results = gr.JSON([], visible=False)  # also what API clients of /predict receive

            @gr.render(inputs=results)
            def show(items):
                if not items:
                    gr.Markdown("Predictions appear here.")
                for item in items:
                    with gr.Row(equal_height=True):
                        if "error" in item:
                            gr.Markdown(f"**{item['image']}**: refused: {item['error']}")
                            continue
                        gr.Image(item["file"], label=item["image"], height=170, scale=1, interactive=False)
                        for framework in FRAMEWORKS:
                            if framework in item:
                                gr.Label(item[framework]["probabilities"], label=NAMES[framework], scale=2)
                            else:
                                gr.Markdown(f"No {NAMES[framework]} model", scale=2)
                        gr.Markdown(verdict(item), elem_classes=["verdict"], scale=2)

    predict_button.click(predict_files, files, results, api_name="predict", concurrency_limit=4,
                         concurrency_id="predict").then(model_cards, None, cards, api_visibility="private")
    files.upload(predict_files, files, results, api_visibility="private", concurrency_limit=4,
                 concurrency_id="predict")
    tab.select(load_models_in_background, None, None, api_visibility="private", queue=False)
    return [(model_cards, None, cards)]
