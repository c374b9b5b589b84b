"""Writes the example workflows (ComfyUI UI format) and their JPG thumbnails into workflows/.

    python scripts/build_workflows.py

Each workflow is described below as nodes with widget values and links; this script lays them out,
numbers links the way the frontend does, and draws a small thumbnail of the graph. Widget values follow
each node's INPUT_TYPES order (tests/integration checks them against the live ComfyUI /object_info).
"""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "workflows")
sys.path.insert(0, ROOT)

from aa2_core.model_manifest import frontend_models, select  # noqa: E402  (no torch: the manifest is plain data)

# the model folders each loader node reads its file widgets from: its properties.models come from the manifest
NODE_FOLDERS = {
    "AA2ModelLoader": ("animate_anyone2", "animatediff_models", "clip_vision"),
    "VAELoader": ("vae",),
    "AA2SAM2Loader": ("sam2",),
    "AA2DWPoseExtract": ("dwpose",),
    "AA2AnimateXLoader": ("diffusion_models", "animate_x", "vae", "checkpoints", "clip_vision"),
}


def model_note() -> str:
    """The Note's list of model files, from the manifest's Moore set."""
    by_folder = {}
    for e in select("moore"):
        by_folder.setdefault(e.folder, []).append(e)
    lines = ["Model files (ComfyUI/models/...), all fetched and checked by:",
             "  python -m aa2_core download --models ComfyUI/models",
             "ComfyUI's missing-models panel lists the absent ones with their links (its Download button takes",
             ".safetensors names only; the image encoder comes as a pickle, which download converts, also in place)."]
    for folder, entries in by_folder.items():
        repos = sorted({e.repo_id for e in entries})
        converted = "; download converts its image_encoder pickle" if any(e.convert for e in entries) else ""
        lines.append(f"- {folder}/: {', '.join(e.name for e in entries)} ({', '.join(repos)}{converted})")
    lines.append("- optional animate_anyone2/aa2_modules.safetensors (trained Animate Anyone 2 modules; choose it in AA2 Model Loader)")
    return "\n".join(lines)


MODEL_NOTE = model_note()


def animate_x_note() -> str:
    """The Note's list of the released Animate-X files (and DWPose's), from the manifest's animate-x set."""
    lines = ["Model files (ComfyUI/models/...), all fetched and checked by:",
             "  python -m aa2_core download --models ComfyUI/models --set animate-x"]
    for e in select("animate-x"):
        lines.append(f"- {e.folder}/{e.name}: {e.role} ({e.repo_id})")
    lines.append("AA2 Animate-X Loader also lists the UNet from models/animate_x, an SD2.x VAE from models/vae, ComfyUI's "
                 "clip_vision_h.safetensors, and an optional zero_y file (models/animate_x).")
    return "\n".join(lines)

# socket (non-widget) outputs and inputs of every node type used, in slot order
SOCKETS = {
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "LoadVideo": ([], [("VIDEO", "VIDEO")]),
    "GetVideoComponents": ([("video", "VIDEO")], [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")]),
    "ImageToMask": ([("image", "IMAGE")], [("MASK", "MASK")]),
    "VAELoader": ([], [("VAE", "VAE")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "CreateVideo": ([("images", "IMAGE"), ("audio", "AUDIO")], [("VIDEO", "VIDEO")]),
    "SaveVideo": ([("video", "VIDEO")], []),
    "Note": ([], []),
    "AA2ModelLoader": ([], [("aa2_model", "AA2_MODEL")]),
    "AA2ReferenceNet": ([("aa2_model", "AA2_MODEL"), ("vae", "VAE"), ("reference_image", "IMAGE"), ("clip_vision", "CLIP_VISION")], [("reference", "AA2_REFERENCE")]),
    "AA2PoseCondition": ([("pose_images", "IMAGE"), ("depth", "IMAGE")], [("pose", "AA2_POSE")]),
    "AA2StitchingOptions": ([], [("stitching", "AA2_STITCH")]),
    "AA2Sampler": (
        [("aa2_model", "AA2_MODEL"), ("reference", "AA2_REFERENCE"), ("pose", "AA2_POSE"), ("vae", "VAE"),
         ("environment", "IMAGE"), ("environment_mask", "MASK"), ("objects", "IMAGE"), ("stitching", "AA2_STITCH")],
        [("latent", "LATENT")],
    ),
    "AA2EnvironmentMask": ([("images", "IMAGE"), ("character_mask", "MASK"), ("character_pose", "POSE_KEYPOINT"), ("object_mask", "MASK")],
                           [("environment", "IMAGE"), ("environment_mask", "MASK")]),
    "AA2ObjectGuider": ([("images", "IMAGE"), ("object_mask", "MASK")], [("objects", "IMAGE")]),
    "AA2CompositeEnvironment": ([("images", "IMAGE"), ("environment", "IMAGE"), ("environment_mask", "MASK"), ("object_mask", "MASK")],
                                [("IMAGE", "IMAGE")]),
    "AA2LoadPoseKeypoints": ([], [("pose_keypoint", "POSE_KEYPOINT")]),
    "AA2ColorMatchClips": ([("images", "IMAGE"), ("stitching", "AA2_STITCH")], [("IMAGE", "IMAGE")]),
    "AA2RetargetPose": ([("driving", "POSE_KEYPOINT"), ("reference", "POSE_KEYPOINT")], [("pose_keypoint", "POSE_KEYPOINT")]),
    "AA2RenderPose": ([("pose_keypoint", "POSE_KEYPOINT")], [("IMAGE", "IMAGE")]),
    "AA2ImplicitPoseIndicator": (
        [("aa2_model", "AA2_MODEL"), ("pose", "AA2_POSE"), ("driving_video", "IMAGE"), ("driving_keypoints", "POSE_KEYPOINT"),
         ("clip_vision", "CLIP_VISION")],
        [("pose", "AA2_POSE")],
    ),
    "AA2DWPoseExtract": ([("images", "IMAGE")], [("pose_keypoint", "POSE_KEYPOINT")]),
    "AA2AnimateXLoader": ([], [("aa2_model", "AA2_MODEL"), ("vae", "VAE")]),
    "AA2AnimateXReference": (
        [("aa2_model", "AA2_MODEL"), ("vae", "VAE"), ("reference_image", "IMAGE"), ("reference_keypoints", "POSE_KEYPOINT"),
         ("reference_pose", "IMAGE")],
        [("reference", "AA2_REFERENCE")],
    ),
    "AA2AnimateXImplicitPose": (
        [("aa2_model", "AA2_MODEL"), ("pose", "AA2_POSE"), ("driving_video", "IMAGE"), ("driving_keypoints", "POSE_KEYPOINT")],
        [("pose", "AA2_POSE")],
    ),
}

# widgets that a link may drive instead (the frontend then saves them as inputs with a "widget" entry)
WIDGET_INPUTS = {"CreateVideo": [("fps", "FLOAT")]}

ENV_MASK = [0, 0, 0.5, 0.2]  # grid_rows, grid_cols, threshold, skeleton_radius (AA2 Environment Mask's widgets, in INPUT_TYPES order)
LOADER = ["denoising_unet.pth", "reference_unet.pth", "pose_guider.pth", "motion_module.pth", "full", "auto", "none", "image_encoder.safetensors"]
SAMPLER = [0, "fixed", 25, 3.5, "ddim", "moore", "auto", 1, True]  # seed, control, steps, cfg, scheduler, schedule, environment_mode, feather, batch_cfg


def moore_animation(sampler_widgets, extra_nodes=(), extra_links=(), note=""):
    """Character + skeleton video -> animation with the Moore weights (the base of all examples)."""
    nodes = [
        ("note", "Note", [note + "\n\n" + MODEL_NOTE], (20, 20), (420, 300)),
        ("loader", "AA2ModelLoader", LOADER, (20, 360), (340, 270)),
        ("vae", "VAELoader", ["sd-vae-ft-mse.safetensors"], (20, 670), (340, 60)),
        ("ref_img", "LoadImage", ["character.png", "image"], (20, 780), (340, 320)),
        ("kps_video", "LoadVideo", ["driving_kps.mp4", "image"], (460, 20), (300, 120)),
        ("kps", "GetVideoComponents", [], (800, 20), (240, 80)),
        ("reference", "AA2ReferenceNet", [512, 768, "squash"], (460, 400), (300, 140)),
        ("pose", "AA2PoseCondition", [], (800, 160), (240, 60)),
        ("sampler", "AA2Sampler", sampler_widgets, (1100, 160), (320, 380)),
        ("decode", "VAEDecode", [], (1460, 160), (200, 60)),
        ("video", "CreateVideo", [24.0], (1700, 160), (240, 80)),
        ("save", "SaveVideo", ["video/AnimateAnyone2", "auto", "auto"], (1980, 160), (320, 300)),
    ]
    links = [
        ("kps_video", 0, "kps", "video"), ("kps", 0, "pose", "pose_images"),
        ("loader", 0, "reference", "aa2_model"), ("vae", 0, "reference", "vae"), ("ref_img", 0, "reference", "reference_image"),
        ("loader", 0, "sampler", "aa2_model"), ("reference", 0, "sampler", "reference"), ("pose", 0, "sampler", "pose"),
        ("vae", 0, "sampler", "vae"), ("sampler", 0, "decode", "samples"), ("vae", 0, "decode", "vae"),
        ("decode", 0, "video", "images"), ("video", 0, "save", "video"),
    ]
    return nodes + list(extra_nodes), links + list(extra_links) + timing_from("kps")


def timing_from(components):
    """The saved video takes its frame rate and sound from this GetVideoComponents (the driving video)."""
    return [(components, 2, "video", "fps"), (components, 1, "video", "audio")]


def retime(links, components):
    """Move the saved video's frame rate and sound to another source."""
    return [l for l in links if l not in timing_from("kps")] + (timing_from(components) if components else [])


def workflow_moore():
    return moore_animation(
        SAMPLER[:6] + ["off", 1, True],
        note="Animate Anyone (Moore weights), no environment: the character dances on its own background.\n"
        "driving_kps.mp4 is a skeleton video (OpenPose colours), e.g. rendered with AA2 Render Pose.\n"
        "The saved mp4 (H.264) has its frame rate and its audio, if any.",
    )


def workflow_long_video():
    nodes, links = moore_animation(
        SAMPLER[:6] + ["off", 1, True],
        extra_nodes=[("stitch", "AA2StitchingOptions", ["motion_frames", 24, 4, 4, "pyramid", "open"], (800, 560), (300, 160)),
                     ("colors", "AA2ColorMatchClips", [1.0], (1460, 300), (240, 80))],
        extra_links=[("stitch", 0, "sampler", "stitching"), ("stitch", 0, "colors", "stitching")],
        note="Long video (hundreds of frames): clips of 24 frames, each continuing from the previous clip's last\n"
        "4 frames (motion frames, AA2 paper 4.1). Memory stays flat with length: latents wait on the CPU between clips.\n"
        "Switch mode to context_windows for overlapping windows fused at every step.\n"
        "AA2 Color Match Clips removes colour drift from one clip to the next.",
    )
    links = [l for l in links if l != ("decode", 0, "video", "images")]
    links += [("decode", 0, "colors", "images"), ("colors", 0, "video", "images")]
    return nodes, links


def workflow_full_aa2():
    nodes, links = moore_animation(
        SAMPLER,
        extra_nodes=[
            ("drv_video", "LoadVideo", ["driving.mp4", "image"], (460, 600), (300, 120)),
            ("drv", "GetVideoComponents", [], (800, 640), (240, 80)),
            ("mask_video", "LoadVideo", ["character_mask.mp4", "image"], (460, 760), (300, 120)),
            ("mask_frames", "GetVideoComponents", [], (800, 760), (240, 80)),
            ("mask", "ImageToMask", ["red"], (800, 880), (240, 60)),
            ("obj_video", "LoadVideo", ["object_mask.mp4", "image"], (460, 920), (300, 120)),
            ("obj_frames", "GetVideoComponents", [], (800, 1000), (240, 80)),
            ("obj_mask", "ImageToMask", ["red"], (800, 1120), (240, 60)),
            ("env", "AA2EnvironmentMask", ENV_MASK, (1100, 640), (300, 120)),
            ("objects", "AA2ObjectGuider", [], (1100, 820), (300, 60)),
            ("composite", "AA2CompositeEnvironment", [2], (1460, 400), (280, 100)),
        ],
        extra_links=[
            ("drv_video", 0, "drv", "video"), ("mask_video", 0, "mask_frames", "video"), ("mask_frames", 0, "mask", "image"),
            ("obj_video", 0, "obj_frames", "video"), ("obj_frames", 0, "obj_mask", "image"),
            ("drv", 0, "env", "images"), ("mask", 0, "env", "character_mask"),
            ("drv", 0, "objects", "images"), ("obj_mask", 0, "objects", "object_mask"),
            ("env", 0, "sampler", "environment"), ("env", 1, "sampler", "environment_mask"), ("objects", 0, "sampler", "objects"),
            ("drv", 0, "composite", "environment"), ("env", 1, "composite", "environment_mask"),
        ],
        note="Full Animate Anyone 2: the character takes the driving video's place, in its scene, with its object.\n"
        "Inputs: driving.mp4, its skeleton video driving_kps.mp4, and mask videos of the character and of the object\n"
        "(white = inside; from AA2 SAM2 Segment Video or any segmentation node).\n"
        "Environment mode (auto) keeps the scene outside the shape-agnostic mask with the public Moore weights;\n"
        "trained AA2 modules (aa2_modules in the loader) add the environment/object/depth paths of the paper, and\n"
        "auto then turns the step-wise scene pasting off (they read the scene themselves; on / off force it).\n"
        "The saved mp4 (H.264) has driving.mp4's frame rate and audio.",
    )
    # decoded frames go through the pixel-space composite before the video is made
    links = [l for l in links if l != ("decode", 0, "video", "images")]
    links += [("decode", 0, "composite", "images"), ("composite", 0, "video", "images")]
    return nodes, retime(links, "drv")  # the driving video's frame rate and sound


def workflow_retarget():
    nodes, links = moore_animation(
        SAMPLER[:6] + ["off", 1, True],
        extra_nodes=[
            ("drv_kp", "AA2LoadPoseKeypoints", ["driving_pose.json"], (460, 600), (300, 60)),
            ("ref_kp", "AA2LoadPoseKeypoints", ["character_pose.json"], (460, 700), (300, 60)),
            ("retarget", "AA2RetargetPose", ["driving"], (800, 620), (260, 80)),
            ("render", "AA2RenderPose", [512, 768, True, True, "moore"], (1100, 620), (260, 130)),
        ],
        extra_links=[("drv_kp", 0, "retarget", "driving"), ("ref_kp", 0, "retarget", "reference"), ("retarget", 0, "render", "pose_keypoint")],
        note="A non-human character (or any body shape): the driving skeleton is retargeted to the character's\n"
        "proportions before rendering, so limbs keep the character's lengths while following the motion.\n"
        "driving_pose.json / character_pose.json are POSE_KEYPOINT JSON files (e.g. saved from a DWPose node,\n"
        "or edited by hand for a cartoon character) in ComfyUI/input. Set the frame rate in Create Video.",
    )
    nodes = [n for n in nodes if n[0] not in ("kps_video", "kps")]
    links = [l for l in retime(links, None) if "kps_video" not in l and l[0] != "kps"]  # no video: CreateVideo's own fps
    links.append(("render", 0, "pose", "pose_images"))
    return nodes, links


IPI_MODULES = "aa2_modules_ipi.safetensors"  # an aa2-modules file holding an Implicit Pose Indicator


def workflow_animate_x():
    nodes, links = moore_animation(
        SAMPLER[:6] + ["off", 1, True],
        extra_nodes=[
            ("drv_video", "LoadVideo", ["driving.mp4", "image"], (460, 20), (300, 120)),
            ("drv", "GetVideoComponents", [], (800, 20), (240, 80)),
            ("drv_kp", "AA2LoadPoseKeypoints", ["driving_pose.json"], (460, 600), (300, 60)),
            ("ref_kp", "AA2LoadPoseKeypoints", ["character_pose.json"], (460, 700), (300, 60)),
            ("retarget", "AA2RetargetPose", ["driving"], (800, 620), (260, 80)),
            ("render", "AA2RenderPose", [512, 768, True, True, "moore"], (800, 740), (260, 130)),
            ("ipi", "AA2ImplicitPoseIndicator", [True, "squash"], (800, 300), (260, 170)),
        ],
        extra_links=[
            ("drv_video", 0, "drv", "video"),
            ("drv_kp", 0, "retarget", "driving"), ("ref_kp", 0, "retarget", "reference"), ("retarget", 0, "render", "pose_keypoint"),
            ("render", 0, "pose", "pose_images"),
            ("loader", 0, "ipi", "aa2_model"), ("pose", 0, "ipi", "pose"), ("drv", 0, "ipi", "driving_video"),
            ("drv_kp", 0, "ipi", "driving_keypoints"), ("ipi", 0, "sampler", "pose"),
        ],
        note="Animate-X for a non-human character (cartoon, animal, anthropomorphic figure), two pose indicators:\n"
        "- explicit: the driving skeleton is retargeted to the character's proportions (AA2 Retarget Pose, AA2 Render Pose);\n"
        "- implicit (IPI): AA2 Implicit Pose Indicator adds motion features of the driving video itself, its frames'\n"
        "  CLIP features queried by its keypoints, injected after each spatial attention.\n"
        "Inputs in ComfyUI/input: character.png (the character), driving.mp4 (the driving video),\n"
        "driving_pose.json (driving.mp4's DWPose keypoints, one entry per frame, e.g. from AA2 DWPose Extract),\n"
        "character_pose.json (the character's keypoints; edit them by hand for a cartoon).\n"
        f"The IPI needs an aa2-modules file that holds one: animate_anyone2/{IPI_MODULES}, written by\n"
        "python -m aa2_core train --modules aa2,ipi (AA2 Model Loader prints which modules a file holds; a file\n"
        "without an IPI stops with an error naming the module and the file; turn enabled off to run without it).\n"
        "The driving frames' CLIP features come from the loader's image_encoder (or a connected CLIP_VISION).\n"
        "The saved mp4 (H.264) has driving.mp4's frame rate and audio.",
    )
    nodes = [n for n in nodes if n[0] not in ("kps_video", "kps")]
    loader = LOADER[:6] + [IPI_MODULES] + LOADER[7:]
    nodes = [(k, t, loader, pos, size) if k == "loader" else (k, t, w, pos, size) for k, t, w, pos, size in nodes]
    # the skeleton comes from the retargeted keypoints, and the pose reaches the sampler through the IPI
    links = [l for l in links if l[0] not in ("kps_video", "kps") and l != ("pose", 0, "sampler", "pose")]
    return nodes, retime(links, "drv")  # the driving video's frame rate and sound


DWPOSE = ["yolox_l.onnx", "dw-ll_ucoco_384.onnx"]
ANIMATE_X_LOADER = ["animate-x_ckpt.pth", "v2-1_512-ema-pruned.ckpt", "open_clip_pytorch_model.bin", "auto", "none"]
# seed, control, steps (25: the released DDIM loop's own timesteps), cfg (released guide scale), scheduler, schedule,
# environment_mode, feather, batch_cfg
ANIMATE_X_SAMPLER = [0, "fixed", 25, 2.5, "ddim", "animate_x", "auto", 1, True]


def workflow_animate_x_official():
    """The released Animate-X weights: reference image + driving video -> DWPose -> retargeted, rendered poses and
    the IPI -> Animate-X with the driving scene kept -> video."""
    nodes = [
        ("note", "Note", [
            "The released Animate-X (antgroup/animate-x) with the pack: the character takes the driving person's place\n"
            "in the driving video's scene. Inputs in ComfyUI/input: character.png, driving.mp4 and character_mask.mp4\n"
            "(the driving person's mask, white inside; from AA2 SAM2 Segment Video or any segmentation node).\n"
            "- AA2 DWPose Extract runs on the driving video and on the character (needs onnxruntime);\n"
            "- explicit pose: the driving skeleton retargeted to the character, drawn as the released frames (animate_x);\n"
            "- implicit pose (IPI): the driving keypoints and frames' OpenCLIP features; the character's keypoints go first;\n"
            "- the scene: environment mode keeps it outside the mask at every step, AA2 Composite Environment pastes its\n"
            "  exact pixels back; context windows keep memory flat at any length (the released code runs the whole\n"
            "  video at once). 25 DDIM steps visit the released loop's timesteps; guide scale 2.5 as released.\n"
            "The saved mp4 (H.264) has driving.mp4's frame rate and audio.\n\n" + animate_x_note()],
         (20, 20), (460, 360)),
        ("loader", "AA2AnimateXLoader", ANIMATE_X_LOADER, (20, 420), (340, 180)),
        ("ref_img", "LoadImage", ["character.png", "image"], (20, 640), (340, 320)),
        ("drv_video", "LoadVideo", ["driving.mp4", "image"], (20, 1000), (300, 120)),
        ("drv", "GetVideoComponents", [], (360, 1000), (240, 80)),
        ("mask_video", "LoadVideo", ["character_mask.mp4", "image"], (20, 1160), (300, 120)),
        ("mask_frames", "GetVideoComponents", [], (360, 1160), (240, 80)),
        ("mask", "ImageToMask", ["red"], (360, 1280), (240, 60)),
        ("dw_ref", "AA2DWPoseExtract", DWPOSE, (520, 640), (300, 110)),
        ("dw_drv", "AA2DWPoseExtract", DWPOSE, (640, 1000), (300, 110)),
        ("retarget", "AA2RetargetPose", ["driving"], (980, 800), (260, 80)),
        ("render", "AA2RenderPose", [512, 768, True, False, "animate_x"], (1280, 800), (260, 150)),
        ("pose", "AA2PoseCondition", [], (1580, 800), (240, 60)),
        ("ipi", "AA2AnimateXImplicitPose", [True], (1580, 900), (280, 130)),
        ("reference", "AA2AnimateXReference", [512, 768], (980, 420), (300, 170)),
        ("env", "AA2EnvironmentMask", ENV_MASK, (980, 1160), (300, 150)),
        ("stitch", "AA2StitchingOptions", ["context_windows", 32, 4, 8, "pyramid", "open"], (1580, 1080), (300, 170)),
        ("sampler", "AA2Sampler", ANIMATE_X_SAMPLER, (1920, 420), (320, 380)),
        ("decode", "VAEDecode", [], (2280, 420), (200, 60)),
        ("composite", "AA2CompositeEnvironment", [2], (2280, 540), (280, 120)),
        ("video", "CreateVideo", [24.0], (2600, 420), (240, 80)),
        ("save", "SaveVideo", ["video/AnimateX", "auto", "auto"], (2880, 420), (320, 300)),
    ]
    links = [
        ("drv_video", 0, "drv", "video"), ("mask_video", 0, "mask_frames", "video"), ("mask_frames", 0, "mask", "image"),
        ("ref_img", 0, "dw_ref", "images"), ("drv", 0, "dw_drv", "images"),
        ("dw_drv", 0, "retarget", "driving"), ("dw_ref", 0, "retarget", "reference"), ("retarget", 0, "render", "pose_keypoint"),
        ("render", 0, "pose", "pose_images"),
        ("loader", 0, "ipi", "aa2_model"), ("pose", 0, "ipi", "pose"), ("drv", 0, "ipi", "driving_video"),
        ("dw_drv", 0, "ipi", "driving_keypoints"),
        ("loader", 0, "reference", "aa2_model"), ("loader", 1, "reference", "vae"), ("ref_img", 0, "reference", "reference_image"),
        ("dw_ref", 0, "reference", "reference_keypoints"),
        ("drv", 0, "env", "images"), ("mask", 0, "env", "character_mask"), ("retarget", 0, "env", "character_pose"),
        ("loader", 0, "sampler", "aa2_model"), ("reference", 0, "sampler", "reference"), ("ipi", 0, "sampler", "pose"),
        ("loader", 1, "sampler", "vae"), ("env", 0, "sampler", "environment"), ("env", 1, "sampler", "environment_mask"),
        ("stitch", 0, "sampler", "stitching"),
        ("sampler", 0, "decode", "samples"), ("loader", 1, "decode", "vae"),
        ("decode", 0, "composite", "images"), ("drv", 0, "composite", "environment"), ("env", 1, "composite", "environment_mask"),
        ("composite", 0, "video", "images"), ("video", 0, "save", "video"),
    ]
    return nodes, links + timing_from("drv")


WORKFLOWS = {
    "aa2_full_environment_object": workflow_full_aa2,
    "aa2_moore_character_animation": workflow_moore,
    "aa2_long_video_stitching": workflow_long_video,
    "aa2_non_human_pose_retarget": workflow_retarget,
    "aa2_animate_x_implicit_pose": workflow_animate_x,
    "animate_x_official": workflow_animate_x_official,
}


def node_inputs(key, node_type, links):
    """A node's input slots: its sockets, then the widgets a link drives (the frontend's order)."""
    linked = {name for _, _, dst, name in links if dst == key}
    ins = [{"name": n, "type": t} for n, t in SOCKETS[node_type][0]]
    return ins + [{"name": n, "type": t, "widget": {"name": n}} for n, t in WIDGET_INPUTS.get(node_type, []) if n in linked]


def to_ui(nodes, links):
    """Nodes/links in the frontend's saved-workflow format (version 0.4)."""
    ids = {key: i + 1 for i, (key, *_rest) in enumerate(nodes)}
    types = {key: node_type for key, node_type, *_ in nodes}
    inputs = {key: node_inputs(key, node_type, links) for key, node_type, *_ in nodes}
    ui_links, inputs_link, outputs_links = [], {}, {}
    for n, (src, slot, dst, name) in enumerate(links, start=1):
        dst_slot = [i["name"] for i in inputs[dst]].index(name)
        link_type = SOCKETS[types[src]][1][slot][1]
        ui_links.append([n, ids[src], slot, ids[dst], dst_slot, link_type])
        inputs_link[(dst, name)] = n
        outputs_links.setdefault((src, slot), []).append(n)
    ui_nodes = []
    for order, (key, node_type, widgets, pos, size) in enumerate(nodes):
        outs = SOCKETS[node_type][1]
        ui_nodes.append({
            "id": ids[key], "type": node_type, "pos": list(pos), "size": list(size), "flags": {}, "order": order, "mode": 0,
            "inputs": [{**i, "link": inputs_link.get((key, i["name"]))} for i in inputs[key]],
            "outputs": [{"name": n, "type": t, "links": outputs_links.get((key, s), []), "slot_index": s} for s, (n, t) in enumerate(outs)],
            "properties": {"Node name for S&R": node_type, **node_models(node_type, widgets)},
            "widgets_values": widgets,
        })
    return {
        "last_node_id": len(ui_nodes), "last_link_id": len(ui_links), "nodes": ui_nodes, "links": ui_links,
        "groups": [], "config": {}, "extra": {"ds": {"scale": 0.6, "offset": [0, 0]}}, "version": 0.4,
    }


def node_models(node_type, widgets) -> dict:
    """``{"models": [{name, url, directory}]}`` for the released files a loader node's widgets name (the frontend's
    missing-models panel lists the absent ones), or {} for other nodes."""
    models = [m for m in frontend_models(widgets, NODE_FOLDERS.get(node_type, ())) if frontend_sees(m["name"])]
    return {"models": models} if models else {}


def frontend_sees(name: str) -> bool:
    """ComfyUI's model listing (``/experiment/models``, which the missing-models panel checks) shows only
    ``supported_pt_extensions``: a listed ``.onnx`` file would show as missing even when present, so DWPose's files
    are named in the Note only."""
    return not name.endswith(".onnx")


def thumbnail(workflow, path):
    """A small picture of the graph: node boxes (ours in teal) and links."""
    from PIL import Image, ImageDraw

    nodes = {n["id"]: n for n in workflow["nodes"]}
    xs = [n["pos"][0] + n["size"][0] for n in nodes.values()]
    ys = [n["pos"][1] + n["size"][1] for n in nodes.values()]
    scale = min(640 / (max(xs) + 40), 400 / (max(ys) + 40))
    img = Image.new("RGB", (640, 400), (32, 33, 36))
    draw = ImageDraw.Draw(img)
    for _, src, _, dst, _, _ in workflow["links"]:
        a, b = nodes[src], nodes[dst]
        draw.line([((a["pos"][0] + a["size"][0]) * scale, (a["pos"][1] + 15) * scale), (b["pos"][0] * scale, (b["pos"][1] + 15) * scale)], fill=(150, 150, 160), width=2)
    for n in nodes.values():
        x, y, w, h = (v * scale for v in (*n["pos"], *n["size"]))
        colour = (38, 140, 130) if n["type"].startswith("AA2") else (70, 72, 80)
        draw.rectangle([x, y, x + w, y + h], fill=colour, outline=(200, 200, 200))
        draw.text((x + 3, y + 2), n["type"][:22], fill=(240, 240, 240))
    img.save(path, "JPEG", quality=85)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, build in WORKFLOWS.items():
        workflow = to_ui(*build())
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(workflow, f, indent=1)
        thumbnail(workflow, os.path.join(OUT, name + ".jpg"))
        print("wrote", name)


if __name__ == "__main__":
    main()
