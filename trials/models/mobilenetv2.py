"""MobileNetV2 for 32x32 inputs: torchvision's blocks with the CIFAR strides
(stem stride 1, the second stage stride 1), as in the pruning literature."""

from __future__ import annotations

from torch import Tensor, nn

# t (expansion), c (channels), n (repeats), s (stride); CIFAR: second stage stride 1.
SETTINGS = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def _inverted_residual() -> type[nn.Module]:
    """torchvision's block, imported when a MobileNetV2 is built: importing torchvision
    costs about 1.3 s (it loads torch._dynamo), paid by every process that imports
    trials (each Ray worker, each CLI call) when it stood at the top of this module."""
    from torchvision.models.mobilenetv2 import InvertedResidual

    return InvertedResidual


def _conv_bn(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)
    )


class CifarMobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        c = int(32 * width_mult)
        layers: list[nn.Module] = [_conv_bn(in_channels, c, 3, 1)]
        for t, ch, n, s in SETTINGS:
            out = int(ch * width_mult)
            for i in range(n):
                layers.append(_inverted_residual()(c, out, s if i == 0 else 1, expand_ratio=t))
                c = out
        last = int(1280 * max(1.0, width_mult))
        layers.append(_conv_bn(c, last, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)
