"""ComfyUI model folders the pack reads: its own ``animate_anyone2`` plus core and AnimateDiff ones."""

from __future__ import annotations

import os

AA2_FOLDER = "animate_anyone2"
MOTION_FOLDERS = (AA2_FOLDER, "animatediff_models")
ANIMATE_X_FOLDER = "animate_x"  # the released Animate-X UNet (also read from diffusion_models) and its zero_y file


def register_model_folders() -> None:
    """Add ``models/animate_anyone2``, ``animate_x``, ``sam2`` and ``dwpose`` (and ``animatediff_models``) unless
    another pack did."""
    try:
        import folder_paths
    except ImportError:  # imported outside ComfyUI (tests, tools)
        return
    own = {AA2_FOLDER: folder_paths.supported_pt_extensions, "animatediff_models": folder_paths.supported_pt_extensions,
           "sam2": folder_paths.supported_pt_extensions, "dwpose": {".onnx"},
           ANIMATE_X_FOLDER: folder_paths.supported_pt_extensions}
    for name, extensions in own.items():
        if name not in folder_paths.folder_names_and_paths:
            folder_paths.folder_names_and_paths[name] = ([os.path.join(folder_paths.models_dir, name)], set(extensions))


def files_in(*folders: str) -> list[str]:
    import folder_paths

    names: list[str] = []
    for folder in folders:
        if folder in folder_paths.folder_names_and_paths:
            try:
                listed = folder_paths.get_filename_list(folder)
            except KeyError:  # a stand-in folder_paths (tests, tools) that lists fewer folders than are registered
                continue
            names += [n for n in listed if n not in names]
    return names


def full_path(node: str, input_name: str, filename: str, folders: tuple[str, ...]) -> str:
    """Resolve a COMBO choice to a path, or say which node, input and folders were searched."""
    import folder_paths

    for folder in folders:
        if folder in folder_paths.folder_names_and_paths:
            path = folder_paths.get_full_path(folder, filename)
            if path:
                return path
    searched = ", ".join(f"models/{f}" for f in folders)
    raise FileNotFoundError(f"{node}: {input_name} '{filename}' was not found in {searched}{fetch_hint(filename, folders)}")


def fetch_hint(filename: str, folders: tuple[str, ...]) -> str:
    """The ``download`` command that fetches a released file the pack knows (from the model manifest), else ''."""
    import folder_paths

    from ..aa2_core.model_manifest import download_command, find

    entry = next((e for e in (find(f, filename) for f in folders) if e), None)
    return f"; fetch it with: {download_command(folder_paths.models_dir, entry)}" if entry else ""
