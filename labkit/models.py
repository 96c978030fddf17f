"""The three networks of the labs, each with a width multiplier.

- MLP 784-1000-1000-500-200-10 without biases (the classic weight-vs-unit
  pruning study); layers fc1..fc5.
- VGG for CIFAR-10: conv-bn-relu blocks 64,128,M,256,256,M,512,512,M,512,512,M
  (3x3, no conv bias), spatial mean, Linear(512, 10): 9,228,362 parameters.
  Layers backbone.conv0..conv7 and classifier.
- ResNet-18, CIFAR variant (3x3 stem, no max-pool): 11,173,962 parameters.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

MLP_HIDDEN = (1000, 1000, 500, 200)
VGG_PLAN = (64, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def scaled(c: int, width: float) -> int:
    """Channels/units after the width multiplier (at least 1)."""
    return max(1, int(round(c * width)))


def _check_width(width) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width={width!r} must be a positive number (1.0 = original size)")
    return float(width)


class MLP(nn.Sequential):
    """Flatten -> fc1 -> relu -> ... -> fc5. Input (B, 1, 28, 28) or (B, 784) -> logits (B, classes).

    `hidden` gives the hidden sizes directly (used for physically pruned MLPs);
    otherwise MLP_HIDDEN scaled by `width`.
    """

    def __init__(self, width: float = 1.0, hidden: tuple | None = None, in_features: int = 784,
                 num_classes: int = 10, bias: bool = False):
        width = _check_width(width)
        hidden = tuple(hidden) if hidden is not None else tuple(scaled(h, width) for h in MLP_HIDDEN)
        sizes = (in_features,) + hidden + (num_classes,)
        layers = [("flatten", nn.Flatten())]
        for i in range(len(sizes) - 1):
            layers.append((f"fc{i + 1}", nn.Linear(sizes[i], sizes[i + 1], bias=bias)))
            if i < len(sizes) - 2:
                layers.append((f"relu{i + 1}", nn.ReLU()))
        super().__init__(OrderedDict(layers))
        self.hidden, self.in_features, self.num_classes = hidden, in_features, num_classes


class VGG(nn.Module):
    """VGG for 32x32 inputs. x (B, 3, 32, 32) -> logits (B, classes).

    `channels` gives each conv's output channels directly (channel-pruned
    models); otherwise VGG_PLAN scaled by `width`.
    """

    def __init__(self, width: float = 1.0, channels: tuple | None = None, num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        width = _check_width(width)
        plan = [c if c == "M" else scaled(c, width) for c in VGG_PLAN]
        if channels is not None:
            it = iter(channels)
            plan = [c if c == "M" else next(it) for c in plan]
        layers, c_in, conv, pool = [], in_channels, 0, 0
        for c in plan:
            if c == "M":
                layers.append((f"pool{pool}", nn.MaxPool2d(2)))
                pool += 1
                continue
            layers += [(f"conv{conv}", nn.Conv2d(c_in, c, 3, padding=1, bias=False)),
                       (f"bn{conv}", nn.BatchNorm2d(c)), (f"relu{conv}", nn.ReLU(inplace=True))]
            c_in, conv = c, conv + 1
        self.backbone = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Linear(c_in, num_classes)
        self.channels = tuple(c for c in plan if c != "M")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)
        return self.classifier(x.mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    """Two 3x3 conv-bn layers with an identity (or 1x1 conv-bn) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs (3x3 stem, no max-pool). x (B, 3, 32, 32) -> (B, classes)."""

    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        width = _check_width(width)
        c = [scaled(v, width) for v in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, c[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        stages, c_in = [], c[0]
        for i, c_out in enumerate(c):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out)))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(x.mean(dim=(2, 3)))


def has_conv(model: nn.Module) -> bool:
    """True when `model` has a Conv2d, i.e. the channels_last layout applies."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


@torch.no_grad()
def check_input(model: nn.Module, shape: tuple) -> None:
    """Raise ValueError naming `shape` when `model` cannot take (2, *shape) inputs."""
    if not isinstance(shape, (tuple, list)) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"input shape {shape!r} must be a tuple of positive ints, e.g. (3, 32, 32)")
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros((2, *shape), device=p.device, dtype=p.dtype))
    except RuntimeError as e:
        raise ValueError(f"input shape {tuple(shape)} does not fit {type(model).__name__}: "
                         f"{str(e).splitlines()[0]}") from None
    finally:
        model.train(was_training)


MODELS = {"mlp": MLP, "vgg": VGG, "resnet18": ResNet18}


def build(name: str, width: float = 1.0, **kw) -> nn.Module:
    """A fresh model by name ('mlp', 'vgg', 'resnet18') at `width`."""
    if name not in MODELS:
        raise ValueError(f"model={name!r} is not one of {tuple(MODELS)}")
    return MODELS[name](width=width, **kw)
