"""Train tab: the student's side of the class board (ui/teacher_tab.py): the name they choose for it,
and publishing their last finished run to it. The board shows every run's state and queue place; a
run's settings and results appear there only once its owner published it.
"""

from __future__ import annotations

from datetime import datetime

from classroom import runs
from classroom.workspace import MAX_BOARD_NAME
from ui import text
from ui.train.run import page_workspace


def name_changed(workspace_id: str | None, name: str | None) -> str:
    """Keep the name the board shows for this student's runs ("" gives back "Student N")."""
    kept = page_workspace(workspace_id).set_board_name(name)
    if not kept:
        return "The class board shows your runs as \"Student\" and a number."
    return f"The class board shows your runs as **{text.md(kept, MAX_BOARD_NAME)}**."


def last_finished_run(workspace_id: str | None):
    """The newest run of this workspace that finished training (done), or None."""
    for run in reversed(runs.runs_of(page_workspace(workspace_id))):
        if runs.summary(run).get("status") == "done":
            return run
    return None


def publish_pressed(workspace_id: str | None, name: str | None = None) -> str:
    """Publish the last finished run: its settings and results join the class board."""
    if name is not None:
        name_changed(workspace_id, name)
    run = last_finished_run(workspace_id)
    if run is None:
        return "Nothing to publish yet: a run must finish first."
    runs.publish(run)
    return (f"Published your run of {text.readable_time(published_time(run.name))} to the class board: "
            "its settings and results are on the board now.")


def published_time(run_id: str) -> str:
    """A run id ("20261202-010203-123456", local time) as an ISO time for text.readable_time."""
    try:
        return datetime.strptime(run_id, "%Y%m%d-%H%M%S-%f").astimezone().isoformat()
    except ValueError:
        return ""


def publish_api(workspace: str, name: str = "") -> str:
    """Publish your last finished run to the class board (settings and results), under `name` if
    given (else "Student" and a number). Nothing else of your workspace is shown to anyone."""
    return publish_pressed(workspace, name or None)


def board_name_api(workspace: str, name: str) -> str:
    """The name the class board shows for your runs (at most 30 characters; "" for "Student N")."""
    return name_changed(workspace, name)
