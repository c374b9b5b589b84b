"""Real file formats load through the user-facing loaders; bad files fail with readable errors."""

import os

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from aa2_core.checkpoints import detect
from aa2_core.checkpoints.aa2_file import apply_aa2_parts, load_aa2_file, save_aa2_file
from aa2_core.checkpoints.convert import convert_file
from aa2_core.checkpoints.io import read_state_dict
from aa2_core.checkpoints.loaders import (
    check_keys,
    load_clip_vision,
    load_denoising_net,
    load_motion_modules,
    load_pose_guider,
    load_reference_net,
    load_vae,
    parameters_on_meta,
)
from aa2_core.errors import CheckpointError
from aa2_core.models import MotionConfig, MotionModuleSet, PoseGuider
from aa2_core.tiny import motion_to_original_keys, save_tiny_clip_vision, tiny_motion, tiny_vae


def same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_moore_files_load_exactly(moore_files, loaded):
    den = torch.load(moore_files["denoising_unet"], weights_only=True)
    same_tensors(loaded["denoising"].unet.state_dict(), den)
    ref = torch.load(moore_files["reference_unet"], weights_only=True)
    assert "conv_out.weight" not in ref
    same_tensors(loaded["reference"].unet.state_dict(), ref)
    pose = torch.load(moore_files["pose_guider"], weights_only=True)
    assert len(pose) == 16
    same_tensors(loaded["pose"].guider.state_dict(), pose)
    mm = torch.load(moore_files["motion_module"], weights_only=True)
    motion = loaded["denoising"].motion
    assert motion.config.version == "v2" and motion.config.max_seq_length == 32
    ours = {k: v for k, v in motion.state_dict().items() if not k.endswith("pos_embed.pe")}
    assert len(ours) == len([k for k in mm if not k.endswith("pos_encoder.pe")])
    # the fixed positional buffers we regenerate equal the ones the file carries
    pe_file = next(v for k, v in mm.items() if k.endswith("attention_blocks.0.pos_encoder.pe") and k.startswith("down_blocks.0."))
    torch.testing.assert_close(motion.down_blocks[0].motion_modules[0].transformer_blocks[0].pos_embed.pe, pe_file)


def test_motion_formats_agree(tmp_path):
    """Original keys (.ckpt with state_dict wrapper), diffusers keys (.safetensors, no pe) load to one module."""
    source = tiny_motion(seed=7)
    original = motion_to_original_keys(source.state_dict())
    torch.save({"state_dict": original}, tmp_path / "mm.ckpt")
    diffusers_keys = {k: v.contiguous() for k, v in source.state_dict().items() if not k.endswith("pos_embed.pe")}
    save_file(diffusers_keys, str(tmp_path / "mm.safetensors"))
    a = load_motion_modules(str(tmp_path / "mm.ckpt"))
    b = load_motion_modules(str(tmp_path / "mm.safetensors"))
    same_tensors(a.state_dict(), b.state_dict())
    x = torch.randn(2 * 3, 32, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(a.down_blocks[0].motion_modules[1](x, 3), source.down_blocks[0].motion_modules[1](x, 3))


@pytest.mark.parametrize("mid, length, version", [(False, 24, "v1"), (False, 32, "v3"), (True, 32, "v2")])
def test_motion_version_detection(tmp_path, mid, length, version):
    config = MotionConfig(block_out_channels=(32, 64, 64, 64), mid_block=mid, max_seq_length=length)
    sd = motion_to_original_keys(MotionModuleSet(config).state_dict(), max_seq_length=length)
    torch.save(sd, tmp_path / "mm.pth")
    mm = load_motion_modules(str(tmp_path / "mm.pth"))
    assert mm.config.version == version and mm.config.max_seq_length == length
    assert (mm.mid_block is not None) == mid


def test_full_size_key_sets_on_meta():
    """Full-size SD1.5 / Moore / AnimateDiff v2 / CLIP ViT-L layouts are detected and accepted, without weights."""
    with parameters_on_meta():
        sd15 = UNet2DConditionModel(attention_head_dim=8, cross_attention_dim=768).state_dict()  # SD1.5
    config = detect.unet_config(sd15)
    assert config["block_out_channels"] == (320, 640, 1280, 1280) and config["cross_attention_dim"] == 768
    with parameters_on_meta():
        check_keys(UNet2DConditionModel(**config), sd15, "meta SD1.5")  # raises on any key/shape mismatch

    with parameters_on_meta():
        mm = MotionModuleSet(MotionConfig()).state_dict()
    original = motion_to_original_keys(mm)
    assert any(k.startswith("mid_block.motion_modules.0.temporal_transformer.") for k in original)
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    cfg = detect.motion_config(convert_animatediff_checkpoint_to_diffusers(original))
    assert cfg == MotionConfig()  # SD1.5 channels, v2 mid block, 32 positions

    with parameters_on_meta():
        guider = PoseGuider(320).state_dict()
    assert len(guider) == 16
    assert detect.pose_guider_config(guider) == dict(in_channels=3, block_out_channels=(16, 32, 96, 256), embedding_channels=320)

    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    vit_l = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, projection_dim=768, num_hidden_layers=24,
                             num_attention_heads=16, patch_size=14, image_size=224)
    with parameters_on_meta():
        clip = CLIPVisionModelWithProjection(vit_l).state_dict()
    assert detect.kind_of(clip) == "clip_vision"


def test_reference_net_accepts_file_with_head(tmp_path, moore_files):
    """A full UNet file (with conv_out) also works as the ReferenceNet."""
    sd = torch.load(moore_files["denoising_unet"], weights_only=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "ref.safetensors"))
    net = load_reference_net(str(tmp_path / "ref.safetensors"))
    assert torch.equal(net.unet.conv_out.weight, sd["conv_out.weight"])


def test_unet_with_motion_keys_splits_them(tmp_path, moore_files):
    sd = torch.load(moore_files["denoising_unet"], weights_only=True)
    sd.update(torch.load(moore_files["motion_module"], weights_only=True))
    torch.save(sd, tmp_path / "unet3d.pth")
    net = load_denoising_net(str(tmp_path / "unet3d.pth"))
    assert net.motion is not None and net.motion.config.mid_block


def test_vae_and_clip_vision_roundtrip(tmp_path):
    vae = tiny_vae()
    save_file(vae.state_dict(), str(tmp_path / "vae.safetensors"))
    loaded = load_vae(str(tmp_path / "vae.safetensors"))
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x).latent_dist.mean, vae.encode(x).latent_dist.mean)
    clip = save_tiny_clip_vision(str(tmp_path / "clip.safetensors"))
    loaded = load_clip_vision(str(tmp_path / "clip.safetensors"))
    img = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values=img).image_embeds, clip(pixel_values=img).image_embeds)


# ---- errors ------------------------------------------------------------------------------------------
def test_missing_and_truncated_files(tmp_path, moore_files):
    with pytest.raises(CheckpointError, match="file not found: .*nope.pth"):
        load_pose_guider(str(tmp_path / "nope.pth"))
    data = open(moore_files["denoising_unet"], "rb").read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth.*truncated"):
        load_denoising_net(str(cut))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_vae(str(tmp_path / "empty.safetensors"))


def test_wrong_file_for_role_names_it(moore_files):
    with pytest.raises(CheckpointError) as e:
        load_motion_modules(moore_files["pose_guider"])
    assert "pose_guider.pth" in str(e.value) and "pose_guider" in str(e.value)
    with pytest.raises(CheckpointError, match="pose guider"):
        load_pose_guider(moore_files["motion_module"])


def test_mismatched_keys_are_listed(tmp_path, moore_files):
    sd = torch.load(moore_files["denoising_unet"], weights_only=True)
    del sd["mid_block.attentions.0.proj_in.weight"]
    sd["mid_block.extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as e:
        load_denoising_net(str(tmp_path / "bad.pth"))
    msg = str(e.value)
    assert "bad.pth" in msg and "mid_block.attentions.0.proj_in.weight" in msg and "mid_block.extra.weight" in msg


def test_motion_module_for_other_unet_is_refused(tmp_path, moore_files):
    config = MotionConfig(block_out_channels=(64, 64, 64, 64))
    torch.save(motion_to_original_keys(MotionModuleSet(config).state_dict()), tmp_path / "mm.pth")
    with pytest.raises(CheckpointError, match="channels"):
        load_denoising_net(moore_files["denoising_unet"], str(tmp_path / "mm.pth"))


class Payload:
    """Any class outside torch's allow-list: weights_only loading must refuse to build it."""


def test_pickle_with_objects_is_refused(tmp_path):
    torch.save({"w": torch.zeros(1), "obj": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="evil.pth"):
        read_state_dict(str(tmp_path / "evil.pth"))


# ---- our own file and the converter ------------------------------------------------------------------
def test_aa2_file_roundtrip(tmp_path, loaded):
    import copy

    net, pose = copy.deepcopy(loaded["denoising"]), copy.deepcopy(loaded["pose"])
    with torch.no_grad():
        for p in list(net.spatial_blend_mid.parameters()) + list(pose.temporal.parameters()):
            p.add_(1.0)
    pose_aa2 = {k: v for k, v in pose.state_dict().items() if not k.startswith("guider.")}
    path = str(tmp_path / "aa2.safetensors")
    save_aa2_file(path, {"denoising": net.aa2_state_dict(), "pose": pose_aa2}, base="moore-tiny")
    parts, meta = load_aa2_file(path)
    assert meta["modules"] == ["denoising", "pose"] and meta["base"] == "moore-tiny" and meta["format_version"] == "1"
    fresh_net, fresh_pose = copy.deepcopy(loaded["denoising"]), copy.deepcopy(loaded["pose"])
    apply_aa2_parts(fresh_net, parts["denoising"], path)
    apply_aa2_parts(fresh_pose, parts["pose"], path)
    same_tensors(fresh_net.state_dict(), net.state_dict())
    same_tensors(fresh_pose.state_dict(), pose.state_dict())
    with pytest.raises(CheckpointError, match="not an Animate Anyone 2 module file"):
        load_aa2_file(_plain_safetensors(tmp_path))
    bad = {"spatial_blend_mid.0.gate": torch.zeros(3)}
    with pytest.raises(CheckpointError, match="shape"):
        apply_aa2_parts(fresh_net, bad, "x.safetensors")


def _plain_safetensors(tmp_path):
    path = str(tmp_path / "plain.safetensors")
    save_file({"a": torch.zeros(1)}, path)
    return path


def test_converter_cli(tmp_path, moore_files):
    from aa2_core.__main__ import main

    assert main(["convert", moore_files["pose_guider"], "--out-dir", str(tmp_path)]) == 0
    out = tmp_path / "pose_guider.safetensors"
    same_tensors(read_state_dict(str(out)), torch.load(moore_files["pose_guider"], weights_only=True))
    assert load_pose_guider(str(out)).conv_out.weight.shape[0] == 32
    assert convert_file(moore_files["motion_module"], str(tmp_path)).endswith("motion_module.safetensors")
    assert os.path.getsize(tmp_path / "motion_module.safetensors") > 0


# ---- SD1.5 as ComfyUI users have it ------------------------------------------------------------------
def test_sd15_single_file_and_diffusers_folder(tmp_path):
    """A tiny SD1.5 single-file checkpoint (LDM keys, VAE inside) and a diffusers folder load the same weights."""
    from ldm_layout import unet_to_ldm, vae_to_ldm

    from aa2_core.checkpoints.loaders import load_unet
    from aa2_core.tiny import tiny_unet

    unet, vae = tiny_unet(11), tiny_vae(12)
    single = {**unet_to_ldm(unet.state_dict()), **vae_to_ldm(vae.state_dict(), prefix="first_stage_model.")}
    single["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_file({k: v.contiguous() for k, v in single.items()}, str(tmp_path / "tiny_sd15.safetensors"))
    assert detect.kind_of(single) == "sd15_single_file"

    loaded_unet, motion = load_unet(str(tmp_path / "tiny_sd15.safetensors"))
    assert not motion
    same_tensors(loaded_unet.state_dict(), unet.state_dict())
    loaded_vae = load_vae(str(tmp_path / "tiny_sd15.safetensors"))
    same_tensors(loaded_vae.state_dict(), vae.state_dict())

    unet.save_pretrained(str(tmp_path / "sd15" / "unet"))
    vae.save_pretrained(str(tmp_path / "sd15" / "vae"))
    folder_unet, _ = load_unet(str(tmp_path / "sd15"))
    same_tensors(folder_unet.state_dict(), unet.state_dict())
    same_tensors(load_vae(str(tmp_path / "sd15")).state_dict(), vae.state_dict())

    # standalone LDM VAE file (vae-ft-mse-840000-ema-pruned layout)
    save_file({k: v.contiguous() for k, v in vae_to_ldm(vae.state_dict()).items()}, str(tmp_path / "vae-ft-mse.safetensors"))
    same_tensors(load_vae(str(tmp_path / "vae-ft-mse.safetensors")).state_dict(), vae.state_dict())


@pytest.mark.parametrize("layout", ["ldm", "diffusers"])
def test_narrow_vae_file_loads(tmp_path, layout):
    """Widths not divisible by 32: the file does not say its GroupNorm count, so it is read off the widths."""
    from diffusers import AutoencoderKL
    from ldm_layout import vae_to_ldm

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=16).eval()
    sd = vae_to_ldm(vae.state_dict(), levels=2) if layout == "ldm" else vae.state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "vae.safetensors"))
    loaded = load_vae(str(tmp_path / "vae.safetensors"))
    assert loaded.config.norm_num_groups == 16
    same_tensors(loaded.state_dict(), vae.state_dict())
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(loaded.encode(x).latent_dist.mean).sample,
                                   vae.decode(vae.encode(x).latent_dist.mean).sample)
