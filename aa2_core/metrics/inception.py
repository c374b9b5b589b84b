"""The FID Inception v3 of pytorch-fid (github:mseitzer/pytorch-fid, ``fid_inception_v3``): torchvision's
Inception3 layout with the TF-port patches (FIDInceptionA/C/E_1 average pools ignore padding, E_2 max-pools),
loaded from pt_inception-2015-12-05-6726825d.pth (keys ``Conv2d_1a_3x3.conv.weight`` ... ``fc.weight``).

Features: frames in 0..1 resized bilinearly to 299x299 (``align_corners=False``), scaled to [-1, 1], the
2048-d output of the final average pool (pytorch-fid's default block 3). Channel widths scale with the file
(``Conv2d_1a_3x3`` has 32 outputs in the real one), so tiny test files share the path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import weights
from .weights import scaled

WHAT = "FID Inception"
SIZE = 299


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg(x):  # TF's average pool leaves the zero padding out of the mean
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin, pool, s):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, scaled(64, s), kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, scaled(48, s), kernel_size=1)
        self.branch5x5_2 = BasicConv2d(scaled(48, s), scaled(64, s), kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, scaled(64, s), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(scaled(64, s), scaled(96, s), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(scaled(96, s), scaled(96, s), kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool, kernel_size=1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin, s):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, scaled(384, s), kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, scaled(64, s), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(scaled(64, s), scaled(96, s), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(scaled(96, s), scaled(96, s), kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin, c7, s):
        super().__init__()
        o = scaled(192, s)
        self.branch1x1 = BasicConv2d(cin, o, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, o, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, o, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, o, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin, s):
        super().__init__()
        c = scaled(192, s)
        self.branch3x3_1 = BasicConv2d(cin, c, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(c, scaled(320, s), kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, c, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(c, c, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(c, c, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(c, c, kernel_size=3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin, s, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool  # pytorch-fid's FIDInceptionE_2 (Mixed_7c) max-pools, as the TF graph does
        c = scaled(384, s)
        self.branch1x1 = BasicConv2d(cin, scaled(320, s), kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, c, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(c, c, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(c, c, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, scaled(448, s), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(scaled(448, s), c, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(c, c, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(c, c, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, scaled(192, s), kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)


class FIDInception(nn.Module):
    """Inception3 up to the final average pool; ``fc`` (1008 TF classes) is in the file but unused."""

    def __init__(self, s: float = 1.0):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, scaled(32, s), kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(scaled(32, s), scaled(32, s), kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(scaled(32, s), scaled(64, s), kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(scaled(64, s), scaled(80, s), kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(scaled(80, s), scaled(192, s), kernel_size=3)
        a_out = lambda pool: scaled(64 + 64 + 96, s) + pool  # noqa: E731
        self.Mixed_5b = InceptionA(scaled(192, s), scaled(32, s), s)
        self.Mixed_5c = InceptionA(a_out(scaled(32, s)), scaled(64, s), s)
        self.Mixed_5d = InceptionA(a_out(scaled(64, s)), scaled(64, s), s)
        c288 = a_out(scaled(64, s))
        self.Mixed_6a = InceptionB(c288, s)
        c768 = scaled(384, s) + scaled(96, s) + c288
        self.Mixed_6b = InceptionC(c768, scaled(128, s), s)
        self.Mixed_6c = InceptionC(c768, scaled(160, s), s)
        self.Mixed_6d = InceptionC(c768, scaled(160, s), s)
        self.Mixed_6e = InceptionC(c768, scaled(192, s), s)
        self.Mixed_7a = InceptionD(c768, s)
        c1280 = scaled(320, s) + scaled(192, s) + c768
        self.Mixed_7b = InceptionE(c1280, s, max_pool=False)
        c2048 = scaled(320, s) + 4 * scaled(384, s) + scaled(192, s)
        self.Mixed_7c = InceptionE(c2048, s, max_pool=True)
        self.features = c2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in 0..1 -> ``[N, 2048]`` pool3 features."""
        return self.features_of(F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False) * 2 - 1)

    def features_of(self, x: torch.Tensor) -> torch.Tensor:
        """The network itself, on inputs already resized and in [-1, 1]."""
        x = F.max_pool2d(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))), kernel_size=3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))


def load(path: str) -> FIDInception:
    sd = weights.read(path, WHAT)
    s = weights.width_scale(sd, "Conv2d_1a_3x3.conv.weight", 32, path, WHAT)
    return weights.build(lambda: FIDInception(s), sd, path, WHAT, ignore=("fc.", "AuxLogits."))
