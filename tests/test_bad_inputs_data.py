"""Bad training-data inputs (issue 16): ``prepare`` and ``train`` through ``python -m aa2_core`` give an exit code
other than 0 and one line naming the input and what was expected; never a traceback.

Each row: how to build the bad input (returns the argv), the exit code, a fragment of the expected line. The
train rows pass an empty ``--models`` folder: the data check runs before any model loads, so the error shown is
the data one (the last row shows a good set gets past it to the models)."""

import json
import os

import pytest
from safetensors.torch import save_file

from aa2_core.__main__ import main
from aa2_core.training import dataset_format
from aa2_core.training.dataset_format import FORMAT, read_clip, read_index
from test_prepare_data import OUT, SRC_H, SRC_W, write_good, write_variable_size
from test_training_data import synthetic_record, write_set


# ------------------------------------------------------------------------------------------- prepare rows


def prepare_argv(tmp, *extra):
    return ["prepare", str(tmp / "videos"), "--out", str(tmp / "data"), *OUT, *extra]


def videos(tmp, **good):
    (tmp / "videos").mkdir(exist_ok=True)
    write_good(tmp / "videos", **good)
    return tmp / "videos"


def out_is_file(tmp, mp):
    (tmp / "data").write_text("not a folder")
    return prepare_argv(tmp)  # no videos folder either: the --out check must come first, before any work


def out_under_file(tmp, mp):
    videos(tmp)
    (tmp / "file").write_text("x")
    return ["prepare", str(tmp / "videos"), "--out", str(tmp / "file" / "data"), *OUT]


def index_text(text):
    def build(tmp, mp):
        videos(tmp)
        (tmp / "data").mkdir()
        (tmp / "data" / "dataset.json").write_text(text)
        return prepare_argv(tmp)
    return build


GOOD_INDEX = {"format": FORMAT, "version": 1, "height": 64, "width": 48, "clips": [], "skipped": []}


def index_with(**fields):
    return json.dumps({**GOOD_INDEX, **fields})


def pose_json(text):
    def build(tmp, mp):
        videos(tmp)
        (tmp / "videos" / "good.pose.json").write_text(text)
        return prepare_argv(tmp)
    return build


def interrupted(tmp, mp):
    """Ctrl-C while the second clip is being written: the writer has written half its file."""
    videos(tmp, name="a")
    videos(tmp, name="b", depth=False)
    real = dataset_format.save_file

    def save_file_then_ctrl_c(tensors, path, metadata=None):
        if "body" in tensors and os.path.basename(os.path.dirname(path)) == "b":
            real(tensors, path, metadata=metadata)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
            raise KeyboardInterrupt
        real(tensors, path, metadata=metadata)

    mp.setattr(dataset_format, "save_file", save_file_then_ctrl_c)
    return prepare_argv(tmp)


def garbage_video(tmp, mp):
    (tmp / "videos").mkdir()
    (tmp / "videos" / "broken.mp4").write_bytes(os.urandom(2000))
    return prepare_argv(tmp)


def other_size(tmp, mp):
    videos(tmp)
    assert main(prepare_argv(tmp)) == 0
    return ["prepare", str(tmp / "videos"), "--out", str(tmp / "data"), "--height", "32", "--width", "48", "--no-progress"]


def short_video(tmp, mp):
    videos(tmp, frames=5)
    return prepare_argv(tmp)


def without(suffix):
    def build(tmp, mp):
        videos(tmp)
        os.remove(tmp / "videos" / f"good{suffix}")
        return prepare_argv(tmp)
    return build


def variable_size(tmp, mp):
    (tmp / "videos").mkdir()
    write_variable_size(tmp / "videos" / "varsize.mkv")
    return prepare_argv(tmp)


def bad_prompts(tmp, mp):
    videos(tmp)
    (tmp / "videos" / "good.prompts.json").write_text("[1, 2]")
    return prepare_argv(tmp)


def no_videos(tmp, mp):
    (tmp / "videos").mkdir()
    return prepare_argv(tmp)


def nothing(tmp, mp):
    return prepare_argv(tmp)


def odd_size(tmp, mp):
    videos(tmp)
    return ["prepare", str(tmp / "videos"), "--out", str(tmp / "data"), "--height", "30", "--width", "48"]


# ------------------------------------------------------------------------------------------- train rows


def train_argv(tmp):
    (tmp / "models").mkdir(exist_ok=True)
    return ["train", "--data", str(tmp / "data"), "--models", str(tmp / "models"), "--out", str(tmp / "out.safetensors"),
            "--frames", "4", "--steps", "1", "--workers", "0", "--cpu", "--no-tensorboard"]


def good_set(tmp, frames=12):
    (tmp / "data").mkdir(exist_ok=True)
    write_set(tmp / "data", [synthetic_record(frames=frames)])
    return tmp / "data" / "clip0" / "clip.safetensors"


def train_index(text):
    def build(tmp, mp):
        good_set(tmp)
        (tmp / "data" / "dataset.json").write_text(text)
        return train_argv(tmp)
    return build


def train_index_fields(**fields):
    def build(tmp, mp):
        good_set(tmp)
        index = json.loads((tmp / "data" / "dataset.json").read_text())
        for key, value in fields.items():
            if key.startswith("clip_"):
                index["clips"][0][key[5:]] = value
            else:
                index[key] = value
        (tmp / "data" / "dataset.json").write_text(json.dumps(index))
        return train_argv(tmp)
    return build


def clip_bytes(change):
    def build(tmp, mp):
        path = good_set(tmp)
        path.write_bytes(change(path.read_bytes()))
        return train_argv(tmp)
    return build


def clip_tensors(change):
    """The clip rewritten with its tensors changed (valid safetensors, wrong content)."""
    def build(tmp, mp):
        path = good_set(tmp)
        record = read_clip(str(path))
        tensors = {k: getattr(record, k) for k in ("frames", "character", "body", "objects", "depth")}
        change(tensors)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": FORMAT, "version": "1", "fps": "24.0", "source": "x.mp4"})
        return train_argv(tmp)
    return build


def no_index(tmp, mp):
    good_set(tmp)
    os.remove(tmp / "data" / "dataset.json")
    return train_argv(tmp)


def missing_clip(tmp, mp):
    os.remove(good_set(tmp))
    return train_argv(tmp)


def short_clips(tmp, mp):
    good_set(tmp, frames=3)
    return train_argv(tmp)


def good_train_set(tmp, mp):
    good_set(tmp)
    return train_argv(tmp)


ROWS = {
    # prepare: the cases issue 16 found
    "prepare --out is a file": (out_is_file, 1, "data is a file; expected a folder for the training set"),
    "prepare --out under a file": (out_under_file, 1, "file is a file, so no folder can be made under it"),
    "prepare dataset.json broken": (index_text('{"format": "aa2-tr'), 1, "dataset.json: not valid JSON"),
    "prepare dataset.json a list": (index_text("[1, 2]"), 1, "dataset.json: holds a JSON list, expected an object {format, version"),
    "prepare dataset.json height a string": (index_text(index_with(height="64")), 1, "dataset.json: 'height' is '64'; expected a whole number"),
    "prepare dataset.json clips not a list": (index_text(index_with(clips={"a": 1})), 1, "dataset.json: 'clips' is {'a': 1}; expected a list"),
    "prepare pose.json not POSE_KEYPOINT": (pose_json('{"foo": 1}'), 1, "good.pose.json: pose keypoints frame 0: not POSE_KEYPOINT; expected {'people'"),
    "prepare Ctrl-C": (interrupted, 130, "interrupted; 1 clips done, run the same command again to resume"),
    "prepare ffmpeg errno noise": (garbage_video, 1, "skipped broken.mp4: video: cannot open broken.mp4: Invalid data found when processing input"),
    # prepare: cases it already handled
    "prepare videos folder missing": (nothing, 1, "videos folder not found"),
    "prepare no videos": (no_videos, 1, "no videos (.mp4"),
    "prepare size not a multiple of 8": (odd_size, 2, "must be multiples of 8"),
    "prepare set of another size": (other_size, 1, "holds a training set at 64x48; asked for 32x48"),
    "prepare short video": (short_video, 1, "skipped good.mp4: 5 frames, fewer than --min-frames 8"),
    "prepare no mask": (without(".mask.mp4"), 1, "skipped good.mp4: no character mask: give good.mask.mp4"),
    "prepare no keypoints": (without(".pose.json"), 1, "skipped good.mp4: no keypoints: give good.pose.json"),
    "prepare pose.json not JSON": (pose_json("{"), 1, "skipped good.mp4: keypoints: cannot read good.pose.json"),
    "prepare pose.json too short": (pose_json(json.dumps([{"people": [], "canvas_height": SRC_H, "canvas_width": SRC_W}] * 3)),
                                    1, "keypoints: 3 frames in good.pose.json, the video has 12"),
    "prepare prompts.json wrong": (bad_prompts, 1, 'prompts: good.prompts.json must hold {"character"'),
    "prepare variable frame size": (variable_size, 1, "variable frame size: 120x80 at frame 0"),
    # train: the index and every clip's header are checked before any model loads
    "train dataset.json broken": (train_index("{"), 1, "dataset.json: not valid JSON"),
    "train dataset.json a list": (train_index("[]"), 1, "dataset.json: holds a JSON list"),
    "train dataset.json frames a string": (train_index_fields(clip_frames="12"), 1, "dataset.json: clips[0].frames is '12'; expected a whole number"),
    "train dataset.json name a path": (train_index_fields(clip_name="../elsewhere"), 1, "clips[0].name is '../elsewhere'; expected the name of a clip folder"),
    "train dataset.json wrong version": (train_index_fields(version=2), 1, "expected format aa2-training-set version 1"),
    "train clip cut in half": (clip_bytes(lambda b: b[: len(b) // 2]), 1, "clip0/clip.safetensors: not a readable safetensors file"),
    "train clip garbage header": (clip_bytes(lambda b: os.urandom(64) + b[64:]), 1, "clip0/clip.safetensors: not a readable safetensors file"),
    "train clip without body": (clip_tensors(lambda t: t.pop("body")), 1, "clip0/clip.safetensors: the clip has no 'body' tensor"),
    "train clip depth wrong shape": (clip_tensors(lambda t: t.update(depth=t["depth"][:, :8])), 1, "'depth' should have shape [12, 96, 64]; got [12, 8, 64]"),
    "train clip frames wrong dtype": (clip_tensors(lambda t: t.update(frames=t["frames"].float())), 1, "'frames' should be U8"),
    "train clip shorter than the index": (clip_tensors(lambda t: t.update({k: v[:10] for k, v in t.items()})), 1,
                                          "clip0/clip.safetensors: holds 10 frames of 96x64; dataset.json says 12 frames of 96x64"),
    "train no dataset.json": (no_index, 1, "no dataset.json; make a training set with"),
    "train clip file missing": (missing_clip, 1, "clip 'clip0' is listed in dataset.json but clip0/clip.safetensors is missing"),
    "train clips too short": (short_clips, 1, "no clip has the 4 frames a sample of 4 frames"),
    "train good set reaches the models": (good_train_set, 1, "missing model files"),
}


@pytest.mark.parametrize("build, code, fragment", ROWS.values(), ids=ROWS.keys())
def test_bad_input_gives_one_clear_line(build, code, fragment, tmp_path, monkeypatch, capsys):
    argv = build(tmp_path, monkeypatch)
    capsys.readouterr()
    assert main(argv) == code
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text and "[Errno" not in text, text
    assert any(fragment in line for line in text.splitlines()), text


def test_interrupted_prepare_leaves_whole_clips_only_and_resumes(tmp_path, monkeypatch, capsys):
    """Ctrl-C while a clip is half written: no clip file under its final name, no leftover partial file, the
    index lists the finished clip; the same command then writes only the missing clip."""
    argv = interrupted(tmp_path, monkeypatch)
    assert main(argv) == 130
    data = tmp_path / "data"
    assert not (data / "b" / "clip.safetensors").exists()
    assert [n for _, _, files in os.walk(data) for n in files if "partial" in n] == []
    assert [c["name"] for c in json.loads((data / "dataset.json").read_text())["clips"]] == ["a"]
    monkeypatch.undo()
    capsys.readouterr()
    assert main(argv) == 0
    assert "1 clips written, 1 already done" in capsys.readouterr().out
    assert [c["name"] for c in read_index(str(data))["clips"]] == ["a", "b"]


def test_resume_redoes_a_damaged_clip(tmp_path, capsys):
    """A clip whose header disagrees with the format (no 'body') is not counted as done on resume."""
    videos(tmp_path)
    argv = prepare_argv(tmp_path)
    assert main(argv) == 0
    path = tmp_path / "data" / "good" / "clip.safetensors"
    record = read_clip(str(path))
    save_file({"frames": record.frames, "character": record.character}, str(path),
              metadata={"format": FORMAT, "version": "1", "fps": "24.0", "source": "good.mp4"})
    capsys.readouterr()
    assert main(argv) == 0
    assert "1 clips written, 0 already done" in capsys.readouterr().out
    assert read_clip(str(path)).body.shape == (12, 18, 3)


def test_skip_reasons_drop_the_errno_and_the_path(tmp_path):
    """PyAV's ``[Errno 1094995529] ...: '/full/path'`` becomes its message; the file is named once by the caller."""
    import av

    from aa2_core.training.prepare_data import readable

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(av.FFmpegError) as info:
        av.open(str(bad))
    assert "[Errno" in str(info.value)  # what PyAV says, for the record
    assert readable(info.value) == "Invalid data found when processing input"
    assert readable(FileNotFoundError(2, "No such file or directory", "/x")) == "No such file or directory"
    assert readable(RuntimeError("[Errno 5] odd")) == "odd"


def test_a_pose_keypoint_frame_without_people_is_still_accepted():
    """The POSE_KEYPOINT shape check takes a frame with no 'people' key (no one detected), as DWPose writes it."""
    from aa2_core.conditions.keypoints import parse_pose_keypoint

    (pose,) = parse_pose_keypoint([{"canvas_height": 8, "canvas_width": 8}])
    assert pose.is_empty


def test_deleting_a_broken_index_and_running_prepare_rebuilds_it(tmp_path, capsys):
    """What the index errors tell the user to do works: the finished clips are found from their files."""
    videos(tmp_path)
    argv = prepare_argv(tmp_path)
    assert main(argv) == 0
    (tmp_path / "data" / "dataset.json").write_text("[]")
    assert main(argv) == 1
    os.remove(tmp_path / "data" / "dataset.json")
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 clips written, 1 already done" in capsys.readouterr().out
    assert [c["name"] for c in read_index(str(tmp_path / "data"))["clips"]] == ["good"]
