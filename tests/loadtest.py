"""Prediction load test: N concurrent prediction clients for S seconds while a training runs
(loopback only).

    python tests/loadtest.py --clients 20 --seconds 60

Starts `python app.py` on a free localhost port with its own folders (tests/support/launch.py);
one visitor trains small models of both frameworks and then starts a long training; N other
visitors predict meanwhile (with the reference models: a first-time visitor's models). Prints
requests, failures and p50/p95/max latency; exits 1 on any failed request.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS), str(TESTS.parent)]

from conftest import make_dataset  # noqa: E402
from support.launch import start_app  # noqa: E402
from support.visitor import Visitor  # noqa: E402
from trainer import runner  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402

SMALL = TrainConfig(data_dir="", framework="both", epochs=1, batch_size=8, image_size=32, head_units=16,
                    weights="none", feature_cache=True)


def hammer(url: str, image: Path, stop_at: float, latencies: list, failures: list) -> None:
    visitor = Visitor(url)
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            (result,) = visitor.predict(image)
            assert {"keras", "pytorch"} <= set(result["reference"]), result
            latencies.append(time.perf_counter() - started)
        except Exception as error:  # every failure counts, whatever its kind
            failures.append(repr(error)[:200])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as base:
        base = Path(base)
        data = make_dataset(base / "data" / "toy", per_class=(120, 6), size=48)
        runner.train(SMALL.with_changes(data_dir=str(data), out_dir=str(base / "reference")))
        app = start_app(base / "reference", base / "workspaces", data_dir=base / "data", log=base / "app.log")
        try:
            trainer = Visitor(app.url)
            trainer.start(SMALL.with_changes(framework="pytorch", epochs=20, batch_size=1, image_size=64,
                                             feature_cache=False), "server/toy")
            trainer.wait(lambda s: s["status"] == "running", timeout_s=300)
            image = next(data.rglob("*.jpg"))
            first = time.perf_counter()
            Visitor(app.url).predict(image)  # loads the reference models if not loaded yet
            first = time.perf_counter() - first
            latencies, failures = [], []
            stop_at = time.monotonic() + args.seconds
            threads = [threading.Thread(target=hammer, args=(app.url, image, stop_at, latencies, failures))
                       for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.seconds + 120)
            training = trainer.status()
            trainer.stop()
        finally:
            app.stop()
    ms = np.array(latencies or [float("nan")]) * 1000
    print(f"first prediction (loads both models): {first * 1000:.0f} ms")
    print(f"{args.clients} clients, {args.seconds:.0f} s, training {training['status']} "
          f"({training['batches']} batches): {len(latencies)} predictions, {len(failures)} failed; "
          f"latency p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms, max {ms.max():.0f} ms")
    for failure in failures[:5]:
        print("failure:", failure)
    return 1 if failures or training["status"] != "running" or not latencies else 0


if __name__ == "__main__":
    raise SystemExit(main())
