"""Keras 3 (TensorFlow) side: keras.applications ResNet-50, frozen, with a new head.

Implements trainer/backend.py's `Backend`, as trainer/torch_backend.py does: same public functions,
same arguments, same kinds of values; helpers private to this file start with `_`. The model ends in a
softmax and returns probabilities (Keras' convention; its losses take probabilities).
Preprocessing is `keras.applications.resnet50.preprocess_input` ("caffe": RGB -> BGR, ImageNet
mean subtracted, no scaling). Keras 3 has no public ImageDataGenerator, which the seed notebook
used. Augmentation is one RandomAffine layer (trainer/keras_affine.py: the values torchvision's
RandomAffine draws, one resampling per image, where Keras' stock layers resample once each) run in a
tf.data pipeline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torchvision (and the triton it pulls in) must be loaded before TensorFlow when both live in one
# process (the app's predictor, a `--framework both` run): the other order segfaults while
# importing triton (torch 2.14.1, torchvision 0.29.1, TensorFlow 2.21).
import torchvision  # noqa: F401

# isort: split
import keras
import numpy as np
import tensorflow as tf
from keras import layers

from trainer import augment, bank, loop, store, weights
from trainer.augment import AugmentConfig
from trainer.config import TrainConfig, backbone_engine, prepare_engine, race_key, use_bfloat16
from trainer.constants import FEATURE_DIM
from trainer.keras_affine import RandomAffine

FRAMEWORK = "keras"
_STAGES = ("conv2", "conv3", "conv4", "conv5")  # ResNet stages (layer name prefixes), input to output
_EVAL_BATCH = 64
# The engines a frozen backbone can run in, by the names runs, the bank and the bench give them.
ENGINES = {"eager": "tf.function", "compiled": "XLA"}
# Which is faster depends on the CPU, the precision and the image size (batch 32, 2 cores, float32:
# XLA 1.2x tf.function at 224 px on an AVX2-only EPYC, 0.93-1.11x on AVX-512 ones, 0.1x at 64 px;
# bfloat16: 0.70x on an avx512_bf16 EPYC), so auto takes XLA only for the settings `prepare` timed it
# faster at in this process (a warm worker does, as it starts, for the Train tab's defaults); else
# tf.function, which compiles nothing in a run.
_raced: dict[tuple, str] = {}  # trainer.config.race_key -> the engine `prepare` timed faster
_CAM_LAYER = "conv5_block3_out"  # the last ResNet stage's output, as torchvision's layer4


# ---------------------------------------------------------------- device

def select_device(preference: str = "auto") -> str:
    """Return "gpu" or "cpu"; hide the GPUs from TensorFlow when the CPU was asked for."""
    gpus = tf.config.list_physical_devices("GPU")
    if preference == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # TensorFlow already started on the GPU in this process
            pass
        return "cpu"
    if preference == "gpu" and not gpus:
        raise RuntimeError("device gpu was asked for, but TensorFlow sees no GPU")
    return "gpu" if gpus and preference != "cpu" else "cpu"


def describe_device(preference: str = "auto") -> str:
    """The device in words, for the page and the logs."""
    if select_device(preference) == "gpu":
        gpu = tf.config.list_physical_devices("GPU")[0]
        name = tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        return f"GPU ({name})"
    return f"CPU ({os.cpu_count()} cores)"


# ---------------------------------------------------------------- augmentation and preprocessing

def build_augmenter(aug: AugmentConfig, seed: int | None = None) -> keras.layers.Layer:
    """One RandomAffine layer for the settings (trainer/keras_affine.py), applied to a batch: each
    image gets its own random values, drawn as torchvision's RandomAffine draws them."""
    if not aug.enabled:
        return layers.Identity()
    return RandomAffine(degrees=aug.rotation_deg, translate=aug.shift, scale=(aug.zoom_min, aug.zoom_max),
                        shear=aug.shear_deg, hflip=aug.hflip, vflip=aug.vflip, seed=seed, name="augmentation")


def augment_samples(image: np.ndarray, aug: AugmentConfig, count: int, seed: int):
    """`count` augmented copies of one uint8 HWC image, with the values each drew: the values
    training draws (trainer.augment.draw, view 0 of images 0..count-1), applied as training applies
    them, so the preview shows what training does. Both frameworks draw the same values."""
    if not aug.enabled:
        return [(image.copy(), {}) for _ in range(count)]
    height, width = image.shape[:2]
    drawn = augment.draw(aug, seed, 0, range(count), width, height)
    batch = tf.convert_to_tensor(np.repeat(image[None], count, axis=0))
    tensors = {key: tf.constant(value, _DRAWN_SIGNATURE[key].dtype) for key, value in drawn.items()}
    images = np.clip(np.round(build_augmenter(aug).transform_images(batch, tensors).numpy()), 0, 255)
    return [(out.astype(np.uint8), augment.describe(drawn, i, aug)) for i, out in enumerate(images)]


def preprocess(images: np.ndarray, device: str = "cpu") -> tf.Tensor:
    """uint8 NHWC RGB -> the backbone's input (see `_normalise`), placed on `device`."""
    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        return _normalise(images)


def _normalise(images) -> tf.Tensor:
    """uint8 or float NHWC RGB -> caffe-style input: BGR, ImageNet mean subtracted (Keras' way)."""
    return keras.applications.resnet50.preprocess_input(tf.cast(images, tf.float32))


def network_view(image: np.ndarray) -> np.ndarray:
    """What the network sees: one uint8 HWC image after `preprocess`, as float HWC (BGR order)."""
    return preprocess(image[None])[0].numpy()


# ---------------------------------------------------------------- model

def _load_backbone(config: TrainConfig) -> tuple[keras.Model, bool, list[str]]:
    """ResNet-50 with ImageNet weights when it can be had; (model, pretrained, warnings)."""
    shape = (config.image_size, config.image_size, 3)
    resnet = lambda source: keras.applications.ResNet50(include_top=False, weights=source, input_shape=shape)
    if config.weights == "none":
        return resnet(None), False, [
            "training from random initialisation (weights none): expect far lower accuracy"]
    if config.weights != "imagenet":
        return resnet(config.weights), True, []
    cached = weights.cache_path(FRAMEWORK)
    try:
        # A cached file is passed by path: get_file would otherwise check its hash and download
        # again, which fails offline with a pre-seeded cache.
        return resnet(str(cached) if cached.is_file() else "imagenet"), True, []
    except Exception as error:  # offline, or a damaged cache: the message says what to do
        if not config.allow_random_init:
            raise weights.WeightsUnavailable(weights.unavailable_message(FRAMEWORK, error)) from error
        return resnet(None), False, [weights.random_init_message(FRAMEWORK)]


def build_model(num_classes: int, config: TrainConfig) -> tuple[keras.Model, dict]:
    """Frozen ResNet-50 + new head (Dense(units, relu), Dense(classes, softmax))."""
    keras.utils.set_random_seed(config.seed)
    on_gpu = select_device(config.device) == "gpu"
    bfloat16 = use_bfloat16(config.precision, on_gpu)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if bfloat16 else "float32")
    try:  # the layers keep the policy they were built with; other Keras code keeps its own
        model, pretrained, warnings = _build_layers(num_classes, config)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    raced = _raced.get(race_key(config, bfloat16))
    preferred = (raced,) if raced else ()
    model.engine = backbone_engine(engines(bfloat16, on_gpu), preferred, on_gpu, config.unfreeze == 0)
    model.engine_batch = config.batch_size  # the one batch shape the compiled backbone takes
    return model, {"pretrained": pretrained, "warnings": warnings,
                   "precision": "bfloat16" if bfloat16 else "float32", "engine": ENGINES[model.engine]}


def engines(bfloat16: bool, on_gpu: bool) -> tuple[str, ...]:
    """The engines a frozen backbone can run in here: TensorFlow's executor and XLA, everywhere."""
    return ("eager", "compiled")


def prepare(config: TrainConfig) -> str:
    """Compile the frozen backbone for runs with `config` in this process where auto could take XLA,
    and time it against tf.function in turns (on zeros: a convolution's time does not depend on the
    values); runs with these settings then take the faster. The engine they take."""
    model, info = build_model(2, config)
    bfloat16, device = info["precision"] == "bfloat16", select_device(config.device)
    key = race_key(config, bfloat16)
    could = backbone_engine(engines(bfloat16, device == "gpu"), ("compiled",), device == "gpu", config.unfreeze == 0)
    zeros = preprocess(np.zeros((config.batch_size, config.image_size, config.image_size, 3), np.uint8), device)
    return prepare_engine(model.engine, could, key, _raced, lambda engine: backbone(model, engine), zeros)


def _build_layers(num_classes: int, config: TrainConfig):
    base, pretrained, warnings = _load_backbone(config)
    unfrozen = _STAGES[len(_STAGES) - config.unfreeze:] if config.unfreeze else ()
    for layer in base.layers:
        layer.trainable = (layer.name.startswith(unfrozen) if unfrozen else False) and not isinstance(
            layer, layers.BatchNormalization)
    inputs = keras.Input((config.image_size, config.image_size, 3), name="image")
    # training=False keeps batch norm in inference mode even when stages are unfrozen: its
    # ImageNet statistics must not drift towards each small batch (keras-io transfer learning guide).
    x = base(inputs, training=False)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(config.head_units, activation="relu", name="head_hidden")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="head_output", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="resnet50_transfer"), pretrained, warnings


def _head_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [model.get_layer("head_hidden"), model.get_layer("head_output")]


def _head(model: keras.Model, features):
    for layer in _head_layers(model):
        features = layer(features)
    return features


def _feature_function(model: keras.Model, engine: str = "eager"):
    """A graph function: preprocessed NHWC batch -> (N, 2048) backbone features (cached), run by
    TensorFlow's executor (engine "eager": the tf.function Keras itself would run) or by XLA."""
    if engine == "compiled":
        return _compiled_backbone(model)
    if not hasattr(model, "_feature_fn"):
        extractor = keras.Model(model.input, model.get_layer("avg_pool").output)
        shape = (None, *model.input.shape[1:])
        model._feature_fn = tf.function(lambda x: extractor(x, training=False),
                                        input_signature=[tf.TensorSpec(shape, tf.float32)])
    return model._feature_fn


_compiled: list = []  # [(key, function)]: the last backbone this process compiled with XLA


def _compiled_backbone(model: keras.Model):
    """The backbone compiled by XLA (`jit_compile`; fused convolutions, batch norm and ReLU), for
    batches of up to the model's `engine_batch` images: a smaller one (an epoch's last) is padded
    with zeros, which in inference mode change no other image's features. XLA compiles once per
    shape, so one shape means one compile. Kept per process under a digest of the weights: a warm
    worker compiles once for all runs with the same weights and size."""
    base = model.get_layer("resnet50")
    if not hasattr(model, "_engine_digest"):
        model._engine_digest = bank.digest(*[np.asarray(w.numpy()) for w in base.weights])
    size, shape = model.engine_batch, tuple(model.input.shape[1:])
    key = (model._engine_digest, size, shape, base.dtype_policy.name)
    if not _compiled or _compiled[0][0] != key:
        extractor = keras.Model(model.input, model.get_layer("avg_pool").output)
        compiled = tf.function(lambda x: extractor(x, training=False), jit_compile=True)

        @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.float32)])
        def padded(x):
            count = tf.shape(x)[0]
            full = tf.pad(x, [[0, size - count], [0, 0], [0, 0], [0, 0]])  # fails past `size` images
            return compiled(tf.ensure_shape(full, (size, *shape)))[:count]
        _compiled[:] = [(key, padded)]
    return _compiled[0][1]


def backbone(model: keras.Model, engine: str | None = None) -> Callable[[tf.Tensor], np.ndarray]:
    """The backbone alone, in the model's engine (or `engine`: one of `engines`): a batch from
    `preprocess` -> (N, 2048) features as numpy."""
    engine = engine or _engine(model)
    extract = _feature_function(model, engine)
    if engine == "eager":
        return lambda x: extract(x).numpy()
    size = model.engine_batch  # the compiled backbone's batch, at most
    return lambda x: np.concatenate([extract(x[i:i + size]).numpy() for i in range(0, len(x), size)])


def _engine(model: keras.Model) -> str:
    return getattr(model, "engine", "eager")  # a loaded model predicts eagerly


def features_of(model: keras.Model, images: np.ndarray) -> tf.Tensor:
    """Backbone features of uint8 NHWC images, in batches, outside any gradient tape."""
    extract = _feature_function(model)
    chunks = [tf.cast(extract(_normalise(images[start:start + _EVAL_BATCH])), tf.float32)
              for start in range(0, len(images), _EVAL_BATCH)]
    return tf.concat(chunks, 0) if chunks else tf.zeros((0, FEATURE_DIM))


# ---------------------------------------------------------------- training

def train(model: keras.Model, data, config: TrainConfig, on_event=loop.ignore, should_stop=loop.never,
          views=None) -> dict:
    """Train the head (and the unfrozen stages) on `data` (trainer.data.Arrays): Keras' steps, run by
    trainer/loop.py's `fit`. A GradientTape per step; the head's loss takes the softmax's probabilities."""
    head_vars = [v for layer in _head_layers(model) for v in layer.trainable_variables]
    backbone_vars = [v for v in model.trainable_variables if all(v is not h for h in head_vars)]
    head_optimizer = keras.optimizers.Adam(config.lr)
    backbone_optimizer = keras.optimizers.Adam(config.fine_tune_lr)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    extract = _feature_function(model, _engine(model))
    augmenter = build_augmenter(config.augment) if config.augment_active else None
    image_shape = tf.TensorSpec((None, *data.x_train.shape[1:]), tf.uint8)
    label_shape = tf.TensorSpec((None,), tf.int64)

    def inputs_of(index: np.ndarray, view: int) -> tuple[tf.Tensor, dict, float]:
        """The images at `index`, the values of view `view` (trainer.augment.draw) as tensors, and
        how long making them took."""
        waited = time.perf_counter()
        images = tf.constant(data.x_train[index])
        drawn = _drawn_tensors(config, view, index, images.shape[2], images.shape[1], augmenter is not None)
        return images, drawn, time.perf_counter() - waited

    def transformed(images, drawn):
        return augmenter.transform_images(images, drawn) if augmenter is not None else images

    @tf.function(input_signature=[image_shape, _DRAWN_SIGNATURE])
    def augmented_features(images, drawn):
        return tf.cast(extract(_normalise(transformed(images, drawn))), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec((None, FEATURE_DIM), tf.float32), label_shape])
    def head_step_graph(features, labels):
        with tf.GradientTape() as tape:
            probabilities = _head(model, features)
            loss = loss_fn(labels, probabilities)
        head_optimizer.apply_gradients(zip(tape.gradient(loss, head_vars), head_vars))
        return loss, tf.reduce_sum(tf.cast(tf.argmax(probabilities, 1) == labels, tf.int32))

    @tf.function(input_signature=[image_shape, _DRAWN_SIGNATURE, label_shape])
    def full_step_graph(images, drawn, labels):
        with tf.GradientTape() as tape:
            probabilities = model(_normalise(transformed(images, drawn)), training=False)
            loss = loss_fn(labels, probabilities)
        gradients = tape.gradient(loss, head_vars + backbone_vars)
        head_optimizer.apply_gradients(zip(gradients[:len(head_vars)], head_vars))
        backbone_optimizer.apply_gradients(zip(gradients[len(head_vars):], backbone_vars))
        return loss, tf.reduce_sum(tf.cast(tf.argmax(probabilities, 1) == labels, tf.int32))

    def features(index: np.ndarray, view: int) -> tuple[np.ndarray, float]:
        images, drawn, data_s = inputs_of(index, view)
        return augmented_features(images, drawn).numpy(), data_s

    def head_step(features: np.ndarray, index: np.ndarray) -> tuple[float, int]:
        loss, correct = head_step_graph(tf.constant(features), tf.constant(data.y_train[index]))
        return float(loss), int(correct)

    def full_step(index: np.ndarray, view: int) -> tuple[float, int, float]:
        images, drawn, data_s = inputs_of(index, view)
        loss, correct = full_step_graph(images, drawn, tf.constant(data.y_train[index]))
        return float(loss), int(correct), data_s

    steps = loop.Steps(features, head_step, full_step,
                       val_features=lambda: _features_numpy(model, data.x_val, _engine(model)),
                       evaluate=lambda features: evaluate(model, data.x_val, data.y_val, features))
    return loop.fit(FRAMEWORK, steps, len(data.y_train), config, on_event, should_stop, views)


# One signature for the drawn values, so each graph is traced once.
_DRAWN_SIGNATURE = {"hflip": tf.TensorSpec((None,), tf.bool), "vflip": tf.TensorSpec((None,), tf.bool),
                    "rotation_deg": tf.TensorSpec((None,), tf.float32), "zoom": tf.TensorSpec((None,), tf.float32),
                    "shear_deg": tf.TensorSpec((None,), tf.float32), "shift_px": tf.TensorSpec((None, 2), tf.float32)}


def _drawn_tensors(config: TrainConfig, view: int, index: np.ndarray, width: int, height: int,
                   augmented: bool) -> dict:
    """View `view`'s values for the images at `index` as the graphs take them (identity values,
    unused, when nothing is augmented)."""
    if not augmented:
        count = len(index)
        return {"hflip": tf.zeros((count,), tf.bool), "vflip": tf.zeros((count,), tf.bool),
                "rotation_deg": tf.zeros((count,)), "zoom": tf.ones((count,)), "shear_deg": tf.zeros((count,)),
                "shift_px": tf.zeros((count, 2))}
    drawn = augment.draw(config.augment, config.seed, view, index, width, height)
    return {key: tf.constant(value, _DRAWN_SIGNATURE[key].dtype) for key, value in drawn.items()}


def _features_numpy(model: keras.Model, images: np.ndarray, engine: str = "eager") -> np.ndarray:
    """The features of a training's validation images, in the training's engine (features_of, for
    predictions, stays eager: a loaded model predicting one image should not compile first)."""
    if engine == "eager" or not len(images):
        return features_of(model, images).numpy()
    run, size = backbone(model, engine), model.engine_batch
    return np.concatenate([run(_normalise(images[i:i + size])) for i in range(0, len(images), size)])


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray, features=None):
    """(mean loss, accuracy, probabilities) on uint8 images, or on their cached features."""
    if features is None:
        features = features_of(model, images)
    probabilities = _head(model, features).numpy().astype(np.float32)
    if not len(labels):
        return float("nan"), float("nan"), probabilities
    loss = float(keras.losses.SparseCategoricalCrossentropy()(labels, probabilities))
    return loss, float((probabilities.argmax(1) == labels).mean()), probabilities


def predict_proba(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, classes) for uint8 NHWC images."""
    return _head(model, features_of(model, images)).numpy().astype(np.float32)


def gradcam(model: keras.Model, images: np.ndarray, class_index: int | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): the last stage's channels weighted by the mean gradient of
    the class score, ReLU, upsampled to the images and scaled to [0, 1] per image. The score is the
    logit before the softmax, as in the paper (the softmax would mix in the other classes)."""
    if not len(images):
        return np.zeros((0, *images.shape[1:3]), np.float32)
    stage = _cam_stage(model)
    inputs = _normalise(images)
    with tf.GradientTape() as tape:
        activation = tf.cast(stage(inputs, training=False), tf.float32)
        tape.watch(activation)
        logits = _logits(model, model.get_layer("avg_pool")(activation))
        chosen = tf.argmax(logits, 1) if class_index is None else tf.fill([len(images)], class_index)
        score = tf.gather(logits, chosen, axis=1, batch_dims=1)
    gradients = tape.gradient(score, activation)  # (N, h, w, C)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activation, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0].numpy()
    return _scaled(cam)


def _cam_stage(model: keras.Model) -> keras.Model:
    """The backbone up to `_CAM_LAYER`, as one model sharing the trained weights (not kept on the
    model: Keras would track it as a sublayer and save it with the model)."""
    base = model.get_layer("resnet50")
    return keras.Model(base.input, base.get_layer(_CAM_LAYER).output)


def _logits(model: keras.Model, features) -> tf.Tensor:
    """The head's scores before its softmax: the output layer's kernel and bias applied by hand."""
    hidden = tf.cast(model.get_layer("head_hidden")(features), tf.float32)
    output = model.get_layer("head_output")
    return tf.matmul(hidden, tf.cast(output.kernel, tf.float32)) + tf.cast(output.bias, tf.float32)


def _scaled(cam: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum (an all-zero map stays zero), as float32."""
    peak = cam.reshape(len(cam), -1).max(1).reshape(-1, 1, 1)
    return (cam / np.maximum(peak, 1e-12)).astype(np.float32)


def parameter_counts(model: keras.Model) -> dict:
    """Trainable and total weights, as Keras counts them (batch-norm statistics included)."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return {"trainable_params": trainable, "total_params": int(model.count_params())}


# ---------------------------------------------------------------- save and load

def save(model: keras.Model, models_dir: str | Path, metadata: dict) -> Path:
    """A .keras file + metadata.json under `<models_dir>/keras`, atomically."""
    return store.save_atomically(models_dir, FRAMEWORK, lambda path: model.save(path), metadata)


def load(folder: str | Path) -> tuple[keras.Model, dict]:
    """Load the .keras file with safe_mode=True (no Python code from the file runs)."""
    metadata = store.read_metadata(folder)
    model = keras.saving.load_model(Path(folder) / store.model_file(FRAMEWORK),
                                    safe_mode=True, compile=False)
    return model, metadata


def versions() -> dict:
    """The framework's package versions, saved in metadata.json."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__}
