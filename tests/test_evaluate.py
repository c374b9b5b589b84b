"""``python -m aa2_core evaluate``: the table, --json, skipped metrics, and a clear error for each bad input."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from aa2_core.errors import AA2Error
from aa2_core.evaluate import COLUMNS, MetricFiles, evaluate, main, table
from aa2_core.metrics import frames, tiny


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks on a busy 2-core machine: one thread is many times faster than two waiting on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clip(seed, t=4, h=32, w=40):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def write_frames(folder, video, names=None):
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(video):
        name = names[i] if names else f"frame{i + 1}.png"  # frame10 must come after frame9
        cv2.imwrite(os.path.join(folder, name), np.ascontiguousarray(frame[..., ::-1]))
    return folder


def write_mp4(path, video):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 8, (video.shape[2], video.shape[1]))
    for frame in video:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    return path


@pytest.fixture
def folders(tmp_path):
    """GENERATED/TRUTH with a frame folder (noisy) and an mp4 (the same file on both sides)."""
    gen, truth = tmp_path / "generated", tmp_path / "truth"
    a_truth = clip(0)
    noise = np.random.default_rng(1).normal(0, 12, a_truth.shape)
    a_gen = np.clip(np.round(a_truth + noise), 0, 255).astype(np.uint8)
    write_frames(str(gen / "a"), a_gen)
    write_frames(str(truth / "a"), a_truth)
    write_mp4(str(gen / "b.mp4"), clip(2, h=32, w=32))
    shutil.copy(gen / "b.mp4", truth / "b.mp4")
    return str(gen), str(truth), a_gen, a_truth


def test_cli_prints_the_table_and_writes_the_same_numbers_to_json(folders, tmp_path, capsys):
    gen, truth, a_gen, a_truth = folders
    nets = tiny.write_all(str(tmp_path / "nets"))
    out_json = str(tmp_path / "scores.json")
    rc = main([gen, truth, "--lpips", nets["lpips"], "--lpips-backbone", nets["lpips_backbone"],
               "--inception", nets["inception"], "--resnet3d", nets["resnet3d"], "--i3d", nets["i3d"],
               "--clip-frames", "2", "--json", out_json])
    captured = capsys.readouterr()
    printed = captured.out
    assert rc == 0, captured.err
    report = json.load(open(out_json))
    m = report["metrics"]
    assert (report["videos"], report["frames"], report["clips"]) == (2, 8, 4)
    head, row = [line for line in printed.splitlines() if line.strip()][1:3]
    for name in ("PSNR*↑", "SSIM↑", "L1↓", "LPIPS↓", "FID↓", "FID-VID↓", "FVD↓"):
        assert name in head
    for name in COLUMNS:
        assert m[name]["skipped"] is None and m[name]["value"] is not None and m[name]["definition"]
    # the row shows the JSON's numbers, in the papers' column order
    assert row.split()[1:8] == [f"{m['PSNR*']['value']:.2f}", f"{m['SSIM']['value']:.3f}", f"{m['L1']['value']:.2E}",
                                f"{m['LPIPS']['value']:.3f}", f"{m['FID']['value']:.2f}",
                                f"{m['FID-VID']['value']:.2f}", f"{m['FVD']['value']:.2f}"]
    # per-frame metrics are means over every frame: the mp4 is identical on both sides (PSNR* 100 per frame)
    expected = np.concatenate([frames.psnr_star(a_gen, a_truth), np.full(4, 100.0)]).mean()
    assert m["PSNR*"]["value"] == pytest.approx(expected, abs=1e-9)
    assert 0 < m["LPIPS"]["value"] and 0 < m["L1"]["value"] and m["SSIM"]["value"] < 1
    assert "DisCo" in m["PSNR*"]["definition"] and "I3D" in m["FVD"]["definition"]


def test_identical_folders_score_perfectly_and_missing_networks_are_skipped(folders, tmp_path):
    gen = folders[0]
    report = evaluate(gen, gen, MetricFiles(i3d=None))
    m = report["metrics"]
    assert m["PSNR*"]["value"] == 100.0 and m["SSIM"]["value"] == pytest.approx(1.0, abs=1e-12)
    assert m["L1"]["value"] == 0.0 and m["PSNR"]["value"] == float("inf")
    for name, option in (("LPIPS", "--lpips"), ("FID", "--inception"), ("FID-VID", "--resnet3d"), ("FVD", "--i3d")):
        assert m[name]["value"] is None and m[name]["skipped"] == f"no {option} file given"
    text = table(report)
    assert "skipped: no --i3d file given" in text and "100.00" in text
    out_json = str(tmp_path / "same.json")
    assert main([gen, gen, "--json", out_json]) == 0
    assert json.load(open(out_json))["metrics"]["PSNR"]["value"] == "inf"  # JSON has no infinity


def test_too_short_videos_skip_fvd_and_say_why(folders, tmp_path):
    gen, truth = folders[:2]
    nets = tiny.write_all(str(tmp_path / "nets"))
    m = evaluate(gen, truth, MetricFiles(i3d=nets["i3d"]))["metrics"]  # 4-frame videos, 16-frame clips
    assert m["FVD"]["value"] is None and m["FVD"]["skipped"] == "needs at least 2 16-frame clips per side, got 0"


def test_a_folder_of_frames_is_one_video_in_natural_order(tmp_path):
    video = clip(3, t=11)
    names = [f"f{i}.png" for i in range(11)]  # f10 sorts before f2 as text
    write_frames(str(tmp_path / "g" / "dance"), video, names)
    write_frames(str(tmp_path / "t" / "dance"), video, names)
    report = evaluate(str(tmp_path / "g" / "dance"), str(tmp_path / "t" / "dance"))
    assert report["videos"] == 1 and report["frames"] == 11 and report["metrics"]["PSNR*"]["value"] == 100.0
    from aa2_core.metrics.inputs import read_frames

    assert np.array_equal(read_frames(str(tmp_path / "g" / "dance")), video)


# ---- bad input: each case is refused with the file and what was expected ---------------------------------------

def bad(tmp_path, gen_setup, truth_setup):
    g, t = tmp_path / "gen", tmp_path / "truth"
    g.mkdir(exist_ok=True)
    t.mkdir(exist_ok=True)
    gen_setup(g)
    truth_setup(t)
    with pytest.raises(AA2Error) as e:
        evaluate(str(g), str(t))
    return str(e.value)


def test_empty_folder(tmp_path):
    msg = bad(tmp_path, lambda g: None, lambda t: write_frames(str(t / "a"), clip(0)))
    assert "GENERATED" in msg and "gen is empty" in msg and "expected videos" in msg


def test_mismatched_frame_counts(tmp_path):
    msg = bad(tmp_path, lambda g: write_frames(str(g / "a"), clip(0, t=4)), lambda t: write_frames(str(t / "a"), clip(0, t=5)))
    assert "has 4 frames" in msg and "has 5" in msg and os.path.join("gen", "a") in msg and "same number of frames" in msg


def test_mismatched_sizes(tmp_path):
    msg = bad(tmp_path, lambda g: write_frames(str(g / "a"), clip(0, w=40)), lambda t: write_frames(str(t / "a"), clip(0, w=48)))
    assert "40x32" in msg and "48x32" in msg and "same frame size" in msg


def test_unreadable_video(tmp_path):
    def garbage(g):
        (g / "a.mp4").write_bytes(b"this is not a video" * 50)
    msg = bad(tmp_path, garbage, lambda t: write_frames(str(t / "a"), clip(0)))
    assert "a.mp4" in msg and "could not read it as a video" in msg


def test_unreadable_frame(tmp_path):
    def broken(g):
        write_frames(str(g / "a"), clip(0))
        (g / "a" / "frame2.png").write_bytes(b"\x89PNG broken")
    msg = bad(tmp_path, broken, lambda t: write_frames(str(t / "a"), clip(0)))
    assert "frame2.png" in msg and "could not read it as an image" in msg


def test_frames_of_different_sizes_in_one_video(tmp_path):
    def mixed(g):
        write_frames(str(g / "a"), clip(0))
        write_frames(str(g / "a"), clip(1, t=1, w=20), names=["frame9.png"])
    msg = bad(tmp_path, mixed, lambda t: write_frames(str(t / "a"), clip(0)))
    assert "frame9.png" in msg and "20x32" in msg and "one size" in msg


def test_videos_without_a_partner(tmp_path):
    msg = bad(tmp_path, lambda g: write_frames(str(g / "a"), clip(0)), lambda t: write_frames(str(t / "b"), clip(0)))
    assert "generated without a truth video: a" in msg and "truth without a generated video: b" in msg


def test_frames_too_small_for_the_lpips_backbone(folders, tmp_path):
    nets = tiny.write_all(str(tmp_path / "nets"))
    small = tmp_path / "small"
    write_frames(str(small / "a"), clip(0, h=24, w=40))
    with pytest.raises(AA2Error, match=r"'a': frames of 40x24 pixels; expected at least 31x31 .*LPIPS"):
        evaluate(str(small), str(small), MetricFiles(lpips=nets["lpips"], lpips_backbone=nets["lpips_backbone"]))


def test_cli_reports_bad_input_on_stderr(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: GENERATED:") and "is not a folder" in err


def test_video_metrics_follow_their_recipes(tmp_path):
    """FID, FID-VID and FVD from evaluate equal the documented recipes written out here: frames in 0..1 for the
    Inception; clips resized per channel as float32 PIL bicubic (DisCo: not clipped to 0..255), then minus the Kinetics
    mean (3D ResNet, 112) or scaled to [-1, 1] (I3D, 224); Fréchet distances of the two feature sets."""
    from PIL import Image

    from aa2_core.metrics import frechet, i3d, inception, resnet3d

    gen_videos, truth_videos = [], []
    for name, seed in (("a", 0), ("b", 1)):
        truth_v = clip(seed, t=2)
        gen_v = np.clip(np.round(truth_v + np.random.default_rng(seed + 5).normal(0, 25, truth_v.shape)), 0, 255).astype(np.uint8)
        write_frames(str(tmp_path / "g" / name), gen_v)
        write_frames(str(tmp_path / "t" / name), truth_v)
        gen_videos.append(gen_v)
        truth_videos.append(truth_v)
    nets = tiny.write_all(str(tmp_path / "nets"))
    m = evaluate(str(tmp_path / "g"), str(tmp_path / "t"),
                 MetricFiles(inception=nets["inception"], resnet3d=nets["resnet3d"], i3d=nets["i3d"]), clip_frames=1)["metrics"]

    def resized(frame, size):
        return np.stack([np.asarray(Image.fromarray(frame[..., c].astype(np.float32), mode="F")
                                    .resize((size, size), Image.BICUBIC)) for c in range(3)], -1)  # not clipped: DisCo

    inc, i3, rn = inception.load(nets["inception"]), i3d.load(nets["i3d"]), resnet3d.load(nets["resnet3d"])
    mean = torch.tensor([114.7748, 107.7354, 99.4750]).view(1, 3, 1, 1, 1)
    feats = {"FID": ([], []), "FVD": ([], []), "FID-VID": ([], [])}
    with torch.no_grad():
        for side, videos in enumerate((gen_videos, truth_videos)):
            for v in videos:
                for frame in v:  # clip_frames=1: every frame is a clip
                    feats["FID"][side].append(inc(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255)[0].numpy())
                    big = torch.from_numpy(resized(frame, 224)).permute(2, 0, 1)[None, :, None]
                    feats["FVD"][side].append(i3(big / 127.5 - 1)[0].numpy())
                    small = torch.from_numpy(resized(frame, 112)).permute(2, 0, 1)[None, :, None]
                    feats["FID-VID"][side].append(rn(small - mean)[0].numpy())
    for name, (g, t) in feats.items():
        assert m[name]["value"] == pytest.approx(frechet.features_distance(np.stack(g), np.stack(t)), rel=1e-5, abs=1e-6)
        assert m[name]["value"] > 0
