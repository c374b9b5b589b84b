"""Whole files or nothing: every writer of a user's file writes a temporary name beside it and renames.

``os.replace`` within one folder is atomic on POSIX and Windows, so a reader (or a crash) sees either the
previous file or the complete new one, never a half-written file under the final name. The temporary name
starts with a dot and ends in ``.partial`` so a crashed run's leftovers are easy to spot and never picked up
as outputs (``*.mp4`` globs do not match them).
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager

from .errors import AA2Error


def partial_name(path: str) -> str:
    """A fresh temporary name in ``path``'s folder, keeping its extension (writers pick the format by it)."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.{uuid.uuid4().hex[:8]}.partial{ext}")


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path to write; on success it replaces ``path``, on any error it is removed."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = partial_name(path)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise AA2Error(f"writing {path}: the writer produced no file")
        os.chmod(tmp, 0o666 & ~_umask())  # as a plain open() would: some writers (safetensors) make owner-only files
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: the old file stays, the partial one goes
        _remove(tmp)
        raise


@contextmanager
def atomic_dir(path: str):
    """Yield a temporary folder to fill; on success it is renamed to ``path`` (which must not exist yet)."""
    path = os.fspath(path).rstrip(os.sep)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.isdir(path):  # an older copy of the same folder: swap it out only once the new one is whole
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(tmp: str) -> None:
    if os.path.isdir(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    elif os.path.lexists(tmp):
        os.remove(tmp)


def check_output_file(path: str, flag: str, extensions: tuple[str, ...] | None = None) -> str:
    """Refuse an output path that cannot be written, before any expensive work: a folder, a path under a file,
    a read-only place, or an extension the writer does not produce. Returns the absolute path."""
    path = os.path.abspath(os.fspath(path))
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):  # first: a folder's "extension" says nothing
        raise AA2Error(f"{flag} {path} is an existing folder; expected a file name")
    if extensions is not None and ext not in extensions:
        raise AA2Error(f"{flag} {path}: the extension {ext or '(none)'!r} is not one this writes; expected {' or '.join(extensions)}")
    folder = os.path.dirname(path)
    _check_creatable(folder, path, flag)
    if os.path.exists(path) and not os.access(path, os.W_OK) and not os.access(folder, os.W_OK):
        raise AA2Error(f"{flag} {path} exists and cannot be replaced (read-only)")
    return path


def check_output_folder(path: str, flag: str, what: str = "a folder") -> str:
    """Refuse an output folder that is a file, lies under a file or cannot be made, before any work."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise AA2Error(f"{flag} {path} is a file; expected {what}")
    _check_creatable(path, path, flag)
    return path


def _check_creatable(folder: str, path: str, flag: str) -> None:
    """The nearest existing ancestor of ``folder`` decides whether the folders can be made and written."""
    probe = folder
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise AA2Error(f"{flag} {path}: {probe} is a file, so no folder can be made under it")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise AA2Error(f"{flag} {path}: {probe} is not writable")
