"""ReferenceNet: an SD1.5 2D UNet run once per generation on the reference image latent."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from .reference_attention import ReferenceRecorder, ReferenceWriteProcessor, install_processors


class ReferenceNet(nn.Module):
    """Runs the reference UNet at timestep 0 and returns the tokens its fused self-attentions saw."""

    def __init__(self, unet: UNet2DConditionModel, fusion_blocks: str = "full"):
        super().__init__()
        self.unet = unet
        self.fusion_blocks = fusion_blocks
        self.fused_layers = install_processors(unet, fusion_blocks, ReferenceWriteProcessor)

    def drop_output_head(self) -> None:
        """Remove ``conv_norm_out``/``conv_out``: the reference UNet's output is never used.

        Moore-AnimateAnyone's ``reference_unet.pth`` ships without them.
        """
        self.unet.conv_norm_out = None
        self.unet.conv_out = nn.Identity()

    def forward(self, reference_latents: torch.Tensor, encoder_hidden_states: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(b, 4, h, w)`` latents, ``(b, tokens, dim)`` image embedding -> ``{layer name: (b, h*w, c)}``."""
        recorder = ReferenceRecorder()
        timestep = torch.zeros(reference_latents.shape[0], device=reference_latents.device)
        self.unet(
            reference_latents,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            cross_attention_kwargs={"reference": recorder},
            return_dict=False,
        )
        return recorder.tokens
