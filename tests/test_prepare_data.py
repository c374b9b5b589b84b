"""``python -m aa2_core prepare``: raw videos with supplied masks and keypoints become a training set; bad
videos are skipped with their reason, the rest go on; a second run resumes without redoing a clip."""

import json
import os
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch

from aa2_core.__main__ import main
from aa2_core.training import prepare_data
from aa2_core.training.data import TrainingSet
from aa2_core.training.dataset_format import read_clip, read_index
from aa2_core.video_io import write_video
from test_training_data import stick_figure

SRC_H, SRC_W = 80, 120  # landscape source; the set is portrait 64 x 48: scale 0.8 to 64 x 96, then a crop
OUT = ["--height", "64", "--width", "48", "--min-frames", "8", "--no-progress"]
FIGURE = 40.0
LEFT = 70  # the character's box: x in LEFT .. LEFT + 20 + i, y in 20 .. 60 (source pixels)


def character_box(i):
    return 20, 61, LEFT + i // 2, LEFT + 21 + i // 2


def write_good(folder, name="good", frames=12, depth=True):
    """A video with a mask video, an objects PNG folder, POSE_KEYPOINT JSON (source canvas) and a depth video."""
    g = torch.Generator().manual_seed(0)
    video = torch.rand(frames, SRC_H, SRC_W, 3, generator=g)
    mask = torch.zeros(frames, SRC_H, SRC_W, 3)
    keypoints = []
    os.makedirs(folder / f"{name}.objects", exist_ok=True)
    for i in range(frames):
        y0, y1, x0, x1 = character_box(i)
        mask[i, y0:y1, x0:x1] = 1
        body = stick_figure((x0 + x1) / 2, y0, FIGURE)
        keypoints.append({"people": [{"pose_keypoints_2d": body.reshape(-1).tolist()}], "canvas_height": SRC_H, "canvas_width": SRC_W})
        obj = np.zeros((SRC_H, SRC_W), np.uint8)
        obj[40:50, x1 : x1 + 8] = 255
        cv2.imwrite(str(folder / f"{name}.objects" / f"{i:04d}.png"), obj)
    write_video(str(folder / f"{name}.mp4"), video)
    write_video(str(folder / f"{name}.mask.mp4"), mask)
    if depth:
        write_video(str(folder / f"{name}.depth.mp4"), torch.linspace(0, 1, SRC_W).view(1, 1, SRC_W, 1).expand(frames, SRC_H, SRC_W, 3))
    (folder / f"{name}.pose.json").write_text(json.dumps(keypoints))


def write_variable_size(path, frames=10):
    """An MJPEG video whose frames change size half way (each JPEG carries its own size)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=24)
        stream.width, stream.height, stream.pix_fmt = SRC_W, SRC_H, "yuvj420p"
        other = av.CodecContext.create("mjpeg", "w")
        other.width, other.height, other.pix_fmt, other.time_base = 64, 48, "yuvj420p", Fraction(1, 24)
        for i in range(frames):
            small = i >= frames // 2
            image = np.full((48, 64, 3) if small else (SRC_H, SRC_W, 3), 100, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 24)
            for packet in (other if small else stream).encode(frame):
                packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 24)
                out.mux(packet)


def run(videos, data, *extra):
    return main(["prepare", str(videos), "--out", str(data), *OUT, *extra])


def skipped(data):
    with open(data / "dataset.json") as f:
        return {s["source"]: s["reason"] for s in json.load(f)["skipped"]}


def test_good_video_written_broken_one_reported(tmp_path, capsys):
    """One good and one broken video: the good one is written (frames at the training size, masks,
    keypoints, depth) and the broken one listed with its reason; exit code 0."""
    videos, data = tmp_path / "videos", tmp_path / "data"
    videos.mkdir()
    write_good(videos)
    (videos / "broken.mp4").write_bytes(os.urandom(2000))
    assert run(videos, data) == 0
    index = read_index(str(data))
    assert [c["name"] for c in index["clips"]] == ["good"] and index["clips"][0]["frames"] == 12
    assert (index["height"], index["width"]) == (64, 48)
    assert list(skipped(data)) == ["broken.mp4"] and "cannot open" in skipped(data)["broken.mp4"]
    assert "skipped broken.mp4" in capsys.readouterr().out

    clip = read_clip(str(data / "good" / "clip.safetensors"))
    assert clip.frames.shape == (12, 64, 48, 3) and clip.frames.dtype == torch.uint8
    assert clip.character.shape == clip.objects.shape == clip.depth.shape == (12, 64, 48)
    assert clip.objects.any() and clip.depth.dtype == torch.float16 and clip.body.shape == (12, 18, 3)
    assert clip.source == "good.mp4" and clip.fps == pytest.approx(24.0)


def test_crop_keeps_the_character_and_the_keypoints_on_it(tmp_path):
    """Size policy: scale 0.8 to 64 x 96, then a 48-wide crop centred on the character's box over the clip;
    the keypoints get the same scale and crop, so every joint lands on the stored character mask."""
    videos, data = tmp_path / "videos", tmp_path / "data"
    videos.mkdir()
    write_good(videos)
    assert run(videos, data) == 0
    clip = read_clip(str(data / "good" / "clip.safetensors"))
    # the union box of the source masks, x 70..96 -> 56..77.6 scaled: centred, the crop starts at 43 or 44
    cols = np.flatnonzero(clip.character.amax(dim=(0, 1)).numpy())
    assert cols[0] > 0 and cols[-1] < 47  # the whole character is inside, not touching the crop's edges
    assert abs((cols[0] + cols[-1] + 1) / 2 - 24) <= 1.5
    for i in range(12):
        valid = clip.body[i, :, 2] > 0
        assert valid.sum() == 18
        x, y = clip.body[i, valid, 0].long(), clip.body[i, valid, 1].long()
        assert clip.character[i, y.clamp(0, 63), x.clamp(0, 47)].all(), i
        y0, y1, x0, x1 = character_box(i)  # the neck: source (centre, y0 + 7.5) -> x 0.8 * centre - origin
        assert clip.body[i, 1, 1] == pytest.approx((y0 + 1.5 * FIGURE / 8) * 0.8, abs=1e-4)
    # depth: the horizontal ramp survives the crop (left to right increasing)
    assert (clip.depth[0, 32, 1:].float() >= clip.depth[0, 32, :-1].float() - 0.02).all()


def test_resume_does_not_redo_a_finished_clip(tmp_path, monkeypatch, capsys):
    """A second run over the same folder keeps the finished clip (prepare_video is not called for it) and
    only processes a new video."""
    videos, data = tmp_path / "videos", tmp_path / "data"
    videos.mkdir()
    write_good(videos)
    assert run(videos, data) == 0
    stamp = os.stat(data / "good" / "clip.safetensors").st_mtime_ns
    write_good(videos, name="second", depth=False)
    calls = []
    original = prepare_data.prepare_video
    monkeypatch.setattr(prepare_data, "prepare_video", lambda video, *a: calls.append(os.path.basename(video)) or original(video, *a))
    assert run(videos, data) == 0
    assert calls == ["second.mp4"]
    assert os.stat(data / "good" / "clip.safetensors").st_mtime_ns == stamp
    assert [c["name"] for c in read_index(str(data))["clips"]] == ["good", "second"]
    assert "1 clips written, 1 already done" in capsys.readouterr().out.splitlines()[-1]
    calls.clear()
    assert run(videos, data) == 0 and calls == []


def test_short_variable_size_and_unmasked_videos_are_skipped(tmp_path):
    """Each bad input is listed with its reason and the good video is still written; a set with no clip
    exits 1."""
    videos, data = tmp_path / "videos", tmp_path / "data"
    videos.mkdir()
    write_good(videos)
    write_good(videos, name="short", frames=5)
    write_variable_size(videos / "varsize.mkv")
    write_video(str(videos / "nomask.mp4"), torch.rand(10, SRC_H, SRC_W, 3))
    assert run(videos, data) == 0
    reasons = skipped(data)
    assert set(reasons) == {"short.mp4", "varsize.mkv", "nomask.mp4"}
    assert reasons["short.mp4"] == "5 frames, fewer than --min-frames 8"
    assert "variable frame size: 120x80 at frame 0, 64x48 at frame 5" in reasons["varsize.mkv"]
    assert "no character mask" in reasons["nomask.mp4"]
    assert [c["name"] for c in read_index(str(data))["clips"]] == ["good"]

    lonely, empty = tmp_path / "lonely", tmp_path / "empty"
    lonely.mkdir()
    write_variable_size(lonely / "varsize.mkv")
    assert run(lonely, empty) == 1


def test_missing_keypoints_without_dwpose_are_reported(tmp_path):
    videos, data = tmp_path / "videos", tmp_path / "data"
    videos.mkdir()
    write_good(videos)
    os.remove(videos / "good.pose.json")
    assert run(videos, data) == 1
    assert "no keypoints" in skipped(data)["good.mp4"]


def test_a_prepared_set_trains(tmp_path):
    """The prepared folder is a TrainingSet: a sample with scale augmentation and EPI has every input."""
    videos, data = tmp_path / "videos", tmp_path / "data"
    videos.mkdir()
    write_good(videos)
    write_good(videos, name="second", depth=False)
    assert run(videos, data) == 0
    clip = TrainingSet(str(data), frames=4, scale_range=(0.8, 1.2), pose_indicator=True).sample(torch.Generator().manual_seed(0), 0)
    assert clip.frames.shape == clip.skeleton.shape == clip.objects.shape == (4, 64, 48, 3) and clip.depth.shape == (4, 64, 48)


def test_a_set_of_another_size_is_refused(tmp_path, capsys):
    videos, data = tmp_path / "videos", tmp_path / "data"
    videos.mkdir()
    write_good(videos)
    assert run(videos, data) == 0
    assert main(["prepare", str(videos), "--out", str(data), "--height", "32", "--width", "48", "--min-frames", "8", "--no-progress"]) == 1
    assert "64x48" in capsys.readouterr().out and read_index(str(data))["height"] == 64


def test_models_fill_in_missing_inputs(tmp_path, monkeypatch):
    """Without mask, keypoints or depth files: SAM2 gets the prompts scaled from source pixels to the
    scaled frames (character + objects), DWPose and Depth Anything run on the cropped frames. The models
    are stand-ins (no weights here); what is checked is what prepare hands them and stores from them."""
    from aa2_core.conditions import depth as depth_module
    from aa2_core.conditions import sam2_video
    from aa2_core.conditions.keypoints import Pose

    videos, data = tmp_path / "videos", tmp_path / "data"
    videos.mkdir()
    write_video(str(videos / "clip.mp4"), torch.rand(10, SRC_H, SRC_W, 3))
    prompts = {"character": {"frame": 0, "box": [70, 20, 90, 60]}, "objects": [{"frame": 0, "points": [[95, 45]], "labels": [1]},
                                                                          {"frame": 0, "box": [55, 62, 65, 70]}]}
    (videos / "clip.prompts.json").write_text(json.dumps(prompts))
    seen = {}

    def segment_video(predictor, frames, prompts):
        seen["frames"], seen["prompts"] = tuple(frames.shape), prompts
        masks = torch.zeros(len(prompts), *frames.shape[:3])
        x0, y0, x1, y1 = (round(v) for v in prompts[0]["box"])
        masks[0, :, y0:y1, x0:x1] = 1
        masks[1, :, 30:40, 76:84] = 1
        masks[2, :, 50:56, 44:52] = 1
        return masks

    def dwpose(frames):
        seen["pose_frames"] = frames.shape
        body = np.zeros((18, 3))
        body[1] = (24.0, 20.0, 0.9)
        return [Pose(body=body.copy(), height=frames.shape[1], width=frames.shape[2]) for _ in frames]

    def estimate_depth(estimator, frames):
        return np.full(frames.shape[:3], 0.25, np.float32)

    monkeypatch.setattr(sam2_video, "segment_video", segment_video)
    monkeypatch.setattr(depth_module, "estimate_depth", estimate_depth)
    monkeypatch.setattr(prepare_data, "_load_model", lambda name, options: {"dwpose": dwpose}.get(name, name))
    assert run(videos, data, "--sam2", "sam2.pt", "--dwpose", "dw", "--depth-model", "da") == 0
    assert seen["frames"] == (10, 64, 96, 3) and seen["pose_frames"] == (10, 64, 48, 3)
    assert seen["prompts"][0]["box"] == pytest.approx([56, 16, 72, 48]) and seen["prompts"][1]["points"][0] == pytest.approx([76, 36])
    clip = read_clip(str(data / "clip" / "clip.safetensors"))
    # the character box x 56..72 of the scaled frame, centred in the crop: origin 40, so x 16..32
    cols = np.flatnonzero(clip.character[0].amax(0).numpy())
    assert (cols[0], cols[-1]) == (16, 31) and clip.objects[0, 30:40, 36:44].all() and clip.objects[0, 50:56, 4:12].all()
    assert clip.objects.sum() == 10 * (80 + 48)  # the union of both objects
    assert clip.body[0, 1].tolist() == pytest.approx([24.0, 20.0, 0.9]) and (clip.depth == 0.25).all()
