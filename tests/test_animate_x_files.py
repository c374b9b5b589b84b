"""Finding and loading the released Animate-X files in a ComfyUI models folder, and ``animate --family``."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from aa2_core.errors import AA2Error
from aa2_core.cli.animate_x import wants_animate_x, write_tiny_animate_x_dir
from aa2_core.families.animate_x.config import TINY_CONFIG
from aa2_core.families.animate_x.family import AnimateXModels
from aa2_core.families.animate_x.files import is_animate_x_folder, load_animate_x_family, locate_animate_x_files
from aa2_core.cli import animate as animate_cli


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
    assert bundle.models.text is None and bundle.models.family == "animate-x"
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
    (tmp_path / "clip_vision" / "open_clip_pytorch_model.bin").write_bytes(b"")
    with pytest.raises(AA2Error) as err:
        locate_animate_x_files(str(tmp_path))
    text = str(err.value)
    for words in ("animate-x_ckpt.pth", "diffusion_models", "animate_x", "Animate-X UNet",
                  "v2-1_512-ema-pruned.ckpt", os.path.join(str(tmp_path), "vae"), "SD2.1 VAE",
                  "clip_vision_h.safetensors", "image encoder", "open_clip_pytorch_model.bin is there"):
        assert words in text, words


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
