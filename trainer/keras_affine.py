"""RandomAffine for Keras 3: flip, rotation, shift, zoom and shear in one resampling per image.

Keras 3's stock augmentation layers (RandomFlip, RandomRotation, RandomTranslation, RandomZoom,
RandomShear) each resample the whole batch: with zoom and shear on, that is two interpolations,
two blurs and three passes over memory (the README's Speed section has the measured cost). This
layer draws the values torchvision's RandomHorizontalFlip + RandomAffine draw, composes them into
one matrix per image (as the seed notebook's ImageDataGenerator did) and resamples once with
`keras.ops.image.affine_transform`.

Self-contained (it needs keras only): the app shows this file as part of its runnable Keras code.
"""

import math

import keras
from keras import ops


class RandomAffine(keras.layers.Layer):
    """Random flips, then one affine transform, per image; fills with black, bilinear.

    degrees: rotation drawn from [-degrees, degrees] (counter-clockwise positive).
    translate: shift drawn from [-translate, translate] times the side, whole pixels.
    scale: magnification drawn from [low, high] (above 1 zooms in).
    shear: horizontal shear angle drawn from [-shear, shear] degrees.
    hflip, vflip: mirror each image with probability 1/2, before the affine transform.
    """

    def __init__(self, degrees=0.0, translate=0.0, scale=(1.0, 1.0), shear=0.0,
                 hflip=False, vflip=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.degrees, self.translate, self.shear = float(degrees), float(translate), float(shear)
        self.scale = (float(scale[0]), float(scale[1]))
        self.hflip, self.vflip, self.seed = bool(hflip), bool(vflip), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_random_transformation(self, images, seed=None):
        """The values for each image of an NHWC batch: a dict of (N,) or (N, 2) tensors."""
        count, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        seed = seed or self.seed_generator

        def uniform(low, high):
            return keras.random.uniform((count,), low, high, seed=seed)

        def coin(enabled):
            return uniform(0, 1) < 0.5 if enabled else ops.zeros((count,), "bool")

        shift = ops.stack([ops.round(uniform(-1, 1) * self.translate * width),
                           ops.round(uniform(-1, 1) * self.translate * height)], axis=1)
        return {"hflip": coin(self.hflip), "vflip": coin(self.vflip),
                "rotation_deg": uniform(-self.degrees, self.degrees), "shift_px": shift,
                "zoom": uniform(*self.scale), "shear_deg": uniform(-self.shear, self.shear)}

    def transform_images(self, images, transformation):
        images = ops.cast(images, self.compute_dtype)
        matrices = self.inverse_matrices(transformation, images.shape[1], images.shape[2])
        return ops.image.affine_transform(images, matrices, interpolation="bilinear",
                                          fill_mode="constant", fill_value=0)

    @staticmethod
    def inverse_matrices(transformation, height, width):
        """Per image, the map from output pixel to input pixel (what affine_transform takes).

        torchvision's `_get_inverse_affine_matrix` for a horizontal shear, about the image centre,
        with the flips (applied first) folded in.
        """
        value = lambda key: ops.cast(transformation[key], "float32")
        rotation = value("rotation_deg") * (math.pi / 180)
        shear = ops.tan(value("shear_deg") * (math.pi / 180))
        zoom = value("zoom")
        cos, sin = ops.cos(rotation), ops.sin(rotation)
        # The inverse of rotation x shear (its determinant is 1), then of the magnification.
        m0, m1 = (cos - sin * shear) / zoom, (cos * shear + sin) / zoom
        m3, m4 = -sin / zoom, cos / zoom
        cx, cy = (width - 1) / 2, (height - 1) / 2
        x, y = -cx - value("shift_px")[:, 0], -cy - value("shift_px")[:, 1]
        m2, m5 = m0 * x + m1 * y + cx, m3 * x + m4 * y + cy
        # A flip mirrors the input coordinate the affine map lands on.
        hflip, vflip = transformation["hflip"], transformation["vflip"]
        m0, m1, m2 = (ops.where(hflip, -m, m) for m in (m0, m1, m2))
        m2 = ops.where(hflip, m2 + (width - 1), m2)
        m3, m4, m5 = (ops.where(vflip, -m, m) for m in (m3, m4, m5))
        m5 = ops.where(vflip, m5 + (height - 1), m5)
        zeros = ops.zeros_like(m0)
        return ops.stack([m0, m1, m2, m3, m4, m5, zeros, zeros], axis=1)

    def call(self, images, training=True):
        if not training:
            return images
        return self.transform_images(images, self.get_random_transformation(images))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "degrees": self.degrees, "translate": self.translate,
                "scale": self.scale, "shear": self.shear, "hflip": self.hflip, "vflip": self.vflip,
                "seed": self.seed}
