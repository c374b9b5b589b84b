"""The short proof that the model learns content (``bench/train_proof.py``): the whole tiny model (``--modules
all``, stage 1, from PyTorch's default init) trained a few steps with the trainer's own pieces (``TrainStep``,
``select_trainable``, ``batches``, ``parameter_groups`` + ``make_optimizer``) on synthetic clips, then scored on
held-out synthetic clips by the one-step clean-latent error at fixed timesteps and noise:

* the environment region's error falls below the best constant guess (each region's true mean latent, an oracle
  that a model learning only the latents' statistics reaches): content, not statistics;
* zeroing the environment input raises it: the content comes through that input.

The bench's full run (3 seeds, 1000 steps, 128x128, fixed VAE norms, with the ablations) is in the README; at
150 steps the margins are small (below), but the run is deterministic (fixed seeds, one thread) and the
mutation below lands on the other side of both.

Mutation seen failing (both tests): the environment input not fed to the network (``MOORE_INPUTS["environment"]``
returning nothing, in training and evaluation).
"""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

from train_proof import ProofConfig, local_vae_, run_seed  # noqa: E402

from aa2_core import tiny  # noqa: E402
from aa2_core.pipeline import images  # noqa: E402

# the bench runs 128x128 with the VAE's norms fixed (local latents), the ball against the chest and the blends
# starting as the paper's; the thresholds below were seen with these settings, pinned (the environment is what
# this short run checks; the object guider needs the bench's length)
SHORT = ProofConfig(steps=150, height=64, width=64, train_clips=8, eval_clips=2, ablations=(), vae_norms="frame",
                    ball_hold="out", blend_init="identity")
# seen at this length: environment error 0.968 x the best constant's, x1.044 with the environment input zeroed;
# with the environment input not fed (the mutation below): 1.011 and exactly x1.000
BELOW_ORACLE = 0.015  # environment error at most (1 - BELOW_ORACLE) x the best constant's
ZEROED_RISE = 0.02  # zeroing the environment input raises that error by at least this fraction


@pytest.fixture(scope="module")
def short_run():
    threads = torch.get_num_threads()
    try:
        return run_seed(0, SHORT, log=lambda s: None)["results"]
    finally:
        torch.set_num_threads(threads)


def env_error(results, variant):
    return results[variant]["environment"]["latent_mse"]


def test_the_environment_region_beats_the_best_constant(short_run):
    trained, oracle = env_error(short_run, "trained"), env_error(short_run, "best constant")
    assert trained < (1 - BELOW_ORACLE) * oracle, (trained, oracle)


def test_zeroing_the_environment_input_costs(short_run):
    trained, zeroed = env_error(short_run, "trained"), env_error(short_run, "trained, env zeroed")
    assert zeroed > (1 + ZEROED_RISE) * trained, (trained, zeroed)


def far_change(vae, frames, edited):
    """Mean latent change in the top-left quarter when only the bottom-right quarter of the frames changes."""
    a, b = images.vae_encode(vae, frames), images.vae_encode(vae, edited)
    h, w = a.shape[-2:]
    return float((a - b)[..., : h // 4, : w // 4].abs().mean() / a[..., : h // 4, : w // 4].abs().mean())


def test_fixed_norms_make_the_tiny_vae_local():
    """``--vae-norms fixed``: greying one quarter of a frame moves the latents of the opposite quarter far less
    than with per-frame norms (what is left comes through the receptive field and the mid-block attention,
    which span the frame). And the statistics are fixed: a frame encodes alike alone and in a batch.
    Seen: relative change 0.37 with per-frame norms, 0.085 fixed. Mutation seen failing: ``FixedGroupNorm``
    recomputing its statistics on each input."""
    torch.manual_seed(0)
    frames = torch.rand(8, 128, 128, 3)
    edited = frames.clone()
    edited[:, 64:, 64:] = 0.5
    vae = tiny.tiny_vae()
    before = far_change(vae, frames, edited)
    local_vae_(vae, frames)
    after = far_change(vae, frames, edited)
    assert before > 0.2 and after < 0.4 * before, (before, after)
    alone = images.vae_encode(vae, frames[:1])
    assert torch.allclose(alone, images.vae_encode(vae, frames)[:1], atol=1e-5)
