"""The labs' networks, each with a width multiplier: a bias-free MLP (fc1..fc5), a VGG
(backbone.conv0..conv7, bn0..bn7, classifier) and ResNet-18, all for 28x28 or 32x32 inputs."""
from collections import OrderedDict

import torch
from torch import nn

from .config import check_choice, check_positive

MLP_HIDDEN = (1000, 1000, 500, 200)
VGG_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)   # a 2x2 max-pool after every second conv

def scaled(c: int, width: float) -> int:
    """Channels/units after the width multiplier (at least 1)."""
    return max(1, int(round(c * width)))

class MLP(nn.Sequential):
    """Flatten -> fc1 -> relu -> ... -> fc5: (B, 1, 28, 28) or (B, 784) -> (B, classes).
    `hidden`: the hidden sizes (physically pruned MLPs); else MLP_HIDDEN scaled by `width`."""
    def __init__(self, width: float = 1.0, hidden: tuple | None = None, in_features: int = 784,
                 num_classes: int = 10, bias: bool = False):
        width = check_positive("width", width, what=" (1.0 = original size)")
        hidden = tuple(scaled(h, width) for h in MLP_HIDDEN) if hidden is None else tuple(hidden)
        sizes = (in_features,) + hidden + (num_classes,)
        layers = [("flatten", nn.Flatten())]
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]), 1):
            layers += [(f"fc{i}", nn.Linear(n_in, n_out, bias=bias)), (f"relu{i}", nn.ReLU())]
        super().__init__(OrderedDict(layers[:-1]))   # no relu after the last layer
        self.hidden, self.in_features, self.num_classes = hidden, in_features, num_classes

class VGG(nn.Module):
    """VGG for 32x32 inputs: x (B, 3, 32, 32) -> logits (B, classes). `channels`: each
    conv's output channels (channel-pruned models); else VGG_CHANNELS scaled by `width`."""
    def __init__(self, width: float = 1.0, channels: tuple | None = None, num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        width = check_positive("width", width, what=" (1.0 = original size)")
        if channels is None:
            channels = [scaled(c, width) for c in VGG_CHANNELS]
        self.channels = tuple(channels)
        layers, c_in = [], in_channels
        for i, c in enumerate(self.channels):
            layers += [(f"conv{i}", nn.Conv2d(c_in, c, 3, padding=1, bias=False)),
                       (f"bn{i}", nn.BatchNorm2d(c)), (f"relu{i}", nn.ReLU(inplace=True))]
            if i % 2:
                layers.append((f"pool{i // 2}", nn.MaxPool2d(2)))
            c_in = c
        self.backbone = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x).mean(dim=(2, 3)))

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
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.shortcut(x))

class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs (3x3 stem, no max-pool). x (B, 3, 32, 32) -> (B, classes)."""
    def __init__(self, width: float = 1.0, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        width = check_positive("width", width, what=" (1.0 = original size)")
        c = [scaled(v, width) for v in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, c[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            nn.Sequential(BasicBlock(c_in, c_out, 1 if i == 0 else 2), BasicBlock(c_out, c_out))
            for i, (c_in, c_out) in enumerate(zip([c[0]] + c[:-1], c)))
        self.linear = nn.Linear(c[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(x.mean(dim=(2, 3)))

MODELS = {"mlp": MLP, "vgg": VGG, "resnet18": ResNet18}

def build(name: str, width: float = 1.0, **kw) -> nn.Module:
    """A fresh model by name ('mlp', 'vgg', 'resnet18') at `width`."""
    check_choice("model", name, MODELS)
    return MODELS[name](width=width, **kw)

def has_conv(model: nn.Module) -> bool:
    """True when `model` has a Conv2d, i.e. the channels_last layout applies."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())

# oneDNN's channels_last weight gradient of a 1x1 stride > 1 conv with fewer input channels a
# group than this writes past its workspace (issue 6035): such convs stay NCHW (docs/design.md).
ONEDNN_SAFE_CHANNELS = 16   # the largest channel block of oneDNN's x86 1x1 kernels

def _nchw(t: torch.Tensor) -> torch.Tensor:
    """`t` with NCHW strides (not t.contiguous(): a channels_last (C_out, C_in, 1, 1)
    weight counts as contiguous, yet its strides select oneDNN's channels_last path)."""
    strides = torch.empty(t.shape, device="meta").stride()
    return t if t.stride() == strides else t.clone(memory_format=torch.contiguous_format)

def _nchw_input(module: nn.Conv2d, args: tuple) -> tuple:
    """Forward pre-hook of an affected conv: NCHW input (B, C, H, W) and weight."""
    module.weight.data = _nchw(module.weight.data)   # undoes a later model.to(channels_last)
    return tuple(_nchw(a) if isinstance(a, torch.Tensor) else a for a in args)

def to_channels_last(model: nn.Module) -> nn.Module:
    """`model` channels_last (in place), except the convs above: NCHW weights and inputs."""
    model = model.to(memory_format=torch.channels_last)
    for m in model.modules():
        if (isinstance(m, nn.Conv2d) and all(k == 1 for k in m.kernel_size)
                and any(s > 1 for s in m.stride)
                and m.in_channels // m.groups < ONEDNN_SAFE_CHANNELS):
            m.weight.data = _nchw(m.weight.data)
            if _nchw_input not in m._forward_pre_hooks.values():
                m.register_forward_pre_hook(_nchw_input)
    return model

@torch.no_grad()
def check_input(model: nn.Module, shape: tuple) -> None:
    """Raise ValueError naming `shape` when `model` cannot take (2, *shape) inputs."""
    if not isinstance(shape, (tuple, list)) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"input shape {shape!r} must be a tuple of positive ints, "
                         "e.g. (3, 32, 32)")
    p, was_training = next(model.parameters()), model.training
    try:
        model.eval()(torch.zeros((2, *shape), device=p.device, dtype=p.dtype))
    except RuntimeError as e:
        raise ValueError(f"input shape {tuple(shape)} does not fit {type(model).__name__}: "
                         f"{str(e).splitlines()[0]}") from None
    finally:
        model.train(was_training)
