"""Integration tests against the real ComfyUI: set COMFYUI_PATH to a ComfyUI checkout and run them with a
Python that has ComfyUI's requirements (see README). Without it they skip, saying why.

One ComfyUI server per test session (``server``) serves every module: the workflow runs, the frontend
load test and the playback test. It runs on 127.0.0.1 with the pack in custom_nodes (through an
extra-model-paths file, so the ComfyUI tree is untouched), tiny models in the real file formats, and
generated input media (``write_media``).
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRAMES = 10
SIZE = 64
KPS_FPS = 10  # the skeleton video's frame rate ...
DRIVING_FPS = 12  # ... and the driving video's, different so that the saved video shows which one it took
TONE = 440.0  # Hz, the driving video's sound
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
STARTUP_S = 300  # a busy CI machine (2 cores) starts ComfyUI in 1-2 minutes
IPI_FILE = "aa2_modules_ipi.safetensors"  # an Implicit Pose Indicator and Mamba layers (the Animate-X workflow's)
AA2_ONLY_FILE = "aa2_modules.safetensors"  # the AA2 modules only: no IPI


def comfyui_path():
    path = os.environ.get("COMFYUI_PATH")
    if not path or not os.path.isfile(os.path.join(path, "main.py")):
        pytest.skip("COMFYUI_PATH is not set to a ComfyUI checkout (folder with main.py)", allow_module_level=True)
    return path


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """ComfyUI imported in-process on the CPU, with our pack loaded as a custom node and tiny models."""
    path = comfyui_path()
    sys.path.insert(0, path)
    try:
        from comfy.cli_args import args
    except ImportError as e:
        pytest.skip(f"ComfyUI's requirements are not importable in this Python ({e})")
    args.cpu = True
    import asyncio

    import folder_paths
    import nodes

    sys.path.insert(0, ROOT)
    from aa2_core.check import write_tiny_models_dir

    models = tmp_path_factory.mktemp("models")
    write_tiny_models_dir(str(models))
    write_aa2_modules_files(str(models / "animate_anyone2"))
    asyncio.run(nodes.load_custom_node(ROOT))
    for name in ("animate_anyone2", "clip_vision", "vae"):
        folder_paths.add_model_folder_path(name, str(models / name), is_default=True)
    return nodes, models


def write_aa2_modules_files(folder):
    """Two aa2-modules files next to the tiny Moore files: IPI_FILE holds a tiny Implicit Pose Indicator and
    Mamba layers with small random weights (so that turning the IPI on changes the video), AA2_ONLY_FILE holds
    only the (untrained) AA2 modules, as a file trained without --modules ipi."""
    sys.path.insert(0, ROOT)
    from aa2_core.checkpoints.aa2_file import save_aa2_file
    from aa2_core.checkpoints.assembly import assemble, build_modules, module_parameters
    from aa2_core.tiny import TINY_IPI_CONFIG, TINY_MAMBA_CONFIG

    def tiny():
        return assemble(*(os.path.join(folder, f"{n}.pth") for n in ("denoising_unet", "reference_unet", "pose_guider", "motion_module")))

    models = tiny()
    build_modules(models, ["ipi", "mamba"], ipi=TINY_IPI_CONFIG, mamba=TINY_MAMBA_CONFIG)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in module_parameters(models, ["ipi", "mamba"]):
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    animate_x = {k: v for k, v in models.denoising.aa2_state_dict().items() if k.startswith(("ipi.", "mamba."))}
    save_aa2_file(os.path.join(folder, IPI_FILE), {"denoising": animate_x}, architecture=models.denoising.architecture())
    save_aa2_file(os.path.join(folder, AA2_ONLY_FILE), {"denoising": tiny().denoising.aa2_state_dict()})


def pose_keypoints(frames, shift=0.0):
    """POSE_KEYPOINT frames (one person, 18 body joints on a SIZE x SIZE canvas), moving a little each frame."""
    out = []
    for t in range(frames):
        body = []
        for j in range(18):
            body += [20 + 2 * (j % 6) + t * 0.5 + shift, 10 + 2.5 * j, 1.0]
        out.append({"people": [{"pose_keypoints_2d": body}], "canvas_height": SIZE, "canvas_width": SIZE})
    return out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def post_json(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def tone(path, seconds):
    """An audio-only AAC file with a sine tone, the driving video's sound."""
    import av
    import numpy as np

    rate = 44100
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        wave = np.sin(2 * np.pi * TONE * np.arange(int(seconds * rate)) / rate).astype(np.float32)
        for start in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def write_media(folder):
    """The input files the example workflows name, small and synthetic; driving.mp4 has a sound track."""
    sys.path.insert(0, ROOT)
    from aa2_core.video_io import write_video
    import cv2
    import numpy as np

    g = torch.Generator().manual_seed(0)
    cv2.imwrite(os.path.join(folder, "character.png"), (torch.rand(80, 72, 3, generator=g).numpy() * 255).astype(np.uint8))
    write_video(os.path.join(folder, "driving_kps.mp4"), torch.rand(FRAMES, SIZE, SIZE, 3, generator=g), KPS_FPS)
    tone(os.path.join(folder, "tone.m4a"), 2 * FRAMES / DRIVING_FPS)  # longer than the video: the output cuts it
    write_video(os.path.join(folder, "driving.mp4"), torch.rand(FRAMES, SIZE, SIZE, 3, generator=g), DRIVING_FPS,
                audio_from=os.path.join(folder, "tone.m4a"))
    mask = torch.zeros(FRAMES, SIZE, SIZE, 3)
    mask[:, 16:48, 20:44] = 1
    write_video(os.path.join(folder, "character_mask.mp4"), mask, DRIVING_FPS)
    obj = torch.zeros(FRAMES, SIZE, SIZE, 3)
    obj[:, 40:56, 30:40] = 1
    write_video(os.path.join(folder, "object_mask.mp4"), obj, DRIVING_FPS)
    for name, frames, shift in (("driving_pose.json", FRAMES, 0.0), ("character_pose.json", 1, 3.0)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(pose_keypoints(frames, shift), f)


def full_size_sd_vae(path):
    """ComfyUI fixes the SD VAE's layout, so the test VAE is full size with random weights (fp16)."""
    from safetensors.torch import save_file

    save_file(full_size_sd_vae_state_dict(), path)


def full_size_sd_vae_state_dict():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4)
    return {k: v.half().contiguous() for k, v in vae.state_dict().items()}


ANIMATE_X_FILES = {  # folder -> names, as workflows/animate_x_official.json names them (the manifest's folders)
    "diffusion_models": ["animate-x_ckpt.pth"], "checkpoints": ["v2-1_512-ema-pruned.ckpt"],
    "clip_vision": ["open_clip_pytorch_model.bin"], "dwpose": ["yolox_l.onnx", "dw-ll_ucoco_384.onnx"],
}


def write_animate_x_files(models):
    """The released Animate-X files under their released names: the tiny UNet (released layout), a full-size SD VAE
    (random; ComfyUI's VAE has the SD layout) as an SD2.1-style ``.ckpt`` (``first_stage_model.*``), a tiny
    ``open_clip_pytorch_model.bin`` (both towers: zero_y comes from its text tower), and empty DWPose files (the
    frontend sees them present; the HTTP runs give the DWPose nodes' keypoints from JSON, see
    test_workflows_server.py)."""
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from aa2_core.families.animate_x.tiny import tiny_animate_x_state_dict, write_tiny_open_clip_bin
    from ldm_layout import vae_to_ldm

    for folder in ANIMATE_X_FILES:
        os.makedirs(os.path.join(models, folder), exist_ok=True)
    torch.save(tiny_animate_x_state_dict(), os.path.join(models, "diffusion_models", "animate-x_ckpt.pth"))
    torch.save({"state_dict": vae_to_ldm(full_size_sd_vae_state_dict(), prefix="first_stage_model.")},
               os.path.join(models, "checkpoints", "v2-1_512-ema-pruned.ckpt"))
    write_tiny_open_clip_bin(os.path.join(models, "clip_vision", "open_clip_pytorch_model.bin"))
    for name in ANIMATE_X_FILES["dwpose"]:
        open(os.path.join(models, "dwpose", name), "wb").close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """(url, /object_info, output folder) of a ComfyUI server with our pack, for the whole session."""
    comfyui = comfyui_path()
    sys.path.insert(0, ROOT)
    from aa2_core.check import write_tiny_models_dir

    base = tmp_path_factory.mktemp("comfy")
    models, media, run, nodes_dir = (base / n for n in ("models", "input", "run", "custom_nodes"))
    for d in (media, run / "user", nodes_dir):
        d.mkdir(parents=True)
    write_tiny_models_dir(str(models))
    write_aa2_modules_files(str(models / "animate_anyone2"))
    os.remove(models / "vae" / "sd-vae-ft-mse.safetensors")
    full_size_sd_vae(str(models / "vae" / "sd-vae-ft-mse.safetensors"))
    write_animate_x_files(str(models))
    write_media(str(media))
    os.symlink(ROOT, nodes_dir / "aa2_pack_under_test")  # any folder name must work
    (base / "paths.yaml").write_text(
        "aa2_test:\n"
        f"  custom_nodes: {nodes_dir}\n"
        f"  animate_anyone2: {models / 'animate_anyone2'}\n"
        f"  vae: {models / 'vae'}\n"
        f"  clip_vision: {models / 'clip_vision'}\n"
        + "".join(f"  {folder}: {models / folder}\n" for folder in ANIMATE_X_FILES if folder != "clip_vision")
    )
    port = _free_port()
    log = open(run / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
         "--extra-model-paths-config", str(base / "paths.yaml"), "--input-directory", str(media),
         "--output-directory", str(run), "--temp-directory", str(run), "--user-directory", str(run),
         "--database-url", f"sqlite:///{run}/comfyui.db"],
        cwd=comfyui, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(STARTUP_S):
            try:
                info = get_json(url + "/object_info")
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("ComfyUI exited:\n" + (run / "server.log").read_text()[-3000:])
                time.sleep(1)
        else:
            pytest.fail(f"ComfyUI did not answer within {STARTUP_S} s:\n" + (run / "server.log").read_text()[-3000:])
        yield url, info, run
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


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
                if name in linked:  # a link wins over the widget value, as in the frontend
                    inputs[name] = [str(linked[name][1]), linked[name][2]]
        assert not values, f"{node['type']}: {len(values)} widget values left over: {values}"
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def shrink(prompt):
    """CPU-sized run: small frames, 2 steps, short clips; everything else as the workflow has it."""
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] in ("AA2ReferenceNet", "AA2RenderPose", "AA2AnimateXReference"):
            inputs["width"] = inputs["height"] = SIZE
        if node["class_type"] == "AA2Sampler":
            inputs["steps"] = 2
        if node["class_type"] == "AA2StitchingOptions":
            inputs["clip_length"], inputs["motion_frames"], inputs["context_overlap"] = 4, 1, 1
        if node["class_type"] in ("AA2ModelLoader", "AA2AnimateXLoader"):
            inputs["dtype"] = "fp32"
    return prompt


def queue_workflow(server, name, edit=None):
    """Queue ``workflows/<name>`` over HTTP (``edit(prompt)`` may change the API prompt first), wait for it;
    its /history entry, whether it succeeded or not."""
    url, info, run = server
    with open(os.path.join(ROOT, "workflows", name)) as f:
        workflow = json.load(f)
    prompt = shrink(to_api(workflow, info))
    if edit:
        edit(prompt)
    status, body = post_json(url + "/prompt", {"prompt": prompt, "client_id": "aa2-test"})
    assert status == 200, body
    prompt_id = body["prompt_id"]
    for _ in range(600):
        history = get_json(f"{url}/history/{prompt_id}")
        if prompt_id in history:
            return history[prompt_id]
        time.sleep(1)
    pytest.fail(f"{name} did not finish in 600 s")


def dwpose_from_json(prompt):
    """AA2 DWPose Extract needs onnxruntime and the real DWPose weights (random ones find no person): each one is
    replaced by AA2 Load Pose Keypoints with the keypoints of what it reads (character.png's or driving.mp4's)."""
    for node in prompt.values():
        if node["class_type"] == "AA2DWPoseExtract":
            source = prompt[node["inputs"]["images"][0]]["class_type"]
            node["class_type"] = "AA2LoadPoseKeypoints"
            node["inputs"] = {"file": "character_pose.json" if source == "LoadImage" else "driving_pose.json"}


def run_workflow(server, name):
    """Queue ``workflows/<name>`` over HTTP, wait for it; (history entry, path of its first saved video)."""
    url, info, run = server
    result = queue_workflow(server, name, dwpose_from_json)
    assert result["status"]["status_str"] == "success", json.dumps(result["status"])[-3000:]
    videos = [v for out in result["outputs"].values() for v in out.get("images", []) + out.get("videos", [])]
    assert videos, result["outputs"]
    return result, videos[0], os.path.join(run, videos[0]["subfolder"], videos[0]["filename"])


@pytest.fixture(scope="session")
def workflow_videos():
    """Saved videos of the workflows run so far in this session, {workflow file: (ui entry, path)}."""
    return {}
