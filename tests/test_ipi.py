"""Animate-X's Implicit Pose Indicator (and Mamba) in the pack: no-op untrained, saved and loaded through the one
assembly, clear errors when a file lacks them, and gradients that reach them."""

import copy

import pytest
import torch

from aa2_core.checkpoints.aa2_file import load_aa2_file, save_aa2_file
from aa2_core.checkpoints.assembly import ModelSet, assemble, build_modules, describe_modules, module_parameters
from aa2_core.errors import AA2Error
from aa2_core.models import DenoisingNet
from aa2_core.models.mamba_temporal import MambaConfig
from aa2_core.tiny import TINY_IPI_CONFIG
from conftest import inputs, sampler_conditions, sampler_models, sampler_settings
from test_noop_invariant import base_and_aa2

TINY_IPI = TINY_IPI_CONFIG


def driving(frames, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(frames, 18, 3, generator=g), torch.randn(frames, 1, 32, generator=g)


def assemble_tiny(moore_files, aa2_modules=None):
    return assemble(moore_files["denoising_unet"], moore_files["reference_unet"], moore_files["pose_guider"],
                    moore_files["motion_module"], aa2_modules=aa2_modules)


@torch.no_grad()
def test_untrained_ipi_and_mamba_are_exact_noop(loaded):
    """Every AA2 input on, plus the IPI's motion tokens and Mamba in every slot: the base output bit for bit.

    Mutation seen failing: proj_out of the motion attention left at its default init."""
    net, pose, reference = copy.deepcopy(loaded["denoising"]), loaded["pose"], loaded["reference"]
    x = inputs(frames=3)
    base, kv = base_and_aa2(net, pose, reference, x)
    net.add_ipi(TINY_IPI)
    net.add_mamba(MambaConfig())
    keypoints, features = driving(3)
    tokens = net.encode_motion(keypoints, features, 3)
    assert tokens.shape == (3, 4, 32) and tokens.abs().mean() > 1e-2  # the tokens themselves are not zero
    out = net(x["sample"], 500, x["context"], pose_features=pose(x["skeleton"], None, num_frames=3), reference=kv,
              motion_tokens=tokens)
    assert torch.equal(out, base)


def trained_file(path, moore_files, seed=0):
    """An aa2-modules file holding a non-zero IPI and Mamba layer (mid slot); returns the in-memory models."""
    models = assemble_tiny(moore_files)
    build_modules(models, ["ipi", "mamba"], ipi=TINY_IPI, mamba=MambaConfig(slots=("mid_0",), bidirectional=False))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in module_parameters(models, ["ipi", "mamba"]):
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    parts = {"denoising": {k: v for k, v in models.denoising.aa2_state_dict().items() if k.startswith(("ipi.", "mamba."))}}
    save_aa2_file(str(path), parts, architecture=models.denoising.architecture())
    return models


@torch.no_grad()
def test_round_trip_through_assembly_changes_the_output(tmp_path, moore_files):
    """Saved, then loaded by the one assembly: the modules are rebuilt from the metadata, hold the same
    weights, and move the output away from the base."""
    path = tmp_path / "animate_x.safetensors"
    trained = trained_file(path, moore_files)
    _, metadata = load_aa2_file(str(path))
    assert metadata["module_groups"] == ["ipi", "mamba"] and metadata["mamba"]["slots"] == ["mid_0"]
    assert metadata["ipi"]["layers"] == 2

    loaded = assemble_tiny(moore_files, str(path))
    assert "Implicit Pose Indicator" in describe_modules(loaded) and "Mamba" in describe_modules(loaded)
    state = loaded.denoising.state_dict()
    saved = {k: v for k, v in trained.denoising.state_dict().items() if k.startswith(("ipi.", "mamba."))}
    assert saved and all(torch.equal(state[k], v) for k, v in saved.items())

    x = inputs(frames=3, seed=2)
    keypoints, features = driving(3, seed=1)
    net, base_net = loaded.denoising, assemble_tiny(moore_files).denoising
    out = net(x["sample"], 500, x["context"], motion_tokens=net.encode_motion(keypoints, features, 3))
    base = base_net(x["sample"], 500, x["context"])
    assert (out - base).abs().max() > 1e-4
    no_ipi = net(x["sample"], 500, x["context"])  # IPI off: only the Mamba layer differs from the base
    assert (no_ipi - base).abs().max() > 1e-5 and (out - no_ipi).abs().max() > 1e-5


def test_file_without_the_ipi_names_the_module_and_the_file(tmp_path, moore_files):
    """A workflow turns the IPI on, but the aa2-modules file holds only the AA2 modules."""
    models = assemble_tiny(moore_files)
    path = tmp_path / "aa2_only.safetensors"
    save_aa2_file(str(path), {"denoising": models.denoising.aa2_state_dict()})
    models = assemble_tiny(moore_files, str(path))
    from aa2_core.pipeline.sampler import Sampler

    cond = sampler_conditions(models.reference, frames=2)
    cond.driving_keypoints, cond.driving_features = driving(2)
    sampler = Sampler(sampler_models({"denoising": models.denoising, "pose": models.pose}), sampler_settings(steps=1))
    with pytest.raises(AA2Error, match=r"Implicit Pose Indicator.*aa2_only\.safetensors holds no 'ipi'"):
        sampler.sample(cond)
    with pytest.raises(AA2Error, match=r"Mamba temporal layers.*aa2_only\.safetensors"):
        module_parameters(models, ["mamba"])


def test_writing_ipi_weights_without_their_config_is_refused(tmp_path, moore_files):
    models = assemble_tiny(moore_files)
    build_modules(models, ["ipi"], ipi=TINY_IPI)
    with pytest.raises(ValueError, match="holds ipi weights but no config"):
        save_aa2_file(str(tmp_path / "x.safetensors"), {"denoising": models.denoising.aa2_state_dict()})


def test_module_groups_list_only_their_parameters(moore_files):
    models = assemble_tiny(moore_files)
    build_modules(models, ["ipi", "mamba"], ipi=TINY_IPI)
    names = [n for n, _ in module_parameters(models, ["ipi", "mamba"])]
    assert names and all(n.startswith(("denoising.ipi.", "denoising.mamba.")) for n in names)
    assert any(".attn_up." in n for n in names) and any("forward_mixer.A_log" in n for n in names)
    aa2 = [n for n, _ in module_parameters(models, ["aa2"])]
    assert "denoising.env_conv_in.weight" in aa2 and not set(aa2) & set(names)


def test_ipi_and_mamba_parameters_alone_learn(loaded):
    """A few Adam steps on the IPI and Mamba parameters only lower an MSE against a fixed target: the
    gradients reach them through the zero-initialised output projections. (No motion module, to save time.)"""
    net = DenoisingNet(copy.deepcopy(loaded["denoising"].unet), motion=None)
    models = ModelSet(net, loaded["reference"], loaded["pose"])
    build_modules(models, ["ipi", "mamba"], ipi=TINY_IPI, mamba=MambaConfig(slots=("mid",), bidirectional=False))
    net.requires_grad_(False)
    params = [p for _, p in module_parameters(models, ["ipi", "mamba"])]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=3e-3)
    x = inputs(frames=2, seed=7)
    keypoints, features = driving(2, seed=3)
    with torch.no_grad():
        target = net(x["sample"], 500, x["context"]) + 0.1 * torch.randn(x["sample"].shape, generator=torch.Generator().manual_seed(0))
    query_before = net.ipi.indicator.queries.detach().clone()
    losses = []
    for _ in range(4):
        out = net(x["sample"], 500, x["context"], motion_tokens=net.encode_motion(keypoints, features, 2))
        loss = torch.nn.functional.mse_loss(out, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses
    assert not torch.equal(net.ipi.indicator.queries, query_before)  # the gradient reached the IPI's own queries


def test_prepare_carries_the_ipi_inputs_both_or_neither():
    """Conditions get the driving keypoints (normalised, missing joints zero) and CLIP features together."""
    import numpy as np

    from aa2_core.conditions.keypoints import Pose
    from aa2_core.pipeline.prepare import Reference, driving_clip_features, keypoint_tensor, prepare_conditions

    body = np.zeros((18, 3))
    body[1] = (64, 16, 0.9)  # neck at x=64, y=16 on a 64 x 128 (h x w) canvas; every other joint missing
    keypoints = keypoint_tensor([Pose(body, 64, 128)] * 2)
    assert keypoints.shape == (2, 18, 3) and torch.equal(keypoints[0, 1], torch.tensor([0.5, 0.25, 0.9]))
    assert keypoints[:, 0].abs().sum() == 0

    reference = Reference(torch.zeros(1, 4, 8, 8), torch.zeros(1, 1, 32), {})
    skeleton = torch.rand(2, 64, 64, 3)
    frames = torch.rand(2, 64, 64, 3)
    features = driving_clip_features(frames, lambda image: image.mean() * torch.ones(1, 1, 32))
    assert features.shape == (2, 1, 32) and not torch.equal(features[0], features[1])
    cond = prepare_conditions(reference, skeleton, lambda x: x, keypoints=keypoints, driving_features=features)
    assert torch.equal(cond.driving_keypoints, keypoints) and torch.equal(cond.driving_features, features)
    assert prepare_conditions(reference, skeleton, lambda x: x).driving_keypoints is None  # IPI off
    with pytest.raises(AA2Error, match="both the driving keypoints and the driving frames' CLIP features"):
        prepare_conditions(reference, skeleton, lambda x: x, keypoints=keypoints)
    with pytest.raises(AA2Error, match="driving keypoints has 1 frames but the pose sequence has 2"):
        prepare_conditions(reference, skeleton, lambda x: x, keypoints=keypoints[:1], driving_features=features)


@torch.no_grad()
def test_trained_ipi_tokens_follow_the_keypoints():
    """With a non-zero last keypoint layer (as after training), changing only the keypoints of one frame
    changes that frame's motion tokens; untrained, the keypoints do not reach the tokens yet. Mutation it catches: the IPI ignoring its keypoints (queries = q_l)."""
    from aa2_core.models.implicit_pose_indicator import PoseIndicator

    torch.manual_seed(0)
    indicator = PoseIndicator(TINY_IPI_CONFIG).eval()
    frames = 3
    g = torch.Generator().manual_seed(1)
    keypoints = torch.rand(frames, TINY_IPI_CONFIG.keypoints, 3, generator=g)
    features = torch.randn(frames, 5, TINY_IPI_CONFIG.feature_dim, generator=g)
    moved = keypoints.clone()
    moved[1, :, :2] += 0.25  # frame 1's joints shift; the CLIP features stay

    untrained = indicator(keypoints, features, frames)
    torch.testing.assert_close(indicator(moved, features, frames), untrained, rtol=0, atol=0)  # zero-init layer

    torch.nn.init.normal_(indicator.keypoint_encoder.to_tokens[-1].weight, std=0.2)
    before, after = indicator(keypoints, features, frames), indicator(moved, features, frames)
    change = (after - before).abs().amax(dim=(1, 2))
    assert change[1] > 1e-2, change  # the moved frame's tokens follow its joints
    assert not torch.equal(before, untrained)


@torch.no_grad()
def test_unconditional_branch_gets_the_tokens_of_zero_pose_inputs(moore_files):
    """CFG as the released Animate-X: the unconditional branch's motion tokens come from zero keypoints and
    features through the live indicator, not the driving ones; batched and two-pass agree. Mutation it catches:
    the conditional tokens handed to both branches."""
    from aa2_core.families.moore import MooreModels

    models = assemble_tiny(moore_files)
    build_modules(models, ["ipi"], ipi=TINY_IPI)
    torch.manual_seed(0)
    for _, p in module_parameters(models, ["ipi"]):  # as trained: non-zero everywhere
        p.add_(torch.randn_like(p) * 0.1)
    family = MooreModels(models.denoising, models.pose)
    cond = sampler_conditions(models.reference, frames=3)
    cond.driving_keypoints, cond.driving_features = driving(3, seed=4)
    inputs = family.clip_inputs(cond, torch.arange(3), "cpu", torch.float32)
    state = family.begin(cond, "cpu", torch.float32)
    x = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    uncond, conditional = family.predict(state, x, 500, inputs, guided=True, batched=True)
    uncond_two, conditional_two = family.predict(state, x, 500, inputs, guided=True, batched=False)
    torch.testing.assert_close(uncond, uncond_two, rtol=1e-3, atol=1e-4)  # batched attention rounds differently
    torch.testing.assert_close(conditional, conditional_two, rtol=1e-3, atol=1e-4)

    net = models.denoising
    kp, feats = cond.driving_keypoints, cond.driving_features
    pose = inputs["pose_features"]
    zero = torch.zeros_like(state.context)
    expected = net(x, 500, zero, pose_features=pose, motion_tokens=net.encode_motion(torch.zeros_like(kp), torch.zeros_like(feats), 3))
    torch.testing.assert_close(uncond_two, expected, rtol=1e-5, atol=1e-6)
    with_driving_tokens = net(x, 500, zero, pose_features=pose, motion_tokens=net.encode_motion(kp, feats, 3))
    assert (uncond - with_driving_tokens).abs().max() > 1e-2
