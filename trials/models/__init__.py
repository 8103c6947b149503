"""One registry of models by name.

``create_model("resnet56", num_classes=10, in_channels=3)`` builds a fresh network.
Names: the CIFAR ResNets ``resnet20/32/44/56/110``, ``vgg16_bn`` and ``mobilenet_v2``
(both for 32x32 inputs), and any torchvision classification model as
``torchvision/<name>`` (built without weights: no download happens here).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from trials.errors import UserError

from .cifar_resnet import CifarResNet
from .mobilenetv2 import CifarMobileNetV2
from .vgg import CifarVGG

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
TORCHVISION_PREFIX = "torchvision/"


def register_model(name: str, builder: Callable[..., nn.Module]) -> None:
    """Add ``builder(num_classes=, in_channels=)`` under ``name``."""
    _REGISTRY[name] = builder


for _depth in (20, 32, 44, 56, 110):
    register_model(f"resnet{_depth}", lambda d=_depth, **kw: CifarResNet(d, **kw))
register_model("vgg16_bn", lambda **kw: CifarVGG(**kw))
register_model("mobilenet_v2", lambda **kw: CifarMobileNetV2(**kw))


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def list_models(include_torchvision: bool = True) -> list[str]:
    names = sorted(_REGISTRY)
    if include_torchvision:
        names += [TORCHVISION_PREFIX + n for n in _torchvision_names()]
    return names


def default_input_size(name: str) -> int:
    """The input side a model is meant for: 32 for the CIFAR models, 224 otherwise."""
    return 224 if name.startswith(TORCHVISION_PREFIX) else 32


def _replace_input_conv(model: nn.Module, in_channels: int) -> None:
    """Give the first convolution ``in_channels`` inputs (for grayscale data, say)."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                new = nn.Conv2d(
                    in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.groups,
                    child.bias is not None,
                )
                setattr(parent, child_name, new)
                return


def create_model(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build a fresh, randomly initialised network by registry name."""
    if num_classes < 2:
        raise UserError(f"model.num_classes must be at least 2, got {num_classes}")
    if in_channels < 1:
        raise UserError(f"model.in_channels must be at least 1, got {in_channels}")
    if name in _REGISTRY:
        return _REGISTRY[name](num_classes=num_classes, in_channels=in_channels)
    if name.startswith(TORCHVISION_PREFIX):
        import torchvision.models as tvm

        tv_name = name[len(TORCHVISION_PREFIX) :]
        if tv_name not in _torchvision_names():
            raise UserError(f"model '{name}': torchvision has no classification model '{tv_name}'")
        model = tvm.get_model(tv_name, weights=None, num_classes=num_classes)
        if in_channels != 3:
            _replace_input_conv(model, in_channels)
        return model
    known = ", ".join(sorted(_REGISTRY))
    raise UserError(f"model '{name}' is unknown: use one of {known} or torchvision/<name>")
