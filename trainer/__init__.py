"""Transfer learning with an ImageNet ResNet-50, in Keras and in PyTorch, side by side.

The package is the core of the app and of the command line (`python -m trainer --help`).
Importing it loads neither TensorFlow nor torch: the framework-free modules (config, augment,
data, constants) are cheap, and each backend imports its framework when first used.
"""

__version__ = "0.1.0"
