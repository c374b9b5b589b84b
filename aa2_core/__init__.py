"""Animate Anyone 2 core: models, checkpoints and pipeline code, free of any ComfyUI import."""
