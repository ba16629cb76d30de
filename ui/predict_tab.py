"""Predict tab: drop in images; per framework, the Space's reference model and the visitor's own
latest model side by side, with where they disagree, each model's latency and each model's card.
On request (Explain), each model's Grad-CAM heatmap over each image, for its predicted or its
runner-up class, with both frameworks' Grad-CAM code; and any model to take home (a zip with a
script that loads it and predicts).

Reference models (`AVP_MODELS_DIR`) are the Space owner's, trained with the CLI; the app never
writes them, so a first-time visitor can predict at once. A visitor's own models are those of their
last run (their workspace). Models load when the tab is first opened or at the first prediction.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from pathlib import Path

import gradio as gr

from trainer import codegen, data, export, frameworks, store
from trainer.constants import MAX_IMAGE_SIZE
from ui import explain, shared, text

MAX_IMAGES = 12
MAX_REQUEST_PIXELS = 120_000_000  # declared pixels one request may make the server decode (3 at the cap)
NAMES, FRAMEWORKS = frameworks.DISPLAY, frameworks.NAMES
SOURCES = {"reference": "reference model", "yours": "your model"}
CLASS_CHOICES = [("predicted class", 0), ("runner-up class", 1)]  # a rank in each model's probabilities


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
    return (f"{title}\n- trained {text.readable_time(meta.get('trained_at'))} on {text.md(meta.get('device', '?'))}\n"
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
    paths = file_paths(paths)
    if not paths:
        raise gr.Error("Add one or more images first.")
    predictors = loaded_predictors(workspace_id)
    results = []
    try:
        for path, name, image, error in decoded(paths):
            if image is None:
                results.append({"image": name, "error": error})
            else:
                results.append({"image": name, "file": path, **{s: p.predict(image) for s, p in predictors.items()}})
    finally:
        shared.release_memory()
    return results


def file_paths(paths: list | None) -> list[str]:
    """The server paths of a File component's value (strings or FileData), at most MAX_IMAGES."""
    return [p if isinstance(p, str) else getattr(p, "path", None) or p.name for p in (paths or [])][:MAX_IMAGES]


def loaded_predictors(workspace_id: str | None) -> dict:
    """Model set -> its Predictor with the newest models loaded; gr.Error when none can predict."""
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
    return predictors


def decoded(paths: list[str]):
    """(path, shown name, PIL image or None, error text or None) per path, within one request's
    pixel budget."""
    budget = data.PixelBudget(MAX_REQUEST_PIXELS, scope="one Predict request")
    names: dict[str, int] = {}
    for number, path in enumerate(paths, 1):
        name = display_name(path)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:  # two uploads of the same name (two folders' 13.jpg) must not look alike
            name = f"{name} (image {number})"
        try:
            yield path, name, data.load_rgb(path, name, max_side=MAX_IMAGE_SIZE, budget=budget), None
        except data.ImageError as error:
            yield path, name, None, text.plain(str(error), 300)


def explain_files(workspace_id: str | None, paths: list | None, wanted: bool, rank: int) -> list[dict]:
    """Per image: each model's Grad-CAM overlay for its `rank`-th class, labelled with the
    framework, the model set and the class; nothing unless `wanted` (Explain is ticked)."""
    paths = file_paths(paths)
    if not wanted or not paths:
        return []
    predictors = loaded_predictors(workspace_id)
    try:
        return [explained(name, image, error, predictors, int(rank or 0)) for _, name, image, error in decoded(paths)]
    finally:
        shared.release_memory()


def explained(name: str, image, error: str | None, predictors: dict, rank: int) -> dict:
    """One image's heatmaps from every model, or the error that kept it from being decoded."""
    if image is None:
        return {"image": name, "error": error}
    maps = []
    for source, predictor in predictors.items():
        for framework, found in predictor.explain(image, rank).items():
            label = f"{NAMES[framework]}: {SOURCES[source]}, {text.plain(found['class'], 60)}"
            maps.append({"label": label, "overlay": explain.overlay(found["image"], found["heatmap"])})
    return {"image": name, "maps": maps}


def download_choices(workspace_id: str | None) -> gr.Dropdown:
    """The models a visitor may take home: those saved in the reference folder and in theirs."""
    choices = [(f"{NAMES[framework]}: {SOURCES[source]}", f"{source}/{framework}")
               for source, folder in model_sets(workspace_id).items() for framework in store.find_models(folder)]
    return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)


def download_model(workspace_id: str | None, choice: str | None) -> str:
    """A zip of the chosen model (see trainer/export.py), made in gradio's cache, which serves it and
    removes it after `delete_cache`'s age. Only the reference folder or the visitor's own."""
    source, _, framework = str(choice or "").partition("/")
    folder = model_sets(workspace_id).get(source)
    if folder is None or framework not in FRAMEWORKS:
        raise gr.Error("Choose a model to download.")
    cache = Path(gr.utils.get_upload_folder())
    cache.mkdir(parents=True, exist_ok=True)
    try:
        return str(export.pack_model(folder, framework, f"{framework}-{source}-model", cache))
    except FileNotFoundError:
        raise gr.Error(f"There is no {NAMES[framework]} {SOURCES[source]} to download.") from None


def display_name(path: str) -> str:
    """A name a visitor recognises: the file's own name, or an example's folder and name
    (`alien/13.jpg` and `predator/13.jpg` must not look alike). A clicked example reaches the
    handler as gradio's copy, so it is recognised by its bytes."""
    path = Path(path)
    try:
        label = example_labels().get(hashlib.sha256(path.read_bytes()).hexdigest())
    except OSError:
        label = None
    return text.plain(label or path.name, 120)


@functools.cache
def example_labels() -> dict[str, str]:
    """Content hash -> "class/file" of each example image: listed once, not per prediction."""
    labels = {}
    for example in shared.example_images(3):
        with contextlib.suppress(OSError):
            labels[hashlib.sha256(Path(example).read_bytes()).hexdigest()] = "/".join(Path(example).parts[-2:])
    return labels


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


def predict_for_page(workspace_id: str | None, paths: list | None) -> tuple[list[dict], list[dict]]:
    """`predict_files` for the page and the API: the results without server paths (what API clients
    get), and with them, kept server-side (a gr.State) for showing each image beside its results:
    a client can read the first and set neither."""
    results = predict_files(workspace_id, paths)
    return [{k: v for k, v in r.items() if k != "file"} for r in results], results


def working_text(paths: list | None, wanted: bool = False) -> str:
    """The line under Predict the moment it is pressed (the first prediction loads the models: seconds)."""
    count = len(file_paths(paths))
    if not count:
        return ""
    images = f"{count} image{'s' if count != 1 else ''}"
    return f"⏳ **Predicting {images} …**" + (" Heatmaps follow." if wanted else "")


def explaining_text(paths: list | None, wanted: bool) -> str:
    """The line while heatmaps are drawn (Explain ticked, the class switched)."""
    return "⏳ **Drawing the heatmaps …**" if wanted and file_paths(paths) else ""


def build(tab: gr.Tab, browser: gr.BrowserState) -> list:
    """Build the tab; models start loading when `tab` is selected. On a phone the columns stack:
    the images, Predict and its status line come first and the predictions right under them; the
    model cards and the download box after the predictions."""
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            files = gr.File(file_count="multiple", file_types=["image"], label="Images", height=180,
                            elem_id="predict-files")
            examples = shared.example_images(3)
            gr.Examples([[[p]] for p in examples], inputs=files, label="Examples", elem_id="predict-examples",
                        example_labels=["/".join(Path(p).parts[-2:]) for p in examples])
            wanted = gr.Checkbox(False, label="Explain: show where each model looked (Grad-CAM)", elem_id="explain")
            rank = gr.Radio(CLASS_CHOICES, value=0, label="Heatmaps for each model's", elem_id="explain-class")
            predict_button = gr.Button("Predict", variant="primary", elem_id="predict-button")
            status = gr.Markdown(elem_id="predict-status")
        with gr.Column(scale=3, elem_id="predictions"):
            results = gr.JSON([], visible=False)  # what API clients of /predict receive
            shown = gr.State([])  # the same with each image's file: server-side only
            heatmaps = gr.State([])

            # The two renders run one at a time (for all visitors; each takes milliseconds): gradio's
            # render iterates over the session's blocks (attach_load_events) while another render
            # adds to them, and both ran at every page load: "dictionary changed size during
            # iteration", a red Error on this tab about one start in four.
            @gr.render(inputs=shown, concurrency_limit=1, concurrency_id="predict-render")
            def show(items):
                if not items:
                    gr.Markdown("Predictions appear here.")
                for item in items:
                    show_one(item)

            with gr.Column(elem_id="heatmaps"):
                @gr.render(inputs=heatmaps, concurrency_limit=1, concurrency_id="predict-render")
                def show_heatmaps(items):
                    for item in items:
                        show_maps(item)
            with gr.Accordion("Grad-CAM, as each framework computes it", open=False):
                with gr.Row():
                    for framework in FRAMEWORKS:
                        gr.Code(codegen.gradcam_source(framework), language="python",
                                label=f"{NAMES[framework]}: trainer/{codegen.backend_file(framework)}")
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            cards = gr.Markdown(elem_id="model-cards")
        with gr.Column(scale=1, min_width=280):
            with gr.Group():
                # Its choices are the visitor's, filled when the tab opens; over the API the list is
                # empty, so the value is checked by download_model itself (source/framework, own only).
                choice = gr.Dropdown([], label="Take a model home: the model, its metadata and a script",
                                     elem_id="download-choice", allow_custom_value=True)
                download_button = gr.Button("Download this model", elem_id="download-button")
                package = gr.File(label="Your download", interactive=False, elem_id="download-file")

    # Each action first says on the page that it works (at once, not queued), and clears the
    # results it will replace; the status line carries the timer while it runs (a full spinner
    # would cover its words).
    quick = dict(api_visibility="private", queue=False, show_progress="hidden")
    explain_args = dict(fn=explain_files, inputs=[browser, files, wanted, rank], outputs=heatmaps,
                        api_visibility="private", concurrency_limit=2, concurrency_id="explain",
                        show_progress_on=[status], show_progress="minimal")
    refresh_args = dict(api_visibility="private", queue=False)
    predicting = dict(fn=predict_for_page, inputs=[browser, files], outputs=[results, shown], concurrency_limit=4,
                      concurrency_id="predict", show_progress_on=[status], show_progress="minimal")

    def predicted_then(event):
        event.then(model_cards, browser, cards, **refresh_args).then(download_choices, browser, choice, **refresh_args)
        event.then(explaining_text, [files, wanted], status, **quick).then(**explain_args).then(
            lambda: "", None, status, **quick)

    clicked = predict_button.click(lambda paths, on: (working_text(paths, on), [], []), [files, wanted],
                                   [status, shown, heatmaps], **quick)
    predicted_then(clicked.then(**predicting, api_name="predict"))
    uploaded = files.upload(lambda paths, on: (working_text(paths, on), [], []), [files, wanted],
                            [status, shown, heatmaps], **quick)
    predicted_then(uploaded.then(**predicting, api_visibility="private"))
    for control in (wanted, rank):
        control.change(lambda paths, on: (explaining_text(paths, on), []), [files, wanted], [status, heatmaps],
                       **quick).then(**explain_args).then(lambda: "", None, status, **quick)
    download_button.click(download_model, [browser, choice], package, api_name="download_model",
                          concurrency_limit=2, concurrency_id="download")
    tab.select(load_models_in_background, browser, None, **refresh_args)
    tab.select(model_cards, browser, cards, **refresh_args)
    tab.select(download_choices, browser, choice, **refresh_args)
    return [(model_cards, browser, cards), (download_choices, browser, choice)]


def show_one(item: dict) -> None:
    """One image's row: the image with its name under it (no label or buttons over the picture),
    each model's probabilities, the verdict."""
    with gr.Row(equal_height=True):
        if "error" in item:
            gr.Textbox(f"{item['image']}: refused: {item['error']}", show_label=False, interactive=False)
            return
        with gr.Column(scale=1, min_width=120):
            gr.Image(item["file"], show_label=False, buttons=[], height=170, interactive=False)
            gr.Markdown(text.md(item["image"]), elem_classes=["image-name"])
        for framework in FRAMEWORKS:
            with gr.Column(scale=2, min_width=160):
                for source in SOURCES:
                    if framework in item.get(source, {}):
                        gr.Label(item[source][framework]["probabilities"],
                                 label=f"{NAMES[framework]}: {SOURCES[source]}")
        gr.Markdown(verdict(item), elem_classes=["verdict"])


def show_maps(item: dict) -> None:
    """One image's heatmaps, one per model: the image's name once above them, each map's framework,
    model and class in full under it (a label over a map was cut short and its buttons hid the map)."""
    if "error" in item:
        gr.Textbox(f"{item['image']}: refused: {item['error']}", show_label=False, interactive=False)
        return
    gr.Markdown(f"**Where each model looked: {text.md(item['image'])}**", elem_classes=["heatmap-image"])
    with gr.Row(equal_height=True):
        for found in item["maps"]:
            with gr.Column(min_width=160, elem_classes=["heatmap"]):
                gr.Image(found["overlay"], show_label=False, buttons=[], height=200, interactive=False)
                gr.Markdown(text.md(found["label"]))
