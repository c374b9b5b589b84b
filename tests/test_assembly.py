"""One model assembly: an aa2-modules file applies the same way for the CLI, the nodes and the trainer."""

import pytest
import torch

from aa2_core.__main__ import main
from aa2_core.check import write_tiny_models_dir
from aa2_core.checkpoints.aa2_file import save_aa2_file
from aa2_core.checkpoints.assembly import assemble_from_folder
from aa2_core.errors import CheckpointError
from aa2_core.video_io import read_video


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("models")
    write_tiny_models_dir(str(path))
    return str(path)


def trained_file(path, models_dir, fusion_blocks="full"):
    """An aa2-modules file whose object/environment/pose modules are no longer no-ops."""
    base = assemble_from_folder(models_dir)
    g = torch.Generator().manual_seed(0)
    denoising = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in base.denoising.aa2_state_dict().items()}
    pose = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in base.pose.state_dict().items() if k.startswith("temporal.")}
    save_aa2_file(str(path), {"denoising": denoising, "pose": pose}, fusion_blocks=fusion_blocks)
    return denoising, pose


def test_assembly_applies_the_file_and_leaves_the_base(tmp_path, models_dir):
    denoising, pose = trained_file(tmp_path / "aa2.safetensors", models_dir)
    base = assemble_from_folder(models_dir)
    trained = assemble_from_folder(models_dir, str(tmp_path / "aa2.safetensors"))
    assert trained.aa2_modules["format"] == "aa2-modules"
    state = trained.denoising.state_dict()
    assert all(torch.equal(state[k], v) for k, v in denoising.items())
    assert all(torch.equal(trained.pose.state_dict()[k], v) for k, v in pose.items())
    assert all(torch.equal(state[k], v) for k, v in base.denoising.state_dict().items() if k not in denoising)


def test_fusion_blocks_must_match_the_file(tmp_path, models_dir):
    trained_file(tmp_path / "midup.safetensors", models_dir, fusion_blocks="midup")
    with pytest.raises(CheckpointError, match="trained with fusion_blocks='midup'.*choose 'midup'"):
        assemble_from_folder(models_dir, str(tmp_path / "midup.safetensors"))


def test_cli_uses_the_trained_file(tmp_path, models_dir):
    """`animate --aa2-modules` changes the video (the temporal pose branch is trained); without it, the base."""
    trained_file(tmp_path / "aa2.safetensors", models_dir)
    common = ["animate", "--tiny", "--models", models_dir, "--frames", "4", "--steps", "1"]
    assert main(common + ["--out", str(tmp_path / "base.mp4")]) == 0
    assert main(common + ["--out", str(tmp_path / "base2.mp4")]) == 0
    assert main(common + ["--aa2-modules", str(tmp_path / "aa2.safetensors"), "--out", str(tmp_path / "aa2.mp4")]) == 0
    base, again, trained = (read_video(str(tmp_path / f"{n}.mp4"))[0] for n in ("base", "base2", "aa2"))
    assert torch.equal(base, again)
    assert (base - trained).abs().mean() > 0.01
