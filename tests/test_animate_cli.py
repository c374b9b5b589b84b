"""`python -m aa2_core animate`: end to end on tiny models, and the errors a user meets first."""


import torch

from aa2_core.__main__ import main
from aa2_core.checkpoints.assembly import assemble_from_folder
from aa2_core.pipeline import images
from aa2_core.cli.animate import build_conditions, parser, settings_from, tiny_inputs
from aa2_core.families.moore import MooreModels as Models
from aa2_core.pipeline.sampler import Sampler
from aa2_core.pipeline.prepare import output_size
from aa2_core.video_io import read_video, write_video
from aa2_core.errors import AA2Error

import pytest


def test_tiny_end_to_end_writes_the_pipelines_frames(tmp_path):
    """The written video holds the frames the pipeline computes in-process (up to mp4 rounding), not any picture."""
    out, models_dir = str(tmp_path / "out.mp4"), str(tmp_path / "models")
    argv = ["animate", "--tiny", "--models", models_dir, "--frames", "6", "--steps", "1", "--out", out]
    assert main(argv) == 0
    frames, fps = read_video(out)
    assert frames.shape == (6, 64, 64, 3) and fps == 8.0

    args = parser().parse_args(argv[1:])
    args.clip_length, args.motion_frames = 4, 1  # what --tiny uses
    models = assemble_from_folder(models_dir)
    ref, poses = tiny_inputs(6)
    cond, _ = build_conditions(models, ref, poses)

    def through_the_codec(settings):  # tiny random frames lose ~0.05 to mp4 itself: compare like with like
        decoded = images.vae_decode(models.vae, Sampler(Models(models.denoising, models.pose), settings).sample(cond))
        write_video(str(tmp_path / "expected.mp4"), decoded, 8)  # x264 rate control depends on the frame rate
        return read_video(str(tmp_path / "expected.mp4"))[0]

    error = (frames - through_the_codec(settings_from(args))).abs().mean()
    assert error < 0.01, error
    other = settings_from(parser().parse_args(argv[1:] + ["--seed", "1", "--clip-length", "4", "--motion-frames", "1"]))
    assert (frames - through_the_codec(other)).abs().mean() > 5 * error  # the comparison tells two videos apart


def test_real_mode_names_missing_models(tmp_path, capsys):
    ref = tmp_path / "ref.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(ref), np.zeros((64, 64, 3), np.uint8))
    write_video(str(tmp_path / "kps.mp4"), torch.zeros(2, 64, 64, 3))
    code = main(["animate", "--ref", str(ref), "--poses", str(tmp_path / "kps.mp4"), "--models", str(tmp_path / "models"), "--out", str(tmp_path / "o.mp4")])
    assert code == 1
    out = capsys.readouterr().out
    assert "denoising_unet: put it at" in out and "clip_vision: put it at" in out


def test_image_checks():
    with pytest.raises(AA2Error, match="alpha channel"):
        images.check_rgb(torch.zeros(1, 8, 8, 4), "reference image")
    with pytest.raises(AA2Error, match="0 frames"):
        images.check_rgb(torch.zeros(0, 8, 8, 3), "pose video")
    assert output_size(771, 517) == (768, 520)  # the one size rule: nearest multiples of 8
    assert output_size(7, 100) == (8, 96)
    x = torch.rand(2, 20, 30, 3)
    assert images.resize(x, 16, 24).shape == (2, 16, 24, 3) and images.resize(x, 20, 30) is x


def test_keep_the_scene_with_video_and_mask(tmp_path):
    """--video/--mask: environment mode keeps the driving frames outside the shape-agnostic mask."""
    import cv2
    import numpy as np

    from aa2_core.check import write_tiny_models_dir

    write_tiny_models_dir(str(tmp_path / "models"))
    cv2.imwrite(str(tmp_path / "ref.png"), (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    g = torch.Generator().manual_seed(0)
    write_video(str(tmp_path / "kps.mp4"), torch.rand(5, 64, 64, 3, generator=g))
    scene_colour = torch.tensor([0.2, 0.6, 0.3])
    write_video(str(tmp_path / "drive.mp4"), scene_colour.expand(5, 64, 64, 3))
    mask = torch.zeros(5, 64, 64, 3)
    mask[:, 16:48, 16:40] = 1
    write_video(str(tmp_path / "mask.mp4"), mask)
    out = str(tmp_path / "out.mp4")
    args = ["animate", "--ref", str(tmp_path / "ref.png"), "--poses", str(tmp_path / "kps.mp4"), "--video", str(tmp_path / "drive.mp4"),
            "--mask", str(tmp_path / "mask.mp4"), "--models", str(tmp_path / "models"), "--out", out, "--steps", "1", "--clip-length", "5"]
    assert main(args) == 0
    frames = read_video(out)[0]
    assert frames.shape == (5, 64, 64, 3)
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[8:56, 8:48] = False  # the mask (16:48, 16:40) grown by its blocks and the feather
    assert (frames[:, outside] - scene_colour).abs().mean() < 0.03  # the driving video's own pixels
    assert (frames[:, 20:44, 20:36] - scene_colour).abs().mean() > 0.05  # the character region is generated
    assert main(args[:5] + args[9:]) == 0  # without --video/--mask too
    assert main(args[:7] + args[9:]) == 1  # --video without --mask is refused


def test_the_output_keeps_the_driving_videos_rate_and_audio(tmp_path):
    """--video: H.264 at the driving video's frame rate (not the pose video's), with its sound."""
    import cv2
    import numpy as np
    from fractions import Fraction

    from aa2_core.check import write_tiny_models_dir
    from test_video_io import TONE, clip_with_tone, dominant_frequency, probe

    write_tiny_models_dir(str(tmp_path / "models"))
    cv2.imwrite(str(tmp_path / "ref.png"), np.full((64, 64, 3), 90, np.uint8))
    write_video(str(tmp_path / "kps.mp4"), torch.rand(4, 64, 64, 3), 8)
    clip_with_tone(tmp_path / "drive.mp4", seconds=1.0, fps=12)
    write_video(str(tmp_path / "mask.mp4"), torch.ones(4, 64, 64, 3) * (torch.arange(64) < 32)[None, None, :, None], 8)
    out = tmp_path / "out.mp4"
    assert main(["animate", "--ref", str(tmp_path / "ref.png"), "--poses", str(tmp_path / "kps.mp4"), "--video", str(tmp_path / "drive.mp4"),
                 "--mask", str(tmp_path / "mask.mp4"), "--models", str(tmp_path / "models"), "--out", str(out), "--steps", "1",
                 "--clip-length", "4", "--motion-frames", "1"]) == 0
    info = probe(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["frames"] == 4
    assert info["rate"] == Fraction(12)
    assert info["audio_codec"] == "aac" and abs(len(info["samples"]) / 44100 - 4 / 12) < 0.05  # cut to the 4 frames
    assert abs(dominant_frequency(info["samples"], 44100) - TONE) < 15


@pytest.mark.parametrize("argv", [["animate", "--tiny", "--frames", "2", "--steps", "1"], ["check", "--tiny"]])
def test_tiny_runs_leave_no_temporary_folder(tmp_path, monkeypatch, argv):
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where TemporaryDirectory/mkdtemp put folders
    extra = ["--out", str(tmp_path / "o.mp4")] if argv[0] == "animate" else []
    assert main(argv + extra) == 0
    assert list(scratch.iterdir()) == []
