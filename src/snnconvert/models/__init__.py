"""Model zoo built from standard torch.nn layers, traceable by torch.fx.

`create_model(name, num_classes, **options)`; names: digits_cnn, vgg11, vgg16, vgg_small,
resnet20, resnet18, resnet34. `model_for(name, dataset_info, **options)` builds one for a dataset (its
input options filled from the data, a misfit refused naming both shapes); `describe_models()` lists the
zoo. `loads_torchvision_state_dict` loads torchvision weights.
"""
from __future__ import annotations

from . import digits_cnn, resnet, resnet_cifar, vgg  # noqa: F401  (registers the models)
from .digits_cnn import DigitsCNN
from .fit import ModelSummary, check_takes, describe_models, expected_input, fits_data, model_for
from .registry import InputOptions, create_model, input_options, list_models, model_defaults, register_model
from .resnet import BasicBlock, ResNet
from .resnet_cifar import CifarResNet
from .vgg import VGG
from .weights import loads_torchvision_state_dict, read_state_dict

__all__ = [
    "VGG",
    "BasicBlock",
    "CifarResNet",
    "DigitsCNN",
    "InputOptions",
    "ModelSummary",
    "ResNet",
    "check_takes",
    "create_model",
    "describe_models",
    "expected_input",
    "fits_data",
    "input_options",
    "list_models",
    "loads_torchvision_state_dict",
    "model_defaults",
    "model_for",
    "read_state_dict",
    "register_model",
]
