"""Our nodes inside the real ComfyUI (in-process): the whole chain runs, progress ticks, Cancel stops it."""

import pytest
import torch

from conftest import AA2_ONLY_FILE, IPI_FILE, comfyui_path, pose_keypoints

comfyui_path()


def sd_vae(comfy_sd):
    """A ComfyUI VAE with the real SD layout and random weights (ComfyUI fixes the SD VAE's channel sizes)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4)
    return comfy_sd.VAE(sd=vae.state_dict())


@pytest.fixture(scope="module")
def chain(comfy):
    nodes, _ = comfy
    import comfy.sd

    m = nodes.NODE_CLASS_MAPPINGS
    (model,) = m["AA2ModelLoader"]().load("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth",
                                           "motion_module.pth", "full", "fp32", image_encoder="image_encoder.safetensors")
    vae = sd_vae(comfy.sd)
    ref_image = torch.rand(1, 80, 72, 3)
    (reference,) = m["AA2ReferenceNet"]().encode(model, vae, ref_image, 64, 64)
    return m, model, vae, reference


def test_all_our_nodes_are_registered(comfy):
    nodes, _ = comfy
    ours = [k for k in nodes.NODE_CLASS_MAPPINGS if k.startswith("AA2")]
    assert {"AA2ModelLoader", "AA2ReferenceNet", "AA2PoseCondition", "AA2Sampler", "AA2StitchingOptions"} <= set(ours)


def test_full_chain_three_clips(chain):
    m, model, vae, reference = chain
    frames = 10
    (pose,) = m["AA2PoseCondition"]().build(torch.rand(frames, 64, 64, 3), torch.rand(frames, 32, 32, 3))  # depth at another size
    assert pose["depth"].shape == (frames, 64, 64)
    (stitch,) = m["AA2StitchingOptions"]().build("motion_frames", 4, 1, 2, "pyramid")
    env = torch.rand(frames, 64, 64, 3)
    mask = torch.zeros(frames, 64, 64)
    mask[:, 16:48, 20:44] = 1
    (latent,) = m["AA2Sampler"]().sample(model, reference, pose, vae, 7, 2, 3.5, "ddim", "moore", True, 1, batch_cfg=False,
                                         environment=env, environment_mask=mask, stitching=stitch)
    assert latent["samples"].shape == (frames, 4, 8, 8) and latent["samples"].device.type == "cpu"
    decoded = vae.decode(latent["samples"])
    assert decoded.shape == (frames, 64, 64, 3)


def test_progress_ticks_and_cancel_mid_sampling(chain):
    import comfy.model_management as mm
    import comfy.utils

    m, model, vae, reference = chain
    (pose,) = m["AA2PoseCondition"]().build(torch.rand(4, 64, 64, 3))
    ticks = []

    def hook(value, total, preview, prompt_id=None, node_id=None):
        ticks.append((value, total))
        if value == 2:
            mm.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            m["AA2Sampler"]().sample(model, reference, pose, vae, 0, 5, 1.0, "ddim", "moore", False, 0)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    assert ticks[:2] == [(1, 5), (2, 5)] and len(ticks) == 2  # stopped at the next step


def test_bad_input_names_node_and_input(chain):
    m, model, vae, reference = chain
    (pose,) = m["AA2PoseCondition"]().build(torch.rand(4, 64, 64, 3))
    with pytest.raises(ValueError, match="AA2 Sampler: environment_mask has 3 frames but the pose sequence has 4"):
        m["AA2Sampler"]().sample(model, reference, pose, vae, 0, 1, 1.0, "ddim", "moore", True, 0,
                                 environment=torch.rand(4, 64, 64, 3), environment_mask=torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="alpha channel"):
        m["AA2ReferenceNet"]().encode(model, vae, torch.rand(1, 64, 64, 4), 64, 64)


def test_latent_previews_reach_the_progress_hook(chain):
    """With --preview-method auto each step's progress update carries a preview image of the middle frame."""
    import comfy.utils
    from comfy.cli_args import LatentPreviewMethod, args

    m, model, vae, reference = chain
    (pose,) = m["AA2PoseCondition"]().build(torch.rand(4, 64, 64, 3))
    previews = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, **kw: previews.append(preview))
    old, args.preview_method = args.preview_method, LatentPreviewMethod.Auto
    try:
        m["AA2Sampler"]().sample(model, reference, pose, vae, 0, 2, 1.0, "ddim", "moore", False, 0)
    finally:
        args.preview_method = old
        comfy.utils.set_progress_bar_global_hook(None)
    assert len(previews) == 2
    kind, image, _ = previews[-1]
    assert kind == "JPEG" and image.size == (8, 8)  # latent-resolution RGB preview


def test_sam2_nodes_give_one_mask_per_object(comfy, tmp_path):
    """SAM2 Loader + Segment Video with the real sam2 package (its own config, random weights)."""
    try:
        import sam2.build_sam
    except Exception as e:
        pytest.skip(f"sam2 is not importable here ({type(e).__name__}: {e})")
    import folder_paths
    from safetensors.torch import save_file

    nodes, _ = comfy
    torch.manual_seed(0)
    predictor = sam2.build_sam.build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu")
    save_file({k: v.contiguous() for k, v in predictor.state_dict().items()}, str(tmp_path / "sam2.1_hiera_tiny.safetensors"))
    folder_paths.add_model_folder_path("sam2", str(tmp_path), is_default=True)
    m = nodes.NODE_CLASS_MAPPINGS
    (model,) = m["AA2SAM2Loader"]().load("sam2.1_hiera_tiny.safetensors")
    prompts = '[{"frame": 1, "points": [[10, 12]], "labels": [1]}, {"frame": 1, "box": [20, 20, 30, 30]}, {"frame": 1, "box": [2, 30, 12, 40]}]'
    character, objects, masks = m["AA2SAM2SegmentVideo"]().segment(model, torch.rand(3, 48, 40, 3), prompts, 2)
    assert character.shape == objects.shape == (3, 48, 40) and len(masks) == 3
    assert torch.equal(objects, torch.maximum(masks[1], masks[2])) and torch.equal(character, masks[0])
    with pytest.raises(ValueError, match="AA2 SAM2 Segment Video: prompts must be a JSON list"):
        m["AA2SAM2SegmentVideo"]().segment(model, torch.rand(3, 48, 40, 3), "not json", 2)


def test_model_nodes_leave_their_inputs_unchanged(chain):
    """The nodes that need ComfyUI's model management, on inputs at the output size in float32 (the case
    where resizing hands back the caller's own tensor), compared with copies taken before."""
    import copy

    m, model, vae, _ = chain
    frames = 4
    image = torch.rand(1, 64, 64, 3)
    pose_images, depth = torch.rand(frames, 64, 64, 3), torch.rand(frames, 64, 64, 3)
    env, objects = torch.rand(frames, 64, 64, 3), torch.rand(frames, 64, 64, 3)
    mask = torch.zeros(frames, 64, 64)
    mask[:, 16:48, 20:44] = 1
    before = copy.deepcopy((image, pose_images, depth, env, objects, mask))
    (reference,) = m["AA2ReferenceNet"]().encode(model, vae, image, 64, 64)
    tokens = {k: v.clone() for k, v in reference.tokens.items()}
    (pose,) = m["AA2PoseCondition"]().build(pose_images, depth)
    pose_before = copy.deepcopy(pose)
    m["AA2Sampler"]().sample(model, reference, pose, vae, 3, 1, 3.5, "ddim", "moore", True, 1,
                             environment=env, environment_mask=mask, objects=objects)
    for a, b in zip((image, pose_images, depth, env, objects, mask), before):
        assert torch.equal(a, b)
    assert all(torch.equal(reference.tokens[k], v) for k, v in tokens.items())
    assert torch.equal(pose["skeleton"], pose_before["skeleton"]) and torch.equal(pose["depth"], pose_before["depth"])


MOORE = ("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth", "motion_module.pth", "full", "fp32")


def load_model(m, aa2_modules):
    return m["AA2ModelLoader"]().load(*MOORE, aa2_modules=aa2_modules, image_encoder="image_encoder.safetensors")[0]


def test_loader_reports_which_modules_a_file_holds(comfy, capsys):
    """The loader prints what an aa2-modules file holds and passes the module groups on with the model."""
    nodes, _ = comfy
    m = nodes.NODE_CLASS_MAPPINGS
    reports = {}
    for name in (IPI_FILE, AA2_ONLY_FILE, "none"):
        model = load_model(m, name)
        reports[name] = (capsys.readouterr().out, model["modules"])
    out, modules = reports[IPI_FILE]
    assert modules == ["ipi", "mamba"], modules
    assert ("[AA2 Model Loader] aa2-modules file holds: Implicit Pose Indicator (2 layers, 4 tokens/frame), "
            "Mamba temporal layers (after temporal attention in 2 slots)") in out, out
    out, modules = reports[AA2_ONLY_FILE]
    assert modules == ["aa2"] and "aa2-modules file holds: Animate Anyone 2 modules\n" in out, out
    out, modules = reports["none"]
    assert modules == [] and "no aa2-modules file" in out, out


def test_ipi_node_turns_the_implicit_pose_indicator_on(comfy):
    """AA2 Implicit Pose Indicator with a file holding an IPI: the pose gains the driving keypoints and one CLIP
    feature per frame, and the sampled video changes; enabled=False hands the pose back untouched."""
    nodes, _ = comfy
    m = nodes.NODE_CLASS_MAPPINGS
    import comfy.sd

    model, vae, frames = load_model(m, IPI_FILE), sd_vae(comfy.sd), 4
    (reference,) = m["AA2ReferenceNet"]().encode(model, vae, torch.rand(1, 80, 72, 3), 64, 64)
    (pose,) = m["AA2PoseCondition"]().build(torch.rand(frames, 64, 64, 3))
    driving, keypoints = torch.rand(frames, 64, 64, 3), pose_keypoints(frames)
    (off,) = m["AA2ImplicitPoseIndicator"]().build(model, pose, driving, keypoints, False)
    assert off is pose
    (on,) = m["AA2ImplicitPoseIndicator"]().build(model, pose, driving, keypoints, True)
    assert on["keypoints"].shape == (frames, 18, 3) and on["driving_features"].shape == (frames, 1, 32)
    assert torch.equal(on["skeleton"], pose["skeleton"]) and "keypoints" not in pose  # the input pose is left as it was
    sample = lambda p: m["AA2Sampler"]().sample(model, reference, p, vae, 0, 2, 1.0, "ddim", "moore", False, 0)[0]["samples"]
    assert (sample(on) - sample(off)).abs().max() > 1e-4


def test_ipi_node_with_a_file_without_an_ipi_names_the_module_and_the_file(comfy):
    nodes, _ = comfy
    m = nodes.NODE_CLASS_MAPPINGS
    (pose,) = m["AA2PoseCondition"]().build(torch.rand(2, 64, 64, 3))
    for name, source in ((AA2_ONLY_FILE, rf"the aa2-modules file \S*{AA2_ONLY_FILE}"), ("none", r"the loaded models \(no aa2-modules file\)")):
        with pytest.raises(ValueError, match=rf"^AA2 Implicit Pose Indicator: the Implicit Pose Indicator \(IPI\) requested, but {source} holds no 'ipi' module"):
            m["AA2ImplicitPoseIndicator"]().build(load_model(m, name), pose, torch.rand(2, 64, 64, 3), pose_keypoints(2), True)
