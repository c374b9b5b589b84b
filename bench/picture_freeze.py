"""Freeze the sampler's pictures on the tiny model, then check a refactor keeps them bit for bit.

    python bench/picture_freeze.py write OUT.safetensors   # before the change
    python bench/picture_freeze.py check OUT.safetensors   # after: torch.equal for every setting

Every sampler setting a workflow can choose (motion frames, open / closed-loop windows with each fusion,
CFG batched or in two passes, each scheduler, environment mode, objects, depth, the IPI) runs on the tiny
Moore model with the AA2 and Animate-X modules given random non-zero weights, so every branch moves pixels.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def models_and_conditions():
    from conftest import sampler_conditions
    from aa2_core.checkpoints.assembly import build_modules
    from aa2_core.checkpoints.loaders import load_denoising_net, load_pose_modulation, load_reference_net
    from aa2_core.families.moore import MooreModels as Models
    from aa2_core.tiny import TINY_IPI_CONFIG, write_tiny_moore_files
    from aa2_core.models.mamba_temporal import MambaConfig
    from aa2_core.checkpoints.assembly import ModelSet

    files = write_tiny_moore_files(tempfile.mkdtemp(prefix="aa2_freeze_"))
    torch.manual_seed(0)
    models = ModelSet(load_denoising_net(files["denoising_unet"], files["motion_module"]),
                      load_reference_net(files["reference_unet"]), load_pose_modulation(files["pose_guider"]))
    build_modules(models, ["ipi", "mamba"], ipi=TINY_IPI_CONFIG, mamba=MambaConfig(slots=("mid_0",), bidirectional=True))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in list(models.denoising.named_parameters()) + list(models.pose.named_parameters()):
            if p.abs().sum() == 0 or name.endswith("gate"):  # the zero-initialised AA2/Animate-X layers
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    cond = sampler_conditions(models.reference, frames=10, environment=True, objects=True)
    cond.depth = torch.rand(10, 64, 64, generator=g)
    cond.driving_keypoints = torch.rand(10, 18, 3, generator=g)
    cond.driving_features = torch.randn(10, 1, 32, generator=g)
    return Models(models.denoising, models.pose), cond


def settings():
    from conftest import sampler_settings

    yield "motion_frames", sampler_settings(clip_length=4, motion_frames=1, steps=2, cfg=3.0)
    yield "motion_frames_cfg1", sampler_settings(clip_length=4, motion_frames=2, steps=2, cfg=1.0)
    yield "motion_frames_two_pass", sampler_settings(clip_length=4, motion_frames=1, steps=2, cfg=2.0, cfg_batch=False)
    for schedule in ("open", "closed_loop"):
        for fusion in ("flat", "pyramid"):
            yield f"windows_{schedule}_{fusion}", sampler_settings(clip_length=4, stitching="context_windows", context_overlap=2,
                                                                 fusion=fusion, context_schedule=schedule, steps=2, cfg=2.5)
    for scheduler in ("euler", "dpmpp_2m", "lcm"):
        yield f"scheduler_{scheduler}", sampler_settings(clip_length=4, motion_frames=1, steps=3, cfg=2.0, scheduler=scheduler)
    yield "no_environment_mode", sampler_settings(clip_length=4, motion_frames=1, steps=2, cfg=2.0, environment_mode=False)
    yield "sd15_schedule", sampler_settings(clip_length=4, motion_frames=1, steps=2, cfg=2.0, schedule="sd15")


def run() -> dict:
    from aa2_core.pipeline.sampler import Sampler

    models, cond = models_and_conditions()
    out = {}
    for name, s in settings():
        out[name] = Sampler(models, s).sample(cond)
        plain = type(cond)(cond.reference, cond.skeleton)  # pose only
        out[name + "_pose_only"] = Sampler(models, s).sample(plain)
    return out


def main(argv) -> int:
    from safetensors.torch import load_file, save_file

    mode, path = argv
    outputs = run()
    if mode == "write":
        save_file({k: v.contiguous() for k, v in outputs.items()}, path)
        print(f"wrote {len(outputs)} outputs to {path}")
        return 0
    frozen = load_file(path)
    bad = [k for k in frozen if k not in outputs or not torch.equal(frozen[k], outputs[k])]
    for k in bad:
        diff = (frozen[k] - outputs[k]).abs().max().item() if k in outputs else "missing"
        print(f"CHANGED {k}: max abs difference {diff}")
    print(f"{len(frozen) - len(bad)}/{len(frozen)} settings give the same pictures bit for bit")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
