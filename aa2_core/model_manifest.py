"""Every public file the pack's workflows need: where it is on the Hugging Face Hub and where it goes.

One entry per file: the hub repository, the path in it, the pinned revision, the ComfyUI ``models``
subfolder and file name the pack reads it from, and its sha256 *only where the hub publishes it* on the
source repository's own file page (``sha256_source`` names that page). Entries without one are checked
against the sha256 the hub reports for the file (its Git LFS object id) when ``download`` fetches it.
``python -m aa2_core download`` fetches from here and ``scripts/build_workflows.py`` writes each loader
node's ``properties.models`` (what the ComfyUI frontend's missing-models panel reads) from here.

Sets: ``moore`` (Moore-AnimateAnyone on SD1.5: what every example workflow needs), ``animate-x`` (the
released Animate-X files); extras: ``sam2``, ``dwpose``, ``depth``, ``animatediff``.
Nothing here touches the network.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace

HUB = "https://huggingface.co"
SETS = ("moore", "animate-x")
EXTRAS = ("sam2", "dwpose", "depth", "animatediff")
SHA256 = re.compile(r"[0-9a-f]{64}")
COMMIT = re.compile(r"[0-9a-f]{40}")

# Where the released Animate-X files go until its loaders land (issue 18 may move them; change them here only).
ANIMATE_X_UNET_FOLDER = "diffusion_models"
ANIMATE_X_SD_FOLDER = "checkpoints"

# pinned revisions (full commit ids as they appear in the hub's own URLs), "main" where none was found
PATROLLI = "7fd8ff9dfb0e75c7b7fa2689e4795347b5996b9a"  # patrolli/AnimateAnyone "update README.md" (the files' last commit is ca818f6)
SD_VAE = "ad7ac2cf88578c68f660449f60fe9496f35a1cbf"  # stabilityai/sd-vae-ft-mse
SD_IMAGE_VARIATIONS = "ca6f97f838ae1b5bf764f31363a21f388f4d8f3e"  # the snapshot Moore's image_encoder/config.json names
ANIMATEDIFF = "9cfaa8a83b89eec48b4b0ee8c970e8b9f69f2089"  # guoyww/animatediff
DWPOSE = "f7c16a3d45ad3783db41471848c80fbc281cabac"  # yzd-v/DWPose "support all dwpose models"
DEPTH_SMALL = "5426e4f0f36572d16453bbda7a8389317b1bef99"  # depth-anything/Depth-Anything-V2-Small-hf
ANIMATE_X = "334562a0ac1f32dbaf9bd816672c0d5a9bc4e6a9"  # Shuaishuai0219/Animate-X "Update README.md"


@dataclass(frozen=True)
class ModelEntry:
    key: str  # short id
    sets: tuple[str, ...]  # the sets / extras that fetch it
    role: str  # what it is, for people
    repo_id: str
    path: str  # path in the repository
    revision: str  # commit id (or branch) the file is fetched at
    folder: str  # ComfyUI models subfolder the pack (or ComfyUI) reads it from
    name: str  # file name in that folder (may hold a sub-folder, e.g. a transformers model folder)
    sha256: str | None = None  # published sha256 of the hub file, else None (never guessed)
    sha256_source: str | None = None  # the page that publishes it
    size: int | None = None  # bytes, where published
    convert: bool = False  # a pickle stored as .safetensors (torch.load weights_only=True, then safetensors)
    companions: tuple[str, ...] = ()  # small files of the same repository read while converting (config.json)

    @property
    def url(self) -> str:
        """The file's resolve URL on the public hub (what the frontend's Download button fetches)."""
        return f"{HUB}/{self.repo_id}/resolve/{self.revision}/{self.path}"

    @property
    def target(self) -> str:
        """Path under the models folder, with '/' separators."""
        return f"{self.folder}/{self.name}"

    @property
    def source(self) -> str:
        return f"{self.repo_id}@{self.revision[:12]}:{self.path}"

    def frontend(self) -> dict:
        """The entry as the ComfyUI frontend reads it from a node's ``properties.models``."""
        return {"name": self.name, "url": self.url, "directory": self.folder}


def _moore(name: str, role: str, **kw) -> ModelEntry:
    return ModelEntry(f"moore-{name.replace('_', '-')}", ("moore",), role, "patrolli/AnimateAnyone", f"{name}.pth",
                      PATROLLI, "animate_anyone2", f"{name}.pth", **kw)


MANIFEST: tuple[ModelEntry, ...] = (
    # Moore-AnimateAnyone (tools/download_weights.py of MooreThreads/Moore-AnimateAnyone fetches the same four)
    _moore("denoising_unet", "Moore-AnimateAnyone denoising UNet",
           sha256="b9e5a2c34fac369e8a922972ca2210916c6af175a0dad907deccf6235816ad52",
           sha256_source=f"{HUB}/patrolli/AnimateAnyone/commit/ae7459273aaec750c87de98e9b840a72b7b14485", size=3438374293),
    _moore("reference_unet", "Moore-AnimateAnyone ReferenceNet"),
    _moore("pose_guider", "Moore-AnimateAnyone pose guider"),
    _moore("motion_module", "Moore-AnimateAnyone motion module"),
    ModelEntry("sd-vae-ft-mse", ("moore",), "SD1.5 VAE (ft-MSE)", "stabilityai/sd-vae-ft-mse",
               "diffusion_pytorch_model.safetensors", SD_VAE, "vae", "sd-vae-ft-mse.safetensors",
               sha256="a1d993488569e928462932c8c38a0760b874d166399b14414135bd9c42df5815",
               sha256_source=f"{HUB}/stabilityai/sd-vae-ft-mse/blob/main/diffusion_pytorch_model.safetensors"),
    ModelEntry("image-encoder", ("moore",), "sd-image-variations image encoder (CLIP ViT-L/14 with projection)",
               "lambdalabs/sd-image-variations-diffusers", "image_encoder/pytorch_model.bin", SD_IMAGE_VARIATIONS,
               "clip_vision", "image_encoder.safetensors", convert=True, companions=("image_encoder/config.json",)),
    # AnimateDiff motion modules (alternatives to Moore's; the loader's motion_module also lists animatediff_models)
    ModelEntry("animatediff-v2", ("animatediff",), "AnimateDiff v2 motion module", "guoyww/animatediff",
               "mm_sd_v15_v2.ckpt", ANIMATEDIFF, "animatediff_models", "mm_sd_v15_v2.ckpt"),
    ModelEntry("animatediff-v3", ("animatediff",), "AnimateDiff v3 motion module", "guoyww/animatediff",
               "v3_sd15_mm.ckpt", ANIMATEDIFF, "animatediff_models", "v3_sd15_mm.ckpt",
               sha256="2412711886f61091846f53204aabc38aa6e09356d62a9808abe4daa802168343",
               sha256_source=f"{HUB}/guoyww/animatediff/blob/{ANIMATEDIFF}/v3_sd15_mm.ckpt"),
    # SAM2.1 (AA2 SAM2 Loader, prepare --sam2)
    ModelEntry("sam2.1-hiera-large", ("sam2",), "SAM2.1 hiera large", "facebook/sam2.1-hiera-large",
               "sam2.1_hiera_large.pt", "main", "sam2", "sam2.1_hiera_large.pt"),
    # DWPose (AA2 DWPose Extract, prepare --dwpose; the released Animate-X uses the same two files)
    ModelEntry("dwpose-detector", ("dwpose", "animate-x"), "DWPose person detector (YOLOX-L)", "yzd-v/DWPose",
               "yolox_l.onnx", DWPOSE, "dwpose", "yolox_l.onnx",
               sha256="7860ae79de6c89a3c1eb72ae9a2756c0ccfbe04b7791bb5880afabd97855a411",
               sha256_source=f"{HUB}/yzd-v/DWPose/commit/{DWPOSE}", size=216746733),
    ModelEntry("dwpose-pose", ("dwpose", "animate-x"), "DWPose whole-body pose model", "yzd-v/DWPose",
               "dw-ll_ucoco_384.onnx", DWPOSE, "dwpose", "dw-ll_ucoco_384.onnx",
               sha256="724f4ff2439ed61afb86fb8a1951ec39c6220682803b4a8bd4f598cd913b1843",
               sha256_source=f"{HUB}/yzd-v/DWPose/commit/{DWPOSE}", size=134399116),
    # Depth Anything V2 Small, transformers layout (prepare --depth-model models/depth_anything/Depth-Anything-V2-Small-hf)
    *(ModelEntry(f"depth-anything-v2-small-{n.split('.')[0].replace('_', '-')}", ("depth",), "Depth Anything V2 Small",
                 "depth-anything/Depth-Anything-V2-Small-hf", n, DEPTH_SMALL, "depth_anything",
                 f"Depth-Anything-V2-Small-hf/{n}", **extra)
      for n, extra in (("config.json", {}), ("preprocessor_config.json", {}),
                       ("model.safetensors", {"sha256": "3152477ce0d8d6978d76b995120de97cb5b928701fd0f817769f59e249a16b70",
                                              "sha256_source": f"{HUB}/depth-anything/Depth-Anything-V2-Small-hf/blob/main/model.safetensors"}))),
    # the released Animate-X (antgroup/animate-x README: "Download Animate-X checkpoints", configs/Animate_X_infer.yaml)
    ModelEntry("animate-x-unet", ("animate-x",), "Animate-X 3D UNet with pose encoder and IPI", "Shuaishuai0219/Animate-X",
               "animate-x_ckpt.pth", ANIMATE_X, ANIMATE_X_UNET_FOLDER, "animate-x_ckpt.pth",
               sha256="e3bfb656bafe603132a28f43f758c6a86f424152858187efc7f854ef1169c630",
               sha256_source=f"{HUB}/Shuaishuai0219/Animate-X/blob/{ANIMATE_X}/animate-x_ckpt.pth"),
    ModelEntry("animate-x-sd21", ("animate-x",), "Stable Diffusion 2.1 base (Animate-X uses its VAE)", "Shuaishuai0219/Animate-X",
               "v2-1_512-ema-pruned.ckpt", ANIMATE_X, ANIMATE_X_SD_FOLDER, "v2-1_512-ema-pruned.ckpt",
               sha256="88ecb782561455673c4b78d05093494b9c539fc6bfc08f3a9a4a0dd7b0b10f36",
               sha256_source=f"{HUB}/Shuaishuai0219/Animate-X/blob/{ANIMATE_X}/v2-1_512-ema-pruned.ckpt"),
    ModelEntry("animate-x-open-clip", ("animate-x",), "OpenCLIP ViT-H/14 (laion2b_s32b_b79k)", "Shuaishuai0219/Animate-X",
               "open_clip_pytorch_model.bin", ANIMATE_X, "clip_vision", "open_clip_pytorch_model.bin",
               sha256="9a78ef8e8c73fd0df621682e7a8e8eb36c6916cb3c16b291a082ecd52ab79cc4",
               sha256_source=f"{HUB}/Shuaishuai0219/Animate-X/blob/bf2a8b88333e7cd54d4454f21e714afaf3482d67/open_clip_pytorch_model.bin"),
)


def select(set_name: str = "moore", extras=(), manifest=MANIFEST) -> list[ModelEntry]:
    """The entries ``download --set SET --with EXTRAS`` fetches, in manifest order, each once."""
    if set_name not in SETS + ("all", "none"):
        raise ValueError(f"--set {set_name!r} is not a set; expected one of {', '.join(SETS + ('all', 'none'))}")
    wanted = set(SETS if set_name == "all" else () if set_name == "none" else (set_name,))
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise ValueError(f"--with {','.join(unknown)}: not an extra; expected a comma list of {', '.join(EXTRAS)} (or all)")
    wanted |= set(extras)
    return [e for e in manifest if wanted.intersection(e.sets)]


def find(folder: str, name: str, manifest=MANIFEST) -> ModelEntry | None:
    """The entry that fills ``models/<folder>/<name>``, if the manifest has one."""
    return next((e for e in manifest if e.folder == folder and e.name == name), None)


def set_flags(entry: ModelEntry) -> str:
    """The ``--set``/``--with`` flags that fetch ``entry``."""
    main = next((s for s in SETS if s in entry.sets), None)
    if main:
        return f"--set {main}"
    return f"--set none --with {entry.sets[0]}"


def download_command(models_dir: str, entry: ModelEntry | None = None) -> str:
    """The command that fetches ``entry`` (or the Moore set) into ``models_dir``."""
    flags = set_flags(entry) if entry else "--set moore"
    return f"python -m aa2_core download --models {models_dir} {flags}"


def frontend_models(widget_values, folders, manifest=MANIFEST) -> list[dict]:
    """``properties.models`` for a loader node: the manifest files among its widget values, in the folders it reads."""
    out = []
    for value in widget_values:
        if not isinstance(value, str):
            continue
        for folder in folders:
            entry = find(folder, value, manifest)
            if entry and entry.frontend() not in out:
                out.append(entry.frontend())
    return out


def to_json(manifest=MANIFEST) -> str:
    return json.dumps([asdict(e) for e in manifest], indent=1)


def load_json(path: str) -> tuple[ModelEntry, ...]:
    """A manifest in :func:`to_json`'s format (a mirror's, or a test's); fields as in :class:`ModelEntry`."""
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a JSON list of manifest entries")
    entries = []
    for i, item in enumerate(raw):
        try:
            item = dict(item)
            for k in ("sets", "companions"):
                item[k] = tuple(item.get(k) or ())
            entries.append(validate(ModelEntry(**item)))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: entry {i}: {e}") from None
    return tuple(entries)


def validate(entry: ModelEntry) -> ModelEntry:
    """Refuse an entry that could write outside its folder or names a malformed hash."""
    if entry.sha256 is not None and not SHA256.fullmatch(entry.sha256):
        raise ValueError(f"{entry.key}: sha256 {entry.sha256!r} is not 64 lowercase hex digits")
    parts = entry.target.split("/")
    if any(p in ("", ".", "..") for p in parts) or os.path.isabs(entry.target) or "\\" in entry.target:
        raise ValueError(f"{entry.key}: target {entry.target!r} must be a relative path inside the models folder")
    if entry.convert and not entry.name.endswith(".safetensors"):
        raise ValueError(f"{entry.key}: a converted file must be named .safetensors, not {entry.name!r}")
    return entry


def with_sha256(manifest, hashes: dict[str, str | None]) -> tuple[ModelEntry, ...]:
    """A copy of ``manifest`` with some entries' sha256 replaced (key -> hash)."""
    return tuple(replace(e, sha256=hashes[e.key]) if e.key in hashes else e for e in manifest)
