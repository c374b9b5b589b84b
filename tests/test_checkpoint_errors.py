"""Broken or unexpected weight files fail with the pack's own error, naming the file and what was expected."""

import os

import pytest
import torch
from ldm_layout import unet_to_ldm
from safetensors.torch import save_file

from aa2_core.__main__ import main
from aa2_core.check import write_tiny_models_dir
from aa2_core.checkpoints import convert
from aa2_core.checkpoints.loaders import clip_heads, load_clip_vision, load_motion_modules, load_unet
from aa2_core.errors import AA2Error
from aa2_core.tiny import TINY_UNET_CONFIG, save_tiny_clip_vision, tiny_motion, tiny_unet

LDM = "model.diffusion_model."


def save(sd: dict, path) -> str:
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return str(path)


def ldm_unet(drop=lambda k: False) -> dict:
    return {k: v for k, v in unet_to_ldm(tiny_unet(5).state_dict()).items() if not drop(k)}


# ---- detect: SD1.5 single files and diffusers-keyed files missing what the config is read from ----------------
def test_check_names_an_sd15_file_without_attention(tmp_path, capsys):
    write_tiny_models_dir(str(tmp_path))
    path = save(ldm_unet(lambda k: "transformer_blocks" in k), tmp_path / "animate_anyone2" / "denoising_unet.safetensors")
    assert main(["check", "--models", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"denoising UNet ({path}): no {LDM}*attn2.to_k.weight key" in out and "SD1.5 UNet" in out


@pytest.mark.parametrize("dropped, looked_for", [
    (f"{LDM}input_blocks.0.0.weight", f"missing {LDM}input_blocks.0.0.weight"),
    (f"{LDM}out.2.weight", f"missing {LDM}out.2.weight"),
    (f"{LDM}input_blocks.2.0.out_layers.3.weight", f"missing {LDM}input_blocks.2.0.out_layers.3.weight"),
    (".proj_in.weight", f"no {LDM}*.proj_in.weight key"),
    (f"{LDM}output_blocks.2.1.conv.bias", "converting the SD1.5 single file failed (missing key"),  # in diffusers
    (f"{LDM}input_blocks.3.0.op.bias", "missing 1 keys: down_blocks.0.downsamplers.0.conv.bias"),  # diffusers gave None
])
def test_sd15_single_file_missing_keys_are_named(tmp_path, dropped, looked_for):
    path = save(ldm_unet(lambda k: k.endswith(dropped)), tmp_path / "sd15.safetensors")
    with pytest.raises(AA2Error) as e:
        load_unet(path)
    assert f"UNet ({path})" in str(e.value) and looked_for in str(e.value)


def test_diffusers_unet_and_motion_missing_keys_are_named(tmp_path):
    sd = tiny_unet(5).state_dict()
    del sd["down_blocks.1.resnets.0.conv1.weight"]
    path = save(sd, tmp_path / "unet.safetensors")
    with pytest.raises(AA2Error, match=f"UNet \\({path}\\): missing down_blocks.1.resnets.0.conv1.weight"):
        load_unet(path)
    sd = {k: v for k, v in tiny_motion().state_dict().items() if not k.endswith("pos_embed.pe")}
    del sd["down_blocks.1.motion_modules.0.proj_in.weight"]
    path = save(sd, tmp_path / "mm.safetensors")
    with pytest.raises(AA2Error, match=f"motion module \\({path}\\): missing down_blocks.1.motion_modules.0.proj_in.weight"):
        load_motion_modules(path)


def test_unbuildable_widths_are_named(tmp_path):
    """diffusers' own ValueError (GroupNorm of 32 over 16 channels) comes back naming the file."""
    from diffusers import UNet2DConditionModel

    config = {**TINY_UNET_CONFIG, "block_out_channels": (16, 32, 32, 32), "norm_num_groups": 16}
    path = save(unet_to_ldm(UNet2DConditionModel(**config).state_dict()), tmp_path / "narrow.safetensors")
    with pytest.raises(AA2Error, match=f"UNet \\({path}\\).*must be divisible by num_groups"):
        load_unet(path)


# ---- CLIP vision head count ---------------------------------------------------------------------------
def clip_file(tmp_path, hidden: int, heads: int, metadata=None, hidden_act: str = "quick_gelu") -> tuple:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=hidden, intermediate_size=64, projection_dim=32, num_hidden_layers=1,
                              num_attention_heads=heads, patch_size=14, image_size=28, hidden_act=hidden_act)
    model = CLIPVisionModelWithProjection(config).eval()
    path = str(tmp_path / "clip.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path, metadata)
    return model, path


def test_clip_heads_from_known_widths(tmp_path):
    nowhere = str(tmp_path / "clip.pth")  # no metadata, no config.json beside it
    assert [clip_heads(nowhere, w) for w in (768, 1024, 1280, 1664, 192)] == [12, 16, 16, 16, 3]


def test_clip_activation_by_width_and_as_stated(tmp_path):
    """OpenAI's CLIP (ViT-B/L, sd-image-variations) uses quick_gelu, the LAION ViT-H / bigG exact GELU; a stated
    hidden_act (metadata, config.json beside the file) wins; the loaded tower gives the file's embeddings."""
    import json

    from aa2_core.checkpoints.loaders import clip_activation

    nowhere = str(tmp_path / "clip.pth")
    assert [clip_activation(nowhere, w) for w in (768, 1024, 1280, 1664)] == ["quick_gelu", "quick_gelu", "gelu", "gelu"]
    img = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    model, path = clip_file(tmp_path, 1280, 16, hidden_act="gelu")  # a ViT-H-wide tower, one small layer
    loaded = load_clip_vision(path)
    assert loaded.config.hidden_act == "gelu"
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=img).image_embeds, model(pixel_values=img).image_embeds)
    (tmp_path / "config.json").write_text(json.dumps({"vision_config": {"hidden_size": 1280, "hidden_act": "quick_gelu"}}))
    assert load_clip_vision(path).config.hidden_act == "quick_gelu"
    (tmp_path / "stated").mkdir()
    _, path = clip_file(tmp_path / "stated", 96, 4, {"num_attention_heads": "4", "hidden_act": "gelu"}, hidden_act="gelu")
    assert load_clip_vision(path).config.hidden_act == "gelu"
    _, path = clip_file(tmp_path, 96, 4, {"num_attention_heads": "4", "hidden_act": "swishy"})
    with pytest.raises(AA2Error, match=f"CLIP vision \\({path}\\): hidden_act 'swishy' is not an activation"):
        load_clip_vision(path)


def test_clip_of_unknown_width_without_head_count_is_refused(tmp_path):
    _, path = clip_file(tmp_path, 96, 4)
    with pytest.raises(AA2Error, match=f"CLIP vision \\({path}\\): width 96 .*num_attention_heads"):
        load_clip_vision(path)


@pytest.mark.parametrize("stated_in", ["metadata", "config.json"])
def test_clip_head_count_stated_by_the_file_is_used(tmp_path, stated_in):
    import json

    metadata = {"num_attention_heads": "4"} if stated_in == "metadata" else None
    if stated_in == "config.json":
        (tmp_path / "config.json").write_text(json.dumps({"vision_config": {"hidden_size": 96, "num_attention_heads": 4}}))
    model, path = clip_file(tmp_path, 96, 4, metadata)
    loaded = load_clip_vision(path)
    assert loaded.config.num_attention_heads == 4
    img = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=img).image_embeds, model(pixel_values=img).image_embeds)


def test_clip_head_count_that_does_not_divide_is_refused(tmp_path):
    _, path = clip_file(tmp_path, 96, 4, {"num_attention_heads": "5"})
    with pytest.raises(AA2Error, match=f"CLIP vision \\({path}\\): 5 attention heads do not divide the width 96"):
        load_clip_vision(path)


def test_tiny_clip_still_loads(tmp_path):
    """Its width (32) is in no table: the head count comes from the file's metadata."""
    path = str(tmp_path / "clip.safetensors")
    clip = save_tiny_clip_vision(path)
    assert load_clip_vision(path).config.num_attention_heads == clip.config.num_attention_heads
    save(clip.state_dict(), path)  # the same file without the metadata
    with pytest.raises(AA2Error, match="number of attention heads is unknown"):
        load_clip_vision(path)


# ---- the converter -------------------------------------------------------------------------------------
class Payload:
    """Any class outside torch's allow-list."""


def test_convert_a_directory_says_so(tmp_path, capsys):
    torch.save({"w": torch.zeros(1)}, tmp_path / "a.pth")
    assert convert.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path} is a directory; expected a weight file" in out and "a.pth" in out
    assert "not found" not in out


def test_convert_reports_the_reason_plainly(tmp_path, capsys):
    torch.save({"w": torch.zeros(1), "obj": Payload()}, tmp_path / "evil.pth")
    (tmp_path / "junk.pth").write_bytes(b"x" * 100)
    assert convert.main([str(tmp_path / "evil.pth"), str(tmp_path / "junk.pth")]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out  # torch colours part of its message
    assert "Unsupported global: GLOBAL test_checkpoint_errors.Payload" in out and "Unsupported operand" in out
    assert "weights_only` set to `False`" not in out  # torch's advice to load unsafely is not ours to give


def test_convert_shortens_long_reasons_between_words(tmp_path, capsys, monkeypatch):
    torch.save({"w": torch.zeros(1)}, tmp_path / "a.pth")

    def fail(*args, **kwargs):
        raise RuntimeError("\x1b[1m" + " ".join(["abcdefghij"] * 60) + "\x1b[0m")

    monkeypatch.setattr(torch, "load", fail)
    assert convert.main([str(tmp_path / "a.pth")]) == 1
    out = capsys.readouterr().out
    reason = out.split("(RuntimeError: ", 1)[1].split(")", 1)[0]
    assert "\x1b" not in reason and reason.endswith("abcdefghij ...") and len(reason) <= 300
    assert set(reason.removesuffix(" ...").split(" ")) == {"abcdefghij"}


def test_convert_to_an_unwritable_place_is_named(tmp_path, capsys):
    torch.save({"w": torch.zeros(1)}, tmp_path / "a.pth")
    (tmp_path / "file").write_text("")
    assert convert.main([str(tmp_path / "a.pth"), "--out-dir", str(tmp_path / "file")]) == 1
    out = capsys.readouterr().out
    assert f"could not write {os.path.join(str(tmp_path / 'file'), 'a.safetensors')}" in out
