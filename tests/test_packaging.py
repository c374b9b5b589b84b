"""The declared requirements match what the pack imports, and the installable package is the library only."""

import ast
import os
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = {"torch", "comfy", "folder_paths", "latent_preview", "nodes"}  # given by ComfyUI (nodes: ComfyUI's module)
# imported lazily, with a clear message (module -> extra)
OPTIONAL = {"sam2": "sam2", "mamba_ssm": "mamba", "causal_conv1d": "mamba", "onnxruntime": "dwpose",
            "accelerate": "train", "tensorboard": "train", "bitsandbytes": "train"}
DISTRIBUTION = {"cv2": "opencv-python-headless", "PIL": "pillow"}


def imported_modules():
    found = set()
    for folder in ("aa2_core", "nodes"):
        for base, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    for node in ast.walk(ast.parse(open(os.path.join(base, name)).read())):
                        if isinstance(node, ast.Import):
                            found |= {a.name.split(".")[0] for a in node.names}
                        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"aa2_core", "__future__"}


def test_requirements_match_the_imports():
    project = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["project"]
    declared = set(project["dependencies"])
    listed = {line.strip() for line in open(os.path.join(ROOT, "requirements.txt")) if line.strip() and not line.startswith("#")}
    assert declared == listed
    third_party = imported_modules() - HOST
    needed = {DISTRIBUTION.get(m, m) for m in third_party if m not in OPTIONAL}
    assert needed == declared  # nothing imported undeclared, nothing declared unimported
    extras = project["optional-dependencies"]
    assert {m for m in OPTIONAL if m in third_party} <= set(OPTIONAL)
    expected = {}
    for module, extra in OPTIONAL.items():
        expected.setdefault(extra, set()).add(module.replace("_", "-"))
    assert {k: set(v) for k, v in extras.items()} == expected


def test_the_installable_package_is_the_library_only():
    """The root stays a ComfyUI custom node folder; its nodes/ must not install as a top-level 'nodes' package."""
    config = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["aa2_core", "aa2_core.*"]
    assert config["build-system"]["build-backend"] == "setuptools.build_meta"


def test_the_built_wheel_holds_the_library_and_its_requirements(tmp_path):
    """``pip install .`` builds this wheel: every aa2_core package (subpackages included), no nodes/ or
    bench/, and the declared requirements. Built offline with the venv's own setuptools."""
    import shutil
    import subprocess
    import zipfile

    import pytest

    try:
        import setuptools  # noqa: F401
    except ImportError:
        pytest.skip("setuptools is not installed in this Python")
    build = tmp_path / "src"
    shutil.copytree(ROOT, build, ignore=shutil.ignore_patterns(".venv", ".comfyui", ".git", "out", "node_modules", "*.egg-info", "build"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(build)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"aa2_core"}
    packages = {os.path.relpath(base, ROOT).replace(os.sep, "/") for base, _, files in os.walk(os.path.join(ROOT, "aa2_core"))
                if "__init__.py" in files}
    assert {p for p in packages if f"{p}/__init__.py" in names} == packages  # subpackages are not dropped
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    required = {line.split(":", 1)[1].strip().split(";")[0].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")}
    project = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))["project"]
    assert set(project["dependencies"]) <= required
