"""One path from pixels to the network: the command line, the node chain and the trainer build the same
network inputs from the same pixels, and the node chain gives the command line's latents."""

from types import SimpleNamespace

import pytest
import torch

from aa2_core.check import write_tiny_models_dir
from aa2_core.checkpoints.assembly import assemble_from_folder
from aa2_core.errors import AA2Error
from aa2_core.pipeline import images
from aa2_core.cli.animate import build_conditions
from aa2_core.pipeline.options import SamplerSettings, Stitching
from aa2_core.pipeline.prepare import DEFAULT_FEATHER, environment_frames, prepare_conditions
from aa2_core.families.moore import MooreModels as Models
from aa2_core.pipeline.sampler import Sampler
from aa2_core.training.data import TrainingClip
from aa2_core.training.train import clip_conditions

SIZE = (64, 48)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("models")
    write_tiny_models_dir(str(path))
    return str(path)


@pytest.fixture(scope="module")
def pixels():
    g = torch.Generator().manual_seed(3)
    frames = 5
    mask = torch.zeros(frames, *SIZE, 3)
    mask[:, 16:50, 12:32] = 1
    return dict(ref=torch.rand(1, 70, 52, 3, generator=g), poses=torch.rand(frames, *SIZE, 3, generator=g),
                driving=torch.rand(frames, *SIZE, 3, generator=g), mask=mask)


def assert_same_conditions(a, b):
    assert torch.equal(a.reference.latents, b.reference.latents)
    assert torch.equal(a.reference.image_embeds, b.reference.image_embeds)
    assert a.reference.tokens.keys() == b.reference.tokens.keys()
    assert all(torch.equal(a.reference.tokens[k], b.reference.tokens[k]) for k in a.reference.tokens)
    for name in ("skeleton", "depth", "environment_latents", "environment_mask", "object_latents"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None) and (x is None or torch.equal(x, y)), name


def test_cli_and_trainer_build_the_same_network_inputs(models_dir, pixels):
    models = assemble_from_folder(models_dir)
    cli, scene = build_conditions(models, pixels["ref"], pixels["poses"], pixels["driving"], pixels["mask"])
    env, env_mask = environment_frames(pixels["driving"], pixels["mask"][..., 0], SIZE)
    assert torch.equal(scene[1], env_mask)
    clip = TrainingClip(frames=pixels["driving"], reference=pixels["ref"], environment=env,
                        environment_mask=env_mask, objects=None, skeleton=pixels["poses"], depth=None)
    with torch.no_grad():
        trainer = clip_conditions(models, clip, "cpu", torch.float32)
    assert_same_conditions(cli, trainer)
    # the latent mask has its soft edge in both (the default the sampler node shows too)
    soft = cli.environment_mask
    assert DEFAULT_FEATHER > 0 and ((soft > 0) & (soft < 1)).any() and (soft == 1).any()


def test_node_chain_gives_the_cli_latents(pack, models_dir, pixels, monkeypatch):
    """AA2 Environment Mask -> AA2 ReferenceNet -> AA2 Pose Condition -> AA2 Sampler, with a ComfyUI-like VAE
    (unscaled latents) and ComfyUI's runtime stood in for, against the command line's own path."""
    m = pack.NODE_CLASS_MAPPINGS
    from importlib import import_module

    assembly = import_module("aa2_pack.aa2_core.checkpoints.assembly")
    node_models = assembly.assemble_from_folder(models_dir)
    vae = node_models.vae

    class ComfyLikeVAE:  # ComfyUI's VAE.encode: IMAGE -> unscaled latents
        def encode(self, x):
            with torch.no_grad():
                return vae.encode(x.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean

    for module in ("aa2_pack.nodes.conditioning", "aa2_pack.nodes.sampler"):
        mod = import_module(module)
        monkeypatch.setattr(mod, "load_on_device", lambda *p, **kw: torch.device("cpu"), raising=False)
        monkeypatch.setattr(mod, "intermediate", lambda t: t, raising=False)
    monkeypatch.setattr(import_module("aa2_pack.nodes.sampler"), "step_callback", lambda total, device: None)
    patchers = {k: SimpleNamespace(model=getattr(node_models, k)) for k in ("denoising", "reference", "pose", "image_encoder")}
    aa2_model = {"patchers": patchers, "dtype": torch.float32}

    environment, env_mask = m["AA2EnvironmentMask"]().build(pixels["driving"], pixels["mask"][..., 0], 0, 0, 0.5)
    (reference,) = m["AA2ReferenceNet"]().encode(aa2_model, ComfyLikeVAE(), pixels["ref"], SIZE[1], SIZE[0])
    (pose,) = m["AA2PoseCondition"]().build(pixels["poses"])
    stitch = m["AA2StitchingOptions"]().build("motion_frames", 4, 1, 2, "pyramid")[0]
    (latent,) = m["AA2Sampler"]().sample(aa2_model, reference, pose, ComfyLikeVAE(), 11, 2, 3.5, "ddim", "moore", True,
                                         DEFAULT_FEATHER, environment=environment, environment_mask=env_mask, stitching=stitch)

    models = assemble_from_folder(models_dir)
    cond, _ = build_conditions(models, pixels["ref"], pixels["poses"], pixels["driving"], pixels["mask"])
    settings = SamplerSettings(steps=2, seed=11, stitching=Stitching(clip_length=4, motion_frames=1, context_overlap=2))
    expected = Sampler(Models(models.denoising, models.pose), settings).sample(cond)
    # ComfyUI's VAE path scales by 0.18215 and back, diffusers' by its config: equal up to float rounding
    torch.testing.assert_close(latent["samples"] * 0.18215, expected, rtol=1e-4, atol=1e-4)
    assert (expected[:, :, 2:6] - expected.mean()).abs().max() > 1e-2  # not a constant


def test_bad_inputs_name_what_was_expected(models_dir, pixels):
    models = assemble_from_folder(models_dir)
    cond, _ = build_conditions(models, pixels["ref"], pixels["poses"])

    def encode(x):
        return images.vae_encode(models.vae, x)

    with pytest.raises(AA2Error, match="environment has 4 frames but the pose sequence has 5"):
        prepare_conditions(cond.reference, pixels["poses"], encode, environment=pixels["driving"][:4], environment_mask=pixels["mask"][:4, ..., 0])
    with pytest.raises(AA2Error, match="come together"):
        prepare_conditions(cond.reference, pixels["poses"], encode, environment=pixels["driving"])
    with pytest.raises(AA2Error, match="objects has 6 frames"):
        prepare_conditions(cond.reference, pixels["poses"], encode, objects=torch.rand(6, *SIZE, 3))


def test_cli_objects_depth_and_ipi_inputs_take_the_nodes_path(models_dir, pixels):
    """animate --objects/--depth/--driving-keypoints: build_conditions gives what the node functions give
    (AA2 Object Guider's object_sequence, AA2 Pose Condition's structured_depth, the IPI node's keypoints and
    driving CLIP features), through the same prepare."""
    import numpy as np

    from aa2_core.conditions.depth import structured_depth
    from aa2_core.conditions.keypoints import Pose
    from aa2_core.conditions.objects import object_sequence
    from aa2_core.pipeline.prepare import driving_clip_features, keypoint_tensor
    from aa2_core.tiny import TINY_IPI_CONFIG

    models = assemble_from_folder(models_dir)
    frames = pixels["poses"].shape[0]
    objects_mask = torch.zeros(frames, *SIZE, 3)
    objects_mask[:, 30:40, 30:44] = 1
    depth = torch.rand(frames, *SIZE, 3, generator=torch.Generator().manual_seed(5))
    body = np.zeros((18, 3))
    body[1], body[8] = (20, 10, 0.9), (22, 40, 0.8)
    poses = [Pose(body + [[t, 0, 0]] * 18, SIZE[0], SIZE[1]) for t in range(frames)]
    models.denoising.add_ipi(TINY_IPI_CONFIG)

    cli, _ = build_conditions(models, pixels["ref"], pixels["poses"], pixels["driving"], pixels["mask"],
                              object_mask=objects_mask, depth=depth, keypoints=poses)

    def encode(x):
        return images.vae_encode(models.vae, x)

    env, env_mask = environment_frames(pixels["driving"], pixels["mask"][..., 0], SIZE)
    with torch.no_grad():
        expected = prepare_conditions(cli.reference, pixels["poses"], encode, environment=env, environment_mask=env_mask,
                                      objects=object_sequence(pixels["driving"], [objects_mask[..., 0]])[0],
                                      depth=structured_depth(depth, pixels["poses"]), keypoints=keypoint_tensor(poses),
                                      driving_features=driving_clip_features(pixels["driving"], models.image_encoder.embed))
    assert_same_conditions(cli, expected)
    assert cli.object_latents is not None and cli.depth is not None and (cli.depth > 0).any()
    assert torch.equal(cli.driving_keypoints, expected.driving_keypoints)
    assert torch.equal(cli.driving_features, expected.driving_features)
    with pytest.raises(AA2Error, match="need the driving video"):
        build_conditions(models, pixels["ref"], pixels["poses"], object_mask=objects_mask)
