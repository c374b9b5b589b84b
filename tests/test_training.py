"""The trainer: a few steps on tiny models and synthetic videos learn the AA2 modules and write a file
that loads back into the nets (the AA2 modules then change the output, the base weights do not)."""

import copy

import torch

from aa2_core.__main__ import main
from aa2_core.check import write_tiny_models_dir
from aa2_core.checkpoints.aa2_file import apply_aa2_parts, load_aa2_file
from aa2_core.checkpoints.loaders import load_denoising_net, load_pose_modulation
from aa2_core.training.data import load_clip
from aa2_core.video_io import write_video


def write_videos(root, count=2, frames=6, size=64):
    g = torch.Generator().manual_seed(0)
    for i in range(count):
        folder = root / f"video{i}"
        folder.mkdir(parents=True)
        mask = torch.zeros(frames, size, size, 3)
        mask[:, 16:48, 20 + i : 40 + i] = 1
        objects = torch.zeros(frames, size, size, 3)
        objects[:, 40:50, 30:44] = 1
        write_video(str(folder / "frames.mp4"), torch.rand(frames, size, size, 3, generator=g))
        write_video(str(folder / "mask.mp4"), mask)
        write_video(str(folder / "pose.mp4"), torch.rand(frames, size, size, 3, generator=g) * mask)
        write_video(str(folder / "objects.mp4"), objects)


def test_training_clip_has_the_papers_inputs(tmp_path):
    write_videos(tmp_path)
    clip = load_clip(str(tmp_path / "video0"), 4, 64, 64, torch.Generator().manual_seed(0))
    assert clip.frames.shape == clip.environment.shape == clip.skeleton.shape == (4, 64, 64, 3)
    assert clip.reference.shape == (1, 64, 64, 3) and clip.objects.shape == (4, 64, 64, 3)
    removed = clip.environment_mask.bool()
    assert removed.any() and (clip.environment[removed] == 0.5).all()  # the formulated region is removed


def test_a_few_steps_learn_the_aa2_modules(tmp_path):
    write_videos(tmp_path / "data")
    models = tmp_path / "models"
    write_tiny_models_dir(str(models))
    out = tmp_path / "aa2.safetensors"
    args = ["train", "--data", str(tmp_path / "data"), "--models", str(models), "--out", str(out), "--steps", "3",
            "--lr", "1e-2", "--frames", "4", "--height", "64", "--width", "64", "--device", "cpu", "--log-every", "1"]
    assert main(args) == 0
    parts, meta = load_aa2_file(str(out))
    assert meta["modules"] == ["denoising", "pose"]
    assert any(k.endswith("gate") and v.abs() > 0 for k, v in parts["denoising"].items())  # blends opened
    assert all(not k.startswith("unet.") for k in parts["denoising"])  # base weights untouched, not saved

    folder = models / "animate_anyone2"
    net = load_denoising_net(str(folder / "denoising_unet.pth"), str(folder / "motion_module.pth"))
    pose = load_pose_modulation(str(folder / "pose_guider.pth"))
    base = copy.deepcopy(net.state_dict())
    apply_aa2_parts(net, parts["denoising"], str(out))
    apply_aa2_parts(pose, parts["pose"], str(out))
    assert all(torch.equal(net.state_dict()[k], v) for k, v in base.items() if k.startswith(("unet.", "motion.")))
    x, ctx = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 1, 32)
    env = torch.randn(1, 5, 2, 8, 8)
    fresh = load_denoising_net(str(folder / "denoising_unet.pth"), str(folder / "motion_module.pth"))
    with torch.no_grad():
        assert (net(x, 500, ctx, environment=env) - fresh(x, 500, ctx, environment=env)).abs().max() > 1e-4
