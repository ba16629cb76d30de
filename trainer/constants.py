"""Normalisation constants and model facts shared by both backends (no framework import).

Each framework normalises ImageNet inputs its own way, and the pretrained weights expect exactly that:
- Keras `resnet50.preprocess_input` uses "caffe" mode: RGB -> BGR, then subtract the per-channel
  ImageNet mean in 0-255 units; no scaling.
- torchvision scales to 0-1 and normalises each RGB channel with the ImageNet mean and std.
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, 0-1 units (torchvision)
IMAGENET_STD = (0.229, 0.224, 0.225)  # RGB, 0-1 units (torchvision)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # BGR, 0-255 units (keras caffe mode)

FEATURE_DIM = 2048  # ResNet-50 channels after global average pooling
MIN_IMAGE_SIZE = 32  # Keras' ResNet50 refuses smaller inputs
MAX_IMAGE_SIZE = 512
