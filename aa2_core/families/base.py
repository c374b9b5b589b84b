"""The model-family interface, as families import it (defined beside the sampler that calls it)."""

from ..pipeline.denoiser import Denoiser

__all__ = ["Denoiser"]
