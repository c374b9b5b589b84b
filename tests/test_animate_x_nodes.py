"""The Animate-X nodes (nodes/animate_x_family.py) and the AA2 Sampler's Animate-X path, without ComfyUI.

Tiny released-layout files (``cli.animate_x.write_tiny_animate_x_dir``) loaded by ``load_animate_x_family``; the
nodes get fake patchers (``.model``) and a VAE whose ``encode`` is the SD2.1 VAE's (ComfyUI's VAE returns unscaled
latents), and ComfyUI's runtime hooks (device loading, progress) are replaced in the node modules. The tests in
tests/integration run the same nodes in the real host.
"""

import sys
import types

import pytest
import torch

SIZE, FRAMES = 64, 3


def pose_keypoints(frames, shift=0.0):
    return [{"people": [{"pose_keypoints_2d": [v for j in range(18) for v in (20 + 2 * (j % 6) + t + shift, 10 + 2.5 * j, 1.0)]}],
             "canvas_height": SIZE, "canvas_width": SIZE} for t in range(frames)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from aa2_core.cli.animate_x import write_tiny_animate_x_dir
    from aa2_core.families.animate_x.files import load_animate_x_family

    folder = tmp_path_factory.mktemp("animate_x_models")
    write_tiny_animate_x_dir(str(folder))
    return load_animate_x_family(str(folder))


class FakeVAE:
    """ComfyUI's VAE contract: IMAGE -> unscaled latents."""

    def __init__(self, vae):
        self.vae = vae

    def encode(self, pixels):
        from aa2_core.pipeline import images

        return images.vae_encode(self.vae, pixels) / 0.18215


@pytest.fixture
def nodes(pack, monkeypatch):
    """(pack nodes module, animate_x_family module, sampler module, recorded progress ticks) with ComfyUI's runtime
    hooks replaced: models stay on the CPU, each step is recorded."""
    ticks = []
    family = sys.modules[f"{pack.__name__}.nodes.animate_x_family"]
    sampler = sys.modules[f"{pack.__name__}.nodes.sampler"]
    for module in (family, sampler):
        monkeypatch.setattr(module, "load_on_device", lambda *p, **k: torch.device("cpu"))
    monkeypatch.setattr(sampler, "intermediate", lambda t: t)
    monkeypatch.setattr(sampler, "step_callback", lambda total, device: lambda done, n, latents: ticks.append((done, n)))
    return pack, family, sampler, ticks


def model_dict(bundle):
    patcher = lambda m: types.SimpleNamespace(model=m)  # noqa: E731
    return {"family": "animate-x", "patchers": {"unet": patcher(bundle.models.unet), "image_encoder": patcher(bundle.image_encoder)},
            "dtype": torch.float32, "text": bundle.models.text, "reference_latent": False}


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(image=torch.rand(1, 72, 56, 3, generator=g), skeleton=torch.rand(FRAMES, SIZE, SIZE, 3, generator=g),
                driving=torch.rand(FRAMES, SIZE, SIZE, 3, generator=g))


def build(nodes, bundle, ipi=True, ref_keypoints=True):
    pack, family, _, _ = nodes
    x = inputs()
    model, vae = model_dict(bundle), FakeVAE(bundle.vae)
    reference = family.AA2AnimateXReference().encode(model, vae, x["image"], SIZE, SIZE,
                                                     reference_keypoints=pose_keypoints(1, 3.0) if ref_keypoints else None)[0]
    pose = {"skeleton": x["skeleton"], "depth": None}
    if ipi:
        pose = family.AA2AnimateXImplicitPose().build(model, pose, x["driving"], pose_keypoints(FRAMES))[0]
    return model, vae, reference, pose, x


SAMPLER_ARGS = dict(seed=3, steps=2, cfg=2.5, scheduler="ddim", environment_mode=True, feather=1, batch_cfg=True)


def test_nodes_are_registered_with_their_names(pack):
    names = pack.NODE_DISPLAY_NAME_MAPPINGS
    assert names["AA2AnimateXLoader"] == "AA2 Animate-X Loader (released weights)"
    assert names["AA2AnimateXReference"] == "AA2 Animate-X Reference"
    assert pack.NODE_CLASS_MAPPINGS["AA2AnimateXLoader"].RETURN_TYPES == ("AA2_MODEL", "VAE")


def test_loader_lists_each_role_from_its_folders(pack, monkeypatch):
    fake = sys.modules["folder_paths"]
    listing = {"diffusion_models": ["animate-x_ckpt.pth"], "animate_x": ["animate-x_ckpt.safetensors", "animate_x_zero_y.safetensors"],
               "vae": ["sd21_vae.safetensors"], "checkpoints": ["v2-1_512-ema-pruned.ckpt"],
               "clip_vision": ["open_clip_pytorch_model.bin"]}
    for folder in listing:
        monkeypatch.setitem(fake.folder_names_and_paths, folder, ([f"/{folder}"], set()))
    monkeypatch.setattr(fake, "get_filename_list", lambda folder: listing[folder])
    spec = pack.NODE_CLASS_MAPPINGS["AA2AnimateXLoader"].INPUT_TYPES()
    assert spec["required"]["unet"][0] == ["animate-x_ckpt.pth", "animate-x_ckpt.safetensors", "animate_x_zero_y.safetensors"]
    assert spec["required"]["vae"][0] == ["sd21_vae.safetensors", "v2-1_512-ema-pruned.ckpt"]
    assert spec["required"]["clip_vision"][0] == ["open_clip_pytorch_model.bin"]
    assert spec["optional"]["zero_y"][0] == ["none", "animate-x_ckpt.safetensors", "animate_x_zero_y.safetensors"]


def test_loader_folders_are_the_manifests_and_the_librarys(pack):
    """Every Animate-X file the manifest (download, workflows) puts somewhere is in a folder the loader lists, and
    the loader lists the library's folders (files.py)."""
    from aa2_core import model_manifest as mm
    from aa2_core.families.animate_x import files

    family = sys.modules[f"{pack.__name__}.nodes.animate_x_family"]
    roles = {"animate-x-unet": family.UNET_FOLDERS, "animate-x-sd21": family.VAE_FOLDERS, "animate-x-open-clip": family.CLIP_FOLDERS}
    for entry in mm.select("animate-x"):
        if entry.key in roles:
            assert entry.folder in roles[entry.key], entry
    assert set(roles) <= {e.key for e in mm.select("animate-x")}
    assert family.UNET_FOLDERS == files.UNET_FOLDERS and family.VAE_FOLDERS == files.VAE_FOLDERS
    assert family.CLIP_FOLDERS == files.CLIP_FOLDERS and files.ZERO_Y_FOLDERS == (family.ANIMATE_X_FOLDER,)


def test_sampler_node_runs_the_family_with_its_schedule_and_the_released_noise(nodes, bundle):
    """The node's latents are the library's: Sampler over AnimateXModels, Schedule.ANIMATE_X (the widget left at
    moore), the released entrance's noise for the seed, environment mode with the SD2.1-encoded scene; one
    progress tick per step."""
    from aa2_core.families.animate_x import diffusion
    from aa2_core.families.animate_x.family import AnimateXModels
    from aa2_core.pipeline.options import SamplerSettings, Stitching
    from aa2_core.pipeline.prepare import prepare_conditions
    from aa2_core.pipeline.sampler import Sampler

    pack, family, sampler, ticks = nodes
    model, vae, reference, pose, x = build(nodes, bundle)
    mask = torch.zeros(FRAMES, SIZE, SIZE)
    mask[:, 16:48, 16:48] = 1
    env = x["driving"] * (1 - mask[..., None])
    out = sampler.AA2Sampler().sample(model, reference, pose, vae, schedule="moore", environment=env,
                                      environment_mask=mask, **SAMPLER_ARGS)[0]["samples"]
    assert ticks == [(1, 2), (2, 2)]
    encode = lambda v: sampler.vae_encode(vae, v)  # noqa: E731
    cond = prepare_conditions(reference, x["skeleton"], encode, environment=env, environment_mask=mask, feather=1,
                              keypoints=pose["keypoints"], driving_features=pose["driving_features"])
    settings = SamplerSettings(steps=2, cfg=2.5, seed=3, scheduler="ddim", schedule="animate_x", stitching=Stitching(),
                               environment_mode=True, cfg_batch=True)
    noise = diffusion.initial_noise(torch.Generator().manual_seed(3), FRAMES, SIZE // 8, SIZE // 8)
    expected = Sampler(AnimateXModels(bundle.models.unet, text=bundle.models.text), settings).sample(cond, noise)
    assert torch.equal(out, expected / 0.18215)
    explicit = sampler.AA2Sampler().sample(model, reference, pose, vae, schedule="animate_x", **SAMPLER_ARGS)[0]["samples"]
    sd15 = sampler.AA2Sampler().sample(model, reference, pose, vae, schedule="sd15", **SAMPLER_ARGS)[0]["samples"]
    assert not torch.equal(explicit, sd15)  # the schedule widget still means what it says


def test_ipi_node_gives_released_keypoints_and_clip_features_and_leaves_its_inputs(nodes, bundle):
    from aa2_core.conditions.keypoints import parse_pose_keypoint
    from aa2_core.pipeline.prepare import keypoint_tensor

    pack, family, _, _ = nodes
    model, x = model_dict(bundle), inputs()
    kp = pose_keypoints(FRAMES)
    kp[1]["people"][0]["pose_keypoints_2d"][3:6] = [0, 0, 0]  # joint 1 missing in frame 1
    pose = {"skeleton": x["skeleton"], "depth": None}
    driving = x["driving"].clone()
    out = family.AA2AnimateXImplicitPose().build(model, pose, driving, kp)[0]
    assert set(pose) == {"skeleton", "depth"} and torch.equal(driving, x["driving"])  # inputs unchanged
    assert torch.equal(out["keypoints"], keypoint_tensor(parse_pose_keypoint(kp), missing=-1.0))
    assert out["keypoints"][1, 1, 0] == -1 and out["driving_features"].shape == (FRAMES, 1, 32)
    assert torch.equal(out["driving_features"][0], bundle.image_encoder.embed(x["driving"][:1])[0])
    assert family.AA2AnimateXImplicitPose().build(model, pose, driving, kp, enabled=False)[0] is pose
    with pytest.raises(ValueError, match=r"^AA2 Animate-X Implicit Pose: driving_keypoints has 2 frames but the pose has 3"):
        family.AA2AnimateXImplicitPose().build(model, pose, driving, kp[:2])


def test_reference_node_holds_the_released_reference_inputs(nodes, bundle):
    from aa2_core.families.animate_x.family import animate_x_reference

    pack, family, sampler, _ = nodes
    model, vae, reference, _, x = build(nodes, bundle)
    assert reference.tokens["keypoints"].shape == (1, 18, 3) and reference.tokens["pose"].shape == (1, 3, SIZE, SIZE)
    assert torch.equal(x["image"], inputs()["image"])  # the node left its image as it was
    kp = pose_keypoints(1, 3.0)
    family.AA2AnimateXReference().encode(model, vae, x["image"], SIZE, SIZE, reference_keypoints=kp)
    assert kp == pose_keypoints(1, 3.0)
    plain = family.AA2AnimateXReference().encode(model, vae, x["image"], SIZE, SIZE)[0]
    expected = animate_x_reference(x["image"], (SIZE, SIZE), lambda v: sampler.vae_encode(vae, v), bundle.image_encoder.embed)
    assert set(plain.tokens) == {"local_image"} and torch.equal(plain.latents, expected.latents)
    assert torch.equal(plain.image_embeds, expected.image_embeds) and torch.equal(plain.latents, reference.latents)
    with pytest.raises(ValueError, match="^AA2 Animate-X Reference: reference_keypoints has no person"):
        family.AA2AnimateXReference().encode(model, vae, x["image"], SIZE, SIZE, reference_keypoints=[{"people": [], "canvas_height": SIZE, "canvas_width": SIZE}])


def test_ipi_without_reference_keypoints_is_refused_naming_the_input(nodes, bundle):
    _, _, sampler, _ = nodes
    model, vae, reference, pose, _ = build(nodes, bundle, ref_keypoints=False)
    with pytest.raises(ValueError, match=r"^AA2 Sampler: pose carries driving keypoints .* connect reference_keypoints on AA2 Animate-X Reference"):
        sampler.AA2Sampler().sample(model, reference, pose, vae, schedule="moore", **SAMPLER_ARGS)


def test_moore_pieces_with_the_animate_x_family_are_refused(nodes, bundle):
    from aa2_core.pipeline.prepare import Reference

    _, family, sampler, _ = nodes
    model, vae, _, pose, x = build(nodes, bundle, ipi=False)
    moore_reference = Reference(torch.zeros(1, 4, 8, 8), torch.zeros(1, 1, 32), {"tokens": torch.zeros(1)})
    with pytest.raises(ValueError, match="^AA2 Sampler: reference comes from AA2 ReferenceNet"):
        sampler.AA2Sampler().sample(model, moore_reference, pose, vae, schedule="moore", **SAMPLER_ARGS)
    moore_model = {"patchers": {}, "dtype": torch.float32}
    with pytest.raises(ValueError, match="^AA2 Animate-X Reference: aa2_model comes from AA2 Model Loader"):
        family.AA2AnimateXReference().encode(moore_model, vae, x["image"], SIZE, SIZE)
    with pytest.raises(ValueError, match="^AA2 Animate-X Implicit Pose: aa2_model comes from AA2 Model Loader"):
        family.AA2AnimateXImplicitPose().build(moore_model, pose, x["driving"], pose_keypoints(FRAMES))


def test_reference_size_widgets_take_comfyuis_max_resolution(pack, monkeypatch):
    cls = pack.NODE_CLASS_MAPPINGS["AA2AnimateXReference"]
    host = types.ModuleType("nodes")
    host.MAX_RESOLUTION = 8192
    monkeypatch.setitem(sys.modules, "nodes", host)
    spec = cls.INPUT_TYPES()["required"]
    assert spec["width"][1]["max"] == spec["height"][1]["max"] == 8192
