"""Model zoo built from standard torch.nn layers, traceable by torch.fx.

`create_model(name, num_classes, **options)`; names: digits_cnn, vgg11, vgg16, vgg_small,
resnet20, resnet18, resnet34. `loads_torchvision_state_dict` loads torchvision weights.
"""
from __future__ import annotations

from . import digits_cnn, resnet, resnet_cifar, vgg  # noqa: F401  (registers the models)
from .digits_cnn import DigitsCNN
from .registry import create_model, list_models, register_model
from .resnet import BasicBlock, ResNet
from .resnet_cifar import CifarResNet
from .vgg import VGG
from .weights import loads_torchvision_state_dict, read_state_dict

__all__ = [
    "VGG",
    "BasicBlock",
    "CifarResNet",
    "DigitsCNN",
    "ResNet",
    "create_model",
    "list_models",
    "loads_torchvision_state_dict",
    "read_state_dict",
    "register_model",
]
