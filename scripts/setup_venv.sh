#!/usr/bin/env bash
# Creates ./.venv with everything the pack and its tests need (idempotent; CPU torch by default).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${AA2_TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch first and pinned: letting pip resolve torch through another package would pull a CUDA build
.venv/bin/pip install -q --disable-pip-version-check "$TORCH_SPEC"
.venv/bin/python - <<'PY' > .venv/torch-constraint.txt
import torch; print(f"torch=={torch.__version__}")
PY
.venv/bin/pip install -q --disable-pip-version-check -c .venv/torch-constraint.txt -r requirements-dev.txt
