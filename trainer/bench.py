"""`python -m trainer bench --data DIR [--limit N] [--image-size PX]`: where training time goes.

On the same images, per framework, in one run:
1. the seed recipe, as closely as today's libraries allow: PyTorch's notebook loop (DataLoader over
   the files, PIL RandomAffine + flip, whole model in train mode, float32); Keras with a per-image
   augmentation generator (a PyDataset: decode, augment one image at a time) feeding `fit`, as the
   notebook's ImageDataGenerator did;
2. this project's training path (images decoded once, augmentation on, frozen backbone in inference
   mode, channels_last / tf.data, bfloat16 where the CPU has it);
3. the backbone's pure forward pass on ready tensors, same batch size and precision (the ceiling);
4. this project's feature-cache epochs;
then one image through both saved models (warm), the app's start-up time (median of three starts),
the time from Start (at the Train tab's default settings) to the first chart point, and the app's
peak memory after training and predicting with both. Prints a table, then one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from trainer import data, runner
from trainer.augment import AugmentConfig
from trainer.backend import Backend
from trainer.config import TrainConfig
from trainer.jobs import ACTIVE

ROOT = Path(__file__).resolve().parents[1]
SEED_EPOCHS = 2  # the first one warms up (graph tracing, caches); the second is timed
ROUNDS = 3  # timed training epochs, each followed by a timed forward pass
APP_STARTS = 3  # the app's start-up is the median of this many starts


def main(args) -> int:
    if args.epochs:
        return epoch_check(args)
    config = TrainConfig(framework="both", data_dir=args.data, limit=args.limit, image_size=args.image_size,
                         batch_size=args.batch_size, weights="none", epochs=2).validate()
    dataset = data.discover(config.data_dir, config.seed)
    train = data.limit_samples(dataset.train, config.limit, config.seed)
    val = data.limit_samples(dataset.val, config.limit, config.seed)
    arrays = data.load_dataset(dataset, config.image_size, config.limit, config.seed)
    print(f"bench: {len(train)} train / {len(val)} validation images, {config.image_size} px, batch "
          f"{config.batch_size}, {os.cpu_count()} CPUs", file=sys.stderr)
    figures = {}
    with tempfile.TemporaryDirectory() as models:
        for framework in ("pytorch", "keras"):
            figures[framework] = measure(framework, config.with_changes(out_dir=models), arrays, train, val)
        figures["predict_both_s"] = predict_both(models, arrays.val_paths[0])
        ready, figures["first_chart_point_s"], figures["peak_rss_mb"] = app_figures(models, config)
        figures["app_ready_s"], figures["app_ready_each_s"] = float(np.median(ready)), ready
    figures["bench_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print_table(figures)
    print(json.dumps(figures))
    return 0


def epoch_check(args) -> int:
    """Whole epochs (train + validation) of the project path, per framework: for GPU machines."""
    figures = {}
    for framework in args.frameworks:
        config = TrainConfig(framework=framework, data_dir=args.data, limit=args.limit,
                             image_size=args.image_size, batch_size=args.batch_size, weights="none",
                             epochs=args.epochs).validate()
        module = runner.backend(framework)
        arrays = runner.load_data(config)
        device = module.describe_device(config.device)
        for mode, changes in (("augmented", {}), ("feature_cache", {"feature_cache": True})):
            model, info = module.build_model(len(arrays.classes), config)
            started = time.perf_counter()
            history = module.train(model, arrays, config.with_changes(**changes))["history"]
            figures[f"{framework}_{mode}"] = {
                "device": device, "precision": info["precision"], "train_images": len(arrays.y_train),
                "val_images": len(arrays.y_val), "total_s": time.perf_counter() - started,
                "epoch_s": [round(h["seconds"], 3) for h in history],
                "images_per_s": [round(h["images_per_s"], 1) for h in history],
                "data_wait_share": [round(h["data_wait_share"], 3) for h in history]}
            print(framework, mode, json.dumps(figures[f"{framework}_{mode}"]), file=sys.stderr)
    print(json.dumps(figures))
    return 0


def measure(framework: str, config: TrainConfig, arrays, train, val) -> dict:
    seed = seed_recipe(framework, config, train, val)
    module = runner.backend(framework)
    model, info = module.build_model(len(arrays.classes), config)
    # This machine's speed drifts by up to 2x for tens of seconds at a time, so the forward pass is
    # timed right before and right after each timed epoch (the first epoch, with graph tracing, is
    # not counted), and the round whose train/forward ratio is the median one is reported.
    forward = [forward_img_s(module, model, arrays.x_train, config)]

    def between_epochs(event):
        if event["type"] == "epoch":
            forward.append(forward_img_s(module, model, arrays.x_train, config))

    history = module.train(model, arrays, config.with_changes(epochs=1 + ROUNDS), between_epochs)["history"]
    rounds = sorted([(h["images_per_s"] / ((before + after) / 2), h, (before + after) / 2)
                     for h, before, after in zip(history[1:], forward[1:], forward[2:])], key=lambda r: r[0])
    _, best, ceiling = rounds[len(rounds) // 2]
    print(f"{framework}: forward img/s {[round(f, 1) for f in forward]}, train img/s "
          f"{[round(h['images_per_s'], 1) for h in history]} (first epoch not counted)", file=sys.stderr)
    cached_model, _ = module.build_model(len(arrays.classes), config)
    cached = module.train(cached_model, arrays, config.with_changes(feature_cache=True, epochs=3))
    module.save(cached_model, config.out_dir, {"classes": arrays.classes, "config": config.to_dict()})
    return {"seed_img_s": seed["img_s"], "train_img_s": best["images_per_s"], "forward_img_s": ceiling,
            "seed_epoch_s": seed["epoch_s"], "train_epoch_s": best["seconds"],
            "cached_epoch_s": float(np.mean([h["seconds"] for h in cached["history"][1:]])),
            "precision": info["precision"]}


def forward_img_s(module: Backend, model, images: np.ndarray, config: TrainConfig) -> float:
    """Backbone only, on images already preprocessed and on the device, batch by batch."""
    device, batch = module.select_device(config.device), config.batch_size
    tensors = [module.preprocess(images[i:i + batch], device) for i in range(0, len(images), batch)]
    run = module.backbone(model)
    run(tensors[0])  # graph tracing, kernel selection
    started = time.perf_counter()
    for x in tensors:
        run(x)
    return len(images) / (time.perf_counter() - started)


# ---------------------------------------------------------------- the seed notebooks, today

def seed_recipe(framework: str, config: TrainConfig, train, val) -> dict:
    run = seed_pytorch if framework == "pytorch" else seed_keras
    return run(config, train, val)


def seed_pytorch(config: TrainConfig, train, val) -> dict:
    import torch
    import torchvision
    from PIL import Image
    from torch import nn
    from torchvision import transforms

    size = (config.image_size, config.image_size)
    normalize = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train_tf = transforms.Compose([transforms.Resize(size), transforms.RandomAffine(0, shear=10, scale=(0.8, 1.2)),
                                   transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
    val_tf = transforms.Compose([transforms.Resize(size), transforms.ToTensor(), normalize])

    class Files(torch.utils.data.Dataset):  # ImageFolder over the same files
        def __init__(self, samples, transform):
            self.samples, self.transform = samples, transform

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, i):
            return self.transform(Image.open(self.samples[i].path).convert("RGB")), self.samples[i].label

    loaders = {"train": torch.utils.data.DataLoader(Files(train, train_tf), batch_size=config.batch_size, shuffle=True),
               "validation": torch.utils.data.DataLoader(Files(val, val_tf), batch_size=config.batch_size)}
    model = torchvision.models.resnet50(weights=None)
    for param in model.parameters():
        param.requires_grad = False
    model.fc = nn.Sequential(nn.Linear(2048, 128), nn.ReLU(inplace=True), nn.Linear(128, 2))
    criterion, optimizer = nn.CrossEntropyLoss(), torch.optim.Adam(model.fc.parameters())
    for _ in range(SEED_EPOCHS):
        times = {}
        for phase in ("train", "validation"):
            started = time.perf_counter()
            model.train() if phase == "train" else model.eval()
            for inputs, labels in loaders[phase]:
                outputs = model(inputs)
                loss = criterion(outputs, labels)
                if phase == "train":
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            times[phase] = time.perf_counter() - started
    return {"img_s": len(train) / times["train"], "epoch_s": sum(times.values())}


def seed_keras(config: TrainConfig, train, val) -> dict:
    from trainer import keras_backend  # noqa: F401 - the import order torch -> TensorFlow
    import keras
    from keras import layers
    from PIL import Image

    size = config.image_size
    augment_one = keras.Sequential([layers.RandomZoom(0.2), layers.RandomShear(x_factor=0.176),
                                    layers.RandomFlip("horizontal")])

    class Generator(keras.utils.PyDataset):  # what ImageDataGenerator.flow_from_directory did
        def __init__(self, samples, augment):
            super().__init__()
            self.samples, self.augment = samples, augment

        def __len__(self):
            return -(-len(self.samples) // config.batch_size)

        def __getitem__(self, index):
            batch = self.samples[index * config.batch_size:(index + 1) * config.batch_size]
            images = []
            for sample in batch:
                image = np.asarray(Image.open(sample.path).convert("RGB").resize((size, size), Image.NEAREST), "float32")
                images.append(np.asarray(augment_one(image, training=True)) if self.augment else image)
            inputs = keras.applications.resnet50.preprocess_input(np.stack(images))
            return inputs, np.array([s.label for s in batch])

    conv_base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(size, size, 3))
    for layer in conv_base.layers:
        layer.trainable = False
    x = layers.GlobalAveragePooling2D()(conv_base.output)
    x = layers.Dense(128, activation="relu")(x)
    model = keras.Model(conv_base.input, layers.Dense(2, activation="softmax")(x))
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(), metrics=["accuracy"])

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_test_begin(self, logs=None):
            self.train_s = time.perf_counter() - self.started

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_s = time.perf_counter() - self.started

    timer = Timer()
    model.fit(Generator(train, True), epochs=SEED_EPOCHS, validation_data=Generator(val, False),
              callbacks=[timer], verbose=0)
    return {"img_s": len(train) / timer.train_s, "epoch_s": timer.epoch_s}


# ---------------------------------------------------------------- prediction and the app

def predict_both(models: str, image_path: str) -> float:
    from trainer.predictor import Predictor
    predictor = Predictor(models)
    predictor.refresh()
    image = data.load_rgb(image_path)
    predictor.predict(image)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        predictor.predict(image)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def app_figures(models: str, config: TrainConfig) -> tuple[list[float], float, float]:
    """Seconds from `python app.py` to the page answering (each start); seconds from Start at the
    default settings (both frameworks, 224 px, every image, augmentation on; weights none, which
    trains the same network) to the first chart point; the app's peak memory (MB) after a training
    of both frameworks (feature cache) and predictions with both models."""
    from gradio_client import Client, handle_file
    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "AVP_MODELS_DIR": models, "AVP_RUNS_DIR": runs, "AVP_DATA_DIR": config.data_dir}
        ready = []
        for _ in range(APP_STARTS - 1):
            app, url, seconds = start_app(env)
            stop_app(app)
            ready.append(seconds)
        app, url, seconds = start_app(env)
        ready.append(seconds)
        try:
            client = Client(url, verbose=False)
            first_point = first_chart_point(client, config.data_dir)
            start_run(client, config.data_dir, epochs=1, image_size=config.image_size, limit=config.limit,
                      feature_cache=True, augment=AugmentConfig(enabled=False))
            wait_until_done(client)
            image = handle_file(str(next(Path(config.data_dir).rglob("*.jpg"))))
            for _ in range(3):
                client.predict([image], api_name="/predict")
            client.predict(image, 10, 0.8, 1.2, 0, 0, True, False, 1, api_name="/preview")
            peak = peak_rss_mb(app.pid)
        finally:
            stop_app(app)
    return ready, first_point, peak


def start_app(env: dict) -> tuple[subprocess.Popen, str, float]:
    """`python app.py` on a free port: (process, its URL, seconds until its page answered)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env={**env, "GRADIO_SERVER_PORT": str(port)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        return app, url, wait_for_page(url, started)
    except BaseException:
        stop_app(app)
        raise


def stop_app(app: subprocess.Popen) -> None:
    app.terminate()
    app.wait(30)


def start_run(client, data_dir: str, **changes) -> None:
    """Press Start through the API: the Train tab's defaults (TrainConfig's) unless changed, weights none."""
    c = TrainConfig(data_dir=data_dir, weights="none", allow_random_init=True).with_changes(**changes)
    a = c.augment
    client.predict(c.framework, c.data_dir, c.epochs, c.batch_size, c.lr, c.image_size, c.head_units, c.limit,
                   c.feature_cache, c.unfreeze, c.weights, c.allow_random_init, c.seed, a.enabled, a.shear_deg,
                   a.zoom_min, a.zoom_max, a.rotation_deg, a.shift, a.hflip, a.vflip, api_name="/start")


def first_chart_point(client, data_dir: str) -> float:
    """Start at the default settings, wait for the first batch's loss (the chart's first point), Stop."""
    started = time.perf_counter()
    start_run(client, data_dir)
    while client.predict(api_name="/training_status")["batches"] == 0:
        if time.perf_counter() - started > 300:
            raise TimeoutError("no chart point 300 s after Start")
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    client.predict(api_name="/stop")
    wait_until_done(client)
    return seconds


def wait_until_done(client) -> None:
    while client.predict(api_name="/training_status")["status"] in ACTIVE:
        time.sleep(0.5)


def wait_for_page(url: str, started: float, timeout_s: float = 120) -> float:
    while time.perf_counter() - started < timeout_s:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def print_table(figures: dict) -> None:
    print(f"\n{'':<10}{'seed img/s':>11}{'train img/s':>12}{'forward img/s':>14}{'train/seed':>11}"
          f"{'train/fwd':>10}{'seed epoch s':>13}{'cached epoch s':>15}{'seed/cached':>12}  precision")
    for framework in ("keras", "pytorch"):
        f = figures[framework]
        print(f"{framework:<10}{f['seed_img_s']:>11.1f}{f['train_img_s']:>12.1f}{f['forward_img_s']:>14.1f}"
              f"{f['train_img_s'] / f['seed_img_s']:>11.2f}{f['train_img_s'] / f['forward_img_s']:>10.2f}"
              f"{f['seed_epoch_s']:>13.1f}{f['cached_epoch_s']:>15.3f}{f['seed_epoch_s'] / f['cached_epoch_s']:>12.0f}"
              f"  {f['precision']}")
    print(f"predict both, one image, warm: {figures['predict_both_s']:.3f} s | app ready: "
          f"{figures['app_ready_s']:.1f} s (median of {', '.join(f'{r:.1f}' for r in figures['app_ready_each_s'])})"
          f" | first chart point after Start: {figures['first_chart_point_s']:.1f} s"
          f" | app peak memory: {figures['peak_rss_mb']:.0f} MB")
