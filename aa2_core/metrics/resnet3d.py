"""3D ResNet of Hara et al. (github:kenshohara/3D-ResNets-PyTorch, ``resnet-50-kinetics.pth``), the network
behind DisCo's FID-VID ("FVD-3DRN50", ``tool/metrics/resnet3d.py``, shortcut type B). Keys ``conv1.weight``,
``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight`` ... ``fc.weight`` (the file wraps them in
``state_dict`` with ``module.`` prefixes; ``read_state_dict`` unwraps both).

FID-VID feature: a 16-frame clip resized to 112x112 (PIL bicubic), 0..255 minus the Kinetics mean
(114.7748, 107.7354, 99.4750) without scaling, the 2048-d output of the final average pool (DisCo's
``last_fc=False``). Block counts, bottleneck or basic blocks, and widths come from the file.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from . import weights
from .weights import scaled

WHAT = "3D ResNet (FID-VID)"
MEAN = (114.7748, 107.7354, 99.4750)
BLOCK = re.compile(r"^layer(\d)\.(\d+)\.")


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet3D(nn.Module):
    def __init__(self, blocks=(3, 4, 6, 3), bottleneck=True, s: float = 1.0, classes: int = 400):
        super().__init__()
        block = Bottleneck if bottleneck else BasicBlock
        self.conv1 = nn.Conv3d(3, scaled(64, s), 7, (1, 2, 2), 3, bias=False)
        self.bn1 = nn.BatchNorm3d(scaled(64, s))
        cin = scaled(64, s)
        for i, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
            planes, stride, layers = scaled(planes, s), 1 if i == 0 else 2, []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or cin != planes * block.expansion):  # shortcut type B
                    down = nn.Sequential(nn.Conv3d(cin, planes * block.expansion, 1, stride, bias=False),
                                         nn.BatchNorm3d(planes * block.expansion))
                layers.append(block(cin, planes, stride if j == 0 else 1, down))
                cin = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        self.fc = nn.Linear(cin, classes)  # in the file; FID-VID uses the pooled features before it
        self.features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, T, H, W]`` (0..255 minus the mean) -> ``[N, 2048]`` pooled features."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool3d(x, 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x.mean(dim=(2, 3, 4))  # DisCo's AvgPool3d covers the whole 1x4x4 map of a 16x112x112 clip


def load(path: str) -> ResNet3D:
    sd = weights.read(path, WHAT)
    s = weights.width_scale(sd, "conv1.weight", 64, path, WHAT)
    counts = {}
    for k in sd:
        m = BLOCK.match(k)
        if m:
            counts[int(m.group(1))] = max(counts.get(int(m.group(1)), 0), int(m.group(2)) + 1)
    if sorted(counts) != [1, 2, 3, 4]:
        raise CheckpointError(f"{WHAT}: {path} lacks the residual stages layer1..layer4 (found {sorted(counts)})")
    blocks = tuple(counts[i] for i in range(1, 5))
    bottleneck = "layer1.0.conv3.weight" in sd
    classes = sd["fc.weight"].shape[0] if "fc.weight" in sd else 400
    return weights.build(lambda: ResNet3D(blocks, bottleneck, s, classes), sd, path, WHAT)
