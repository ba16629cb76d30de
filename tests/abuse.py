"""Abuse test: one hostile client against a class, on one app on loopback (issue 16).

    python tests/abuse.py --students 10              # the full size
    python tests/abuse.py --students 3 --minutes 8   # what the suite runs (tests/test_budgets.py)

A class of students shares one address (127.0.0.2: a school behind one IP); the hostile client has
another (127.0.0.3), in a process of its own, and uses only the public API: it makes workspaces
until refused, queues runs until refused, asks for a maximal run, floods Start with refused
requests, uploads zip bombs, zips of many tiny files and of a deep tree, fills its disk with
accepted uploads, and floods /training_status. Meanwhile each student queues a short run (feature
cache, 32 px, PyTorch) and follows it. Prints the students' runs completed and lost, their failed
requests and latencies (p50, p95), the app's idle, peak and final memory, the disk used against
the budget, and how long the hostile client took to hit each limit; exits 1 if a student's run
was lost, a student's request failed, or the app's memory passed 3 GB.

Clients are bound to their address by httpx's `local_address` (every httpx transport of the
process: gradio_client makes its own clients and calls httpx.get/post/stream).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS), str(TESTS.parent)]

STUDENTS_ADDRESS, HOSTILE_ADDRESS = "127.0.0.2", "127.0.0.3"
MEMORY_LIMIT_MB = 3 * 1024


def bind_httpx(address: str) -> None:
    """Every httpx connection of this process leaves from `address`."""
    import httpx
    original = httpx.HTTPTransport.__init__

    def bound(self, *args, **kwargs):
        kwargs.setdefault("local_address", address)
        original(self, *args, **kwargs)
    httpx.HTTPTransport.__init__ = bound


# ---------------------------------------------------------------- the hostile client

def quick_settings(dataset: str) -> dict:
    return {"dataset": dataset, "framework": "pytorch", "epochs": 1, "image_size": 32, "head_units": 16,
            "feature_cache": True, "weights": "none", "allow_random_init": True}


def until_refused(action, most: int) -> dict:
    """Call `action(i)` until it raises (a refusal): {"tries", "seconds", "refusal"}."""
    started = time.monotonic()
    for i in range(most):
        try:
            action(i)
        except Exception as error:  # noqa: BLE001 - a refusal is what we wait for
            return {"tries": i + 1, "seconds": round(time.monotonic() - started, 2), "refusal": str(error)[:200]}
    return {"tries": most, "seconds": round(time.monotonic() - started, 2), "refusal": None}


def bomb(target: Path, megabytes: int = 512) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("train/a/zeros.jpg", "w", force_zip64=True) as sink:
            chunk = bytes(2**20)
            for _ in range(megabytes):
                sink.write(chunk)
    return target


def tiny_files(target: Path, count: int = 20_000) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(count):
            archive.writestr(f"train/{'ab'[i % 2]}/{i}.jpg", b"x")
    return target


def deep_tree(target: Path, depth: int = 2000) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("/".join(["d"] * depth) + "/x.jpg", b"x")
    return target


def hostile(url: str, dataset: str, upload: Path, work: Path, poll_s: float) -> dict:
    """Everything the hostile client tries, and when each limit stopped it."""
    from gradio_client import Client, handle_file
    client = Client(url, verbose=False)
    made: list[str] = []
    report = {"workspaces": until_refused(lambda i: made.append(client.predict("", api_name="/workspace")), 5000)}

    maximal = {**quick_settings(dataset), "framework": "both", "epochs": 20, "image_size": 448, "batch_size": 1,
               "unfreeze": 4, "feature_cache": False, "head_units": 1024}
    report["maximal run"] = until_refused(lambda i: client.predict(made[-1], maximal, api_name="/start"), 1)
    beyond = {**maximal, "epochs": 1000, "head_units": 8192}  # past the page's ranges
    report["run past the ranges"] = until_refused(lambda i: client.predict(made[-1], beyond, api_name="/start"), 1)

    def start(i):
        client.predict(made[i], quick_settings(dataset), api_name="/start")
    report["runs"] = until_refused(start, len(made))
    refused = []

    def refused_start(i):
        started = time.monotonic()
        try:
            client.predict(made[0], quick_settings(dataset), api_name="/start")  # busy: it has a run
        except Exception:  # noqa: BLE001 - refused, as expected
            refused.append(time.monotonic() - started)
    until_refused(refused_start, 100)
    report["refused starts"] = {"count": len(refused), "p50_s": round(statistics.median(refused), 3)}
    polls, poll_errors, stop = [], [], threading.Event()

    def poll():  # a client each: gradio_client's one event stream per client drops events when shared
        own = Client(url, verbose=False)
        while not stop.is_set():
            try:
                own.predict(made[0], api_name="/training_status")
                polls.append(1)
            except Exception as error:  # noqa: BLE001 - counted, and the flood goes on
                poll_errors.append(type(error).__name__)
    pollers = [threading.Thread(target=poll, daemon=True) for _ in range(8)]
    polls_started = time.monotonic()
    for thread in pollers:
        thread.start()
    attacks = [bomb(work / "bomb.zip"), tiny_files(work / "tiny.zip"), deep_tree(work / "deep.zip")]
    accepted, started = [], time.monotonic()

    def upload_one(i):  # every other upload is a real data set (it fills the disk), the others bombs
        attack = attacks[(i // 2) % 3] if i % 2 else None
        _, text = client.predict(made[i % len(made)], handle_file(str(attack or upload)), api_name="/upload_data")
        if "uploads an hour" in text:
            raise RuntimeError(text)
        if attack and "cannot be trained on" not in text:
            accepted.append(attack.name)
        if attack is None and "cannot be trained on" in text and "disk" not in report:
            report["disk"] = {"tries": i + 1, "seconds": round(time.monotonic() - started, 2), "refusal": text[:200]}
    report["uploads"] = until_refused(upload_one, 1000)
    report["bombs accepted"] = accepted
    time.sleep(poll_s)
    stop.set()
    for thread in pollers:
        thread.join(30)
    report["status polls"] = {"count": len(polls), "errors": len(poll_errors),
                              "seconds": round(time.monotonic() - polls_started, 1)}
    return report


# ---------------------------------------------------------------- the class

@dataclass
class Student:
    number: int
    status: str = "not started"
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def lesson(student: Student, url: str, dataset: str, deadline: float) -> None:
    from support.visitor import Visitor

    def timed(action):
        started = time.monotonic()
        result = action()
        student.latencies.append(time.monotonic() - started)
        return result
    try:
        visitor = timed(lambda: Visitor(url))
        timed(lambda: visitor.call(quick_settings(dataset), api_name="/start"))
        while time.monotonic() < deadline:
            status = timed(visitor.status)
            if status["status"] not in ("queued", "starting", "running", "stopping"):
                student.status = status["status"]
                return
            time.sleep(1)
        student.status = "timed out"
    except Exception as error:  # every failure counts, whatever its kind
        student.failures.append(f"{type(error).__name__}: {error}"[:300])


def noise_upload(target: Path, per_class: int = 80) -> Path:
    """A real data set of ~8 MB (noise photos do not compress): what fills a disk fastest."""
    from PIL import Image
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(target, "w") as archive:
        for i in range(2 * per_class):
            image = Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))
            buffer = target.with_suffix(".jpg")
            image.save(buffer, quality=90)
            archive.write(buffer, f"train/{'ab'[i % 2]}/{i}.jpg")
    return target


def memory_mb(pid: int, field_name: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run(args) -> int:
    from conftest import make_dataset
    from support.launch import start_app
    bind_httpx(STUDENTS_ADDRESS)
    with tempfile.TemporaryDirectory() as base:
        base = Path(base)
        make_dataset(base / "data" / "toy", per_class=(20, 5), size=48)
        noise_upload(base / "photos.zip")
        # Each student's run saves a ResNet-50 (~100 MB): the class's address needs that much disk, and
        # the hostile one gets the same budget, which its uploads then fill.
        person_gb = args.person_disk_gb or round(0.15 * max(args.students, 2), 2)
        total_gb = 2.5 * person_gb
        env = {"AVP_PERSON_RUNS": str(max(args.students, 2)), "AVP_PERSON_DISK_GB": str(person_gb),
               "AVP_WORKSPACES_TOTAL_GB": str(total_gb), "AVP_MAX_RUN_MINUTES": str(args.max_run_minutes)}
        app = start_app(base / "reference", base / "workspaces", data_dir=base / "data", log=base / "app.log",
                        env=env)
        try:
            idle = memory_mb(app.process.pid, "VmRSS")
            attacker = subprocess.Popen([sys.executable, __file__, "--hostile-client", app.url, "--work", str(base),
                                         "--poll-seconds", str(args.poll_seconds)], stdout=subprocess.PIPE, text=True)
            time.sleep(1)  # the attack is under way when the class arrives
            students = [Student(i) for i in range(args.students)]
            deadline = time.monotonic() + args.minutes * 60
            threads = [threading.Thread(target=lesson, args=(s, app.url, "server/toy", deadline)) for s in students]
            for thread in threads:
                thread.start()
                time.sleep(0.3)
            for thread in threads:
                thread.join(max(1.0, deadline - time.monotonic()))
            output, _ = attacker.communicate(timeout=max(30.0, deadline - time.monotonic()))
            attack = json.loads(output.strip().splitlines()[-1]) if output.strip() else {}
            peak = memory_mb(app.process.pid, "VmHWM")
            time.sleep(5)
            after = memory_mb(app.process.pid, "VmRSS")
            disk = sum(p.stat().st_size for p in (base / "workspaces").rglob("*") if p.is_file())
        finally:
            app.stop()
    done = [s for s in students if s.status == "done"]
    failures = [f for s in students for f in s.failures]
    latencies = [t for s in students for t in s.latencies]
    print(f"{len(students)} students on {STUDENTS_ADDRESS}, one hostile client on {HOSTILE_ADDRESS}")
    print(f"students' runs completed {len(done)}/{len(students)}, lost {len(students) - len(done)}")
    print(f"students' failed requests: {len(failures)}; latency p50 {percentile(latencies, 50):.2f} s, "
          f"p95 {percentile(latencies, 95):.2f} s ({len(latencies)} requests)")
    print(f"app memory: idle {idle:.0f} MB, peak {peak:.0f} MB, after {after:.0f} MB")
    print(f"disk used by workspaces: {disk / 2**20:.0f} MB of the {total_gb * 1024:.0f} MB budget "
          f"({person_gb * 1024:.0f} MB per person)")
    for name, figures in attack.items():
        print(f"hostile {name}: {figures}")
    for failure in failures[:5]:
        print("failure:", failure)
    return 0 if len(done) == len(students) and not failures and peak < MEMORY_LIMIT_MB else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=20, help="deadline for the whole lesson")
    parser.add_argument("--poll-seconds", type=float, default=20, help="how long the status-poll flood lasts")
    parser.add_argument("--person-disk-gb", type=float, default=0,
                        help="AVP_PERSON_DISK_GB of the app (default: 0.15 GB a student; all visitors 2.5x that)")
    parser.add_argument("--max-run-minutes", type=float, default=2,
                        help="AVP_MAX_RUN_MINUTES of the app (sized to the small generated data set: the maximal run "
                             "on it is estimated at ~10 minutes, and a student's run at seconds)")
    parser.add_argument("--hostile-client", help=argparse.SUPPRESS)  # the hostile process: the app's URL
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hostile_client:
        bind_httpx(HOSTILE_ADDRESS)
        work = Path(args.work)
        print(json.dumps(hostile(args.hostile_client, "server/toy", work / "photos.zip", work, args.poll_seconds)))
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
