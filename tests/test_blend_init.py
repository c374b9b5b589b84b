"""--blend-init: fresh spatial blends start as the paper's (alpha 0.5, the object guider learns from step 1) when
the base trains too, as the identity (the base's output kept) on a frozen base; blends from a file are kept."""

import pytest
import torch

from aa2_core.checkpoints.assembly import assemble_from_folder
from aa2_core.pipeline.schedulers import make_scheduler
from aa2_core.training import batches
from aa2_core.training.blend_init import PAPER_GATE, init_blends, resolve_blend_init
from aa2_core.training.data import TrainingSet
from aa2_core.training.modules import select_trainable
from aa2_core.training.step import TrainStep

from training_helpers import data_dir, models_dir, one_thread  # noqa: F401


def gates(models) -> list[float]:
    return [float(p.detach()) for n, p in models.denoising.named_parameters() if n.endswith(".gate")]


def test_auto_is_the_paper_when_the_base_trains_and_the_identity_on_a_frozen_base(models_dir):
    """``auto`` follows what trains; an explicit choice wins; a wrong name is refused naming the flag.

    Mutation seen failing: ``auto`` resolved to ``paper`` always."""
    models = assemble_from_folder(models_dir)
    assert resolve_blend_init("auto", select_trainable(models, ["all"], stage=1)) == "paper"
    assert resolve_blend_init("auto", select_trainable(models, ["aa2"], stage=1)) == "identity"
    assert resolve_blend_init("paper", select_trainable(models, ["aa2"], stage=1)) == "paper"
    with pytest.raises(ValueError, match="--blend-init"):
        resolve_blend_init("half", {})


def test_the_paper_start_lets_the_object_guider_learn_from_the_first_step(models_dir, data_dir, one_thread):
    """On a batch with object frames: started as the paper, every gate is 1 and the object guider's first conv
    gets a gradient at once; started as the identity, every gate is 0 and that gradient is exactly zero (the
    guider is hidden from the loss until the gates open), and the output is the base's.

    Mutation seen failing: ``init_blends`` filling the gates with 0 for ``paper``."""
    source = TrainingSet(data_dir, frames=1, scale_range=None)
    clips, _ = batches.draw(source, seed=0, micro_step=0, rank=0, per_process=1)
    assert clips[0].objects is not None
    grads = {}
    for how in ("paper", "identity"):
        torch.manual_seed(0)
        models = assemble_from_folder(models_dir)
        models.denoising.motion = None
        chosen = select_trainable(models, ["aa2"], stage=1)
        assert init_blends(models, how, chosen).startswith(f"spatial blends start as {how!r}")
        assert gates(models) == [PAPER_GATE if how == "paper" else 0.0] * len(gates(models)) and gates(models)
        step = TrainStep(models, make_scheduler("ddim", "moore"), uncond_prob=0.0)
        step(clips, [torch.Generator().manual_seed(1)]).backward()
        grads[how] = models.denoising.object_guider.conv_in.weight.grad
    assert grads["paper"] is not None and grads["paper"].abs().max() > 0
    assert grads["identity"] is None or not grads["identity"].any()


def test_blends_from_a_file_or_not_trained_are_left_as_they_are(models_dir):
    """A run started from an aa2-modules file that holds the AA2 modules keeps its trained gates; a run that does
    not train the blends leaves them at the identity, whatever ``--blend-init`` says.

    Mutation seen failing: the aa2-modules file check removed (the loaded gate 0.3 reset to 1)."""
    models = assemble_from_folder(models_dir)
    with torch.no_grad():
        models.denoising.spatial_blend_mid[0].gate.fill_(0.3)
    models.aa2_modules = {"module_groups": ["aa2"]}
    assert init_blends(models, "paper", select_trainable(models, ["aa2"], stage=1)) == "spatial blends from the aa2-modules file"
    assert float(models.denoising.spatial_blend_mid[0].gate) == pytest.approx(0.3)
    models = assemble_from_folder(models_dir)
    assert init_blends(models, "paper", select_trainable(models, ["temporal"], stage=2)) == "spatial blends not trained"
    assert set(gates(models)) == {0.0}
