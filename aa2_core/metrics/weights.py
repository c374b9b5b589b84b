"""Load a metric network's weight file into our re-implementation, checking keys and shapes first.

The networks are built on the ``meta`` device (no memory, no init cost); a file that does not fit fails with
a message naming the file, what it should be, and the first missing, unexpected or misshapen keys.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checkpoints.io import read_state_dict
from ..checkpoints.loaders import raise_unless_fits
from ..errors import CheckpointError, describe_keys

# BatchNorm's step counter: unused in eval mode, absent from converted files (TF ports, old pickles)
OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def read(path: str, what: str) -> dict[str, torch.Tensor]:
    """The file's tensors in float32 (metric networks run in float32 whatever the file holds)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(path, what).items()}


def check_keys(expected: dict, sd: dict, source: str, what: str, ignore: tuple[str, ...] = ()) -> None:
    """Raise a readable error unless ``sd`` holds every tensor of ``expected`` with the same shape.

    Keys under ``ignore`` prefixes (heads the metric does not use, e.g. a classifier) may be in the file.
    """
    missing = [k for k in expected if k not in sd and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in sd if k not in expected and not k.startswith(ignore)]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    raise_unless_fits(f"{what}: {source} does not fit the network it should load into.", missing, unexpected, wrong)


def build(factory, sd: dict, source: str, what: str, ignore: tuple[str, ...] = ()) -> nn.Module:
    """``factory()`` on meta, checked against ``sd``, then given its tensors; returned in eval mode."""
    with torch.device("meta"):
        model = factory()
    expected = model.state_dict()
    check_keys(expected, sd, source, what, ignore)
    model.load_state_dict({k: v for k, v in sd.items() if k in expected}, strict=False, assign=True)
    for module in model.modules():  # batch-norm counters the file did not carry
        for name, buf in module.named_buffers(recurse=False):
            if buf.is_meta and name.endswith(OPTIONAL_SUFFIXES):
                module._buffers[name] = torch.zeros(buf.shape, dtype=buf.dtype)
    still_meta = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if still_meta:  # a bug in a network definition, not in the file
        raise CheckpointError(f"{what}: no tensors for {describe_keys(still_meta)} after loading {source}")
    return model.eval().requires_grad_(False)


def width_scale(sd: dict, key: str, full: int, source: str, what: str) -> float:
    """Channel scale of a file relative to the released network (1.0 for the real file, less for tiny tests)."""
    if key not in sd:
        raise CheckpointError(f"{what}: {source} has no {key}; keys look like: {describe_keys(sd)}")
    return sd[key].shape[0] / full


def scaled(channels: int, scale: float) -> int:
    return max(1, round(channels * scale))
