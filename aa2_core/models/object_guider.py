"""Object guider and spatial blending (Animate Anyone 2, section 3.3).

The object guider is a light fully-convolutional net over the VAE latents of the interacting objects.
It yields one feature map per DenoisingNet decoder stage that has spatial attention, at that stage's
channels and resolution: the up blocks with attention (finest last) and the mid block.

Spatial blending follows each spatial attention of those stages:
``alpha = gate * sigmoid(F(cat(z, z_obj)))`` and ``z = alpha * z_obj + (1 - alpha) * z``.
The paper zero-initialises F, which gives alpha = 0.5 and would halve every decoder feature of a
pretrained base. The extra scalar ``gate`` starts at 0, so an untrained blend is exactly the identity
(alpha = 0, hence z unchanged bit for bit); F still starts at zero as in the paper, so once the gate
opens alpha starts uniform.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ObjectGuider(nn.Module):
    """Object latents ``(n, 4, h, w)`` -> features for each fused decoder stage.

    ``stage_channels`` lists the channels from the finest stage (latent resolution) to the coarsest;
    each later stage is reached by one stride-2 3x3 conv. For SD1.5 that is 320@h, 640@h/2,
    1280@h/4, 1280@h/8 (up blocks 3, 2, 1 and the mid block).
    """

    def __init__(self, stage_channels: tuple[int, ...], latent_channels: int = 4):
        super().__init__()
        self.stage_channels = tuple(stage_channels)
        self.conv_in = nn.Conv2d(latent_channels, stage_channels[0], kernel_size=3, padding=1)
        self.refine = nn.ModuleList(nn.Conv2d(c, c, kernel_size=3, padding=1) for c in stage_channels)
        self.down = nn.ModuleList(
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=2)
            for c_in, c_out in zip(stage_channels[:-1], stage_channels[1:])
        )

    def forward(self, object_latents: torch.Tensor) -> list[torch.Tensor]:
        """Returns features finest first: ``[stage0 @ h, stage1 @ h/2, ...]``."""
        x = F.silu(self.conv_in(object_latents))
        features = []
        for i, refine in enumerate(self.refine):
            if i > 0:
                x = F.silu(self.down[i - 1](x))
            x = F.silu(refine(x))
            features.append(x)
        return features


class SpatialBlend(nn.Module):
    """Gated alpha blending of object features into the noise features after a spatial attention."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha_conv = nn.Conv2d(2 * channels, 1, kernel_size=3, padding=1)
        nn.init.zeros_(self.alpha_conv.weight)
        nn.init.zeros_(self.alpha_conv.bias)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor, z_object: torch.Tensor) -> torch.Tensor:
        alpha = self.gate * torch.sigmoid(self.alpha_conv(torch.cat([z, z_object], dim=1)))
        return alpha * z_object + (1 - alpha) * z
