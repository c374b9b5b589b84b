"""Inception-v1 I3D (Carreira & Zisserman 2017) in the layout of github:piergiaj/pytorch-i3d ``pytorch_i3d.py``,
which DisCo's ``tool/metrics/inception3d.py`` also uses: keys ``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_3b.b1b.bn.running_mean``, ``logits.conv3d.weight`` ... (rgb_imagenet.pt, rgb_charades.pt, or DisCo's
i3d_pretrained_400.pt). TF "same" padding computed per input, batch norms with eps 1e-3.

FVD feature (DisCo's "FVD-3DInception"): a clip resized to 224x224 (PIL bicubic, see ``clips``), scaled to
[-1, 1], through the network, the logits (400 for Kinetics) averaged over the remaining time steps. The
logit layer is linear, so this equals piergiaj's [2, 7, 7] average pool followed by the logits.
Channel widths scale with the file (``Conv3d_1a_7x7`` has 64 outputs in the real one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import weights
from .weights import scaled

WHAT = "I3D (FVD)"


def _same_pad(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """TF 'SAME' padding, the extra pixel at the end (piergiaj's ``compute_pad``)."""
    pads = []
    for dim, (k, s) in enumerate(zip(kernel, stride)):
        size = x.shape[2 + dim]
        pad = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads.append((pad // 2, pad - pad // 2))
    (tf, tb), (hf, hb), (wf, wb) = pads
    return F.pad(x, (wf, wb, hf, hb, tf, tb))


class Unit3D(nn.Module):
    def __init__(self, cin, cout, kernel=(1, 1, 1), stride=(1, 1, 1), bn=True, bias=False, relu=True):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if bn else None

    def forward(self, x):
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a = Unit3D(cin, c[1])
        self.b1b = Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a = Unit3D(cin, c[3])
        self.b2b = Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, c[5])
        self.out = c[0] + c[2] + c[4] + c[5]

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


MIXED = (  # name, branch widths (b0, b1a, b1b, b2a, b2b, b3b) of the released network; max pools between
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)), ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)), ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)), ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)), ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)


class I3D(nn.Module):
    def __init__(self, s: float = 1.0, classes: int = 400):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, scaled(64, s), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(scaled(64, s), scaled(64, s))
        self.Conv3d_2c_3x3 = Unit3D(scaled(64, s), scaled(192, s), (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3"]
        cin = scaled(192, s)
        for name, spec in MIXED:
            if name.startswith("MaxPool"):
                self.add_module(name, MaxPoolSame(*spec))
            else:
                module = InceptionModule(cin, [scaled(c, s) for c in spec])
                self.add_module(name, module)
                cin = module.out
            self.order.append(name)
        self.logits = Unit3D(cin, classes, bn=False, bias=True, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, T, H, W]`` in [-1, 1] -> ``[N, classes]`` logits averaged over time."""
        for name in self.order:
            x = getattr(self, name)(x)
        x = x.mean(dim=(3, 4), keepdim=True)  # the 7x7 average pool at 224x224 input
        return self.logits(x).mean(dim=(2, 3, 4))


def load(path: str) -> I3D:
    sd = weights.read(path, WHAT)
    s = weights.width_scale(sd, "Conv3d_1a_7x7.conv3d.weight", 64, path, WHAT)
    classes = sd["logits.conv3d.weight"].shape[0] if "logits.conv3d.weight" in sd else 400
    return weights.build(lambda: I3D(s, classes), sd, path, WHAT)
