"""Tiny metric-network files in the real layouts (random weights), for tests and for trying ``evaluate``.

Each file has the key names, nesting and container of the released one; only the channel widths (and the
3D ResNet's block counts) are small. They load through the same ``load`` functions users' files go through.
"""

from __future__ import annotations

import os

import torch

from ..checkpoints.io import write_safetensors
from .i3d import I3D
from .inception import FIDInception
from .lpips import ALEX_CONVS, LPIPS
from .resnet3d import ResNet3D

ALEX_TINY = {0: (8, 3), 3: (12, 8), 6: (16, 12), 8: (12, 16), 10: (12, 12)}


def _randomise(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random weights and plausible batch-norm statistics (so every layer matters)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue  # converted releases do not carry it
        if k.endswith("running_var"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith(("running_mean", "bias")):
            sd[k] = torch.randn(v.shape, generator=g) * 0.1
        elif k.endswith("bn.weight") or ".bn" in k and k.endswith("weight"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            fan_in = max(1, v[0].numel())
            sd[k] = torch.randn(v.shape, generator=g) * (2.0 / fan_in) ** 0.5
    return sd


def _save(sd: dict, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".safetensors"):
        write_safetensors(sd, path)
    else:
        torch.save(sd, path)
    return path


def write_lpips(folder: str, ext: str = ".pth", seed: int = 0) -> tuple[str, str]:
    """(lin file like lpips' weights/v0.1/alex.pth, backbone file like torchvision's alexnet-owt-7be5be79.pth)."""
    sd = _randomise(LPIPS("alex", ALEX_TINY), seed)
    lins = {k: v.abs() for k, v in sd.items() if k.startswith("lin")}  # the released layers are non-negative
    backbone = {k: v for k, v in sd.items() if k.startswith("features.")}
    g = torch.Generator().manual_seed(seed + 1)
    backbone["classifier.1.weight"] = torch.randn(16, 12 * 36, generator=g)  # torchvision's head rides along
    assert set(ALEX_CONVS) == set(ALEX_TINY)
    return (_save(lins, os.path.join(folder, f"lpips_alex{ext}")),
            _save(backbone, os.path.join(folder, f"alexnet_features{ext}")))


def write_inception(folder: str, ext: str = ".pth", seed: int = 0, scale: float = 1 / 16) -> str:
    """Like pt_inception-2015-12-05-6726825d.pth, at ``scale`` of its widths, with the unused 1008-way ``fc``."""
    model = FIDInception(scale)
    sd = _randomise(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    sd["fc.weight"] = torch.randn(1008, model.features, generator=g) * 0.01
    sd["fc.bias"] = torch.zeros(1008)
    return _save(sd, os.path.join(folder, f"pt_inception_tiny{ext}"))


def write_resnet3d(folder: str, ext: str = ".pth", seed: int = 0) -> str:
    """Like resnet-50-kinetics.pth: ``{"state_dict": {"module.conv1.weight": ...}, "arch": ...}`` (one block
    per stage, 1/8 widths); the .safetensors variant is the flat, unprefixed dict."""
    sd = _randomise(ResNet3D((1, 1, 1, 1), True, 1 / 8), seed)
    path = os.path.join(folder, f"resnet3d_tiny{ext}")
    if ext == ".safetensors":
        return _save(sd, path)
    os.makedirs(folder, exist_ok=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "arch": "resnet-50", "epoch": 200}, path)
    return path


def write_i3d(folder: str, ext: str = ".pth", seed: int = 0) -> str:
    """Like piergiaj's rgb_imagenet.pt / DisCo's i3d_pretrained_400.pt at 1/16 of the widths."""
    return _save(_randomise(I3D(1 / 16, 400), seed), os.path.join(folder, f"i3d_tiny{ext}"))


def write_all(folder: str, ext: str = ".pth", seed: int = 0) -> dict[str, str]:
    lin, backbone = write_lpips(folder, ext, seed)
    return dict(lpips=lin, lpips_backbone=backbone, inception=write_inception(folder, ext, seed),
                resnet3d=write_resnet3d(folder, ext, seed), i3d=write_i3d(folder, ext, seed))
