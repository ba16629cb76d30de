"""A stand-in for `python -m trainer.worker RUN_DIR` in the queue's tests: it writes the events a
real run writes (begin, start, one batch every 20 ms for `epochs` x 10 batches, finished) and
honours the stop file, in a fraction of a second instead of importing a framework."""

import json
import os
import sys
import time
from pathlib import Path


def main(run: Path) -> int:
    config = json.loads((run / "config.json").read_text())
    batches = config["epochs"] * 10
    with open(run / "events.jsonl", "a", buffering=1) as sink:
        emit = lambda event: sink.write(json.dumps(event) + "\n")  # noqa: E731
        emit({"type": "begin", "pid": os.getpid()})
        emit({"type": "start", "framework": "pytorch"})
        for batch in range(1, batches + 1):
            if (run / "stop").exists():
                emit({"type": "finished", "status": "stopped"})
                return 0
            emit({"type": "batch", "framework": "pytorch", "batch": batch, "batches": batches,
                  "eta_s": (batches - batch) * float(config.get("lr", 0.02))})
            time.sleep(float(config.get("lr", 0.02)))  # the test sets the pace through lr
        emit({"type": "finished", "status": "done"})
    return 0


def retiring_warm_worker() -> int:
    """As `python -m trainer.worker --warm` on its last run: trains the first run it is given,
    takes a moment to exit, and loses the run it is handed meanwhile."""
    main(Path(sys.stdin.readline().strip()))
    time.sleep(0.5)
    sys.stdin.readline()
    return 0


if __name__ == "__main__":
    raise SystemExit(retiring_warm_worker() if sys.argv[1] == "--warm" else main(Path(sys.argv[1])))
