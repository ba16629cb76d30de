"""Transfer learning, Keras vs. PyTorch: the app. Run `python app.py` (or `./dev app`).

Five tabs: Augment (the same augmentations in both frameworks), Train (fine-tune a frozen ImageNet
ResNet-50 in either or both, live), Code (the run's code in both, side by side), Predict (both models
side by side), Teacher (the class board and the teacher's control, behind AVP_TEACHER_KEY). This
file only lays out the tabs; each lives in ui/, and everything they do is in the trainer and
classroom packages. Importing this module loads neither TensorFlow nor torch: they load when first needed.
"""

from __future__ import annotations

import os

from ui.startup import speed_up_gradio_import

speed_up_gradio_import()  # before gradio is first imported: see ui/startup.py

import gradio as gr  # noqa: E402

from ui import augment_tab, code_tab, predict_tab, shared, teacher_tab, train  # noqa: E402

INTRO = """# Alien vs. Predator: transfer learning in Keras and PyTorch
An ImageNet **ResNet-50** with its convolutional layers frozen and a new dense head, fine-tuned on a
few hundred images, in both frameworks side by side, after
[deepsense.ai's article](https://deepsense.ai/keras-or-pytorch/)."""


def build_demo() -> gr.Blocks:
    # Each visitor's workspace id lives in their browser (encrypted with a key the server keeps
    # across restarts), so a reload or a closed tab finds their data, runs and models again.
    with gr.Blocks(title="Keras vs. PyTorch: transfer learning", delete_cache=(3600, 3600)) as demo:
        browser = gr.BrowserState("", storage_key="avp-workspace", secret=shared.workspaces().secret())
        teacher_token = teacher_tab.token_state()  # the teacher's, when AVP_TEACHER_KEY is set
        gr.Markdown(INTRO)
        with gr.Tab("Augment"):
            augment_controls, augment_load = augment_tab.build()
        train_settings: dict = {}  # the Train tab's widgets by name: the Code tab follows them
        with gr.Tab("Train"):
            train_loads = train.build(browser, augment_controls, train_settings)
        with gr.Tab("Code") as code:
            code_tab.build(train_settings, code)
        with gr.Tab("Predict") as predict:
            predict_loads = predict_tab.build(predict, browser)
        with gr.Tab("Teacher"):
            teacher_loads = teacher_tab.build(train_settings, teacher_token)
        demo.load(**augment_load, api_visibility="private")
        for fn, inputs, outputs in [*train_loads, *predict_loads, *teacher_loads]:
            demo.load(fn, inputs, outputs, api_visibility="private")
    demo.queue(default_concurrency_limit=2, max_size=256)
    return demo


def launch_options() -> dict:
    """What every launch sets: where to listen, the upload cap, the look, and the folders gradio
    must never serve or copy a file from (visitors' workspaces, the models: only the app reads them)."""
    return {"server_name": os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            "server_port": int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
            "max_file_size": shared.MAX_UPLOAD, "theme": gr.themes.Soft(), "css": teacher_tab.CSS,
            "blocked_paths": [str(shared.WORKSPACES_DIR), str(shared.MODELS_DIR)]}


def main() -> None:
    shared.jobs()  # the one queue, made before any request can race to make it
    demo = build_demo()
    demo.launch(**launch_options(), prevent_thread_lock=True)
    # After the page is served: the scheduler, the sweep, and the warm training workers, whose
    # framework imports take both cores for seconds.
    shared.start_background_work()
    demo.block_thread()


if __name__ == "__main__":
    main()
