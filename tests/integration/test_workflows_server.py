"""Every example workflow against a real ComfyUI server: our nodes load, each workflow runs to its video.

The server is conftest's (tiny models, generated input media). Workflows are converted from the UI format to
the API format the way the frontend does, then sizes and steps are shrunk so they run on a CPU. Each saved
video is checked as a player sees it (PyAV): H.264, yuv420p, every frame, size, frame rate and sound.
"""

import os
import sys
from fractions import Fraction

import pytest

from conftest import (AA2_ONLY_FILE, DRIVING_FPS, FRAMES, IPI_FILE, KPS_FPS, ROOT, SIZE, TONE, comfyui_path, get_json,
                      post_json, queue_workflow, run_workflow, shrink, to_api)

comfyui_path()
WORKFLOWS = sorted(f for f in os.listdir(os.path.join(ROOT, "workflows")) if f.endswith(".json"))
# (frame rate, sound?) of each saved video: the driving video's where the workflow reads one
EXPECTED = {
    "aa2_full_environment_object.json": (DRIVING_FPS, True),  # driving.mp4 with its tone
    "aa2_moore_character_animation.json": (KPS_FPS, False),  # the skeleton video, silent
    "aa2_long_video_stitching.json": (KPS_FPS, False),
    "aa2_non_human_pose_retarget.json": (24, False),  # no video in: Create Video's own fps
    "aa2_animate_x_implicit_pose.json": (DRIVING_FPS, True),  # driving.mp4 (the IPI's frames) with its tone
    "animate_x_official.json": (DRIVING_FPS, True),  # the released Animate-X in driving.mp4's scene, with its tone
}
ANIMATE_X = "aa2_animate_x_implicit_pose.json"


def test_pack_imports_and_registers_every_node(server):
    url, info, run = server
    log = (run / "server.log").read_text()
    assert "IMPORT FAILED" not in log, log[-3000:]
    sys.path.insert(0, ROOT)
    source = open(os.path.join(ROOT, "nodes", "__init__.py")).read()
    ours = [line.split('"')[1] for line in source.splitlines() if line.strip().startswith('"AA2') and '": AA2' in line]
    assert ours and all(node in info for node in ours), [n for n in ours if n not in info]


def probe(path):
    """What a player sees in the file: video codec, pixel format, rate, size, frames; audio seconds and pitch."""
    import av
    import numpy as np

    with av.open(path) as c:
        v = c.streams.video[0]
        info = dict(codec=v.codec_context.name, pix_fmt=v.codec_context.pix_fmt, rate=v.average_rate,
                    size=(v.codec_context.width, v.codec_context.height), frames=sum(1 for _ in c.decode(v)))
    with av.open(path) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            samples = np.concatenate([f.to_ndarray()[0] for f in c.decode(a)])
            spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
            info.update(audio_codec=a.codec_context.name, audio_seconds=len(samples) / a.codec_context.sample_rate,
                        pitch=np.argmax(spectrum) * a.codec_context.sample_rate / len(samples))
    return info


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs_to_a_video(server, workflow_videos, name):
    """Each saved video is an H.264 mp4 browsers play, with every frame, at the driving video's rate and with its sound."""
    _, entry, path = run_workflow(server, name)
    workflow_videos[name] = (entry, path)
    assert path.endswith(".mp4"), entry
    info = probe(path)
    fps, sound = EXPECTED[name]
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p", info
    assert info["frames"] == FRAMES, f"{name}: {info['frames']} frames written, expected {FRAMES}"
    assert info["size"] == (SIZE, SIZE) and info["rate"] == Fraction(fps), info
    assert ("audio_codec" in info) == sound, info
    if sound:  # the driving video's tone, cut to the animation's length
        assert info["audio_codec"] == "aac" and abs(info["pitch"] - TONE) < 15, info
        assert abs(info["audio_seconds"] - FRAMES / fps) < 0.1, info
    if name == ANIMATE_X:  # the loader told the user, in ComfyUI's log, what the aa2-modules file holds
        log = "".join(entry["m"] for entry in get_json(server[0] + "/internal/logs/raw")["entries"])
        assert ("[AA2 Model Loader] aa2-modules file holds: Implicit Pose Indicator (2 layers, 4 tokens/frame), "
                "Mamba temporal layers") in log, log[-3000:]


def test_ipi_workflow_with_a_file_without_an_ipi_names_the_module_and_the_file(server):
    """The Animate-X workflow with an aa2-modules file trained without --modules ipi: the run stops at the IPI
    node, and the error ComfyUI shows names the module and the file."""
    def loader_without_ipi(prompt):
        loaders = [n for n in prompt.values() if n["class_type"] == "AA2ModelLoader"]
        assert [n["inputs"]["aa2_modules"] for n in loaders] == [IPI_FILE]  # the workflow asks for the IPI file
        loaders[0]["inputs"]["aa2_modules"] = AA2_ONLY_FILE

    result = queue_workflow(server, ANIMATE_X, loader_without_ipi)
    assert result["status"]["status_str"] == "error", result["status"]
    errors = [body for kind, body in result["status"]["messages"] if kind == "execution_error"]
    assert len(errors) == 1, result["status"]["messages"]
    error = errors[0]
    assert error["node_type"] == "AA2ImplicitPoseIndicator", error
    message = error["exception_message"]
    assert message.startswith("AA2 Implicit Pose Indicator: ") and "Implicit Pose Indicator (IPI)" in message, message
    assert f"{os.sep}{AA2_ONLY_FILE} holds no 'ipi' module" in message, message


def decoded(path):
    import av
    import numpy as np

    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def test_sampler_environment_mode_takes_the_former_toggle(server, workflow_videos):
    """environment_mode became auto / on / off: a workflow saved with the former toggle still validates and runs,
    ``true`` as on (here what auto gives: the public weights' environment modules are untrained) and ``false`` as
    off; any other value is refused before anything runs, naming the node."""
    import json
    import numpy as np

    name = "aa2_full_environment_object.json"
    if name not in workflow_videos:
        workflow_videos[name] = run_workflow(server, name)[1:]
    auto = decoded(workflow_videos[name][1])

    def run_with(value):
        def edit(prompt):
            samplers = [n for n in prompt.values() if n["class_type"] == "AA2Sampler"]
            assert [n["inputs"]["environment_mode"] for n in samplers] == ["auto"]
            samplers[0]["inputs"]["environment_mode"] = value
        result = queue_workflow(server, name, edit)
        assert result["status"]["status_str"] == "success", json.dumps(result["status"])[-3000:]
        video = [v for out in result["outputs"].values() for v in out.get("images", []) + out.get("videos", [])][0]
        return decoded(os.path.join(server[2], video["subfolder"], video["filename"]))

    assert np.array_equal(run_with(True), auto)
    assert not np.array_equal(run_with(False), auto)

    url, info, _ = server
    with open(os.path.join(ROOT, "workflows", name)) as f:
        prompt = shrink(to_api(json.load(f), info))
    next(n for n in prompt.values() if n["class_type"] == "AA2Sampler")["inputs"]["environment_mode"] = "sometimes"
    status, body = post_json(url + "/prompt", {"prompt": prompt, "client_id": "aa2-test"})
    assert status == 400, body
    assert "AA2 Sampler: environment_mode must be one of ['auto', 'on', 'off']" in json.dumps(body), body
