"""Command line: `python -m trainer {fetch-data,check-data,train,warm,predict,bench} ...`.

    python -m trainer fetch-data --dest data
    python -m trainer check-data data            # or a .zip of class folders
    python -m trainer train --framework both --data data --out models --epochs 3
    python -m trainer warm --data data            # before class: reference models + feature bank
    python -m trainer predict --models models [--json] image.jpg ...
    python -m trainer bench --data data --limit 128
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from trainer import frameworks
from trainer.augment import HELP as AUGMENT_HELP, AugmentConfig
from trainer.config import DEVICE_CHOICES, HELP, PRECISION_CHOICES, TrainConfig, default_data_dir, server_precision


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(data_dir="")
    parser.add_argument("--framework", choices=(*frameworks.NAMES, "both"), default="both", help=HELP["framework"])
    parser.add_argument("--data", dest="data_dir", default=default_data_dir(), help=HELP["data_dir"])
    parser.add_argument("--out", dest="out_dir", default=d.out_dir, help=HELP["out_dir"])
    for name in ("epochs", "batch_size", "image_size", "head_units", "unfreeze", "limit", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name), help=HELP[name])
    for name in ("lr", "fine_tune_lr"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name), help=HELP[name])
    parser.add_argument("--weights", default=d.weights, help=HELP["weights"])
    parser.add_argument("--allow-random-init", action="store_true", help=HELP["allow_random_init"])
    parser.add_argument("--feature-cache", action="store_true", help=HELP["feature_cache"])
    parser.add_argument("--device", choices=DEVICE_CHOICES, default=d.device, help=HELP["device"])
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=d.precision, help=HELP["precision"])
    add_augment_arguments(parser)


def add_augment_arguments(parser: argparse.ArgumentParser) -> None:
    """The augmentation flags, each stored as `augment.<AugmentConfig field>`."""
    a, say = AugmentConfig(), AUGMENT_HELP
    parser.add_argument("--no-augment", dest="augment.enabled", action="store_false", help=f"no {say['enabled']}")
    for name, flag in (("shear_deg", "--shear"), ("rotation_deg", "--rotation"), ("shift", "--shift")):
        parser.add_argument(flag, dest=f"augment.{name}", metavar=flag[2:].upper(), type=float,
                            default=getattr(a, name), help=say[name])
    parser.add_argument("--zoom", dest="augment.zoom", type=float, nargs=2, default=(a.zoom_min, a.zoom_max),
                        metavar=("MIN", "MAX"), help=f"{say['zoom_min']}, {say['zoom_max']}")
    parser.add_argument("--no-hflip", dest="augment.hflip", action="store_false", help=f"no {say['hflip']}")
    parser.add_argument("--vflip", dest="augment.vflip", action="store_true", help=say["vflip"])


def default_dataset() -> str:
    """The warm-up's data set by default: the server's first (the Train tab's default), from
    $AVP_DATA_DIR (or ./data)."""
    from trainer import data
    found = data.datasets_in(default_data_dir())
    return str(next(iter(found.values()))) if found else default_data_dir()


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The parsed flags as TrainConfig's named settings (the page and the API send the same names)."""
    augment = {key.removeprefix("augment."): value for key, value in vars(args).items() if key.startswith("augment.")}
    augment["zoom_min"], augment["zoom_max"] = augment.pop("zoom")
    named = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "augment"}
    return TrainConfig.from_dict({**named, "augment": augment}).validate()


# ---------------------------------------------------------------- commands

def cmd_fetch(args) -> int:
    from trainer import fetch
    try:
        dataset = fetch.fetch(args.dest, url=args.url, expected=None if args.url != fetch.AVP_URL else fetch.AVP_COUNTS)
    except (fetch.FetchError, ValueError) as error:
        print(f"fetch-data: {error}", file=sys.stderr)
        return 1
    print(dataset.summary())
    return 0


def cmd_check(args) -> int:
    from trainer import archive, data
    path, scratch = Path(args.path), None
    try:
        if path.suffix.lower() == ".zip" and path.is_file():
            extracted = archive.extract_zip(path)
            scratch = extracted.root
            for entry, why in extracted.skipped:
                print(f"skipped zip entry {entry}: {why}")
            path = scratch
        dataset = data.discover(path, args.seed)
    except data.DataError as error:
        print(f"check-data: {args.path} cannot be trained on:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    print(dataset.summary().replace(str(path), args.path, 1))
    return 0


def cmd_train(args) -> int:
    from trainer import runner
    from trainer.bank import FeatureBank
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: (stop.set(), print("\nstopping after this batch...", file=sys.stderr)))
    progress = ProgressBars()
    try:
        results = runner.train(config, progress, stop.is_set, FeatureBank.from_env())
    except Exception as error:  # data, weights or settings problems: one clear line, no traceback
        progress.close()
        print(f"train: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    progress.close()
    print_summary(results)
    return 130 if any(r["stopped"] for r in results.values()) or stop.is_set() else 0


def cmd_warm(args) -> int:
    """Before class: train the reference models at the class's settings into $AVP_MODELS_DIR (or
    --out), filling the feature bank on the way (trainer/warm.py)."""
    from trainer import data, warm, weights
    from trainer.bank import FeatureBank
    try:
        config, random_init = warm.prepare(config_from_args(args))
        train_images, val_images = warm.image_counts(config)
    except (ValueError, weights.WeightsUnavailable, data.DataError) as error:
        print(f"warm: {error}", file=sys.stderr)
        return 2
    bank = FeatureBank.from_env()
    passes = warm.backbone_passes(config, train_images, val_images)
    epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    print(f"warm-up: {' then '.join(config.frameworks)}, {train_images} training and {val_images} validation "
          f"images, {epochs} at {config.image_size} px, batch {config.batch_size}: {passes:,} images through "
          "the backbones; the estimate follows the first batches")
    print(f"reference models: {config.out_dir}; feature bank: "
          + (str(bank.root) if bank else "off (AVP_CACHE_DIR=off): students' runs will not be faster"))
    if random_init:
        print(f"note: {warm.RANDOM_INIT_NOTE}")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: (stop.set(), print("\nstopping after this batch...", file=sys.stderr)))
    progress = WarmProgress(config, passes)
    try:
        outcome = warm.warm(config, progress, stop.is_set, bank)
    except Exception as error:  # data, weights or settings problems: one clear line, no traceback
        progress.close()
        print(f"warm: {type(error).__name__}: {error}; the reference models were left as they were", file=sys.stderr)
        return 1
    progress.close()
    print_summary(outcome["results"])
    if not outcome["installed"]:
        print("warm: the warm-up did not finish; the reference models were left as they were", file=sys.stderr)
        return 130 if stop.is_set() else 1
    print(f"warm-up done in {progress.elapsed_s():.0f} s: reference models in {config.out_dir}"
          + (f" ({warm.RANDOM_INIT_NOTE})" if random_init else ""))
    return 0


def cmd_predict(args) -> int:
    from trainer import data, store
    from trainer.predictor import Predictor
    predictor = Predictor(args.models)
    if not store.find_models(args.models):
        print(f"predict: no saved model in {args.models} (train one with `python -m trainer train`)", file=sys.stderr)
        return 1
    predictor.refresh()
    failed = 0
    for image in args.images:
        try:
            results = predictor.predict_file(image)
        except data.ImageError as error:
            failed += 1
            print(json.dumps({"image": image, "error": str(error)}) if args.json else f"predict: {error}",
                  file=sys.stdout if args.json else sys.stderr)
            continue
        if args.json:
            print(json.dumps({"image": image, **{fw: r["probabilities"] for fw, r in results.items()}}))
        else:
            print(image)
            for framework, result in results.items():
                ranked = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])
                print(f"  {framework:<8} " + "  ".join(f"{c} {p:.3f}" for c, p in ranked)
                      + f"   ({result['seconds'] * 1000:.0f} ms)")
    for framework in predictor.missing():
        print(f"predict: no {framework} model in {args.models}", file=sys.stderr)
    return 1 if failed else 0


def cmd_bench(args) -> int:
    from trainer import bench
    return bench.main(args)


# ---------------------------------------------------------------- output

class ProgressBars:
    """Event sink: a tqdm bar per framework and epoch, warnings printed above them."""

    def __init__(self):
        self.bar = None

    def __call__(self, event: dict) -> None:
        from tqdm import tqdm
        kind = event["type"]
        if kind == "warning":
            tqdm.write(f"warning: {event['message']}", file=sys.stderr)
        elif kind == "bank":
            tqdm.write(f"{event['framework']}: {event['message']}")
        elif kind == "start":
            tqdm.write(f"{event['framework']}: {event['train_images']} train / {event['val_images']} "
                       f"validation images on {event['device']}, {event['precision']}, "
                       f"backbone {event.get('engine', 'eager')}, "
                       f"pretrained={event['pretrained']}")
        elif kind == "batch":
            if self.bar is None:
                self.bar = tqdm(total=event["batches"], unit="batch",
                                desc=f"{event['framework']} epoch {event['epoch']}/{event['epochs']}")
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event['loss']:.3f}", img_s=f"{event['images_per_s']:.1f}")
        elif kind in ("epoch", "stopped"):
            self.close()
            if kind == "epoch":
                tqdm.write(f"{event['framework']} epoch {event['epoch']}: train loss {event['train_loss']:.4f} "
                           f"acc {event['train_accuracy']:.3f} | val loss {event['val_loss']:.4f} "
                           f"acc {event['val_accuracy']:.3f} | {event['seconds']:.1f} s")

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class WarmProgress(ProgressBars):
    """A warm-up's event sink: one bar over both frameworks' batches, and an estimate of the whole
    warm-up printed once the first batches have measured this machine's speed."""

    def __init__(self, config, passes: int):
        super().__init__()
        self.config, self.passes, self.started = config, passes, time.monotonic()
        self.estimated = False

    def __call__(self, event: dict) -> None:
        from tqdm import tqdm
        if event["type"] != "batch":
            if event["type"] not in ("epoch", "stopped"):  # the whole warm-up's bar stays
                super().__call__(event)
            elif event["type"] == "epoch":
                tqdm.write(f"{event['framework']} epoch {event['epoch']}: val acc {event['val_accuracy']:.3f} "
                           f"| {event['seconds']:.1f} s")
            return
        per_framework = event["epochs"] * event["batches"]
        if self.bar is None:
            self.bar = tqdm(total=per_framework * len(self.config.frameworks), unit="batch", desc="warm-up")
        index = self.config.frameworks.index(event["framework"])
        self.bar.n = index * per_framework + (event["epoch"] - 1) * event["batches"] + event["batch"]
        self.bar.set_postfix(framework=event["framework"], img_s=f"{event['images_per_s']:.1f}")
        if not self.estimated and event["batch"] >= min(4, event["batches"]):  # past the first batch's set-up
            self.estimated = True
            seconds = self.passes / max(event["images_per_s"], 1e-6)
            tqdm.write(f"estimate: about {max(1, round(seconds / 60))} min for the whole warm-up "
                       f"({event['images_per_s']:.1f} images/s on the first batches)")

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


def print_summary(results: dict) -> None:
    header = f"{'framework':<10}{'epochs':>7}{'s/epoch':>9}{'img/s':>8}{'val acc':>9}{'best':>7}  pretrained  saved to"
    print("\n" + header + "\n" + "-" * len(header))
    for framework, r in results.items():
        if not r["history"]:
            print(f"{framework:<10}{'stopped before the first epoch ended; nothing saved':>40}")
            continue
        print(f"{framework:<10}{len(r['history']):>7}{r['seconds_per_epoch']:>9.1f}{r['images_per_s']:>8.1f}"
              f"{r['val_accuracy']:>9.3f}{r['best_val_accuracy']:>7.3f}  {str(r['pretrained']):<10}  "
              f"{r.get('saved_to', 'not saved (stopped)')}")


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    from trainer import fetch
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("fetch-data", help="download the Alien vs. Predator images")
    p.add_argument("--dest", default=default_data_dir(), help="folder to create (default: $AVP_DATA_DIR or ./data)")
    p.add_argument("--url", default=fetch.AVP_URL, help="zip to download (default: the seed article's repository)")
    p.set_defaults(run=cmd_fetch)
    p = commands.add_parser("check-data", help="list classes, counts and problems of a data folder or .zip")
    p.add_argument("path")
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(run=cmd_check)
    p = commands.add_parser("train", help="fine-tune ResNet-50 in keras, pytorch or both")
    add_train_arguments(p)
    p.set_defaults(run=cmd_train)
    p = commands.add_parser("warm", help="before class: train the reference models and fill the feature bank")
    add_train_arguments(p)
    p.set_defaults(run=cmd_warm, out_dir=os.environ.get("AVP_MODELS_DIR", "models"), precision=server_precision(),
                   data_dir=default_dataset())
    p = commands.add_parser("predict", help="class probabilities from every saved model")
    p.add_argument("--models", default="models", help="models folder (as train --out)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("images", nargs="+")
    p.set_defaults(run=cmd_predict)
    p = commands.add_parser("bench", help="seed recipe vs this project's training, per framework")
    p.add_argument("--data", default=default_data_dir())
    p.add_argument("--limit", type=int, default=128)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="float32 on a CPU with native bfloat16 measures the path a CPU without it takes")
    p.add_argument("--epochs", type=int, default=0,
                   help="only time this many whole epochs of the project path per framework (GPU check)")
    p.add_argument("--frameworks", nargs="+", default=list(frameworks.ORDER), choices=frameworks.NAMES)
    p.set_defaults(run=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
