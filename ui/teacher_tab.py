"""Teacher tab: the class board (live, for the projector), and the teacher's control over the class:
stop any run, pause the queue, the class defaults and caps.

The teacher's key (`AVP_TEACHER_KEY`, classroom/teacher.py) is entered once and exchanged for a
token kept in the browser (a gr.BrowserState, encrypted like the workspace id), so a reload keeps
the teacher signed in; Sign out forgets it. Every teacher handler starts with `require(token)`, and
every API endpoint here with the key itself (`teacher_board`, `teacher_pause`, `teacher_stop`,
`teacher_defaults`, `teacher_caps`; see the README): without them they refuse. Neither the key nor
the token is ever in a page text, an API answer, a log or a URL.

What the board shows of a student's run: its state and queue place always (to steer the class), and
its settings and results once its owner published it (Train tab, ui/train/publish.py).
"""

from __future__ import annotations

import math

import gradio as gr

from classroom import teacher
from trainer import frameworks
from trainer.config import TrainConfig
from ui import shared, text, warmup
from ui.train.run import RANGES, SERVER_CHOSEN, allowed_ranges, nest

POLL_S = 3.0
STORAGE_KEY = "avp-teacher"
CSS = ("#class-board { font-size: 1.15rem; } #class-figures { font-size: 1.15rem; }"  # for a projector
       # On a phone the five tabs' buttons must fit one row: gradio puts the ones that do not
       # behind a "..." menu, and with the Teacher tab Predict went there.
       "@media (max-width: 520px) { .tab-container button, [role=tablist] button "
       "{ padding-left: 6px !important; padding-right: 6px !important; } }")
PLOT_SETTINGS = {"learning rate (log10)": "lr", "augmentation (1 on, 0 off)": "augment.enabled",
                 "epochs": "epochs", "image size": "image_size", "batch size": "batch_size",
                 "head units": "head_units", "unfrozen stages": "unfreeze",
                 "feature cache (1 on, 0 off)": "feature_cache"}
COLUMNS = ["student", "framework", "settings (where not the class defaults)", "state",
           "validation accuracy", "s / epoch", "images / s", "models agreed"]
NO_TOKEN = "signed-out"  # what Sign out keeps in the browser (gradio's BrowserState does not store "")
SIGNED_OUT = "Enter the teacher's key to see the class board and steer the class."
SIGNED_IN = "Signed in as the teacher (this browser remembers it until **Sign out**)."


def require(token: object) -> None:
    """The first line of every teacher handler: a pop-up, and nothing done, without the token."""
    try:
        teacher.require(token, shared.workspaces().secret())
    except teacher.NotTeacher as error:
        raise gr.Error(str(error)) from None


def token_of_key(key: object) -> str:
    """The API's check: the token for the teacher's key, else a refusal (the key is never repeated)."""
    try:
        return teacher.token_for(key, shared.workspaces().secret())
    except teacher.NotTeacher as error:
        raise gr.Error(str(error)) from None


# ---------------------------------------------------------------- signing in and out

def sign_in(key: str | None):
    """The key -> the browser's token; the key box is emptied either way."""
    try:
        token = teacher.token_for(key or "", shared.workspaces().secret())
    except teacher.NotTeacher as error:
        return gr.skip(), "", f"**Not signed in:** {text.md(str(error), 300)}", gr.skip(), gr.skip(), gr.skip()
    return token, "", *signed_in_view(True)


def signed_in_view(signed_in: bool) -> tuple:
    """The status line, the teacher's panel, Sign out and the board's timer (students' pages never poll)."""
    return (SIGNED_IN if signed_in else SIGNED_OUT, gr.Column(visible=signed_in), gr.Button(visible=signed_in),
            gr.Timer(active=signed_in))


def sign_out():
    return NO_TOKEN, *signed_in_view(False)


def on_load(token: str | None):
    """A reload: a kept token shows the teacher's view (a stale one, after the key changed, is dropped).
    Without one it changes nothing: the page starts signed out, and on a busy server this answer can
    come after the teacher has already signed in, which it must not undo."""
    if teacher.is_teacher(token, shared.workspaces().secret()):
        return gr.skip(), *signed_in_view(True)
    return NO_TOKEN if token and token != NO_TOKEN else gr.skip(), *[gr.skip()] * len(signed_in_view(False))


# ---------------------------------------------------------------- the board

def board(since_hours: object) -> list[dict]:
    return teacher.board(shared.workspaces(), shared.jobs(), shared.roster(), teacher.since_hours_ago(since_hours),
                         shared.class_settings().defaults())


def state_text(row: dict) -> str:
    if row["state"] == "queued":
        return f"waiting: number {row['place']}"
    return row["state"]


def value_text(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return text.plain(value, 40)


def framework_names(row: dict) -> str:
    return " + ".join(frameworks.DISPLAY.get(name, name) for name in row["frameworks"])


def per_framework(row: dict, key: str, digits: int) -> str:
    results = row.get("results") or {}
    return ", ".join(f"{frameworks.DISPLAY.get(name, name)} {values[key]:.{digits}f}"
                     for name, values in results.items() if key in values)


def table(rows: list[dict]):
    """The board as a table, the newest run first; everything in it is text (visitor-made names too)."""
    import pandas as pd
    lines = []
    for row in reversed(rows):
        published = row["published"]
        settings = (", ".join(f"{name} {value_text(v)}" for name, v in row["settings"].items()) or "class defaults"
                    ) if published else "not published"
        agreed = row.get("agreement")
        lines.append([text.plain(row["student"], 40), framework_names(row),
                      settings, state_text(row), per_framework(row, "val_accuracy", 3),
                      per_framework(row, "seconds_per_epoch", 1), per_framework(row, "images_per_s", 1),
                      f"{agreed:.0%}" if agreed is not None else ""])
    return pd.DataFrame(lines, columns=COLUMNS)


def plot_frame(rows: list[dict], setting: str):
    """Validation accuracy of each published run's models against one setting, one row per model."""
    import pandas as pd
    points = []
    for row in rows:
        value = (row.get("config") or {}).get(setting)
        if not isinstance(value, (int, float)):
            continue
        x = math.log10(value) if setting == "lr" and value > 0 else float(value)
        for name, results in (row.get("results") or {}).items():
            if "val_accuracy" in results:
                points.append((x, results["val_accuracy"], frameworks.DISPLAY.get(name, name),
                               text.plain(row["student"], 40)))
    return pd.DataFrame(points, columns=["setting", "validation accuracy", "framework", "student"])


def plot(frame, label: str):
    colours = {f.display: f.colour for f in frameworks.REGISTRY.values()}
    return gr.ScatterPlot(None if frame.empty else frame, x_title=label, color_map=colours)


def figures_text(rows: list[dict]) -> str:
    """The class's Keras vs PyTorch figures, from the published runs."""
    figures = teacher.figures(rows)
    agreement = figures.pop("agreement")
    if not figures:
        return "The class's figures appear here once students publish finished runs (Train tab)."
    lines = ["| | runs | median s / epoch | median validation accuracy |", "|---|---:|---:|---:|"]
    for name, f in figures.items():
        seconds = f"{f['seconds_per_epoch']:.1f}" if f["seconds_per_epoch"] is not None else ""
        accuracy = f"{f['val_accuracy']:.3f}" if f["val_accuracy"] is not None else ""
        lines.append(f"| {frameworks.DISPLAY.get(name, name)} | {f['runs']} | {seconds} | {accuracy} |")
    if agreement["runs"]:
        lines += ["", f"The two frameworks' models agreed on a median **{agreement['median']:.0%}** of the "
                      f"validation images ({agreement['runs']} runs that trained both)."]
    return "\n".join(lines)


def queue_text() -> str:
    overview = shared.jobs().overview()
    state = "**paused**: no waiting run starts" if overview["paused"] else "running"
    return f"The queue is {state}. {overview['training']} training, {overview['waiting']} waiting."


def run_choices(rows: list[dict]) -> list[tuple[str, str]]:
    """The runs waiting or going, for the Stop box: (label, the board's handle of the run)."""
    going = [r for r in rows if r["state"] in ("queued", "starting", "running")]
    return [(f"{text.plain(r['student'], 40)}: {state_text(r)} "
             f"({framework_names(r)})", r["run"]) for r in going]


def refresh(token: str | None, since_hours: float, setting: str, chosen: str | None, shown: str) -> dict:
    """The board's poll: everything the teacher sees by output name, with "shown", the key of what it
    shows; {} when nothing changed (or for anybody but the teacher)."""
    if not teacher.is_teacher(token, shared.workspaces().secret()):
        return {}
    rows = board(since_hours)
    choices, rows_table, points = run_choices(rows), table(rows), plot_frame(rows, PLOT_SETTINGS.get(setting, "lr"))
    parts = {"figures": figures_text(rows), "queue": queue_text(), "defaults": defaults_text(), "caps": caps_text()}
    key = repr((rows_table.values.tolist(), points.values.tolist(), setting, parts, choices))
    if key == shown:
        return {}
    values = [value for _, value in choices]
    return {"shown": key, "board": rows_table, "plot": plot(points, setting),
            "runs": gr.Dropdown(choices=choices, value=chosen if chosen in values else None), **parts}


# ---------------------------------------------------------------- control

def pause(token: str | None, paused: bool) -> str:
    require(token)
    shared.jobs().set_paused(paused)
    return queue_text()


def stop_run(token: str | None, handle: str | None) -> str:
    """Stop (or take out of the queue) the run the board calls `handle` ("7/<run id>")."""
    require(token)
    number, _, run_id = str(handle or "").partition("/")
    workspace_id = shared.roster().workspace_of(int(number)) if number.isdigit() else None
    outcome = shared.jobs().stop_any(workspace_id, run_id) if workspace_id else None
    return {"cancelled": "Taken out of the queue.", "stopping": "Stopping after its current batch ...",
            None: "That run is no longer waiting or training."}[outcome]


def checked_defaults(settings: object) -> dict:
    """The teacher's class defaults (TrainConfig fields by name, augment nested, and a server data
    set's name), validated, within the class's caps; ValueError saying what is wrong."""
    if not isinstance(settings, dict):
        raise ValueError("defaults must be a JSON object of TrainConfig fields by name")
    values = {k: v for k, v in settings.items() if k != "dataset"}
    named = [key for key in SERVER_CHOSEN if key in values]
    if named:
        raise ValueError(f"{', '.join(named)} cannot be set here")
    if values.get("weights", "imagenet") not in ("imagenet", "none"):
        raise ValueError("weights must be imagenet or none")
    config = TrainConfig.from_dict({**values, "data_dir": ""}).validate()
    outside = [f"{name} must be from {low} to {high}" for name, (low, high) in allowed_ranges().items()
               if not low <= getattr(config, name) <= high]
    if outside:
        raise ValueError("the defaults are outside the class's caps: " + "; ".join(outside))
    full = config.to_dict()  # the values as the config holds them (3, not 3.0), of the settings given
    kept = {name: {k: full["augment"][k] for k in value} if name == "augment" else full[name]
            for name, value in values.items()}
    dataset = settings.get("dataset")
    return {**kept, **({"dataset": dataset} if isinstance(dataset, str) and dataset.startswith("server/") else {})}


def set_defaults(token: str | None, settings: dict) -> str:
    require(token)
    try:
        shared.class_settings().set_defaults(checked_defaults(settings))
    except (ValueError, TypeError) as error:
        raise gr.Error(text.plain(str(error), 600)) from None
    return defaults_text()


def use_my_settings(token: str | None, **values) -> str:
    """The teacher's own Train tab form becomes the class defaults."""
    return set_defaults(token, nest(values))


def defaults_text() -> str:
    defaults = shared.class_settings().defaults()
    if not defaults:
        return "No class defaults: a new student's Train tab starts from the app's defaults."
    changed = teacher.differences(teacher.class_config(defaults), TrainConfig(data_dir=""))
    listed = ", ".join(f"{name} {value_text(v)}" for name, v in changed.items()) or "the app's defaults"
    dataset = f"; data set {text.md(defaults['dataset'], 80)}" if "dataset" in defaults else ""
    return f"Class defaults (a new student's Train tab starts here): {text.md(listed, 600)}{dataset}."


def set_caps(token: str | None, caps: dict) -> str:
    require(token)
    try:
        shared.class_settings().set_caps(teacher.checked_caps(caps, RANGES))
    except (ValueError, TypeError) as error:
        raise gr.Error(text.plain(str(error), 600)) from None
    return caps_text()


def caps_pressed(token: str | None, epochs: float, image_size: float, unfreeze: float, batch_low: float,
                 batch_high: float) -> str:
    return set_caps(token, {"epochs": int(epochs), "image_size": int(image_size), "unfreeze": int(unfreeze),
                            "batch_size": [int(batch_low), int(batch_high)]})


def caps_text() -> str:
    ranges = allowed_ranges()
    capped = [f"{name.replace('_', ' ')} {low}–{high}" for name, (low, high) in ranges.items()
              if (low, high) != RANGES[name]]
    return f"Caps for every student's run: {', '.join(capped)}." if capped else "No caps: the app's ranges."


# ---------------------------------------------------------------- the API

def board_api(key: str, since_hours: float = 3) -> dict:
    """The class board: every run since `since_hours` ago (state, queue place; settings and results
    once published), the class's figures and the queue. `key`: the teacher's key."""
    token_of_key(key)
    rows = board(since_hours)
    public = [{k: v for k, v in row.items() if k != "config"} for row in rows]
    return {"runs": public, "figures": teacher.figures(rows), "queue": shared.jobs().overview(),
            "defaults": shared.class_settings().defaults(), "caps": shared.class_settings().caps()}


def pause_api(key: str, paused: bool) -> str:
    """Pause (true) or resume (false) the queue: while paused no waiting run starts."""
    return pause(token_of_key(key), paused)


def stop_api(key: str, run: str) -> str:
    """Stop a run, or take it out of the queue: `run` is its "run" field on /teacher_board."""
    return stop_run(token_of_key(key), run)


def defaults_api(key: str, settings: dict) -> dict:
    """Set the class defaults (TrainConfig fields by name, as /start takes them; {} clears them)."""
    set_defaults(token_of_key(key), settings)
    return shared.class_settings().defaults()


def caps_api(key: str, caps: dict) -> dict:
    """Cap the class's runs: {"epochs": 5, "image_size": 128, "unfreeze": 0, "batch_size": [8, 64]}
    (the most, or [least, most]); {} lifts every cap."""
    set_caps(token_of_key(key), caps)
    return shared.class_settings().caps()


API = ((board_api, "teacher_board"), (pause_api, "teacher_pause"), (stop_api, "teacher_stop"),
       (defaults_api, "teacher_defaults"), (caps_api, "teacher_caps"))


# ---------------------------------------------------------------- the layout

def token_state() -> gr.BrowserState | None:
    """The teacher's token in the browser, made outside the tabs (a component in a tab not shown yet
    is not read from the browser before the page's load events), None without a teacher key."""
    if not teacher.enabled():
        return None
    return gr.BrowserState("", storage_key=STORAGE_KEY, secret=shared.workspaces().secret())


def build(train_settings: dict, token: gr.BrowserState | None) -> list:
    """Build the tab; return its load events (fn, inputs, outputs). `train_settings`: the Train tab's
    widgets by name (the teacher's own form can become the class defaults); `token`: token_state()."""
    for fn, name in API:  # over the API they refuse without the key, on or off
        gr.api(fn, api_name=name, concurrency_limit=None)
    if token is None:
        gr.Markdown(teacher.HOW_TO_ENABLE, elem_id="teacher-off")
        return []
    with gr.Row():
        key_box = gr.Textbox(type="password", label="Teacher's key", elem_id="teacher-key", scale=3)
        sign_in_button = gr.Button("Sign in", variant="primary", elem_id="teacher-sign-in", scale=1)
        sign_out_button = gr.Button("Sign out", visible=False, elem_id="teacher-sign-out", scale=1)
    status_md = gr.Markdown(SIGNED_OUT, elem_id="teacher-status")
    with gr.Column(visible=False) as panel:
        # One timer, on while the teacher is signed in, polls the warm-up and the board.
        timer = gr.Timer(POLL_S, active=False)
        warmup.build(token, timer)
        gr.Markdown("## The class board")
        with gr.Row():
            since = gr.Number(3, label="Runs of the last ... hours", minimum=0.1, maximum=168, elem_id="board-since")
            setting = gr.Dropdown(list(PLOT_SETTINGS), value="learning rate (log10)", label="Accuracy against",
                                  elem_id="board-setting")
        board_df = gr.Dataframe(headers=COLUMNS, datatype="str", interactive=False, wrap=True, max_height=700,
                                label="Every run of the lesson (settings and results: published runs)",
                                elem_id="class-board")
        with gr.Row():
            accuracy_plot = gr.ScatterPlot(x="setting", y="validation accuracy", color="framework", y_lim=[0, 1],
                                           label="Validation accuracy of the published runs", elem_id="board-plot")
            figures_md = gr.Markdown(elem_id="class-figures")
        gr.Markdown("## Control")
        queue_md = gr.Markdown(elem_id="teacher-queue")
        with gr.Row():
            pause_button = gr.Button("Pause the queue", elem_id="teacher-pause")
            resume_button = gr.Button("Resume the queue", elem_id="teacher-resume")
        with gr.Row():
            runs_box = gr.Dropdown([], label="A run waiting or training", elem_id="teacher-runs", scale=3)
            stop_button = gr.Button("Stop this run", variant="stop", elem_id="teacher-stop", scale=1)
        control_md = gr.Markdown(elem_id="teacher-control")
        gr.Markdown("### Class defaults")
        defaults_md = gr.Markdown(elem_id="teacher-defaults")
        with gr.Row():
            mine_button = gr.Button("Use my Train tab's settings as the class defaults", elem_id="teacher-use-mine")
            clear_defaults = gr.Button("Clear the class defaults", elem_id="teacher-clear-defaults")
        gr.Markdown("### Caps for every student's run (the server refuses more; the Train tab's sliders stop there)")
        caps_md = gr.Markdown(elem_id="teacher-caps")
        with gr.Row():
            cap_epochs = gr.Slider(*RANGES["epochs"], RANGES["epochs"][1], step=1, label="Most epochs",
                                   elem_id="cap-epochs")
            cap_size = gr.Slider(*RANGES["image_size"], RANGES["image_size"][1], step=32, label="Largest image size",
                                 elem_id="cap-image-size")
            cap_unfreeze = gr.Slider(*RANGES["unfreeze"], RANGES["unfreeze"][1], step=1,
                                     label="Most unfrozen stages", elem_id="cap-unfreeze")
            cap_batch_low = gr.Slider(*RANGES["batch_size"], RANGES["batch_size"][0], step=1,
                                      label="Smallest batch", elem_id="cap-batch-low")
            cap_batch_high = gr.Slider(*RANGES["batch_size"], RANGES["batch_size"][1], step=1,
                                       label="Largest batch", elem_id="cap-batch-high")
        with gr.Row():
            caps_button = gr.Button("Set these caps", elem_id="teacher-set-caps")
            lift_button = gr.Button("Lift every cap", elem_id="teacher-lift-caps")
    shown, nothing_shown = gr.State(""), gr.State("")

    private = {"api_visibility": "private"}
    signed_view = [status_md, panel, sign_out_button, timer]
    sign_in_button.click(sign_in, key_box, [token, key_box, *signed_view], **private)
    key_box.submit(sign_in, key_box, [token, key_box, *signed_view], **private)
    sign_out_button.click(sign_out, None, [token, *signed_view], **private).then(
        lambda: "", None, shown, **private)
    view = {"shown": shown, "board": board_df, "plot": accuracy_plot, "figures": figures_md, "queue": queue_md,
            "defaults": defaults_md, "caps": caps_md, "runs": runs_box}

    def poll(token_value, since_hours, label, chosen, shown_key):
        parts = refresh(token_value, since_hours, label, chosen, shown_key)
        return {view[name]: value for name, value in parts.items()} if parts else gr.skip()

    poll_inputs = [token, since, setting, runs_box, shown]
    timer.tick(poll, poll_inputs, list(view.values()), concurrency_limit=None, show_progress="hidden", **private)
    gr.on([since.change, setting.change, token.change], poll, [token, since, setting, runs_box, nothing_shown],
          list(view.values()), show_progress="hidden", trigger_mode="always_last", **private)
    pause_button.click(lambda t: pause(t, True), token, queue_md, **private)
    resume_button.click(lambda t: pause(t, False), token, queue_md, **private)
    stop_button.click(stop_run, [token, runs_box], control_md, **private)
    mine_button.click(use_my_settings, [token], defaults_md, inputs_kwargs=train_settings, **private)
    clear_defaults.click(lambda t: set_defaults(t, {}), token, defaults_md, **private)
    caps_button.click(caps_pressed, [token, cap_epochs, cap_size, cap_unfreeze, cap_batch_low, cap_batch_high],
                      caps_md, **private)
    lift_button.click(lambda t: set_caps(t, {}), token, caps_md, **private)
    return [(on_load, token, [token, *signed_view])]

