"""The training process the app starts: `python -m classroom.worker RUN_DIR`, or a warm one,
`python -m classroom.worker --warm`, which imports both frameworks once and then trains the runs
whose folders it reads from its standard input, one per line, until its input ends, it has run
RECYCLE_RUNS runs, or its memory has grown past `AVP_WORKER_MAX_MB` (then it exits, and its memory
goes back; the app starts another). A warm worker keeps the last data set it decoded, so a next run
on the same images skips the decoding.

Reads RUN_DIR/config.json, trains (trainer.runner.train), and appends every event as one JSON line
to RUN_DIR/events.jsonl. Stops within one batch once RUN_DIR/stop exists or RUN_DIR is gone (saving nothing), and ends
within one batch once RUN_DIR/time-up exists (saving what it has trained). A failure becomes an
"error" event with a short message; the traceback goes to RUN_DIR/worker.log only, so no server
path reaches a web page. Running apart from the app means TensorFlow and torch memory goes back to
the system when the run ends, and a crash of the run cannot take the app down.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import traceback
from pathlib import Path

from classroom import runs
from trainer import frameworks, loop, public
from trainer.bank import FeatureBank

RECYCLE_RUNS = 20  # a warm worker trains this many runs, then makes way for a fresh one


def main(run_dir: str) -> int:
    run = Path(run_dir)
    sink = open(run / runs.EVENTS, "a", buffering=1)  # line-buffered: the app sees each event at once

    def emit(event: dict) -> None:
        sink.write(json.dumps(event, default=float) + "\n")

    try:
        from trainer import runner
        config = runs.read_config(run)
        emit({"type": "begin", "pid": os.getpid(), "frameworks": list(config.frameworks)})
        # Stop when asked, or when the run's folder is gone (deleted under a running process,
        # nobody could ask it to stop or see its events any more).
        # At the server's cap for one run (the queue writes RUN_DIR/time-up), the run ends as if its
        # epochs were done: what it has trained is validated and saved (trainer/loop.py TIME_UP).
        results = runner.train(config, emit, lambda: should_stop(run), FeatureBank.from_env())
        stopped = runs.stop_requested(run) or any(r["stopped"] for r in results.values())
        emit({"type": "finished", "status": "stopped" if stopped else "done",
              "time_up": runs.time_is_up(run) and not stopped})
        return 0
    except BaseException as error:  # noqa: BLE001 - report everything, then fail
        traceback.print_exc()
        emit({"type": "error", "message": public_message(error)})
        emit({"type": "finished", "status": "failed"})
        return 1
    finally:
        sink.close()


def should_stop(run: Path) -> bool | str:
    if runs.stop_requested(run) or not run.is_dir():
        return True
    return loop.TIME_UP if runs.time_is_up(run) else False


def public_message(error: BaseException) -> str:
    """An error as a page may show it: its kind and message, without folders of this server."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, MemoryError):
        text = "out of memory: try a smaller image size, batch size or --limit"
    return public.text(text)[:2000]


def serve() -> int:
    """A warm worker's life: frameworks imported and their backbones compiled for the default
    settings now (trainer/runner.py `warm_up`), then one run per line of standard input."""
    for framework in frameworks.ORDER:  # torch (torchvision) first: see trainer/keras_backend.py
        frameworks.backend(framework)
    from trainer import runner
    for framework, (engine, seconds) in runner.warm_up().items():
        name = frameworks.backend(framework).ENGINES[engine]
        print(f"warm worker {os.getpid()}: {framework} backbone in {name}, ready in {seconds:.1f} s",
              file=sys.stderr)
    print(f"warm worker {os.getpid()}: ready", file=sys.stderr)  # the bench waits for this line
    max_mb = float(os.environ.get("AVP_WORKER_MAX_MB", 8000))
    for _ in range(RECYCLE_RUNS):
        line = sys.stdin.readline()
        if not line.strip():
            break  # the app closed our input (it ended, or it let us go)
        with open(Path(line.strip()) / runs.LOG, "a") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            main(line.strip())
        if peak_rss_mb() > max_mb:
            break
    return 0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    raise SystemExit(serve() if sys.argv[1] == "--warm" else main(sys.argv[1]))
