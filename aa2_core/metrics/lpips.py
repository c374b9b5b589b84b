"""LPIPS v0.1 (Zhang et al. 2018, github:richzhang/PerceptualSimilarity, the ``lpips`` package).

Two files, as the package uses them: the torchvision AlexNet or VGG16 feature weights (``features.N.*``, e.g.
alexnet-owt-7be5be79.pth, vgg16-397923af.pth) and the package's linear layers (weights/v0.1/alex.pth or
vgg.pth: ``lin0.model.1.weight`` ... ``[1, C, 1, 1]``). A full ``lpips.LPIPS`` state dict (``net.sliceK.N.*``
plus ``linK``) also works as one file. Channel widths come from the shapes, so tiny test files share the path.

Distance: inputs scaled to [-1, 1] (the package's ``normalize=True``), the package's ScalingLayer, each tapped
feature map unit-normalised over channels, squared difference, the 1x1 linear layer, spatial mean, summed.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import CheckpointError, describe_keys
from . import weights

WHAT = "LPIPS"
# torchvision ``features`` layouts: conv indices and the ReLU after which LPIPS taps a feature map
ALEX_CONVS = {0: (11, 4, 2), 3: (5, 1, 2), 6: (3, 1, 1), 8: (3, 1, 1), 10: (3, 1, 1)}  # index: (kernel, stride, pad)
ALEX_POOLS = (2, 5, 12)
ALEX_TAPS = (1, 4, 7, 9, 11)
VGG_CONVS = {i: (3, 1, 1) for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}
VGG_POOLS = (4, 9, 16, 23, 30)
VGG_TAPS = (3, 8, 15, 22, 29)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
LIN_KEY = re.compile(r"lin(\d+)\.model\.1\.weight$")
SLICE_KEY = re.compile(r"^net\.slice\d+\.(\d+\..+)$")


class LinLayer(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    def __init__(self, kind: str, widths: dict[int, tuple[int, int]]):
        super().__init__()
        convs, pools, self.taps = (ALEX_CONVS, ALEX_POOLS, ALEX_TAPS) if kind == "alex" else (VGG_CONVS, VGG_POOLS, VGG_TAPS)
        self.kind = kind
        # the smallest frame whose last tapped layer still has a pixel (AlexNet's stride-4 stem and max pools)
        self.min_size = 31 if kind == "alex" else 16
        layers = []
        for i in range(max(max(convs), max(pools)) + 2):
            if i in convs:
                k, s, p = convs[i]
                layers.append(nn.Conv2d(widths[i][1], widths[i][0], k, s, p))
            elif i in pools:
                layers.append(nn.MaxPool2d(3, 2) if kind == "alex" else nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers[: max(self.taps) + 1])
        tap_widths = [widths[max(c for c in convs if c < t)][0] for t in self.taps]
        for n, c in enumerate(tap_widths):  # the package's NetLinLayer: Sequential(Dropout, Conv2d) -> linN.model.1
            self.add_module(f"lin{n}", LinLayer(c))

    def _taps(self, x):
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a``, ``b``: ``[N, 3, H, W]`` in 0..1 -> ``[N]`` distances."""
        shift = torch.tensor(SHIFT, device=a.device).view(1, 3, 1, 1)
        scale = torch.tensor(SCALE, device=a.device).view(1, 3, 1, 1)
        a = ((a * 2 - 1) - shift) / scale
        b = ((b * 2 - 1) - shift) / scale
        total = 0
        for n, (fa, fb) in enumerate(zip(self._taps(a), self._taps(b))):
            total = total + getattr(self, f"lin{n}").model((fa - fb) ** 2).mean(dim=(2, 3))
        return total.flatten()


def load(lin_path: str, backbone_path: str | None = None) -> LPIPS:
    """LPIPS from the package's linear-layer file and the torchvision feature file (or one full LPIPS file)."""
    sd = {_file_key(k): v for k, v in weights.read(lin_path, f"{WHAT} linear layers").items()}
    source = lin_path
    if backbone_path is not None:
        sd.update({_file_key(k): v for k, v in weights.read(backbone_path, f"{WHAT} backbone").items()})
        source = f"{lin_path} + {backbone_path}"
    lins = {int(m.group(1)): v for k, v in sd.items() if (m := LIN_KEY.match(k))}
    if not lins:
        raise CheckpointError(f"{WHAT}: {lin_path} holds no linear layers (lin0.model.1.weight ...); "
                              f"it looks like: {describe_keys(sd)}. Give the lpips package's weights/v0.1/alex.pth or vgg.pth")
    convs = {int(k.split(".")[1]): v.shape for k, v in sd.items() if k.startswith("features.") and k.endswith(".weight")}
    if not convs:
        raise CheckpointError(f"{WHAT}: no backbone weights (features.0.weight ...) in {source}; give the torchvision "
                              "AlexNet or VGG16 file with --lpips-backbone (alexnet-owt-7be5be79.pth or vgg16-397923af.pth)")
    kind = "alex" if set(convs) == set(ALEX_CONVS) else "vgg" if set(convs) == set(VGG_CONVS) else None
    if kind is None:
        raise CheckpointError(f"{WHAT}: the backbone in {source} is neither torchvision's AlexNet nor VGG16 "
                              f"(conv layers at features.{sorted(convs)})")
    widths = {i: (s[0], s[1]) for i, s in convs.items()}
    # the package's full state dict also carries its fixed ScalingLayer buffers and a second name for each
    # linear layer (lins.N = linN)
    return weights.build(lambda: LPIPS(kind, widths), sd, source, WHAT, ignore=("classifier.", "scaling_layer.", "lins."))


def _file_key(k: str) -> str:
    """A full ``lpips.LPIPS`` state dict names the backbone ``net.sliceK.N``; N is torchvision's index."""
    m = SLICE_KEY.match(k)
    return "features." + m.group(1) if m else k

