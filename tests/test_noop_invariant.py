"""Untrained AA2 modules, or absent AA2 inputs, leave the base network's output unchanged bit for bit."""

import copy

import pytest
import torch

from aa2_core.models import DenoisingNet
from conftest import inputs


@torch.no_grad()
def base_and_aa2(net, pose, reference, x):
    kv = net.reference_kv(reference(x["ref_latents"], x["context"]))
    skeleton_only = pose(x["skeleton"], None, num_frames=x["sample"].shape[2])
    base = net(x["sample"], 500, x["context"], pose_features=skeleton_only, reference=kv)
    return base, kv


@torch.no_grad()
def test_untrained_aa2_modules_are_exact_noop(loaded):
    net, pose, reference = loaded["denoising"], loaded["pose"], loaded["reference"]
    x = inputs()
    base, kv = base_and_aa2(net, pose, reference, x)
    f = x["sample"].shape[2]
    with_depth = pose(x["skeleton"], x["depth"], num_frames=f)
    assert torch.equal(with_depth, pose.guider(x["skeleton"])), "depth modulation changed the Moore pose features"
    full = net(
        x["sample"], 500, x["context"], pose_features=with_depth, environment=x["environment"],
        object_features=net.encode_objects(x["objects"]), reference=kv,
    )
    assert base.abs().mean() > 1e-3
    assert torch.equal(full, base)


@torch.no_grad()
@pytest.mark.parametrize("module", ["env_conv_in", "object_guider", "spatial_blend", "depth", "temporal"])
def test_each_trained_module_changes_output(loaded, module):
    """The same check can fail: perturbing any one AA2 module moves the output (so the modules are wired in)."""
    net, pose, reference = copy.deepcopy(loaded["denoising"]), copy.deepcopy(loaded["pose"]), loaded["reference"]
    x = inputs(seed=1)
    base, kv = base_and_aa2(net, pose, reference, x)
    g = torch.Generator().manual_seed(0)
    targets = {
        "env_conv_in": [net.env_conv_in],
        "object_guider": [net.object_guider, net.spatial_blend_mid, net.spatial_blend_up],
        "spatial_blend": [net.spatial_blend_mid, net.spatial_blend_up],
        "depth": [pose.depth_attention],
        "temporal": [pose.temporal],
    }[module]
    for target in targets:
        for p in target.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    f = x["sample"].shape[2]
    out = net(
        x["sample"], 500, x["context"], pose_features=pose(x["skeleton"], x["depth"], num_frames=f),
        environment=x["environment"], object_features=net.encode_objects(x["objects"]), reference=kv,
    )
    assert (out - base).abs().max() > 1e-4


@torch.no_grad()
def test_environment_enters_where_the_pose_features_do(loaded):
    """A trained env_conv_in adds conv(environment latent, mask) right after conv_in, where the pose features
    go: the output equals the same net given those conv features as extra pose features and no environment.

    Mutations seen failing: environment channels reversed before env_conv_in; the environment added after
    the first down block instead of after conv_in."""
    net, pose = copy.deepcopy(loaded["denoising"]), loaded["pose"]
    x = inputs(seed=4, frames=2)
    net.env_conv_in.weight.copy_(0.1 * torch.randn(net.env_conv_in.weight.shape, generator=torch.Generator().manual_seed(0)))
    features = pose(x["skeleton"][:2], None, num_frames=2)
    out = net(x["sample"], 500, x["context"], pose_features=features, environment=x["environment"])
    env = x["environment"].transpose(1, 2).flatten(0, 1)  # (b f) c h w, frames of one sample adjacent
    extra = torch.nn.functional.conv2d(env, net.env_conv_in.weight, padding=1)
    expected = net(x["sample"], 500, x["context"], pose_features=features + extra)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert extra.abs().mean() > 1e-2  # the environment's share is not negligible, so the match above means something


@torch.no_grad()
def test_single_frame_without_motion_equals_diffusers_unet(loaded):
    """With frames=1, no motion module and no reference, our block walk is diffusers' own UNet forward."""
    unet = copy.deepcopy(loaded["denoising"].unet)
    net = DenoisingNet(unet, motion=None)
    x = inputs(frames=1)
    ours = net(x["sample"], 321, x["context"])[:, :, 0]
    from diffusers.models.attention_processor import AttnProcessor2_0

    plain = copy.deepcopy(unet)
    plain.set_attn_processor(AttnProcessor2_0())
    theirs = plain(x["sample"][:, :, 0], 321, encoder_hidden_states=x["context"]).sample
    assert torch.equal(ours, theirs)


@torch.no_grad()
def test_odd_latent_size_matches_diffusers(loaded):
    """Latents that are not a multiple of 8 take diffusers' explicit upsample sizes."""
    unet = copy.deepcopy(loaded["denoising"].unet)
    net = DenoisingNet(unet, motion=None)
    x = inputs(frames=1, h=9, w=7)
    ours = net(x["sample"], 10, x["context"])[:, :, 0]
    theirs = unet(x["sample"][:, :, 0], 10, encoder_hidden_states=x["context"]).sample
    assert ours.shape == (1, 4, 9, 7)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@torch.no_grad()
def test_reference_rows_skip_reference_for_unconditional(loaded):
    """A CFG batch [uncond, cond]: the uncond sample sees no reference tokens, the cond sample does."""
    net, reference = loaded["denoising"], loaded["reference"]
    x = inputs(seed=2)
    kv = net.reference_kv(reference(x["ref_latents"], x["context"]))
    zero = torch.zeros_like(x["context"])
    batch = net(x["sample"].repeat(2, 1, 1, 1, 1), 500, torch.cat([zero, x["context"]]), reference=kv,
                reference_rows=torch.tensor([False, True]))
    uncond = net(x["sample"], 500, zero)
    cond = net(x["sample"], 500, x["context"], reference=kv)
    torch.testing.assert_close(batch[0:1], uncond, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batch[1:2], cond, rtol=1e-4, atol=1e-5)
    assert (cond - net(x["sample"], 500, x["context"])).abs().max() > 1e-3  # the reference matters
