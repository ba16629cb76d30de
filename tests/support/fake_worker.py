"""A stand-in for `python -m classroom.worker RUN_DIR` in the queue's tests: it writes the events a
real run writes (begin, start, `epochs` x 10 batches, finished) into the real run folder
(classroom/runs.py) and honours Stop and the server's time-up, in a fraction of a second instead of
importing a framework.
Each batch takes 0.02 s, or what the workspace's PACE_FILE says (tests/test_classroom.py `paced`)."""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the project, for classroom.runs

from classroom import runs  # noqa: E402

PACE_FILE = "fake-pace"


def pace_s(run: Path) -> float:
    try:
        return float((run.parents[1] / PACE_FILE).read_text())  # <workspace>/runs/<run>
    except OSError:
        return 0.02


def main(run: Path) -> int:
    batches, pace = runs.read_config(run).epochs * 10, pace_s(run)
    with open(run / runs.EVENTS, "a", buffering=1) as sink:
        emit = lambda event: sink.write(json.dumps(event) + "\n")  # noqa: E731
        emit({"type": "begin", "pid": os.getpid()})
        emit({"type": "start", "framework": "pytorch"})
        for batch in range(1, batches + 1):
            if runs.stop_requested(run):
                emit({"type": "finished", "status": "stopped"})
                return 0
            if runs.time_is_up(run):  # the server's cap: it ends as a finished run (worker.py)
                emit({"type": "time_up", "framework": "pytorch", "batch": batch})
                emit({"type": "finished", "status": "done", "time_up": True})
                return 0
            emit({"type": "batch", "framework": "pytorch", "batch": batch, "batches": batches,
                  "eta_s": (batches - batch) * pace})
            time.sleep(pace)
        emit({"type": "finished", "status": "done"})
    return 0


def retiring_warm_worker() -> int:
    """As `python -m classroom.worker --warm` on its last run: trains the first run it is given,
    takes a moment to exit, and loses the run it is handed meanwhile."""
    main(Path(sys.stdin.readline().strip()))
    time.sleep(0.5)
    sys.stdin.readline()
    return 0


if __name__ == "__main__":
    raise SystemExit(retiring_warm_worker() if sys.argv[1] == "--warm" else main(Path(sys.argv[1])))
