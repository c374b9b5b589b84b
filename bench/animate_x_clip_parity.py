#!/usr/bin/env python3
"""Animate-X image embedding and zero_y: the RELEASED code (antgroup/animate-x on open-clip-torch 2.24.0) against ours.

This file contains no open_clip or Animate-X code. It imports, unmodified, from two source copies:

* open_clip (``--open-clip``: the root of ``git --git-dir=<mirror of mlfoundations/open_clip> archive v2.24.0
  src/open_clip | tar -x -C /tmp/open_clip_src``; 2.24.0 is the version the released requirements.txt pins):
  ``open_clip/model.py`` (``CLIP``: ``VisionTransformer`` + the text tower of ``transformer.py``) and
  ``open_clip/tokenizer.py`` (``tokenize``);
* Animate-X (``--source``, as for ``bench/animate_x_parity.py``): ``animatex/model/clip_embedder.py``
  (``FrozenOpenCLIPTextVisualEmbedder``, built through the released ``EMBEDDER`` registry with the YAML's
  ``layer: penultimate``) and ``utils/transforms.py`` (``Resize``); the entrance's ``vit_transforms`` is rebuilt from
  its lines (``T.Compose([data.Resize(cfg.vit_resolution), T.ToTensor(), T.Normalize(mean=cfg.vit_mean,
  std=cfg.vit_std)])``) with ``vit_resolution`` from ``configs/Animate_X_infer.yaml`` and the mean/std literals of
  ``animatex/default_config.py`` (read with ``ast``: that module needs easydict and CUDA counts).

What runs, as ``inference_animate_x_entrance.py`` does: ``_, _, zero_y = clip_encoder(text="")`` and
``clip_encoder.encode_image(vit_transforms(ref_frame)[None])`` on tiny random weights in OpenCLIP's layout
(``aa2_core.families.animate_x.tiny.tiny_open_clip_state_dict``, loaded into ``open_clip.model.CLIP`` with
``strict=True``), fp32 on the CPU. Ours runs the same tiny files through the user path
(``families/animate_x/files.py``: ``load_animate_x_image_encoder(...).embed`` and ``animate_x_text_context``) from an
``open_clip_pytorch_model.bin``, its ``.safetensors``, and (zero_y) an SD2.1-style ckpt with the text tower under
``cond_stage_model.model.*``. Tolerance 1e-5 for both.

Stand-ins (none changes a computation that is compared):

* ``open_clip`` package ``__init__`` not run (it imports the factory, pretrained download code and torchvision
  transforms): a bare package object pointing at ``src/open_clip``; its ``tokenize`` attribute is
  ``open_clip.tokenizer.tokenize`` (what ``__init__`` exports), its ``create_model_and_transforms`` builds
  ``open_clip.model.CLIP`` at the tiny widths (the factory would read ``model_configs/ViT-H-14.json``) and loads the
  tiny ``.bin`` with ``torch.load(weights_only=True)`` + ``load_state_dict(strict=True)`` (the factory's
  ``load_checkpoint``), returning ``(model, None, None)`` (the unused train/val transforms);
* ``ftfy`` when not installed: ``fix_text`` = identity (the tokenizer's ``basic_clean`` mends mojibake; "" is "");
* ``torchvision`` when it does not import (the pack venv: "operator torchvision::nms does not exist"): ``ops.misc.
  FrozenBatchNorm2d`` a placeholder (used by open_clip only to freeze ResNet towers), ``transforms.ToTensor`` /
  ``Normalize`` / ``Compose`` with torchvision 0.15's maths (uint8 HWC -> float CHW / 255; ``sub_(mean).div_(std)``),
  ``transforms.functional`` a placeholder (imported by ``utils/transforms.py``, used by transforms not run here);
  with ``/work/ci1/.comfyui/venv`` (torchvision loads there through ``/work/shared/tools/torch_cpu_shim.py``) the real
  one runs; the fixtures record which;
* ``kornia`` when not installed: a placeholder (``FrozenOpenCLIPImageEmbedderV2`` only);
* ``animatex`` and ``animatex.model`` package ``__init__``s not run (they import the CUDA entrance and the UNet);
  ``device="cpu"`` passed to the embedder
  (the registry default is "cuda").

Fixtures (``--fixtures``, default tests/fixtures/animate_x_clip): ``parity.safetensors``: the released ``zero_y``
``(1, 77, 128)``, its tokens, the image embeddings ``(1, 1, 64)`` of two seeded uint8 images (one smaller, one
larger than 224), an 8x8 corner of each preprocessed image; metadata: seeds, tiny config, image shapes and sha256,
versions, stand-ins, measured differences. Tiny widths: vision 128 x 2 layers (2 heads), patch 14 at 224, text
128 x 3 layers (2 heads; the penultimate output reads 2), embedding 64, OpenCLIP's vocabulary 49408 and context 77.

    python bench/animate_x_clip_parity.py --source /tmp/animatex_src --open-clip /tmp/open_clip_src
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

TOL = 1e-5
TINY = dict(embed_dim=64, vision_width=128, vision_layers=2, patch_size=14, image_size=224, text_width=128,
            text_layers=3)
IMAGES = {"small": (96, 80), "large": (300, 260)}  # name -> (H, W) of the seeded uint8 RGB images
STAND_INS = [
    "open_clip package __init__ not run; open_clip.tokenize = open_clip.tokenizer.tokenize",
    "open_clip.create_model_and_transforms -> open_clip.model.CLIP at the tiny widths + torch.load(weights_only=True) "
    "+ load_state_dict(strict=True); returns (model, None, None)",
    "ftfy.fix_text = identity when ftfy is missing",
    "torchvision (when it does not import): ToTensor/Normalize/Compose with torchvision's maths, FrozenBatchNorm2d "
    "and transforms.functional placeholders",
    "kornia placeholder when missing (unused here)",
    "animatex and animatex.model package __init__s not run; embedder built with device='cpu'",
]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.environ.get("ANIMATEX_SRC", "/tmp/animatex_src"),
                    help="untouched copy of antgroup/animate-x (animatex/, configs/, utils/)")
    ap.add_argument("--open-clip", default=os.environ.get("OPEN_CLIP_SRC", "/tmp/open_clip_src"),
                    help="untouched copy of mlfoundations/open_clip v2.24.0 (holds src/open_clip)")
    ap.add_argument("--open-clip-commit", default=os.environ.get("OPEN_CLIP_COMMIT", ""),
                    help="the commit the open_clip copy was archived from (recorded in the fixtures)")
    ap.add_argument("--source-commit", default=os.environ.get("ANIMATEX_COMMIT", ""))
    ap.add_argument("--fixtures", default=os.path.join(REPO, "tests", "fixtures", "animate_x_clip"))
    ap.add_argument("--tiny-seed", type=int, default=11)
    ap.add_argument("--image-seed", type=int, default=12)
    ap.add_argument("--no-write", action="store_true", help="compare only; keep the fixtures")
    return ap.parse_args(argv)


def module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def seeded_image(seed: int, hw: tuple[int, int]):
    """A uint8 RGB image (H, W, 3): smooth gradients + noise, so a resize has something to average."""
    import torch

    g = torch.Generator().manual_seed(seed)
    h, w = hw
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([yy, xx, (yy + xx) / 2], -1) * 200
    img = (base + 55 * torch.rand(h, w, 3, generator=g)).round().clamp(0, 255).to(torch.uint8)
    return img


def image_sha(img) -> str:
    return hashlib.sha256(img.contiguous().numpy().tobytes()).hexdigest()


# --------------------------------------------------------------------------------------------- released code
def install_stand_ins(source: str, open_clip_root: str, tiny: dict) -> dict:
    import importlib

    import torch

    notes = {}
    try:
        import ftfy  # noqa: F401
        notes["ftfy"] = "real"
    except ImportError:
        module("ftfy", fix_text=lambda text, **_: text)
        notes["ftfy"] = "stand-in"
    try:
        import torchvision
        import torchvision.transforms  # noqa: F401
        notes["torchvision"] = f"real {torchvision.__version__}"
    except Exception as e:  # noqa: BLE001 (the pack venv's CUDA wheel on a CPU torch)
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        notes["torchvision"] = f"stand-in ({type(e).__name__}: {str(e)[:80]})"

        class FrozenBatchNorm2d(torch.nn.Module):
            def __init__(self, *a, **k):
                raise RuntimeError("torchvision stand-in: FrozenBatchNorm2d not expected to be used")

        class ToTensor:  # torchvision.transforms.functional.to_tensor for an 8-bit RGB PIL image
            def __call__(self, pic):
                import numpy as np

                img = torch.from_numpy(np.array(pic, np.uint8, copy=True)).view(pic.size[1], pic.size[0], 3)
                return img.permute((2, 0, 1)).contiguous().to(dtype=torch.get_default_dtype()).div(255)

        class Normalize:  # torchvision.transforms.functional.normalize (not in place on the input)
            def __init__(self, mean, std, inplace=False):
                self.mean, self.std = mean, std

            def __call__(self, tensor):
                tensor = tensor.clone()
                mean = torch.as_tensor(self.mean, dtype=tensor.dtype).view(-1, 1, 1)
                std = torch.as_tensor(self.std, dtype=tensor.dtype).view(-1, 1, 1)
                return tensor.sub_(mean).div_(std)

        class Compose:
            def __init__(self, transforms):
                self.transforms = transforms

            def __call__(self, x):
                for t in self.transforms:
                    x = t(x)
                return x

        functional = module("torchvision.transforms.functional")
        transforms = module("torchvision.transforms", ToTensor=ToTensor, Normalize=Normalize, Compose=Compose,
                            functional=functional)
        misc = module("torchvision.ops.misc", FrozenBatchNorm2d=FrozenBatchNorm2d)
        ops = module("torchvision.ops", misc=misc)
        module("torchvision", transforms=transforms, ops=ops, __version__="stand-in")
    try:
        import kornia  # noqa: F401
        notes["kornia"] = "real"
    except Exception:  # noqa: BLE001
        module("kornia")
        notes["kornia"] = "placeholder"

    pkg_dir = os.path.join(open_clip_root, "src", "open_clip")
    if not os.path.isfile(os.path.join(pkg_dir, "model.py")):
        raise SystemExit(f"--open-clip {open_clip_root!r}: src/open_clip/model.py not found")
    oc = module("open_clip")
    oc.__path__ = [pkg_dir]
    oc_model = importlib.import_module("open_clip.model")
    oc_tok = importlib.import_module("open_clip.tokenizer")
    version = {}
    exec(open(os.path.join(pkg_dir, "version.py")).read(), version)  # noqa: S102 (a one-line __version__)

    def create_model_and_transforms(arch, device=None, pretrained=None, **_):
        assert arch == "ViT-H-14", arch
        model = oc_model.CLIP(
            embed_dim=tiny["embed_dim"],
            vision_cfg=dict(image_size=tiny["image_size"], layers=tiny["vision_layers"], width=tiny["vision_width"],
                            head_width=64, patch_size=tiny["patch_size"]),
            text_cfg=dict(context_length=77, vocab_size=49408, width=tiny["text_width"],
                          heads=tiny["text_width"] // 64, layers=tiny["text_layers"]),
            quick_gelu=False)  # ViT-H-14's config: no quick_gelu
        model.load_state_dict(torch.load(pretrained, map_location="cpu", weights_only=True), strict=True)
        return model.to(device), None, None

    oc.tokenize = oc_tok.tokenize
    oc.create_model_and_transforms = create_model_and_transforms
    notes["open_clip"] = version["__version__"]

    for need in ("animatex/model/clip_embedder.py", "utils/transforms.py", "configs/Animate_X_infer.yaml",
                 "animatex/default_config.py"):
        if not os.path.isfile(os.path.join(source, need)):
            raise SystemExit(f"--source {source!r}: {need} not found")
    pkg = module("animatex")
    pkg.__path__ = [os.path.join(source, "animatex")]
    sub = module("animatex.model")  # its __init__ imports the UNet (xformers, CUDA)
    sub.__path__ = [os.path.join(source, "animatex", "model")]
    pkg.model = sub
    sys.path.insert(0, source)
    return notes


def import_released(source: str) -> dict:
    import importlib

    emb = importlib.import_module("animatex.model.clip_embedder")
    registry = importlib.import_module("utils.registry_class")
    data = importlib.import_module("utils.transforms")
    for m in (registry, data):
        if not os.path.abspath(m.__file__).startswith(os.path.abspath(source)):
            raise SystemExit(f"{m.__name__} resolved to {m.__file__}, not the source copy")
    return dict(embedder=emb, registry=registry, data=data)


def released_settings(source: str) -> dict:
    import yaml

    with open(os.path.join(source, "configs", "Animate_X_infer.yaml")) as f:
        y = yaml.safe_load(f)
    tree = ast.parse(open(os.path.join(source, "animatex", "default_config.py")).read())
    consts = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            name = node.targets[0].attr
            if name in ("vit_mean", "vit_std"):
                consts[name] = ast.literal_eval(node.value)
    return dict(embedder=y["embedder"], vit_resolution=y["vit_resolution"], **consts)


def maxdiff(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


# --------------------------------------------------------------------------------------------- main
def main(args):
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from aa2_core.families.animate_x import files, openclip
    from aa2_core.families.animate_x.tiny import tiny_open_clip_state_dict

    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    notes = install_stand_ins(args.source, args.open_clip, TINY)
    R = import_released(args.source)
    settings = released_settings(args.source)
    sd = tiny_open_clip_state_dict(args.tiny_seed, **TINY)
    report, out = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        bin_path = os.path.join(tmp, "open_clip_pytorch_model.bin")
        torch.save(sd, bin_path)
        st_path = os.path.join(tmp, "open_clip_pytorch_model.safetensors")
        save_file({k: v.contiguous() for k, v in sd.items()}, st_path)
        ckpt_path = os.path.join(tmp, "v2-1_512-ema-pruned.ckpt")
        torch.save({"state_dict": {openclip.SD2_TEXT_PREFIX + k: v for k, v in sd.items()
                                   if not k.startswith("visual.")}}, ckpt_path)

        # the released embedder, as EMBEDDER.build(cfg.embedder) with the YAML's values
        cfg = dict(settings["embedder"], pretrained=bin_path, device="cpu")
        assert cfg["type"] == "FrozenOpenCLIPTextVisualEmbedder" and cfg["layer"] == "penultimate", cfg
        clip_encoder = R["registry"].EMBEDDER.build(cfg)
        tokens = sys.modules["open_clip"].tokenize("")
        _, _, zero_y = clip_encoder(text="")
        out["tokens"], out["zero_y"] = tokens, zero_y
        report["tokens_equal"] = torch.equal(tokens, openclip.empty_prompt_ids())

        # ours: zero_y through the user path from the .bin, its .safetensors and an SD2.1-style ckpt
        for name, paths in (("bin", {"clip_vision": bin_path}), ("safetensors", {"clip_vision": st_path}),
                            ("sd21_ckpt", {"vae": ckpt_path})):
            ours, where = files.animate_x_text_context(paths)
            report[f"zero_y_{name}"] = maxdiff(zero_y, ours)

        # the image: the entrance's vit_transforms, then clip_encoder.encode_image
        import torchvision.transforms as T

        data = R["data"]
        vit_transforms = T.Compose([data.Resize(settings["vit_resolution"]), T.ToTensor(),
                                    T.Normalize(mean=settings["vit_mean"], std=settings["vit_std"])])
        encoders = {name: files.load_animate_x_image_encoder(p)
                    for name, p in (("bin", bin_path), ("safetensors", st_path))}
        meta_images = {}
        for i, (name, hw) in enumerate(IMAGES.items()):
            img = seeded_image(args.image_seed + i, hw)
            meta_images[name] = dict(seed=args.image_seed + i, hw=list(hw), sha256=image_sha(img))
            vit_frame = vit_transforms(Image.fromarray(img.numpy(), "RGB"))
            theirs = clip_encoder.encode_image(vit_frame.unsqueeze(0)).unsqueeze(1)  # y_visual (1, 1, dim)
            out[f"image_{name}"] = theirs
            out[f"pixels_corner_{name}"] = vit_frame[:, :8, :8].clone()
            image = (img.float() / 255)[None]  # a ComfyUI IMAGE of that file
            report[f"pixels_{name}"] = maxdiff(vit_frame[None], openclip.released_clip_pixels(image))
            for enc_name, enc in encoders.items():
                report[f"image_{name}_{enc_name}"] = maxdiff(theirs, enc.embed(image))

    worst = max(v for k, v in report.items() if isinstance(v, float))
    ok = report["tokens_equal"] and worst <= TOL
    report["seconds"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(dict(report=report, notes=notes), indent=1))
    print(f"{'PASS' if ok else 'FAIL'}: worst {worst:.3g} (tolerance {TOL})")
    if not args.no_write:
        import torch as _t

        os.makedirs(args.fixtures, exist_ok=True)
        meta = dict(tiny_seed=args.tiny_seed, tiny=TINY, images=meta_images, tolerance=TOL, measured=report,
                    stand_ins=STAND_INS, notes=notes, torch=_t.__version__,
                    open_clip_commit=args.open_clip_commit, animatex_commit=args.source_commit,
                    vit_resolution=settings["vit_resolution"], vit_mean=settings["vit_mean"],
                    vit_std=settings["vit_std"])
        save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(args.fixtures, "parity.safetensors"),
                  metadata={"animate_x_clip_parity": json.dumps(meta)})
        print("fixtures written to", args.fixtures)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
