"""What trains: named parameter groups, chosen with ``--modules`` (comma-separated, e.g. ``aa2,temporal``).

A group (``checkpoints.module_groups``) names parameters of the three trainable nets (``denoising``,
``reference``, ``pose``) by prefix. Everything not chosen stays frozen (the VAE and the image encoder always are).
"""

from __future__ import annotations

import argparse

import torch

from ..checkpoints.module_groups import GROUPS, NETS, TEMPORAL, Group, register_group  # noqa: F401
from ..errors import AA2Error

# the registry lives with the checkpoints (the aa2-modules file names its groups too); re-exported for --modules
def parse_groups(text: str) -> list[str]:
    """``--modules`` (an argparse ``type``: argparse shows an ArgumentTypeError's message; a ValueError's it hides)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in GROUPS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown group {', '.join(map(repr, unknown or [text]))}; expected comma-separated "
                                         f"groups from: {', '.join(GROUPS)}")
    return names


def select_trainable(models, groups: list[str], stage: int) -> dict[str, list[str]]:
    """Freeze everything, then unfreeze the groups' parameters; returns ``{net: [parameter names]}``.

    Stage 1 leaves the temporal layers out (single frames teach them nothing); a choice that leaves
    nothing to train is an error.
    """
    for name in groups:
        if GROUPS[name].build is not None:
            GROUPS[name].build(models)
    for part in ("vae", "image_encoder"):
        if getattr(models, part, None) is not None:
            getattr(models, part).requires_grad_(False)
    chosen: dict[str, list[str]] = {}
    for net_name in NETS:
        net = getattr(models, net_name)
        net.requires_grad_(False)
        prefixes = tuple(p for g in groups for p in GROUPS[g].prefixes.get(net_name, ()))
        names = [n for n, _ in net.named_parameters() if prefixes and n.startswith(prefixes)]
        if stage == 1:
            names = [n for n in names if not n.startswith(TEMPORAL.get(net_name, ()))]
        params = dict(net.named_parameters())
        for n in names:
            params[n].requires_grad_(True)
        if names:
            chosen[net_name] = names
    if not chosen:
        raise AA2Error(f"--modules {','.join(groups)} leaves nothing to train" + (" in stage 1 (single images train no temporal layers)" if stage == 1 else ""))
    return chosen


def parse_lr_scales(text: str) -> dict[str, float]:
    """``"ipi=0.01,mamba=0.5"`` -> ``{"ipi": 0.01, "mamba": 0.5}`` (groups as ``--modules`` names them)."""
    scales = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.partition("=")
        if name not in GROUPS or not value:
            raise argparse.ArgumentTypeError(f"--lr-scale expects GROUP=FACTOR with GROUP in {', '.join(GROUPS)}; got {item!r}")
        scales[name] = float(value)
    return scales


def parameter_groups(models, lr: float, scales: dict[str, float]) -> list[dict]:
    """Trainable parameters as optimizer groups: a group of ``--modules`` scaled by ``scales`` gets
    ``lr * factor`` (Animate-X trains its pose indicator 100x slower than the rest), the others ``lr``."""
    groups = []
    taken: set[int] = set()
    for group, factor in scales.items():
        params = []
        for net_name in NETS:
            prefixes = GROUPS[group].prefixes.get(net_name, ())
            params += [p for n, p in getattr(models, net_name).named_parameters()
                       if prefixes and n.startswith(prefixes) and p.requires_grad and id(p) not in taken]
        taken |= {id(p) for p in params}
        if params:
            groups.append({"params": params, "lr": lr * factor, "name": group})
    rest = [p for net_name in NETS for p in getattr(models, net_name).parameters() if p.requires_grad and id(p) not in taken]
    return ([{"params": rest, "lr": lr, "name": "default"}] if rest else []) + groups  # no empty group (8-bit AdamW)


def trained_parts(state: dict[str, torch.Tensor], chosen: dict[str, list[str]]) -> dict[str, dict[str, torch.Tensor]]:
    """The trained tensors as ``aa2-modules`` file parts, from a ``{net.name: tensor}`` state dict."""
    return {net: {n: state[f"{net}.{n}"].detach().float().cpu().contiguous() for n in names} for net, names in chosen.items()}


def count(models, chosen: dict[str, list[str]]) -> int:
    return sum(dict(getattr(models, net).named_parameters())[n].numel() for net, names in chosen.items() for n in names)
