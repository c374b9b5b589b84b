"""Thin ComfyUI node classes over ``aa2_core``."""

from .loaders import AA2ModelLoader

NODE_CLASS_MAPPINGS = {
    "AA2ModelLoader": AA2ModelLoader,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "AA2ModelLoader": "AA2 Model Loader (Animate Anyone)",
}
