"""The released Animate-X image embedding and ``zero_y`` from OpenCLIP's own files, against the released code's outputs.

``bench/animate_x_clip_parity.py`` ran the real open_clip 2.24.0 model code and the released ``clip_embedder.py`` on
tiny random weights in OpenCLIP's layout and wrote what they gave; here the same weights are rebuilt from their seed,
written as the files users download (``open_clip_pytorch_model.bin``, its ``.safetensors``, an SD2.1-style ckpt
with the text tower under ``cond_stage_model.model.*``) and read through ``families/animate_x/files.py``.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from aa2_core.families.animate_x import files, openclip
from aa2_core.families.animate_x.tiny import tiny_open_clip_state_dict, tiny_sd21_vae_state_dict

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "animate_x_clip")
PARITY = os.path.join(FIXTURES, "parity.safetensors")


@pytest.fixture(scope="module")
def fx():
    with safe_open(PARITY, framework="pt") as f:
        meta = json.loads(f.metadata()["animate_x_clip_parity"])
    return load_file(PARITY), meta


@pytest.fixture(scope="module")
def tiny_files(fx, tmp_path_factory):
    """The fixture's tiny weights as the user's files: {kind: path}."""
    sd = tiny_open_clip_state_dict(fx[1]["tiny_seed"], **fx[1]["tiny"])
    folder = tmp_path_factory.mktemp("open_clip")
    out = {"bin": str(folder / "open_clip_pytorch_model.bin"),
           "safetensors": str(folder / "open_clip_pytorch_model.safetensors"),
           "sd21_ckpt": str(folder / "v2-1_512-ema-pruned.ckpt")}
    torch.save(sd, out["bin"])
    save_file({k: v.contiguous() for k, v in sd.items()}, out["safetensors"])
    ckpt = dict(tiny_sd21_vae_state_dict())
    ckpt.update({openclip.SD2_TEXT_PREFIX + k: v for k, v in sd.items() if not k.startswith("visual.")})
    torch.save({"state_dict": ckpt}, out["sd21_ckpt"])
    return out


def seeded_image(seed: int, hw) -> torch.Tensor:
    """The bench's seeded uint8 image (its sha256 is checked against the fixture)."""
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([yy, xx, (yy + xx) / 2], -1) * 200
    return (base + 55 * torch.rand(h, w, 3, generator=g)).round().clamp(0, 255).to(torch.uint8)


def images(meta) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in meta["images"].items():
        img = seeded_image(m["seed"], m["hw"])
        assert hashlib.sha256(img.numpy().tobytes()).hexdigest() == m["sha256"], f"image {name} not regenerated"
        out[name] = (img.float() / 255)[None]  # a ComfyUI IMAGE of that file
    return out


def maxdiff(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


def image_diffs(path, meta, t) -> dict[str, float]:
    encoder = files.load_animate_x_image_encoder(path)
    return {name: maxdiff(encoder.embed(image), t[f"image_{name}"]) for name, image in images(meta).items()}


def test_fixture_metadata(fx):
    t, meta = fx
    assert meta["notes"]["open_clip"] == "2.24.0" and meta["tolerance"] == 1e-5
    assert t["zero_y"].shape == (1, openclip.CONTEXT, meta["tiny"]["text_width"])
    assert all(t[f"image_{n}"].shape == (1, 1, meta["tiny"]["embed_dim"]) for n in meta["images"])
    assert max(v for v in meta["measured"].values() if isinstance(v, float) and v < 1) <= 1e-5


def test_empty_prompt_ids_are_open_clip_tokenize(fx):
    assert torch.equal(openclip.empty_prompt_ids(), fx[0]["tokens"])


@pytest.mark.parametrize("kind, role", [("bin", "clip_vision"), ("safetensors", "clip_vision"), ("sd21_ckpt", "vae"),
                                        ("bin", "text_encoder")])
def test_zero_y_matches_released(fx, tiny_files, kind, role):
    zero_y, where = files.animate_x_text_context({role: tiny_files[kind]})
    assert where == f"computed from {tiny_files[kind]}"
    assert maxdiff(zero_y, fx[0]["zero_y"]) <= fx[1]["tolerance"]


@pytest.mark.parametrize("kind", ["bin", "safetensors"])
def test_image_embedding_matches_released(fx, tiny_files, kind):
    diffs = image_diffs(tiny_files[kind], fx[1], fx[0])
    assert max(diffs.values()) <= fx[1]["tolerance"], diffs


def test_released_preprocessing(fx):
    """The entrance's vit_transforms (PIL bilinear to 224, ToTensor, Normalize): the fixture's corner, bit for bit
    up to float rounding; the pack's default squash (bicubic, antialiased, on the float tensor) is not it."""
    for name, image in images(fx[1]).items():
        corner = fx[0][f"pixels_corner_{name}"]
        assert maxdiff(openclip.released_clip_pixels(image)[0, :, :8, :8], corner) <= 1e-6
        from aa2_core.models.image_encoder import clip_pixels

        assert maxdiff(clip_pixels(image, 224)[0, :, :8, :8], corner) > 1e-3


def test_swapped_q_and_k_of_in_proj_fail(fx, tiny_files, monkeypatch):
    """A wrong split of the fused in_proj (k rows read as q) moves both outputs far past the tolerance."""
    monkeypatch.setattr(openclip, "QKV", ("k", "q", "v"))
    assert min(image_diffs(tiny_files["bin"], fx[1], fx[0]).values()) > 100 * fx[1]["tolerance"]
    zero_y, _ = files.animate_x_text_context({"clip_vision": tiny_files["bin"]})
    assert maxdiff(zero_y, fx[0]["zero_y"]) > 100 * fx[1]["tolerance"]


def test_quick_gelu_fails(fx, tiny_files, monkeypatch):
    """OpenAI's quick_gelu (transformers' CLIP default) instead of ViT-H/14's exact GELU is off the released output."""
    monkeypatch.setattr(openclip, "ACTIVATION", "quick_gelu")
    assert min(image_diffs(tiny_files["bin"], fx[1], fx[0]).values()) > 10 * fx[1]["tolerance"]
    zero_y, _ = files.animate_x_text_context({"clip_vision": tiny_files["bin"]})
    assert maxdiff(zero_y, fx[0]["zero_y"]) > 10 * fx[1]["tolerance"]


def test_heads_are_open_clip_s():
    assert openclip.vision_heads(1280) == 16 and openclip.vision_heads(1024) == 16 and openclip.vision_heads(128) == 2
