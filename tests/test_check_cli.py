"""The `check` command: tiny models in a ComfyUI-style folder load and run; missing files are named."""

import os

from aa2_core.check import run_check, write_tiny_models_dir
from aa2_core.__main__ import main


def test_tiny_models_dir_runs(tmp_path):
    write_tiny_models_dir(str(tmp_path))
    report = run_check(str(tmp_path), frames=3)
    assert report["output_shape"] == (1, 4, 3, 8, 8)
    assert report["motion_version"] == "v2" and report["output_std"] > 1e-3
    assert report["found"]["vae"].endswith(os.path.join("vae", "sd-vae-ft-mse.safetensors"))


def test_missing_files_are_named_with_their_place(tmp_path, capsys):
    os.makedirs(tmp_path / "vae")
    assert main(["check", "--models", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    for role in ("denoising_unet", "reference_unet", "pose_guider", "motion_module", "vae", "clip_vision"):
        assert f"{role}: put it at" in out
    assert os.path.join(str(tmp_path), "animate_anyone2", "denoising_unet.safetensors") in out


def test_help_lists_every_subcommand_and_exits_0(capsys):
    from aa2_core.__main__ import COMMANDS, main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMANDS) and set(COMMANDS) == {"animate", "check", "convert", "download", "evaluate", "prepare", "train"}
    assert main(["frobnicate"]) == 2
