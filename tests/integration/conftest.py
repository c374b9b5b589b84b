"""Integration tests against the real ComfyUI: set COMFYUI_PATH to a ComfyUI checkout and run them with a
Python that has ComfyUI's requirements (see README). Without it they skip, saying why."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def comfyui_path():
    path = os.environ.get("COMFYUI_PATH")
    if not path or not os.path.isfile(os.path.join(path, "main.py")):
        pytest.skip("COMFYUI_PATH is not set to a ComfyUI checkout (folder with main.py)", allow_module_level=True)
    return path


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """ComfyUI imported in-process on the CPU, with our pack loaded as a custom node and tiny models."""
    path = comfyui_path()
    sys.path.insert(0, path)
    try:
        from comfy.cli_args import args
    except ImportError as e:
        pytest.skip(f"ComfyUI's requirements are not importable in this Python ({e})")
    args.cpu = True
    import asyncio

    import folder_paths
    import nodes

    sys.path.insert(0, ROOT)
    from aa2_core.check import write_tiny_models_dir

    models = tmp_path_factory.mktemp("models")
    write_tiny_models_dir(str(models))
    asyncio.run(nodes.load_custom_node(ROOT))
    for name in ("animate_anyone2", "clip_vision", "vae"):
        folder_paths.add_model_folder_path(name, str(models / name), is_default=True)
    return nodes, models
