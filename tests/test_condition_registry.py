"""A new condition kind plugs in through the registries alone: this file registers a toy guider (its pixels
through a strided conv, added to the pose features after ``conv_in``), trains it one step with the real
trainer and samples with it, without any production file knowing its name."""

from dataclasses import replace

import pytest
import torch
from einops import rearrange
from torch import nn

from aa2_core.checkpoints.aa2_file import load_aa2_file
from aa2_core.checkpoints.assembly import assemble_from_folder
from aa2_core.conditions.registry import ConditionKind, register_condition, unregister_condition
from aa2_core.errors import AA2Error
from aa2_core.families.moore import MooreModels
from aa2_core.pipeline.prepare import Reference, prepare_conditions
from aa2_core.pipeline.sampler import Sampler
from aa2_core.training import modules
from aa2_core.training.data import TrainingSet
from aa2_core.training.train import check_paths, parser
from conftest import sampler_settings
from training_helpers import data_dir, models_dir, one_thread, train_args  # noqa: F401


class ToyGuider(nn.Module):
    """Pixels -> features at latent size, as many channels as conv_in gives; zero at first (a no-op)."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, kernel_size=8, stride=8)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, pixels):
        return self.conv(pixels)


def attach(models):
    if not hasattr(models.denoising, "toy_guider"):
        models.denoising.add_module("toy_guider", ToyGuider(models.denoising.unet.conv_in.out_channels))


def build_toy(ctx, toy_frames):
    frames = torch.nn.functional.interpolate(toy_frames.permute(0, 3, 1, 2), size=(ctx.height, ctx.width), mode="bilinear")
    return {"pixels": frames.permute(0, 2, 3, 1)}


@pytest.fixture
def toy_kind():
    kind = register_condition(ConditionKind(
        "toy", ("toy_frames",), build_toy, module_group="toy",
        network_input=lambda models, x, f: {"pose_features": models.denoising.toy_guider(rearrange(x["pixels"], "f h w c -> f c h w"))},
        help="a toy guider (tests only)"))
    modules.register_group("toy", "the toy guider", {"denoising": ("toy_guider.",)}, build=attach)
    yield kind
    unregister_condition("toy")
    modules.GROUPS.pop("toy", None)


class WithToyFrames:
    """The training set, each clip carrying its own frames, colour-inverted, as the toy kind's input."""

    def __init__(self, source):
        self.source = source

    def sample(self, generator):
        clip = self.source.sample(generator)
        return replace(clip, extras={"toy": {"toy_frames": 1 - clip.frames}})


def test_a_toy_condition_trains_and_samples_through_the_registries(toy_kind, tmp_path, models_dir, data_dir, one_thread):
    from aa2_core.training.engine import train

    out = tmp_path / "toy.safetensors"
    args = parser().parse_args(train_args(data_dir, models_dir, out, "--steps", 1, "--frames", 2, "--modules", "toy",
                                          "--lr", "1e-2")[1:])
    check_paths(args)
    result = train(args, WithToyFrames(TrainingSet(data_dir, frames=2)))
    assert result["step"] == 1

    parts, _ = load_aa2_file(str(out))
    trained = parts["denoising"]
    assert set(trained) == {"toy_guider.conv.weight", "toy_guider.conv.bias"}  # only the toy trained
    assert trained["toy_guider.conv.weight"].abs().sum() > 0  # one step moved it off zero

    models = assemble_from_folder(models_dir, str(out))  # the file's toy weights build the toy guider and load
    assert torch.equal(models.denoising.toy_guider.conv.weight, trained["toy_guider.conv.weight"])
    g = torch.Generator().manual_seed(0)
    reference = Reference(torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 1, 32, generator=g),
                          models.reference(torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 1, 32, generator=g)))
    skeleton, toy = torch.rand(3, 64, 64, 3, generator=g), torch.rand(3, 32, 32, 3, generator=g)
    cond = prepare_conditions(reference, skeleton, lambda x: x, toy_frames=toy)
    assert cond.inputs["toy"]["pixels"].shape == (3, 64, 64, 3)  # built at the output size
    settings = sampler_settings(clip_length=2, motion_frames=1, steps=1)
    family = MooreModels(models.denoising, models.pose)
    with_toy = Sampler(family, settings).sample(cond)
    without = Sampler(family, settings).sample(prepare_conditions(reference, skeleton, lambda x: x))
    assert (with_toy - without).abs().max() > 1e-4  # the trained toy guider reaches the pictures

    with pytest.raises(AA2Error, match="toy pixels has 2 frames but the pose sequence has 3"):
        cond.inputs["toy"]["pixels"] = cond.inputs["toy"]["pixels"][:2]
        Sampler(family, settings).sample(cond)


def test_an_unknown_input_names_the_kinds():
    reference = Reference(torch.zeros(1, 4, 8, 8), torch.zeros(1, 1, 32), {})
    with pytest.raises(AA2Error, match=r"unknown input\(s\) \['face_crops'\].*depth"):
        prepare_conditions(reference, torch.rand(2, 64, 64, 3), lambda x: x, face_crops=torch.rand(2, 64, 64, 3))
