"""Command line: convert pickled weight files (.pth/.pt/.ckpt/.bin) to .safetensors.

    python -m aa2_core convert denoising_unet.pth [more.pth ...] [--out-dir DIR]

Pickles are read with ``torch.load(weights_only=True)``: a file holding anything but tensors is refused.
"""

from __future__ import annotations

import argparse
import os

from safetensors import SafetensorError

from ..errors import CheckpointError
from .detect import kind_of
from .io import read_state_dict, write_safetensors


def convert_file(src: str, out_dir: str | None = None) -> str:
    sd = read_state_dict(src, "weights to convert")
    stem = os.path.splitext(os.path.basename(src))[0]
    dst = os.path.join(out_dir or os.path.dirname(os.path.abspath(src)), stem + ".safetensors")
    if os.path.abspath(dst) == os.path.abspath(src):
        raise CheckpointError(f"{src} is already a .safetensors file; give a pickled file or another --out-dir")
    try:
        write_safetensors(sd, dst, {"converted_from": os.path.basename(src), "kind": kind_of(sd)})
    except (OSError, SafetensorError) as e:  # --out-dir is a file, read-only, or the disk is full
        reason = getattr(e, "strerror", None) or e
        raise CheckpointError(f"could not write {dst}: {reason}; expected a writable --out-dir") from e
    return dst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aa2_core convert", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="pickled weight files")
    parser.add_argument("--out-dir", help="where to write (default: beside each input)")
    args = parser.parse_args(argv)
    status = 0
    for src in args.files:
        try:
            print(f"{src} -> {convert_file(src, args.out_dir)}")
        except CheckpointError as e:
            print(f"error: {e}")
            status = 1
    return status
