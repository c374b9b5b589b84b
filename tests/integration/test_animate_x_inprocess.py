"""The Animate-X nodes inside the real ComfyUI (in-process, CPU): the loader's ComfyUI objects are the library's
models (the VAE gives the latents and pixels of the SD2.1 VAE the library loads, the UNet and image encoder sit in
``ModelPatcher``s), and the chain's latents are the library's ``Sampler``'s on the same inputs."""

import os
import sys

import pytest
import torch

from conftest import ROOT, comfyui_path, pose_keypoints, write_animate_x_files

comfyui_path()
SIZE, FRAMES = 64, 3


@pytest.fixture(scope="module")
def animate_x(comfy, tmp_path_factory):
    nodes, _ = comfy
    import folder_paths

    models = tmp_path_factory.mktemp("animate_x_models")
    write_animate_x_files(str(models))
    for folder in ("diffusion_models", "checkpoints", "clip_vision"):
        folder_paths.add_model_folder_path(folder, str(models / folder), is_default=True)
    m = nodes.NODE_CLASS_MAPPINGS
    model, vae = m["AA2AnimateXLoader"]().load("animate-x_ckpt.pth", "v2-1_512-ema-pruned.ckpt",
                                              "open_clip_pytorch_model.bin", "fp32")
    return m, model, vae, models


def test_loader_gives_model_patchers_and_the_sd21_vae_as_comfyuis(animate_x):
    import comfy.model_patcher
    import comfy.sd

    sys.path.insert(0, ROOT)
    from aa2_core.families.animate_x.loader import load_animate_x_vae
    from aa2_core.pipeline import images

    m, model, vae, models = animate_x
    assert model["family"] == "animate-x" and isinstance(vae, comfy.sd.VAE)
    assert all(isinstance(p, comfy.model_patcher.ModelPatcher) for p in model["patchers"].values())
    assert model["text"] is not None and model["text"].shape == (1, 77, 32)  # zero_y from the .bin's text tower
    library = load_animate_x_vae(os.path.join(models, "checkpoints", "v2-1_512-ema-pruned.ckpt")).float()
    pixels = torch.rand(2, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(0))
    ours = vae.encode(pixels).float() * 0.18215
    expected = images.vae_encode(library, pixels)
    assert torch.allclose(ours, expected, atol=1e-4, rtol=1e-4), (ours - expected).abs().max()
    decoded = vae.decode(expected / 0.18215).float()
    assert torch.allclose(decoded, images.vae_decode(library, expected), atol=1e-4), "decode differs"


def test_chain_latents_are_the_librarys(animate_x):
    sys.path.insert(0, ROOT)
    from aa2_core.families.animate_x import diffusion
    from aa2_core.families.animate_x.files import load_animate_x_family
    from aa2_core.pipeline.options import SamplerSettings, Stitching
    from aa2_core.pipeline.prepare import prepare_conditions
    from aa2_core.pipeline.sampler import Sampler

    m, model, vae, models = animate_x
    g = torch.Generator().manual_seed(1)
    image, skeleton, driving = (torch.rand(*s, generator=g) for s in ((1, 80, 72, 3), (FRAMES, SIZE, SIZE, 3), (FRAMES, SIZE, SIZE, 3)))
    (reference,) = m["AA2AnimateXReference"]().encode(model, vae, image, SIZE, SIZE, reference_keypoints=pose_keypoints(1, 3.0))
    (pose,) = m["AA2PoseCondition"]().build(skeleton)
    (pose,) = m["AA2AnimateXImplicitPose"]().build(model, pose, driving, pose_keypoints(FRAMES))
    (latent,) = m["AA2Sampler"]().sample(model, reference, pose, vae, 5, 2, 2.5, "ddim", "moore", False, 1)
    bundle = load_animate_x_family({"unet": os.path.join(models, "diffusion_models", "animate-x_ckpt.pth"),
                                    "vae": os.path.join(models, "checkpoints", "v2-1_512-ema-pruned.ckpt"),
                                    "clip_vision": os.path.join(models, "clip_vision", "open_clip_pytorch_model.bin")})
    cond = prepare_conditions(reference, skeleton, lambda x: vae.encode(x).float() * 0.18215,
                              keypoints=pose["keypoints"], driving_features=pose["driving_features"])
    settings = SamplerSettings(steps=2, cfg=2.5, seed=5, scheduler="ddim", schedule="animate_x", stitching=Stitching(),
                               environment_mode=False)
    noise = diffusion.initial_noise(torch.Generator().manual_seed(5), FRAMES, SIZE // 8, SIZE // 8)
    expected = Sampler(bundle.models, settings).sample(cond, noise)
    assert torch.allclose(latent["samples"] * 0.18215, expected, atol=1e-5), (latent["samples"] * 0.18215 - expected).abs().max()
