import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(2)

from aa2_core.tiny import write_tiny_moore_files  # noqa: E402


@pytest.fixture(scope="session")
def moore_files(tmp_path_factory):
    """Tiny Moore-AnimateAnyone files (.pth, released key layout)."""
    return write_tiny_moore_files(str(tmp_path_factory.mktemp("moore")))


@pytest.fixture(scope="session")
def loaded(moore_files):
    from aa2_core.checkpoints.loaders import load_denoising_net, load_pose_modulation, load_reference_net

    return dict(
        denoising=load_denoising_net(moore_files["denoising_unet"], moore_files["motion_module"]),
        reference=load_reference_net(moore_files["reference_unet"]),
        pose=load_pose_modulation(moore_files["pose_guider"]),
    )


def inputs(frames=4, h=8, w=8, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        sample=torch.randn(batch, 4, frames, h, w, generator=g),
        context=torch.randn(batch, 1, 32, generator=g),
        ref_latents=torch.randn(batch, 4, h, w, generator=g),
        skeleton=torch.rand(batch * frames, 3, 8 * h, 8 * w, generator=g),
        depth=torch.rand(batch * frames, 1, 8 * h, 8 * w, generator=g),
        environment=torch.randn(batch, 5, frames, h, w, generator=g),
        objects=torch.randn(batch, 4, frames, h, w, generator=g),
    )
