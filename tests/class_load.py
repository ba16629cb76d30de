"""Classroom load test: N students (separate gradio_client sessions, each with its own workspace)
share one app on loopback. Each uploads a data set or picks the server's, queues a short run, waits
for it, then predicts with their own models while the others train and predict.

    python tests/class_load.py --students 30                  # generated images, 32 px, PyTorch
    python tests/class_load.py --students 30 --data ../shared/data/avp --image-size 64
    python tests/class_load.py --students 30 --hostile   # every third student first uploads hostile zips

Prints runs completed and lost, how long runs waited in the queue and trained and how long
predictions took (p50, p95, max), failed requests, and the app's peak memory; exits 1 if any run
was lost, any request failed, or a hostile upload was accepted.
Bounded in time: every wait has a deadline (--minutes).
"""

from __future__ import annotations

import argparse
import shutil
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

from conftest import make_dataset  # noqa: E402
from support.appbench import peak_rss_mb  # noqa: E402
from support.launch import start_app  # noqa: E402
from support.visitor import Visitor  # noqa: E402
from test_archive import encrypted  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402


@dataclass
class Student:
    number: int
    waited_s: float | None = None  # Start -> the run left the queue
    trained_s: float | None = None  # left the queue -> finished
    status: str = "not started"
    predict_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def lesson(student: Student, url: str, config: TrainConfig, server_dataset: str, upload: Path | None,
           hostile: list[Path], images: list[Path], deadline: float) -> None:
    """One student's lesson: hostile uploads refused, a data set, a run queued and awaited,
    predictions with their own models."""
    try:
        visitor = Visitor(url)
        for attack in hostile:
            accepted, text = visitor.upload(attack)
            assert accepted is None and "cannot be trained on" in text, f"{attack.name} accepted: {text}"
        dataset = server_dataset
        if upload is not None:
            dataset, text = visitor.upload(upload)
            assert dataset, f"upload refused: {text}"
        started = time.monotonic()
        visitor.start(config, dataset)
        visitor.wait(lambda s: s["status"] != "queued", timeout_s=deadline - time.monotonic(), every_s=1)
        student.waited_s = time.monotonic() - started
        finished = visitor.wait(timeout_s=deadline - time.monotonic(), every_s=1)
        student.trained_s = time.monotonic() - started - student.waited_s
        student.status = finished["status"]
        for image in images:
            started = time.monotonic()
            (result,) = visitor.predict(image)
            student.predict_s.append(time.monotonic() - started)
            assert set(config.frameworks) <= set(result.get("yours", {})), f"no own models in {result}"
    except Exception as error:  # every failure counts, whatever its kind, and is reported below
        student.failures.append(f"{type(error).__name__}: {error}"[:300])


def zip_of(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in folder.rglob("*.jpg"):
            archive.write(path, str(path.relative_to(folder)))
    return target


def pixel_bomb(target: Path, files: int = 20) -> Path:
    """A zip of a few KB whose 1-bit PNGs declare 36 megapixels each: over the data-set budget."""
    from PIL import Image
    buffer = target.with_suffix(".png")
    Image.new("1", (6000, 6000)).save(buffer)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(files):
            archive.write(buffer, f"train/{'ab'[i % 2]}/{i}.png")
    return target


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    v = np.array(values)
    return f"p50 {np.percentile(v, 50):.1f} s, p95 {np.percentile(v, 95):.1f} s, max {v.max():.1f} s"


def run(args) -> int:
    config = TrainConfig(data_dir="", framework=args.framework, epochs=1, batch_size=16, image_size=args.image_size,
                         head_units=16, weights="none", feature_cache=True, limit=args.limit)
    with tempfile.TemporaryDirectory() as base:
        base = Path(base)
        data = Path(args.data) if args.data else make_dataset(base / "data" / "toy", per_class=(30, 6), size=48)
        server_root = data.parent
        upload = zip_of(make_dataset(base / "mine", per_class=(12, 4), size=48), base / "my images.zip")
        attacks = [pixel_bomb(base / "pixels.zip"), base / "locked.zip"] if args.hostile else []
        if attacks:
            encrypted(attacks[1])
        images = sorted((data / "validation").rglob("*.jpg"))[:2]
        app = start_app(base / "reference", base / "workspaces", data_dir=server_root, log=base / "app.log",
                        env={"AVP_MAX_RUNS": str(args.max_runs)})
        try:
            dataset = f"server/{data.name}"
            students = [Student(i) for i in range(args.students)]
            deadline = time.monotonic() + args.minutes * 60
            threads = [threading.Thread(target=lesson, args=(
                s, app.url, config, dataset, upload if s.number % 2 else None,
                attacks if s.number % 3 == 0 else [], images, deadline)) for s in students]
            started = time.monotonic()
            for thread in threads:
                thread.start()
                time.sleep(0.2)  # students arrive over a few seconds, not in one instant
            for thread in threads:
                thread.join(max(1.0, deadline - time.monotonic()))
            seconds = time.monotonic() - started
            peak = peak_rss_mb(app)
        finally:
            app.stop()
            if args.keep_log:
                shutil.copy(base / "app.log", args.keep_log)
    done = [s for s in students if s.status == "done"]
    failures = [f for s in students for f in s.failures]
    print(f"{len(students)} students{' (every third with hostile uploads)' if args.hostile else ''}, "
          f"{args.framework}, {args.image_size} px, feature cache, "
          f"{args.max_runs} run(s) at a time, {seconds:.0f} s in all")
    print(f"runs completed {len(done)}/{len(students)}, lost {len(students) - len(done)}")
    print(f"waited in the queue: {percentiles([s.waited_s for s in students if s.waited_s is not None])}")
    print(f"trained: {percentiles([s.trained_s for s in students if s.trained_s is not None])}")
    print(f"predictions: {percentiles([t for s in students for t in s.predict_s])}")
    print(f"failed requests: {len(failures)}; app peak memory: {peak:.0f} MB")
    for failure in failures[:5]:
        print("failure:", failure)
    return 0 if len(done) == len(students) and not failures else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--framework", default="pytorch", choices=("keras", "pytorch", "both"))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="images per split (0 = all)")
    parser.add_argument("--data", help="a server data set folder (default: generated images)")
    parser.add_argument("--max-runs", type=int, default=1, help="AVP_MAX_RUNS of the app")
    parser.add_argument("--minutes", type=float, default=30, help="deadline for the whole lesson")
    parser.add_argument("--hostile", action="store_true",
                        help="every third student first uploads a pixel-bomb zip and an encrypted zip")
    parser.add_argument("--keep-log", help="copy the app's log here")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
