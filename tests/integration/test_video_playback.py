"""A video saved by an example workflow plays in headless Chromium (Debian's build, which decodes H.264).

tests/integration/frontend/play_video.mjs loads the file from the test server (/api/view, as the ComfyUI UI
does) into a bare <video> element, plays, pauses on the middle frame and takes a screenshot. The test
reads the element's duration and size, and compares the screenshot with the frames PyAV decodes from the
same file: it must be one of them, the one at the element's currentTime, not a blank or black box. The script
waits for the frame actually presented after the seek (requestVideoFrameCallback), then takes screenshots until
the picture differs from the one before the seek and two in a row agree: under load Chromium reported the
target frame presented while the screenshot still showed frame 0.
Skips, saying which, where node, Chromium or playwright-core is absent (bash scripts/setup_frontend_test.sh).
"""

import json
import os
import subprocess
import urllib.parse

import numpy as np
import pytest

from conftest import FRAMES, SIZE, comfyui_path, run_workflow
from test_frontend_load import CHROMIUM, FRONTEND, _missing_requirement

comfyui_path()
WORKFLOW = "aa2_full_environment_object.json"  # video and sound, at the driving video's rate
SCALE = 4  # play_video.mjs draws the video 4x larger, nearest neighbour


def decoded_frames(path):
    import av

    with av.open(path) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24").astype(np.float32) / 255 for f in c.decode(stream)]
        return np.stack(frames), float(stream.average_rate)


def screenshot_pixels(path):
    """The screenshot back at the video's own size (each 4x4 block averaged)."""
    from PIL import Image

    shot = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
    h, w = shot.shape[0] // SCALE, shot.shape[1] // SCALE
    return shot[: h * SCALE, : w * SCALE].reshape(h, SCALE, w, SCALE, 3).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def played(request, tmp_path_factory, workflow_videos):
    reason = _missing_requirement()
    if reason:
        pytest.skip(reason)  # before the server starts
    server = request.getfixturevalue("server")
    if WORKFLOW not in workflow_videos:  # run alone: make the video here
        _, entry, path = run_workflow(server, WORKFLOW)
        workflow_videos[WORKFLOW] = (entry, path)
    entry, path = workflow_videos[WORKFLOW]
    query = urllib.parse.urlencode({"filename": entry["filename"], "subfolder": entry["subfolder"], "type": entry.get("type", "output")})
    frames, fps = decoded_frames(path)
    middle = (FRAMES // 2 + 0.5) / fps  # inside the middle frame, not on a boundary
    shot = str(tmp_path_factory.mktemp("playback") / "frame.png")
    run = subprocess.run(["node", os.path.join(FRONTEND, "play_video.mjs"), f"{server[0]}/api/view?{query}", str(middle), shot, str(1 / fps)],
                         check=False, capture_output=True, text=True, timeout=120, env={**os.environ, "CHROMIUM": CHROMIUM})
    assert run.returncode == 0, f"play_video.mjs exited {run.returncode}:\n{run.stderr[-3000:]}"
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"\nplayback in {CHROMIUM}: {report}")  # the measured figures, for the CI log
    return report, frames, fps


def test_chromium_decodes_the_video_and_knows_its_duration(played):
    report, frames, fps = played
    assert report["can_play"]["mp4_h264"] == "probably", report  # this Chromium has the H.264 decoder
    assert report["first_event"] == "loadeddata" and report["error"] is None, report
    assert isinstance(report["duration"], (int, float)) and report["duration"] > 0, report
    assert abs(report["duration"] - FRAMES / fps) < 0.1, report  # the whole video, at its rate
    assert (report["width"], report["height"]) == (SIZE, SIZE), report


def test_the_screenshot_shows_the_frame_at_the_current_time(played):
    report, frames, fps = played
    assert report["seeked"] == "seeked", report
    # play_video.mjs waited for Chromium to present the frame at the seek target before the screenshot
    assert report["presented_time"] is not None, report
    assert int(report["presented_time"] * fps + 1e-3) == min(int(report["time"] * fps), len(frames) - 1), report
    shot = screenshot_pixels(report["screenshot"])
    assert shot.shape == frames.shape[1:]
    assert shot.std() > 0.03, f"blank screenshot (pixel std {shot.std():.4f})"
    errors = np.abs(frames - shot).mean(axis=(1, 2, 3))
    print(f"\nscreenshot pixel std {shot.std():.4f}; mean abs difference to each decoded frame {errors.round(4).tolist()}")
    shown = min(int(report["time"] * fps), len(frames) - 1)  # the frame on screen at currentTime
    assert int(errors.argmin()) == shown, (errors.round(4).tolist(), report["time"])  # that frame, not any
    assert errors[shown] < 0.03, errors.round(4).tolist()  # Chromium's pixels are PyAV's, up to YUV->RGB rounding
