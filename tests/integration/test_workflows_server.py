"""Every example workflow against a real ComfyUI server: our nodes load, each workflow runs to its video.

The server runs on 127.0.0.1 with the pack in custom_nodes (through an extra-model-paths file, so the
ComfyUI tree is untouched), tiny models in the real file formats, and generated input media. Workflows
are converted from the UI format to the API format the way the frontend does, then sizes and steps are
shrunk so they run on a CPU.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from conftest import ROOT, comfyui_path

COMFYUI = comfyui_path()
WORKFLOWS = sorted(f for f in os.listdir(os.path.join(ROOT, "workflows")) if f.endswith(".json"))
FRAMES = 10
SIZE = 64
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def write_media(folder):
    """The input files the example workflows name, small and synthetic."""
    sys.path.insert(0, ROOT)
    from aa2_core.video_io import write_video
    import cv2
    import numpy as np

    g = torch.Generator().manual_seed(0)
    cv2.imwrite(os.path.join(folder, "character.png"), (torch.rand(80, 72, 3, generator=g).numpy() * 255).astype(np.uint8))
    write_video(os.path.join(folder, "driving_kps.mp4"), torch.rand(FRAMES, SIZE, SIZE, 3, generator=g), 8)
    write_video(os.path.join(folder, "driving.mp4"), torch.rand(FRAMES, SIZE, SIZE, 3, generator=g), 8)
    mask = torch.zeros(FRAMES, SIZE, SIZE, 3)
    mask[:, 16:48, 20:44] = 1
    write_video(os.path.join(folder, "character_mask.mp4"), mask, 8)
    obj = torch.zeros(FRAMES, SIZE, SIZE, 3)
    obj[:, 40:56, 30:40] = 1
    write_video(os.path.join(folder, "object_mask.mp4"), obj, 8)
    for name, shift in (("driving_pose.json", 0.0), ("character_pose.json", 3.0)):
        frames = []
        for t in range(FRAMES if name.startswith("driving") else 1):
            body = []
            for j in range(18):
                body += [20 + 2 * (j % 6) + t * 0.5 + shift, 10 + 2.5 * j, 1.0]
            frames.append({"people": [{"pose_keypoints_2d": body}], "canvas_height": SIZE, "canvas_width": SIZE})
        with open(os.path.join(folder, name), "w") as f:
            json.dump(frames, f)


def full_size_sd_vae(path):
    """ComfyUI fixes the SD VAE's layout, so the test VAE is full size with random weights (fp16)."""
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4)
    save_file({k: v.half().contiguous() for k, v in vae.state_dict().items()}, path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    sys.path.insert(0, ROOT)
    from aa2_core.check import write_tiny_models_dir

    base = tmp_path_factory.mktemp("comfy")
    models, media, run, nodes_dir = (base / n for n in ("models", "input", "run", "custom_nodes"))
    for d in (media, run / "user", nodes_dir):
        d.mkdir(parents=True)
    write_tiny_models_dir(str(models))
    os.remove(models / "vae" / "sd-vae-ft-mse.safetensors")
    full_size_sd_vae(str(models / "vae" / "sd-vae-ft-mse.safetensors"))
    write_media(str(media))
    os.symlink(ROOT, nodes_dir / "aa2_pack_under_test")  # any folder name must work
    (base / "paths.yaml").write_text(
        "aa2_test:\n"
        f"  custom_nodes: {nodes_dir}\n"
        f"  animate_anyone2: {models / 'animate_anyone2'}\n"
        f"  vae: {models / 'vae'}\n"
        f"  clip_vision: {models / 'clip_vision'}\n"
    )
    port = _free_port()
    log = open(run / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
         "--extra-model-paths-config", str(base / "paths.yaml"), "--input-directory", str(media),
         "--output-directory", str(run), "--temp-directory", str(run), "--user-directory", str(run),
         "--database-url", f"sqlite:///{run}/comfyui.db"],
        cwd=COMFYUI, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                info = _get(url + "/object_info")
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("ComfyUI exited:\n" + (run / "server.log").read_text()[-3000:])
                time.sleep(1)
        else:
            pytest.fail("ComfyUI did not answer within 120 s")
        yield url, info, run
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_pack_imports_and_registers_every_node(server):
    url, info, run = server
    log = (run / "server.log").read_text()
    assert "IMPORT FAILED" not in log, log[-3000:]
    sys.path.insert(0, ROOT)
    source = open(os.path.join(ROOT, "nodes", "__init__.py")).read()
    ours = [line.split('"')[1] for line in source.splitlines() if line.strip().startswith('"AA2') and '": AA2' in line]
    assert ours and all(node in info for node in ours), [n for n in ours if n not in info]


def to_api(workflow, info):
    """UI workflow -> API prompt, as the frontend's graphToPrompt does (Note nodes are UI-only)."""
    links = {l[0]: l for l in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] == "Note" or node.get("mode", 0) != 0:
            continue
        spec = info[node["type"]]
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values", []))
        inputs = {}
        for section in ("required", "optional"):
            for name in spec.get("input_order", {}).get(section, list(spec["input"].get(section, {}))):
                kind, *opts = spec["input"][section][name]
                opts = opts[0] if opts else {}
                is_widget = isinstance(kind, list) or kind in WIDGET_TYPES
                if is_widget:
                    assert values, f"{node['type']}: no widget value left for {name}"
                    value = values.pop(0)
                    if opts.get("control_after_generate"):
                        values.pop(0)
                    if any(k.endswith("_upload") and v for k, v in opts.items()):
                        values.pop(0)
                    if name not in linked:
                        inputs[name] = value
                if name in linked:
                    inputs[name] = [str(linked[name][1]), linked[name][2]]
        assert not values, f"{node['type']}: {len(values)} widget values left over: {values}"
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def shrink(prompt):
    """CPU-sized run: small frames, 2 steps, short clips; everything else as the workflow has it."""
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] in ("AA2ReferenceNet", "AA2RenderPose"):
            inputs["width"] = inputs["height"] = SIZE
        if node["class_type"] == "AA2Sampler":
            inputs["steps"] = 2
        if node["class_type"] == "AA2StitchingOptions":
            inputs["clip_length"], inputs["motion_frames"] = 4, 1
        if node["class_type"] == "AA2ModelLoader":
            inputs["dtype"] = "fp32"
    return prompt


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_runs_to_a_video(server, name):
    url, info, run = server
    with open(os.path.join(ROOT, "workflows", name)) as f:
        workflow = json.load(f)
    prompt = shrink(to_api(workflow, info))
    status, body = _post(url + "/prompt", {"prompt": prompt, "client_id": "aa2-test"})
    assert status == 200, body
    prompt_id = body["prompt_id"]
    for _ in range(600):
        history = _get(f"{url}/history/{prompt_id}")
        if prompt_id in history:
            break
        time.sleep(1)
    else:
        pytest.fail(f"{name} did not finish in 600 s")
    result = history[prompt_id]
    assert result["status"]["status_str"] == "success", json.dumps(result["status"])[-3000:]
    videos = [img for out in result["outputs"].values() for img in out.get("images", [])]
    assert videos, result["outputs"]
    import cv2

    path = os.path.join(run, videos[0]["subfolder"], videos[0]["filename"])
    cap = cv2.VideoCapture(path)
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == FRAMES, f"{name}: {count} frames written, expected {FRAMES}"
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (SIZE, SIZE)
