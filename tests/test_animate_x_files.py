"""Finding and loading the released Animate-X files in a ComfyUI models folder, and ``animate --family``."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from safetensors.torch import save_file

from aa2_core.errors import AA2Error
from aa2_core.cli.animate_x import wants_animate_x, write_tiny_animate_x_dir
from aa2_core.families.animate_x import openclip
from aa2_core.families.animate_x.config import TINY_CONFIG
from aa2_core.families.animate_x.family import AnimateXModels
from aa2_core.families.animate_x.files import is_animate_x_folder, load_animate_x_family, locate_animate_x_files
from aa2_core.families.animate_x.tiny import (TINY_SEED, tiny_open_clip_state_dict, write_tiny_animate_x_files,
                                              write_tiny_open_clip_bin)
from aa2_core.cli import animate as animate_cli


def tiny_conditions():
    """The least ``begin`` reads: a reference with its pixels."""
    from types import SimpleNamespace

    ref = SimpleNamespace(image_embeds=torch.zeros(1, 1, TINY_CONFIG.context_dim), latents=torch.zeros(1, 4, 8, 8),
                          tokens={"local_image": torch.zeros(1, 3, 64, 64)})
    return SimpleNamespace(reference=ref)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("ax_models"))
    write_tiny_animate_x_dir(folder)
    return folder


def test_locates_and_loads_the_released_layout(tiny_dir):
    paths = locate_animate_x_files(tiny_dir)
    assert paths["unet"] == os.path.join(tiny_dir, "animate_x", "animate-x_ckpt.pth")
    assert paths["vae"] == os.path.join(tiny_dir, "vae", "v2-1_512-ema-pruned.ckpt")
    assert paths["clip_vision"] == os.path.join(tiny_dir, "clip_vision", "clip_vision_h.safetensors")
    assert "zero_y" not in paths
    bundle = load_animate_x_family(tiny_dir)
    assert isinstance(bundle.models, AnimateXModels) and bundle.models.unet.config == TINY_CONFIG
    assert bundle.models.text is None and bundle.models.family == "animate-x" and bundle.text_source == ""
    assert bundle.image_encoder.embed(torch.rand(1, 64, 64, 3)).shape == (1, 1, TINY_CONFIG.context_dim)
    assert bundle.vae.config.latent_channels == 4


def test_zero_y_file_is_read(tiny_dir, tmp_path):
    paths = dict(locate_animate_x_files(tiny_dir))
    zero_y = torch.randn(1, 77, TINY_CONFIG.context_dim)
    paths["zero_y"] = str(tmp_path / "animate_x_zero_y.safetensors")
    save_file({"zero_y": zero_y}, paths["zero_y"])
    assert torch.equal(load_animate_x_family(paths).models.text, zero_y)
    save_file({"zero_y": torch.zeros(1, 77, 7)}, paths["zero_y"])
    with pytest.raises(AA2Error, match="zero_y"):
        load_animate_x_family(paths)


def test_missing_files_are_each_named_with_folder_and_role(tmp_path):
    os.makedirs(tmp_path / "clip_vision")
    with pytest.raises(AA2Error) as err:
        locate_animate_x_files(str(tmp_path))
    text = str(err.value)
    for words in ("animate-x_ckpt.pth", "diffusion_models", "animate_x", "Animate-X UNet",
                  "v2-1_512-ema-pruned.ckpt", os.path.join(str(tmp_path), "vae"), "SD2.1 VAE",
                  "clip_vision_h.safetensors", "open_clip_pytorch_model.bin", "image encoder"):
        assert words in text, words


def released_dir(folder, clip: str = "bin", text_in_ckpt: bool = False, **open_clip_config) -> dict:
    """A models folder as ``download --set animate-x`` lays it out (tiny files): animate_x/, vae/, clip_vision/."""
    from aa2_core.tiny import save_tiny_clip_vision

    files = write_tiny_animate_x_files(os.path.join(folder, "animate_x"), text_tower=text_in_ckpt)
    os.makedirs(os.path.join(folder, "vae"))
    os.replace(files["vae"], os.path.join(folder, "vae", "v2-1_512-ema-pruned.ckpt"))
    os.makedirs(os.path.join(folder, "clip_vision"))
    out = {}
    if clip in ("bin", "both"):
        out["sd"] = tiny_open_clip_state_dict(**open_clip_config)
        out["bin"] = write_tiny_open_clip_bin(os.path.join(folder, "clip_vision", "open_clip_pytorch_model.bin"),
                                              **open_clip_config)
    if clip in ("h", "both"):
        save_tiny_clip_vision(os.path.join(folder, "clip_vision", "clip_vision_h.safetensors"))
    return out


def test_open_clip_bin_is_the_image_encoder_and_gives_zero_y(tmp_path, caplog):
    made = released_dir(str(tmp_path))
    paths = locate_animate_x_files(str(tmp_path))
    assert paths["clip_vision"] == paths["text_encoder"] == made["bin"] and "zero_y" not in paths
    bundle = load_animate_x_family(str(tmp_path))
    assert torch.equal(bundle.models.text, openclip.zero_y_from_state_dict(made["sd"]))
    assert bundle.models.text.shape == (1, 77, TINY_CONFIG.context_dim)
    assert bundle.text_source == f"computed from {made['bin']}"
    assert bundle.image_encoder.clip.config.hidden_act == "gelu"
    assert bundle.image_encoder.embed(torch.rand(1, 50, 40, 3)).shape == (1, 1, TINY_CONFIG.context_dim)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        bundle.models.begin(tiny_conditions(), "cpu", torch.float32)
    assert "no zero_y" not in caplog.text


def test_bin_in_both_roles_is_read_once(tmp_path, monkeypatch):
    """open_clip_pytorch_model.bin as image encoder and text tower: zero_y comes from the tensors already read."""
    made = released_dir(str(tmp_path))

    def second_read(path, *a, **k):
        raise AssertionError(f"{path} read a second time for its text tower")

    monkeypatch.setattr(openclip, "read_text_tower", second_read)
    bundle = load_animate_x_family(str(tmp_path))
    assert bundle.text_source == f"computed from {made['bin']}"


def test_zero_y_from_the_sd21_checkpoint(tmp_path):
    """clip_vision_h.safetensors as the image encoder and no .bin: the text tower of v2-1_512-ema-pruned.ckpt."""
    released_dir(str(tmp_path), clip="h", text_in_ckpt=True)
    bundle = load_animate_x_family(str(tmp_path))
    tower = tiny_open_clip_state_dict(TINY_SEED + 5)
    assert torch.equal(bundle.models.text, openclip.zero_y_from_state_dict(tower))
    assert bundle.text_source == f"computed from {bundle.paths['vae']}"
    assert bundle.image_encoder.clip.config.hidden_act == "gelu"


def test_bin_beside_clip_vision_h_gives_the_text(tmp_path):
    made = released_dir(str(tmp_path), clip="both", text_in_ckpt=True)
    bundle = load_animate_x_family(str(tmp_path))
    assert bundle.paths["clip_vision"].endswith("clip_vision_h.safetensors")
    assert bundle.text_source == f"computed from {made['bin']}"
    assert torch.equal(bundle.models.text, openclip.zero_y_from_state_dict(made["sd"]))


def test_no_text_tower_keeps_the_warning(tiny_dir, caplog):
    bundle = load_animate_x_family(tiny_dir)
    assert bundle.models.text is None and bundle.text_source == ""
    with caplog.at_level(logging.WARNING):
        bundle.models.begin(tiny_conditions(), "cpu", torch.float32)
    assert "no zero_y" in caplog.text and "open_clip_pytorch_model.bin" in caplog.text


def test_zero_y_is_written_only_when_asked(tmp_path):
    made = released_dir(str(tmp_path / "models"))
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    bundle = load_animate_x_family(str(tmp_path / "models"))
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    out = str(tmp_path / "animate_x_zero_y.safetensors")
    load_animate_x_family(str(tmp_path / "models"), save_zero_y=out)
    again = load_animate_x_family(dict(locate_animate_x_files(str(tmp_path / "models")), zero_y=out))
    assert torch.equal(again.models.text, bundle.models.text) and again.text_source == out
    assert made["bin"] != out


def test_text_tower_of_the_wrong_width_is_named(tmp_path):
    made = released_dir(str(tmp_path), text_width=64)
    with pytest.raises(AA2Error, match="zero_y") as err:
        load_animate_x_family(str(tmp_path))
    assert made["bin"] in str(err.value) and "(1, 77, 64)" in str(err.value)


def test_empty_open_clip_bin_is_named(tmp_path):
    released_dir(str(tmp_path), clip="none")
    path = tmp_path / "clip_vision" / "open_clip_pytorch_model.bin"
    path.write_bytes(b"")
    with pytest.raises(AA2Error, match="empty") as err:
        load_animate_x_family(str(tmp_path))
    assert str(path) in str(err.value)


def test_pickle_without_text_tower_reads_as_none(tiny_dir):
    assert openclip.read_text_tower(locate_animate_x_files(tiny_dir)["vae"]) is None


def test_unet_in_diffusion_models_is_found(tiny_dir, tmp_path):
    os.makedirs(tmp_path / "diffusion_models")
    os.symlink(os.path.join(tiny_dir, "animate_x", "animate-x_ckpt.pth"),
               tmp_path / "diffusion_models" / "animate-x_ckpt.pth")
    assert is_animate_x_folder(str(tmp_path)) and not is_animate_x_folder(str(tmp_path / "diffusion_models"))


def test_family_flag_and_auto(tiny_dir, tmp_path):
    args = animate_cli.parser().parse_args(["--out", "x.mp4", "--family", "auto", "--models", tiny_dir])
    assert wants_animate_x(args)
    args = animate_cli.parser().parse_args(["--out", "x.mp4", "--family", "auto", "--models", str(tmp_path)])
    assert not wants_animate_x(args)
    assert animate_cli.parser().parse_args(["--out", "x.mp4"]).family == "moore"


def test_cli_makes_a_video_with_animate_x(tmp_path, capsys):
    out = str(tmp_path / "out.mp4")
    rc = animate_cli.main(["--family", "animate-x", "--tiny", "--frames", "5", "--steps", "1", "--device", "cpu",
                           "--out", out])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "with Animate-X" in printed and os.path.getsize(out) > 0


def test_cli_refuses_inputs_the_family_does_not_take(tmp_path, capsys):
    kp = tmp_path / "kp.json"
    kp.write_text("[]")
    rc = animate_cli.main(["--family", "animate-x", "--tiny", "--driving-keypoints", str(kp), "--out",
                           str(tmp_path / "o.mp4")])
    assert rc == 1 and "not taken by the Animate-X family" in capsys.readouterr().out
