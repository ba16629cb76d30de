"""`python -m trainer bench --data DIR [--limit N] [--image-size PX] [--precision P]`: where training time goes.

On the same images, per framework, in one run:
1. the seed recipe, as closely as today's libraries allow: PyTorch's notebook loop (DataLoader over
   the files, PIL RandomAffine + flip, whole model in train mode, float32); Keras with a per-image
   augmentation generator (a PyDataset: decode, augment one image at a time) feeding `fit`, as the
   notebook's ImageDataGenerator did;
2. this project's training path (images decoded once, augmentation on, frozen backbone in inference
   mode, channels_last / tf.data, bfloat16 where the CPU has it);
3. the backbone's pure forward pass on ready tensors, same batch size and precision (the ceiling),
   in each engine the framework has here (its own eager / tf.function pass, its compiler:
   torch.compile with frozen weights, XLA; ONNX Runtime for PyTorch in float32 on a CPU), taken in
   turns, the median of each: the framework's own pass (eager_img_s), the fastest measured
   (limit_img_s, limit_engine), each engine's first call (<engine>_first_s) and the CPU's flags;
   then the backend's `prepare` as a warm worker runs it (prepare_s; Keras times XLA against
   tf.function there) and the engine the app then uses (backbone_engine, backbone_img_s);
4. this project's feature-cache epochs;
then one image through both saved models (warm). Prints a table, then one JSON line.

The app's figures (start-up, first chart point, first and second default runs, peak memory) are
measured by driving a live app, which the library does not do: `python tests/bench_app.py` (same
flags) runs these measurements and the app's, and prints both in one table and one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

from trainer import data, frameworks, loop, runner
from trainer.backend import Backend
from trainer.bank import FeatureBank
from trainer.config import TrainConfig

SEED_EPOCHS = 2  # the first one warms up (graph tracing, caches); the second is timed
ROUNDS = 3  # timed training epochs, each followed by a timed forward pass


def main(args) -> int:
    if args.epochs:
        return epoch_check(args)
    with tempfile.TemporaryDirectory() as models:
        figures, _ = training_figures(args, models)
    report(figures)
    return 0


def training_figures(args, models: str) -> tuple[dict, TrainConfig]:
    """The training measurements (1-4 above) and predict_both_s, with both models saved in `models`;
    and the settings they ran with."""
    config = TrainConfig(framework="both", data_dir=args.data, limit=args.limit, image_size=args.image_size,
                         batch_size=args.batch_size, weights="none", epochs=2,
                         precision=getattr(args, "precision", "auto")).validate()
    dataset = data.discover(config.data_dir, config.seed)
    train = data.limit_samples(dataset.train, config.limit, config.seed)
    val = data.limit_samples(dataset.val, config.limit, config.seed)
    arrays = data.load_dataset(dataset, config.image_size, config.limit, config.seed)
    print(f"bench: {len(train)} train / {len(val)} validation images, {config.image_size} px, batch "
          f"{config.batch_size}, {os.cpu_count()} CPUs", file=sys.stderr)
    figures = {}
    for framework in frameworks.ORDER:
        figures[framework] = measure(framework, config.with_changes(out_dir=models), arrays, train, val)
    figures["predict_both_s"] = predict_both(models, arrays.val_paths[0])
    figures["cpu_flags"] = cpu_flags()
    return figures, config


def cpu_flags() -> dict:
    """The CPU features the engines' speed turns on, from /proc/cpuinfo."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        flags = set()
    return {"avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "amx": "amx_bf16" in flags or "amx_tile" in flags}


def report(figures: dict) -> None:
    """The table, then the figures as one JSON line."""
    figures["bench_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print_table(figures)
    print(json.dumps(figures))


def epoch_check(args) -> int:
    """Whole epochs (train + validation) of the project path, per framework: for GPU machines."""
    figures = {}
    for framework in args.frameworks:
        config = TrainConfig(framework=framework, data_dir=args.data, limit=args.limit,
                             image_size=args.image_size, batch_size=args.batch_size, weights="none",
                             epochs=args.epochs, precision=getattr(args, "precision", "auto")).validate()
        module = frameworks.backend(framework)
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
    module = frameworks.backend(framework)
    model, info = module.build_model(len(arrays.classes), config)
    engines = engine_figures(module, model, arrays.x_train, config, info["precision"])
    # Then as a warm worker starts (where the compiler's gain depends on the CPU, it is timed against
    # the framework's own pass: trainer/config.py prepare_engine): the engine the app takes.
    started = time.perf_counter()
    engine = module.prepare(config)
    engines.update(prepare_s=time.perf_counter() - started, backbone_img_s=engines[f"{engine}_img_s"])
    model, info = module.build_model(len(arrays.classes), config)
    # This machine's speed drifts by up to 2x for tens of seconds at a time, so the forward pass is
    # timed right before and right after each timed epoch (the first epoch, with graph tracing, is
    # not counted), and the round whose train/forward ratio is the median one is reported.
    forward = [forward_img_s(module, model, arrays.x_train, config)]

    def between_epochs(event):
        if event["type"] == "epoch":
            forward.append(forward_img_s(module, model, arrays.x_train, config))

    # The timed run fills a feature bank as it goes (no extra cost); an identical run then trains
    # from the bank: bank_epoch_s, over the same images and epochs.
    bank = FeatureBank(tempfile.mkdtemp(prefix="bench-bank-"), 2**32)
    views = lambda: runner.bank_views(bank, framework, config, info, arrays, module, loop.ignore)  # noqa: E731
    timed = config.with_changes(epochs=1 + ROUNDS)
    history = module.train(model, arrays, timed, between_epochs, views=views())["history"]
    rounds = sorted([(h["images_per_s"] / ((before + after) / 2), h, (before + after) / 2)
                     for h, before, after in zip(history[1:], forward[1:], forward[2:])], key=lambda r: r[0])
    _, best, ceiling = rounds[len(rounds) // 2]
    print(f"{framework}: forward img/s {[round(f, 1) for f in forward]}, train img/s "
          f"{[round(h['images_per_s'], 1) for h in history]} (first epoch not counted)", file=sys.stderr)
    warm_model, _ = module.build_model(len(arrays.classes), config)
    warm = module.train(warm_model, arrays, timed, views=views())["history"]
    shutil.rmtree(bank.root, ignore_errors=True)
    cached_model, _ = module.build_model(len(arrays.classes), config)
    cached = module.train(cached_model, arrays, config.with_changes(feature_cache=True, epochs=3))
    module.save(cached_model, config.out_dir, {"classes": arrays.classes, "config": config.to_dict()})
    return {"seed_img_s": seed["img_s"], "train_img_s": best["images_per_s"], "forward_img_s": ceiling,
            "seed_epoch_s": seed["epoch_s"], "train_epoch_s": best["seconds"],
            "bank_epoch_s": float(np.mean([h["seconds"] for h in warm[1:]])),
            "cached_epoch_s": float(np.mean([h["seconds"] for h in cached["history"][1:]])),
            "precision": info["precision"], "backbone_engine": info["engine"], **engines}


# Two engines compute the same features when they agree to the precision's rounding: (rtol, atol as a
# share of the largest feature). bfloat16 keeps 8 bits of mantissa, and fifty layers of rounding in
# another order (XLA's fused kernels against TensorFlow's) moved features by up to 0.5% of the largest
# here (2-core AMD EPYC, avx512_bf16); a wrong weight or layer moves them by tens of percent.
SAME_FEATURES = {"float32": (1e-4, 1e-5), "bfloat16": (2e-2, 1e-2)}


def engine_figures(module: Backend, model, images: np.ndarray, config: TrainConfig, precision: str) -> dict:
    """The backbone's forward pass in each engine the framework has here (`module.engines`: its own
    eager pass, its compiler, ONNX Runtime for PyTorch in float32 on a CPU), in turns (eager,
    compiled, ..., eager, ...: the machine's drift hits all alike), the median of ROUNDS passes each;
    each engine's first call (tracing and compiling, or exporting) as `<engine>_first_s`. Every
    engine is checked against the framework's own features before it is timed."""
    engines = module.engines(precision == "bfloat16", module.select_device(config.device) == "gpu")
    rtol, atol = SAME_FEATURES[precision]
    runs, first = {}, {}
    reference = np.asarray(module.backbone(model, "eager")(module.preprocess(images[:config.batch_size])), np.float32)
    for engine in engines:  # the first call of each: tracing, compiling, exporting, kernel selection
        started = time.perf_counter()
        runs[engine] = forward_pass(module, model, images, config, engine)
        first[engine] = time.perf_counter() - started
        ours = np.asarray(module.backbone(model, engine)(module.preprocess(images[:config.batch_size])), np.float32)
        np.testing.assert_allclose(ours, reference, rtol=rtol, atol=atol * np.abs(reference).max(),
                                   err_msg=f"{module.FRAMEWORK}'s {module.ENGINES[engine]} features")
    img_s = {engine: [] for engine in runs}
    for _ in range(ROUNDS):
        for engine, run in runs.items():
            img_s[engine].append(run())
    median = {engine: float(np.median(values)) for engine, values in img_s.items()}
    best = max(median, key=median.get)
    print(f"{module.FRAMEWORK}: backbone img/s in turns {img_s}", file=sys.stderr)
    return {"limit_img_s": median[best], "limit_engine": module.ENGINES[best],
            **{f"{engine}_img_s": median[engine] for engine in engines},
            **{f"{engine}_first_s": first[engine] for engine in engines if engine != "eager"}}


def forward_pass(module: Backend, model, images: np.ndarray, config: TrainConfig, engine: str | None = None):
    """`timed() -> img/s`: the backbone only (in `engine`, default the app's), on images already
    preprocessed and on the device, batch by batch; its first call is made here."""
    device, batch = module.select_device(config.device), config.batch_size
    tensors = [module.preprocess(images[i:i + batch], device) for i in range(0, len(images), batch)]
    run = module.backbone(model, engine)
    run(tensors[0])  # graph tracing, kernel selection, compiling

    def timed() -> float:
        started = time.perf_counter()
        for x in tensors:
            run(x)
        return len(images) / (time.perf_counter() - started)
    return timed


def forward_img_s(module: Backend, model, images: np.ndarray, config: TrainConfig) -> float:
    """Backbone only, in the app's engine, on images already preprocessed and on the device."""
    return forward_pass(module, model, images, config)()


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

    # isort: split
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
                image = Image.open(sample.path).convert("RGB").resize((size, size), Image.NEAREST)
                image = np.asarray(image, "float32")
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


# ---------------------------------------------------------------- prediction

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


def print_table(figures: dict) -> None:
    print(f"\n{'':<10}{'seed img/s':>11}{'train img/s':>12}{'forward img/s':>14}{'train/seed':>11}"
          f"{'train/fwd':>10}{'seed epoch s':>13}{'cached epoch s':>15}{'seed/cached':>12}  precision")
    for framework in frameworks.NAMES:
        f = figures[framework]
        print(f"{framework:<10}{f['seed_img_s']:>11.1f}{f['train_img_s']:>12.1f}{f['forward_img_s']:>14.1f}"
              f"{f['train_img_s'] / f['seed_img_s']:>11.2f}{f['train_img_s'] / f['forward_img_s']:>10.2f}"
              f"{f['seed_epoch_s']:>13.1f}{f['cached_epoch_s']:>15.3f}{f['seed_epoch_s'] / f['cached_epoch_s']:>12.0f}"
              f"  {f['precision']}")
        print(f"{'':<10}warm-bank epoch {f['bank_epoch_s']:.3f} s against {f['train_epoch_s']:.1f} s augmented: "
              f"{f['train_epoch_s'] / f['bank_epoch_s']:.0f}x")
        others = "".join(f", {name} {f[f'{engine}_img_s']:.1f} (first call {f[f'{engine}_first_s']:.1f} s)"
                         for engine, name in frameworks.backend(framework).ENGINES.items() if f"{engine}_first_s" in f)
        print(f"{'':<10}backbone: {f['backbone_engine']} {f['backbone_img_s']:.1f} img/s, eager "
              f"{f['eager_img_s']:.1f}{others}; app / best measured {f['backbone_img_s'] / f['limit_img_s']:.2f}; "
              f"prepared as a warm worker starts in {f['prepare_s']:.1f} s")
    print(f"predict both, one image, warm: {figures['predict_both_s']:.3f} s")
    print("CPU flags: " + ", ".join(flag for flag, present in figures["cpu_flags"].items() if present))
    if "app_ready_s" in figures:  # tests/bench_app.py measured the app too
        print(f"app ready: {figures['app_ready_s']:.1f} s (median of "
              f"{', '.join(f'{r:.1f}' for r in figures['app_ready_each_s'])})"
              f" | warm worker ready: {figures['warm_worker_ready_s']:.1f} s | app peak memory: "
              f"{figures['peak_rss_mb']:.0f} MB")
        print(f"first chart point after Start: {figures['first_chart_point_s']:.1f} s with the warm worker "
              f"ready, {figures['first_chart_point_at_start_s']:.1f} s with Start the moment the page answers")
        print(f"default run, both frameworks: first {figures['first_run_s']:.1f} s; an identical second one "
              f"with the bank warm: first chart point {figures['first_point_warm_s']:.2f} s, "
              f"finished {figures['second_run_s']:.1f} s")
        print(f"the first default run against its pure forward work at the best engines' speed "
              f"({figures['forward_work_s']:.1f} s): {figures['first_run_s'] / figures['forward_work_s']:.2f}x")
