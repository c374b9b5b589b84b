"""Bad inputs, one row each: the exit code (or exception) and a fragment of the one-line message, no traceback.

Command rows run ``python -m aa2_core`` in-process. The animate rows point ``--models`` at a folder that does
not exist, so a check that came only after the models load would show "missing model files" instead of its
own message: every row also shows that its check runs before any model is loaded. Rows marked accepted must
succeed (or reach the missing models) with a logged warning.
"""

import importlib
import os

import cv2
import numpy as np
import pytest
import torch

from aa2_core.__main__ import main
from aa2_core.errors import AA2Error
from aa2_core.video_io import write_video

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """Every input file the rows name, written once."""
    root = tmp_path_factory.mktemp("bad_inputs")
    g = torch.Generator().manual_seed(0)

    def image(name, h, w, c=3):
        cv2.imwrite(str(root / name), np.full((h, w, c), 128, np.uint8))

    image("ref.png", 64, 64)
    image("dot.png", 1, 1)
    image("sliver.png", 4000, 2)
    image("strip.png", 40, 400)
    image("alpha.png", 64, 64, 4)
    (root / "folder").mkdir()
    (root / "read_only").mkdir(mode=0o500)
    (root / "folder.mp4").mkdir()
    (root / "file").write_text("a file, not a folder")
    (root / "junk.mp4").write_bytes(b"not a video")
    write_video(str(root / "kps.mp4"), torch.rand(4, 64, 64, 3, generator=g), 8)
    write_video(str(root / "drive.mp4"), torch.rand(4, 64, 64, 3, generator=g), 8)
    write_video(str(root / "drive_wide.mp4"), torch.rand(4, 64, 128, 3, generator=g), 8)
    write_video(str(root / "mask96.mp4"), torch.ones(4, 96, 96, 3), 8)
    write_video(str(root / "mask_wide.mp4"), torch.ones(4, 64, 128, 3), 8)
    write_video(str(root / "mask_short.mp4"), torch.ones(2, 64, 64, 3), 8)
    write_video(str(root / "long.mp4"), torch.rand(24, 64, 64, 3, generator=g), 8)
    whole = (root / "long.mp4").read_bytes()  # faststart: the index is whole, the frames are cut
    (root / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    torch.save({"w": torch.zeros(2)}, root / "weights.pth")
    (root / "empty.pth").write_bytes(b"")
    (root / "junk.pth").write_bytes(b"x" * 100)
    for side in ("gen", "truth"):
        (root / side).mkdir()
        write_video(str(root / side / "a.mp4"), torch.rand(2, 32, 32, 3, generator=g), 8)
    return str(root)


ANIMATE = "animate --ref {d}/ref.png --poses {d}/kps.mp4 --models {d}/no_models --out {d}/out/o.mp4"
MISSING = "missing model files"  # where a row's check is missing, this is what the user would see instead


def animate(extra):
    return f"{ANIMATE} {extra}"


# (id, command with {d} for the inputs folder, exit code, fragments the output holds)
COMMANDS = [
    # animate: the reference
    ("ref_1x1", animate("--ref {d}/dot.png"), 1, ["--ref {d}/dot.png is 1x1 pixels; expected at least 32"]),
    ("ref_2x4000", animate("--ref {d}/sliver.png"), 1, ["--ref {d}/sliver.png is 2x4000 pixels"]),
    ("ref_10_to_1", animate("--ref {d}/strip.png"), 1, ["is 400x40 pixels, an aspect ratio of 10:1; expected at most 4:1"]),
    ("ref_alpha", animate("--ref {d}/alpha.png"), 1, ["--ref {d}/alpha.png has an alpha channel"]),
    ("ref_folder", animate("--ref {d}/folder"), 1, ["{d}/folder is a folder, expected an image file"]),
    ("ref_missing", animate("--ref {d}/nope.png"), 1, ["image not found: {d}/nope.png"]),
    # animate: the videos
    ("poses_missing", animate("--poses {d}/nope.mp4"), 1, ["video not found: {d}/nope.mp4"]),
    ("poses_folder", animate("--poses {d}/folder"), 1, ["{d}/folder is a folder, expected a video file"]),
    ("poses_junk", animate("--poses {d}/junk.mp4"), 1, ["could not read {d}/junk.mp4 as a video"]),
    ("poses_cut_mid_decode", animate("--poses {d}/cut.mp4"), 1, ["{d}/cut.mp4: could not decode frame", "truncated"]),
    ("mask_other_aspect", animate("--video {d}/drive.mp4 --mask {d}/mask_wide.mp4"), 1,
     ["--mask {d}/mask_wide.mp4 is 128x64, --video {d}/drive.mp4 64x64: another aspect ratio; expected 64x64"]),
    ("video_other_aspect", animate("--video {d}/drive_wide.mp4 --mask {d}/mask_wide.mp4"), 1,
     ["--video {d}/drive_wide.mp4 is 128x64, the pose video 64x64: another aspect ratio"]),
    ("mask_same_aspect_accepted", animate("--video {d}/drive.mp4 --mask {d}/mask96.mp4"), 1,
     ["--mask {d}/mask96.mp4 is 96x96, --video {d}/drive.mp4 64x64: resizing it to 64x64", MISSING]),
    ("video_without_mask", animate("--video {d}/drive.mp4"), 1, ["--video (keep the scene) and --mask", "come together"]),
    ("mask_too_short", animate("--video {d}/drive.mp4 --mask {d}/mask_short.mp4"), 1, ["need at least as many frames as the poses (4)"]),
    # animate: numbers
    ("cfg_nan", animate("--cfg nan"), 1, ["cfg must be a finite number", "got nan"]),
    ("cfg_inf", animate("--cfg inf"), 1, ["cfg must be a finite number", "got inf"]),
    ("steps_0", animate("--steps 0"), 1, ["steps must be at least 1, got 0"]),
    ("frames_0", animate("--frames 0"), 1, ["--frames must be at least 1, got 0"]),
    ("feather_negative", animate("--feather -1"), 1, ["--feather must be 0 or more, got -1"]),
    ("seed_negative", animate("--seed -1"), 1, ["seed must be in [0, 2^64), got -1"]),
    ("clip_length_0", animate("--clip-length 0"), 1, ["clip_length must be at least 1, got 0"]),
    ("motion_frames_too_many", animate("--motion-frames 24"), 1, ["motion_frames (24) must be in [0, clip_length=24)"]),
    ("scheduler_unknown", animate("--scheduler pndm"), 2, ["invalid choice: 'pndm'"]),
    ("nothing_given", "animate --out {d}/o.mp4", 2, ["give --ref, --poses and --models (or --tiny)"]),
    # animate: where the output goes, the device, the models
    ("out_gif", animate("--out {d}/o.gif"), 1, ["--out {d}/o.gif: the extension '.gif' is not one this writes; expected .mp4"]),
    ("out_existing_folder", animate("--out {d}/folder.mp4"), 1, ["--out {d}/folder.mp4 is an existing folder; expected a file name"]),
    ("out_under_a_file", animate("--out {d}/file/o.mp4"), 1, ["{d}/file is a file, so no folder can be made under it"]),
    pytest.param("out_read_only", animate("--out {d}/read_only/o.mp4"), 1, ["{d}/read_only is not writable"],
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")),
    pytest.param("device_cuda_without_cuda", animate("--device cuda"), 1, ["--device cuda: ", "CUDA is not available"],
                 marks=pytest.mark.skipif(not NO_CUDA, reason="this torch has CUDA")),
    ("device_unknown", animate("--device gpu"), 1, ["--device 'gpu' is not a device; expected cpu, cuda"]),
    ("aa2_modules_missing", animate("--aa2-modules {d}/nope.safetensors"), 1,
     ["--aa2-modules {d}/nope.safetensors: file not found; expected an aa2-modules .safetensors file"]),
    ("aa2_modules_folder", animate("--aa2-modules {d}/folder"), 1, ["--aa2-modules {d}/folder is a folder"]),
    ("models_is_a_file", animate("--models {d}/file"), 1, ["--models {d}/file is a file; expected a ComfyUI-style models folder"]),
    ("models_missing", ANIMATE, 1, ["denoising_unet: put it at {d}/no_models/animate_anyone2/", "clip_vision: put it at"]),
    # check
    ("check_models_missing", "check --models {d}/no_models", 1, ["denoising_unet: put it at"]),
    ("check_models_is_a_file", "check --models {d}/file", 1, ["--models {d}/file is a file; expected a ComfyUI-style models folder"]),
    ("check_nothing_given", "check", 2, ["give --models DIR or --tiny"]),
    # convert
    ("convert_folder", "convert {d}/folder", 1, ["{d}/folder is a directory; expected a weight file"]),
    ("convert_missing", "convert {d}/nope.pth", 1, ["file not found: {d}/nope.pth"]),
    ("convert_empty", "convert {d}/empty.pth", 1, ["{d}/empty.pth is empty (0 bytes)"]),
    ("convert_junk", "convert {d}/junk.pth", 1, ["could not read {d}/junk.pth as a PyTorch pickle file", "Unsupported operand"]),
    ("convert_out_dir_is_a_file", "convert {d}/weights.pth --out-dir {d}/file", 1, ["could not write {d}/file/weights.safetensors"]),
    # evaluate
    ("evaluate_json_under_a_file", "evaluate {d}/gen {d}/truth --json {d}/file/s.json", 1,
     ["--json {d}/file/s.json: {d}/file is a file, so no folder can be made under it"]),
    ("evaluate_json_is_a_folder", "evaluate {d}/gen {d}/truth --json {d}/folder", 1, ["--json {d}/folder is an existing folder"]),
    pytest.param("evaluate_device_cuda_without_cuda", "evaluate {d}/gen {d}/truth --device cuda", 1, ["--device cuda: ", "CUDA is not available"],
                 marks=pytest.mark.skipif(not NO_CUDA, reason="this torch has CUDA")),
    ("evaluate_generated_missing", "evaluate {d}/nope {d}/truth", 1, ["GENERATED: {d}/nope is not a folder"]),
    ("evaluate_clip_frames_0", "evaluate {d}/gen {d}/truth --clip-frames 0", 1, ["--clip-frames and --batch must be at least 1"]),
    ("evaluate_backbone_alone", "evaluate {d}/gen {d}/truth --lpips-backbone {d}/weights.pth", 1, ["--lpips-backbone goes with --lpips"]),
]
# where the metrics must not have run (their per-video log line)
NOT_RUN = {"evaluate_json_under_a_file": "[1/1]", "evaluate_json_is_a_folder": "[1/1]", "evaluate_device_cuda_without_cuda": "[1/1]"}


@pytest.mark.parametrize("name, command, code, fragments", COMMANDS, ids=[
    c.values[0] if hasattr(c, "values") else c[0] for c in COMMANDS])
def test_command(d, capsys, caplog, name, command, code, fragments):
    with caplog.at_level("WARNING", logger="aa2_core"):
        try:
            result = main(command.format(d=d).split())
        except SystemExit as e:  # argparse
            result = e.code
    captured = capsys.readouterr()
    text = captured.out + captured.err + caplog.text
    assert "Traceback" not in text
    assert result == code, text
    for fragment in fragments:
        assert fragment.format(d=d) in text, text
    if name in NOT_RUN:
        assert NOT_RUN[name] not in text, text
    assert not os.path.exists(os.path.join(d, "out", "o.mp4"))  # no row writes an output


def test_a_code_running_pickle_is_refused_names_what_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"w": torch.zeros(1), "x": Payload()}, tmp_path / "evil.pth")
    assert main(["convert", str(tmp_path / "evil.pth")]) == 1
    out = capsys.readouterr().out
    assert "unsupported GLOBAL posix.system" in out or "unsupported GLOBAL nt.system" in out, out
    assert "weights_only` set to `False`" not in out and "Traceback" not in out
    assert not marker.exists()
    assert not (tmp_path / "evil.safetensors").exists()


# ---- node-facing calls: the pack imported as ComfyUI imports it ---------------------------------------------
def core(name):
    return importlib.import_module(f"aa2_pack.aa2_core.{name}")


def far_pose(width=64, height=64):
    """A POSE_KEYPOINT frame whose neck and one hand point lie at 1e12 pixels, the rest on the canvas."""
    body = [32.0, 20.0, 1.0] * 18
    body[3:5] = [1e12, 1e12]  # the neck: every limb to it ends far off the canvas
    body[6:8] = [-1e12, 40.0]  # the right shoulder
    hand = [20.0, 40.0, 1.0] * 21
    hand[0:2] = [1e12, -1e12]
    face = [30.0, 15.0, 1.0] * 68
    face[3:5] = [-1e12, 1e12]
    person = {"pose_keypoints_2d": body, "hand_left_keypoints_2d": hand, "hand_right_keypoints_2d": None,
              "face_keypoints_2d": face}
    return [{"people": [person], "canvas_height": height, "canvas_width": width}]


def render_far_keypoints(pack):
    image = pack.NODE_CLASS_MAPPINGS["AA2RenderPose"]().render(far_pose(), 64, 64, True, True)[0]
    assert image.shape == (1, 64, 64, 3) and image.max() > 0  # the joints on the canvas are drawn
    return image


def environment_mask(mask_hw):
    def call(pack):
        return pack.NODE_CLASS_MAPPINGS["AA2EnvironmentMask"]().build(torch.rand(2, 64, 64, 3), torch.ones(2, *mask_hw), 0, 0, 0.5)
    return call


def composite(env_hw, mask_hw):
    def call(pack):
        return pack.NODE_CLASS_MAPPINGS["AA2CompositeEnvironment"]().composite(
            torch.rand(2, 64, 64, 3), torch.rand(2, *env_hw, 3), torch.zeros(2, *mask_hw), 2)
    return call


def sampler(env_hw=None, mask_hw=(64, 64), cfg=3.5):
    """AA2 Sampler up to its checks (they come before any model or VAE is touched: none is given)."""
    def call(pack):
        prepare = core("pipeline.prepare")
        reference = prepare.Reference(torch.zeros(1, 4, 8, 8), torch.zeros(1, 1, 8), {})
        scene = {} if env_hw is None else dict(environment=torch.rand(2, *env_hw, 3), environment_mask=torch.zeros(2, *mask_hw))
        return pack.NODE_CLASS_MAPPINGS["AA2Sampler"]().sample(
            None, reference, {"skeleton": torch.rand(2, 64, 64, 3), "depth": None}, None, 0, 1, cfg, "ddim", "moore",
            True, 1, **scene)
    return call


def reference_net(hw):
    """AA2 ReferenceNet's core call, ``encode_reference``, with stand-in encoders at a 64x64 output."""
    def call(pack):
        prepare = core("pipeline.prepare")
        return prepare.encode_reference(torch.rand(1, *hw, 3), (64, 64), lambda x: torch.zeros(1, 4, 8, 8),
                                        lambda x: torch.zeros(1, 1, 8), lambda latents, embeds: {})
    return call


def settings(**kwargs):
    return lambda pack: core("pipeline.options").SamplerSettings(**kwargs)


# (id, call, exception type or None for accepted, fragment of its message or of the logged warning)
CALLS = [
    ("render_pose_keypoints_at_1e12", render_far_keypoints, None, None),
    ("environment_mask_other_aspect", environment_mask((32, 96)), ValueError,
     "AA2 Environment Mask: character mask is 96x32, the driving video 64x64: another aspect ratio"),
    ("environment_mask_same_aspect", environment_mask((32, 32)), None,
     "character mask is 32x32, the driving video 64x64: resizing it to 64x64"),
    ("composite_environment_same_aspect", composite((32, 32), (64, 64)), None,
     "environment is 32x32, the generated frames 64x64: resizing it to 64x64"),
    ("composite_environment_other_aspect", composite((32, 96), (64, 64)), ValueError,
     "AA2 Composite Environment: environment is 96x32, the generated frames 64x64: another aspect ratio"),
    ("composite_mask_other_aspect", composite((64, 64), (32, 96)), ValueError,
     "AA2 Composite Environment: environment_mask is 96x32, the generated frames 64x64"),
    ("sampler_environment_other_aspect", sampler(env_hw=(64, 128)), ValueError,
     "AA2 Sampler: environment is 128x64, the output (reference) size 64x64: another aspect ratio"),
    ("sampler_mask_other_aspect", sampler(env_hw=(64, 64), mask_hw=(32, 96)), ValueError,
     "AA2 Sampler: environment_mask is 96x32, the environment 64x64"),
    ("sampler_cfg_nan", sampler(cfg=float("nan")), ValueError, "AA2 Sampler: cfg must be a finite number"),
    ("reference_1x1", reference_net((1, 1)), AA2Error, "reference image is 1x1 pixels; expected at least 32"),
    ("reference_2x4000", reference_net((4000, 2)), AA2Error, "reference image is 2x4000 pixels"),
    ("reference_10_to_1", reference_net((40, 400)), AA2Error, "an aspect ratio of 10:1; expected at most 4:1"),
    ("reference_other_aspect_warned", reference_net((64, 48)), None,
     "reference image is 48x64 but the output is 64x64: it is squashed to the output's shape"),
    ("reference_alpha", lambda pack: core("pipeline.prepare").encode_reference(torch.rand(1, 64, 64, 4), (64, 64), None, None, None),
     AA2Error, "reference image has an alpha channel"),
    ("settings_cfg_inf", settings(cfg=float("inf")), AA2Error, "cfg must be a finite number (1 = no guidance), got inf"),
    ("settings_steps_0", settings(steps=0), AA2Error, "steps must be at least 1, got 0"),
]


@pytest.mark.parametrize("name, call, error, fragment", CALLS, ids=[c[0] for c in CALLS])
def test_node_facing_call(pack, caplog, name, call, error, fragment):
    with caplog.at_level("WARNING", logger="aa2_core"):
        if error is None:
            call(pack)
            if fragment is not None:
                assert fragment in caplog.text
            else:
                assert caplog.text == ""
            return
        # the pack's own AA2Error class (the pack is imported under another package name)
        kind = core("errors").AA2Error if error is AA2Error else error
        with pytest.raises(kind) as info:
            call(pack)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_matching_sizes_pass_without_a_word(pack, caplog):
    """The size rule's own rounding (509x766 against 512x768) and equal sizes log nothing."""
    with caplog.at_level("WARNING", logger="aa2_core"):
        environment_mask((64, 64))(pack)
        composite((64, 64), (64, 64))(pack)
        reference_net((64, 64))(pack)
        images = core("pipeline.images")
        assert images.fit_size((766, 509), (768, 512), "x", "y") is True
        assert images.fit_size((64, 64), (64, 64), "x", "y") is False
    assert caplog.text == ""


# ---- progress that fits the terminal ----------------------------------------------------------------------
def test_progress_off_a_terminal_is_lines_with_rate_and_eta(tmp_path, capsys):
    """stdout is not a TTY here: every report is its own line, with the rate and the time left."""
    assert main(["animate", "--tiny", "--frames", "2", "--steps", "3", "--clip-length", "2", "--out", str(tmp_path / "o.mp4")]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert lines[0].startswith("step 1/3 ") and lines[-1].startswith("step 3/3 "), out
    assert all("s/step" in line and "ETA " in line for line in lines), out
    assert out.splitlines()[-1].startswith("wrote 2 frames 64x64")


def test_progress_on_a_terminal_is_a_tqdm_bar():
    import io

    from aa2_core.cli.animate import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress(stream)
    for step in (1, 2, 3):
        progress(step, 3)
    progress.close()
    assert "3/3" in stream.getvalue() and "\r" in stream.getvalue() and "it/s" not in stream.getvalue()
