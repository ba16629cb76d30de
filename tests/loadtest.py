"""Load test: N concurrent prediction clients for S seconds while a training runs (loopback only).

    python tests/loadtest.py --clients 20 --seconds 60

Starts `python app.py` on a free localhost port with its own models and runs folders, trains small
models of both frameworks, starts a long training, then hammers /predict from N gradio_client
clients. Prints requests, failures and p50/p95/max latency; exits 1 on any failed request.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from conftest import make_dataset  # noqa: E402

START = ["both", None, 1, 8, 1e-3, 32, 16, 0, True, 0, "none", True, 42, True, 10, 0.8, 1.2, 0, 0, True, False]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(client, until: set[str], timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.predict(api_name="/training_status")
        if status["status"] in until:
            return status
        time.sleep(0.5)
    raise TimeoutError(f"training never reached {until}")


def hammer(url: str, image: str, stop_at: float, latencies: list, failures: list) -> None:
    from gradio_client import Client, handle_file
    client = Client(url, verbose=False)
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            (result,) = client.predict([handle_file(image)], api_name="/predict")
            assert {"keras", "pytorch"} <= set(result), result
            latencies.append(time.perf_counter() - started)
        except Exception as error:  # every failure counts, whatever its kind
            failures.append(repr(error)[:200])


def main(argv=None) -> int:
    from gradio_client import Client
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as base:
        base = Path(base)
        data = make_dataset(base / "data", per_class=(120, 6), size=48)
        port = free_port()
        env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "AVP_DATA_DIR": str(data),
               "AVP_MODELS_DIR": str(base / "models"), "AVP_RUNS_DIR": str(base / "runs")}
        app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                               stdout=open(base / "app.log", "w"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            for _ in range(300):
                try:
                    client = Client(url, verbose=False)
                    break
                except Exception:
                    time.sleep(0.2)
            client.predict(*[str(data) if v is None else v for v in START], api_name="/start")
            wait(client, {"done"})
            long_run = [str(data) if v is None else v for v in START]
            long_run[0], long_run[2], long_run[3], long_run[5] = "pytorch", 20, 1, 64  # framework, epochs, batch, px
            long_run[8] = False  # no feature cache: a run that lasts
            client.predict(*long_run, api_name="/start")
            wait(client, {"running"})
            image = str(next(data.rglob("*.jpg")))
            from gradio_client import handle_file
            first = time.perf_counter()
            client.predict([handle_file(image)], api_name="/predict")  # loads the models if not yet loaded
            first = time.perf_counter() - first
            latencies, failures = [], []
            stop_at = time.monotonic() + args.seconds
            threads = [threading.Thread(target=hammer, args=(url, image, stop_at, latencies, failures))
                       for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            training = client.predict(api_name="/training_status")
            client.predict(api_name="/stop")
        finally:
            app.terminate()
            app.wait(30)
    ms = np.array(latencies) * 1000
    print(f"first prediction (loads both models): {first * 1000:.0f} ms")
    print(f"{args.clients} clients, {args.seconds:.0f} s, training {training['status']} "
          f"({training['batches']} batches): {len(latencies)} predictions, {len(failures)} failed; "
          f"latency p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms, max {ms.max():.0f} ms")
    for failure in failures[:5]:
        print("failure:", failure)
    return 1 if failures or training["status"] != "running" or not latencies else 0


if __name__ == "__main__":
    raise SystemExit(main())
