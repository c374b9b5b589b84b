"""Reading and writing weight files: safetensors first, pickles only through ``weights_only=True``."""

from __future__ import annotations

import os
import re
import textwrap

import torch
from safetensors.torch import load_file, safe_open, save_file

from ..atomic import atomic_path
from ..errors import CheckpointError, describe_keys

SAFETENSORS_EXTENSIONS = (".safetensors", ".sft")
PICKLE_EXTENSIONS = (".pth", ".pt", ".ckpt", ".bin")
WRAPPER_KEYS = ("state_dict", "module", "model")
ANSI_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# torch's weights_only refusal puts the reason after advice we must not pass on (load with weights_only=False)
UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(.+)", re.S)
# torch's own lines around the reason (its advice, its version notes, its documentation link); torch 2.13 gives
# some refusals (``unsupported GLOBAL posix.system``) without the "WeightsUnpickler error:" marker
TORCH_ADVICE = re.compile(r"weights.only|check the documentation|please file an issue|trusted source", re.I)
REASON_CHARS = 300


def read_state_dict(path: str, what: str = "weights") -> dict[str, torch.Tensor]:
    """Load a flat ``{name: tensor}`` dict from a file, unwrapping ``state_dict``-style containers.

    ``what`` names the expected content in error messages (e.g. "motion module").
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(_directory_message(path, what))
    if not os.path.isfile(path):
        raise CheckpointError(f"{what}: file not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{what}: {path} is empty (0 bytes); the download or copy was probably cut short")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in SAFETENSORS_EXTENSIONS:
            state = load_file(path, device="cpu")
        elif ext in PICKLE_EXTENSIONS:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise CheckpointError(
                f"{what}: {path} has extension {ext!r}; expected one of "
                f"{', '.join(SAFETENSORS_EXTENSIONS + PICKLE_EXTENSIONS)}"
            )
    except CheckpointError:
        raise
    except Exception as e:  # truncated file, foreign pickle, wrong format
        kind = "safetensors" if ext in SAFETENSORS_EXTENSIONS else "PyTorch pickle"
        raise CheckpointError(
            f"{what}: could not read {path} as a {kind} file ({type(e).__name__}: {_reason(e)}). "
            "The file may be truncated, not a weight file, or a pickle holding objects other than tensors."
        ) from e
    return unwrap_state_dict(state, path, what)


def _directory_message(path: str, what: str) -> str:
    weights = sorted(n for n in os.listdir(path) if n.lower().endswith(SAFETENSORS_EXTENSIONS + PICKLE_EXTENSIONS))
    inside = f"give one of the weight files in it: {describe_keys(weights)}" if weights else "it holds no weight files"
    return (f"{what}: {path} is a directory; expected a weight file "
            f"({', '.join(SAFETENSORS_EXTENSIONS + PICKLE_EXTENSIONS)}); {inside}")


def _reason(e: Exception) -> str:
    """The telling part of a reader's error as plain text: no colour codes, shortened between words."""
    text = ANSI_CODES.sub("", str(e))
    unpickler = UNPICKLER_REASON.search(text)
    if unpickler:
        text = re.split(r"(?<=\.)\s", unpickler.group(1).strip(), maxsplit=1)[0]  # its first sentence
    lines = [line for line in text.splitlines() if line.strip()]
    telling = [line for line in lines if not TORCH_ADVICE.search(line)] or lines
    return textwrap.shorten(telling[0] if telling else type(e).__name__, REASON_CHARS, placeholder=" ...")


def unwrap_state_dict(state, path: str = "<memory>", what: str = "weights") -> dict[str, torch.Tensor]:
    while isinstance(state, dict) and len(state) > 0 and not _is_flat(state):
        inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            raise CheckpointError(
                f"{what}: {path} holds a dict without tensors at the top level (keys: {describe_keys(state)})"
            )
        state = inner
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{what}: {path} holds no tensors (found {type(state).__name__})")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{what}: {path} holds no tensors")
    # DataParallel / DistributedDataParallel prefix
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def _is_flat(state: dict) -> bool:
    return any(isinstance(v, torch.Tensor) for v in state.values())


def read_metadata(path: str) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file ({} for other formats)."""
    if not os.fspath(path).lower().endswith(SAFETENSORS_EXTENSIONS):
        return {}
    with safe_open(os.fspath(path), framework="pt") as f:
        return dict(f.metadata() or {})


def write_safetensors(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors; shared or non-contiguous storage is copied first (safetensors requires it)."""
    seen, clean = set(), {}
    for k, v in tensors.items():
        v = v.detach().cpu()
        ptr = v.untyped_storage().data_ptr() if v.numel() else None
        clean[k] = v.clone().contiguous() if (ptr in seen or not v.is_contiguous()) else v
        if ptr is not None:
            seen.add(ptr)
    with atomic_path(path) as tmp:  # an interrupted save leaves the previous file whole
        save_file(clean, tmp, metadata=metadata)
