"""Proof on a CPU that the Animate Anyone 2 modules learn, on held-out clips, region by region.

    python bench/train_proof.py                       # 3 seeds, the defaults (measured: 16 min on the shared 2-core box at load ~12)
    python bench/train_proof.py --steps 40 --env-steps 30 --no-decode   # quicker, latent error only
    python bench/train_proof.py --steps 40 --seeds 0 1 2 --json proof.json

Per seed: tiny models in the real file formats (random base weights of that seed), a synthetic training set
and a held-out one with other scenes and characters (``aa2_core.training.synthetic``: textured panning scene,
a jointed character, a ball in its hand, exact masks / keypoints / depth), read by ``TrainingSet`` as the
trainer reads them. The ``aa2`` group (environment input, object guider + spatial blending, depth branch of
the pose modulation) trains with the trainer's own pieces (``select_trainable``, ``batches.draw``,
``TrainStep``'s loss, AdamW, clipping), the base frozen; stage 1 (single frames, no temporal layers), the
cheapest sample the trainer has. accelerate is left out to keep the run short.

What is measured must mean something with a random base model, whose samples are noise whatever its AA2
modules do. So each held-out clip is noised with fixed noise to fixed high timesteps (where the noisy latents
hardly show the clean frame), and the denoiser's one-step estimate of the clean latents,
``x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v``, is compared with the true latents (``latent_mse``) and, decoded by the
same VAE, with the ``evaluate`` frame metrics (PSNR, L1, SSIM), inside:

* environment: outside the formulated mask, the scene the environment input shows the model;
* object: the ball's mask (the formulated mask covers most of it: only the object guider shows it);
* character: the character's mask.

Rows: the untrained modules (today's exact no-ops); the trained modules; the same with the environment input
zeroed; fresh modules with the environment input alone trained (``--env-steps``; zeroing it gives the untrained
net back exactly); and the best constant guess (each region's true mean latent per channel, an oracle): a
model that only learned the latents' mean reaches it, beating it needs content.

The tiny VAE's latents are rescaled to unit std first (``unit_scale_vae``), as SD1.5's are; torch runs on one
thread (on a shared 2-core machine two OpenMP threads per small op stall, ~50x slower).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aa2_core.check import write_tiny_models_dir  # noqa: E402
from aa2_core.checkpoints.assembly import assemble_from_folder  # noqa: E402
from aa2_core.pipeline import images  # noqa: E402
from aa2_core.families.moore import MooreModels as Models, network_inputs  # noqa: E402
from aa2_core.pipeline.schedulers import make_scheduler  # noqa: E402
from aa2_core.training.data import TrainingSet  # noqa: E402
from aa2_core.training.dataset_format import read_clip, read_index  # noqa: E402
from aa2_core.training.synthetic import write_synthetic_set  # noqa: E402
from aa2_core.training import batches  # noqa: E402
from aa2_core.training.modules import select_trainable  # noqa: E402
from aa2_core.training.optim import make_optimizer  # noqa: E402
from aa2_core.training.step import TrainStep, clip_conditions  # noqa: E402

VARIANTS = ("untrained", "trained", "trained, env zeroed", "env input alone", "best constant")
REGIONS = ("environment", "object", "character")
METRICS = ("latent_mse", "psnr", "l1", "ssim")
LOWER_IS_BETTER = {"latent_mse": True, "psnr": False, "l1": True, "ssim": False}


@dataclass
class ProofConfig:
    steps: int = 80
    lr: float = 1e-2
    modules: tuple = ("aa2",)  # the trainer's --modules groups
    env_steps: int = 50  # then fresh modules with the environment input alone trained (0: skip)
    env_lr: float = 3e-2
    stage: int = 1  # the trainer's --stage: 1 = single frames, temporal layers left out; 2 = clips
    frames: int = 4  # frames per training sample in stage 2, and per held-out sample
    height: int = 64
    width: int = 64
    train_clips: int = 12
    eval_clips: int = 4
    clip_frames: int = 16  # frames per synthetic clip
    eval_timesteps: tuple = (700, 950)
    uncond_prob: float = 0.1  # the trainer's default
    decode: bool = True  # pixel metrics through the VAE (latent error is always measured)
    threads: int = 1  # a loaded 2-core machine: two OpenMP threads per small op spin and stall (50x slower)


@dataclass
class EvalSample:
    """One held-out clip, noised at a fixed timestep with fixed noise; what the denoiser sees but the AA2 inputs."""

    clip: object  # TrainingClip
    cond: object  # Conditions (reference tokens from the frozen ReferenceNet)
    latents: torch.Tensor  # (1, 4, f, h, w) clean
    noisy: torch.Tensor
    t: int
    regions: dict  # name -> (pixel mask [f, H, W], latent weights [f, h, w])
    truth_pixels: torch.Tensor | None = None  # decoded clean latents [f, H, W, 3]


# ---- data and models ----------------------------------------------------------------------------

def prepare_run(seed: int, cfg: ProofConfig, workdir: str):
    """Tiny models of this seed, a training set and a held-out set (different scenes and characters)."""
    models_dir = os.path.join(workdir, "models")
    write_tiny_models_dir(models_dir, seed)
    write_synthetic_set(os.path.join(workdir, "train"), cfg.train_clips, cfg.clip_frames, cfg.height, cfg.width, seed=seed)
    unit_scale_vae(os.path.join(models_dir, "vae", "sd-vae-ft-mse.safetensors"), os.path.join(workdir, "train"))
    write_synthetic_set(os.path.join(workdir, "heldout"), cfg.eval_clips, cfg.clip_frames, cfg.height, cfg.width,
                        seed=1_000_003 + seed)
    train = TrainingSet(os.path.join(workdir, "train"), frames=1 if cfg.stage == 1 else cfg.frames)
    return load_models(models_dir, cfg, seed), train, TrainingSet(os.path.join(workdir, "heldout"), frames=cfg.frames)


def load_models(models_dir: str, cfg: ProofConfig, seed: int):
    torch.manual_seed(seed)  # the AA2 modules' random initial parts, as train --seed
    models = assemble_from_folder(models_dir)
    if cfg.stage == 1:  # as the trainer's stage 1: the UNet without its motion modules
        models.denoising.motion = None
    return models


def unit_scale_vae(path: str, data_root: str) -> float:
    """Rescale the tiny VAE's latent space so its scaled latents of the training frames have unit std, as
    SD1.5's VAE's do; returns the factor.

    The tiny VAE (random init) gives scaled latents of std ~0.03: the clean signal would be 1/30 of the
    diffusion noise and nothing is learnable in minutes. The latent means (``quant_conv``'s first half)
    are multiplied by ``k`` and ``post_quant_conv`` divided by ``k``: the same decoder on the same images.
    """
    from safetensors.torch import load_file, save_file

    from aa2_core.checkpoints.loaders import load_vae

    sd = load_file(path)
    frames = torch.cat([read_clip(os.path.join(data_root, c["name"], "clip.safetensors")).frames for c in read_index(data_root)["clips"][:4]])
    k = 1.0 / float(images.vae_encode(load_vae(path), frames.float() / 255).std())
    c = sd["post_quant_conv.weight"].shape[1]
    sd["quant_conv.weight"][:c] *= k
    sd["quant_conv.bias"][:c] *= k
    sd["post_quant_conv.weight"] /= k
    save_file(sd, path)
    return k


def region_masks(heldout: TrainingSet, clip, latent_hw) -> dict:
    """Pixel masks and their area fractions per latent cell (the weights of the latent error)."""
    info = clip.info
    record = read_clip(os.path.join(heldout.root, info["clip"], "clip.safetensors"), info["start"], info["start"] + heldout.span)
    pixel = {"environment": 1 - clip.environment_mask.float(), "object": record.objects.float(),
             "character": record.character.float()}
    return {name: (m, F.adaptive_avg_pool2d(m[:, None], latent_hw)[:, 0]) for name, m in pixel.items()}


@torch.no_grad()
def eval_samples(models, heldout: TrainingSet, cfg: ProofConfig, seed: int) -> list[EvalSample]:
    """Fixed held-out inputs: one sample per clip (its own generator) at each timestep, with fixed noise."""
    scheduler = make_scheduler("ddim", "moore")
    out = []
    for i in range(len(heldout)):
        clip = heldout.sample(torch.Generator().manual_seed(seed * 7919 + i), clip_index=i)
        cond = clip_conditions(models, clip, "cpu", torch.float32)
        latents = rearrange(images.vae_encode(models.vae, clip.frames), "f c h w -> 1 c f h w")
        regions = region_masks(heldout, clip, latents.shape[-2:])
        truth = images.vae_decode(models.vae, rearrange(latents, "1 c f h w -> f c h w")) if cfg.decode else None
        for j, t in enumerate(cfg.eval_timesteps):
            noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed * 104729 + 31 * i + j))
            noisy = scheduler.add_noise(latents, noise, torch.tensor([t]))
            out.append(EvalSample(clip, cond, latents, noisy, int(t), regions, truth))
    return out


# ---- training ----------------------------------------------------------------------------------

def train_modules(models, trainset: TrainingSet, cfg: ProofConfig, seed: int, log=print, steps: int | None = None,
                  lr: float | None = None, only: tuple = ()) -> list[float]:
    """The trainer's step (``TrainStep``: its loss, its batches) on ``cfg.modules`` (the base frozen), AdamW.

    ``only``: train just the parameters with these prefixes (e.g. the environment input alone). The trainer's
    own loop adds accelerate around the same pieces; it is left out to keep a CPU run short.
    """
    steps, lr = steps or cfg.steps, lr or cfg.lr
    chosen = select_trainable(models, list(cfg.modules), stage=cfg.stage)
    if only:
        for net, names in chosen.items():
            params = dict(getattr(models, net).named_parameters())
            for n in names:
                params[n].requires_grad_(n.startswith(only))
    step = TrainStep(models, make_scheduler("ddim", "moore"), cfg.uncond_prob)
    params = [p for p in step.parameters() if p.requires_grad]
    optimizer, _ = make_optimizer(params, "adamw", lr)
    losses, every = [], max(1, steps // 5)
    for i in range(steps):
        clips, generators = batches.draw(trainset, seed, i, 0, 1)
        loss = step(clips, generators)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (i + 1) % every == 0:
            log(f"  step {i + 1}/{steps} loss {np.mean(losses[-every:]):.4f}")
    return losses


# ---- measuring ---------------------------------------------------------------------------------

@torch.no_grad()
def predict_x0(models, sample: EvalSample, zero_environment: bool = False) -> torch.Tensor:
    """The denoiser's one-step clean-latent estimate for a held-out sample, (1, 4, f, h, w)."""
    scheduler = make_scheduler("ddim", "moore")
    cond = sample.cond
    inputs = network_inputs(Models(models.denoising, models.pose), cond, torch.arange(cond.num_frames), "cpu", torch.float32)
    if zero_environment and "environment" in inputs:
        inputs["environment"] = torch.zeros_like(inputs["environment"])
    reference = models.denoising.reference_kv(cond.reference.tokens)
    v = models.denoising(sample.noisy, torch.tensor([sample.t]), cond.reference.image_embeds, reference=reference, **inputs)
    a = scheduler.alphas_cumprod[sample.t].float()
    return a.sqrt() * sample.noisy - (1 - a).sqrt() * v.float()


def frame_metrics(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> dict:
    """PSNR, L1 and SSIM inside ``mask [f, H, W]`` of frames ``[f, H, W, 3]`` in 0..1, with the ``evaluate``
    definitions (``aa2_core.metrics.frames``) on 8-bit values.

    PSNR: one MSE over the region's pixels (peak 255). L1: mean absolute difference there, in 0..1. SSIM: the
    paper's Gaussian-window SSIM of the frames with the truth pasted outside the region (so only the region's
    error counts; numbers compare variants on the same samples, not regions of different sizes).
    """
    from aa2_core.metrics import frames as fm

    gen, true = (np.round(v.clamp(0, 1).numpy() * 255).astype(np.uint8) for v in (pred, truth))
    inside = mask.numpy() >= 0.5
    psnr = fm.psnr_from(*fm.squared_error(gen[inside], true[inside]))
    l1 = float(np.abs(gen[inside].astype(np.float64) - true[inside]).mean() / 255)
    ssim = float(fm.ssim(np.where(inside[..., None], gen, true), true).mean())
    return {"psnr": psnr, "l1": l1, "ssim": ssim}


@torch.no_grad()
def measure(models, samples: list[EvalSample], vae=None, zero_environment: bool = False) -> dict:
    """Region -> metric -> mean over the held-out samples."""
    acc = {r: {m: [] for m in METRICS} for r in REGIONS}
    for s in samples:
        x0 = predict_x0(models, s, zero_environment)
        err = ((x0 - s.latents) ** 2).mean(1)[0]  # (f, h, w), channels averaged
        pixels = images.vae_decode(vae, rearrange(x0, "1 c f h w -> f c h w")) if vae is not None and s.truth_pixels is not None else None
        for region, (pixel_mask, weights) in s.regions.items():
            if weights.sum() < 1e-6:  # e.g. the ball out of the window
                continue
            acc[region]["latent_mse"].append(float((err * weights).sum() / weights.sum()))
            if pixels is not None:
                for k, v in frame_metrics(pixels, s.truth_pixels, pixel_mask).items():
                    acc[region][k].append(v)
    return {r: {m: float(np.mean(v)) for m, v in ms.items() if v} for r, ms in acc.items()}


def best_constant(samples: list[EvalSample]) -> dict:
    """The latent error of the best constant guess: each region's true mean latent per channel (an oracle).

    A model that only learned the latents' mean (calibration) reaches this; beating it needs content.
    """
    acc = {r: [] for r in REGIONS}
    for s in samples:
        x = s.latents[0]  # (c, f, h, w)
        for region, (_, w) in s.regions.items():
            if w.sum() < 1e-6:
                continue
            mean = (x * w).sum((1, 2, 3), keepdim=True) / w.sum()
            acc[region].append(float((((x - mean) ** 2).mean(0) * w).sum() / w.sum()))
    return {r: {"latent_mse": float(np.mean(v))} for r, v in acc.items() if v}


def run_seed(seed: int, cfg: ProofConfig, log=print) -> dict:
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aa2_proof_") as workdir:
        models, trainset, heldout = prepare_run(seed, cfg, workdir)
        samples = eval_samples(models, heldout, cfg, seed)
        vae = models.vae if cfg.decode else None
        results = {"untrained": measure(models, samples, vae)}
        t1 = time.perf_counter()
        losses = train_modules(models, trainset, cfg, seed, log)
        t2 = time.perf_counter()
        results["trained"] = measure(models, samples, vae)
        results["trained, env zeroed"] = measure(models, samples, vae, zero_environment=True)
        results["best constant"] = best_constant(samples)
        if cfg.env_steps:  # fresh modules on the same base: the environment input trained alone
            models = load_models(os.path.join(workdir, "models"), cfg, seed)
            train_modules(models, trainset, cfg, seed, log, steps=cfg.env_steps, lr=cfg.env_lr, only=("env_conv_in",))
            results["env input alone"] = measure(models, samples, vae)
    return {"seed": seed, "results": results, "loss_first": float(np.mean(losses[: max(1, len(losses) // 10)])),
            "loss_last": float(np.mean(losses[-max(1, len(losses) // 10):])), "train_s": t2 - t1,
            "total_s": time.perf_counter() - t0}


# ---- the table ---------------------------------------------------------------------------------

def summarise(runs: list[dict]) -> dict:
    """Mean and std over seeds per variant/region/metric, and the paired margin untrained -> trained."""
    out = {}
    for variant in VARIANTS:
        for region in REGIONS:
            for metric in METRICS:
                vals = [r["results"].get(variant, {}).get(region, {}).get(metric) for r in runs]
                if any(v is None for v in vals):
                    continue
                out[(variant, region, metric)] = (float(np.mean(vals)), float(np.std(vals)))
    margins = {}
    for region in REGIONS:
        for metric in METRICS:
            key_u, key_t = ("untrained", region, metric), ("trained", region, metric)
            if key_u not in out or key_t not in out:
                continue
            sign = 1 if LOWER_IS_BETTER[metric] else -1
            paired = [sign * (r["results"]["untrained"][region][metric] - r["results"]["trained"][region][metric]) for r in runs]
            spread = max(out[key_u][1], out[key_t][1])
            margins[(region, metric)] = {"margin": float(np.mean(paired)), "min_paired": float(np.min(paired)),
                                         "spread": spread}
    return {"stats": out, "margins": margins}


def format_table(summary: dict, runs: list[dict], cfg: ProofConfig) -> str:
    stats, margins = summary["stats"], summary["margins"]
    metrics = [m for m in METRICS if any(k[2] == m for k in stats)]
    lines = [f"seeds {[r['seed'] for r in runs]}, {cfg.steps} steps at lr {cfg.lr}, {cfg.frames}-frame samples "
             f"{cfg.width}x{cfg.height}, held-out: {cfg.eval_clips} clips x timesteps {list(cfg.eval_timesteps)}",
             "one-step x0 estimate vs the true latents (latent_mse) and, decoded by the same VAE, frames (psnr, l1, ssim)",
             ""]
    header = f"{'region':<12} {'variant':<20}" + "".join(f"{m:>18}" for m in metrics)
    lines += [header, "-" * len(header)]
    for region in REGIONS:
        for variant in VARIANTS:
            cells = "".join(f"{stats[(variant, region, m)][0]:>10.4f} ± {stats[(variant, region, m)][1]:<5.3f}"
                            if (variant, region, m) in stats else f"{'-':>18}" for m in metrics)
            lines.append(f"{region:<12} {variant:<20}{cells}")
        cells = "".join(f"{margins[(region, m)]['margin']:>10.4f} / {margins[(region, m)]['spread']:<5.3f}"
                        if (region, m) in margins else f"{'-':>18}" for m in metrics)
        lines.append(f"{'':<12} {'margin / spread':<20}{cells}")
    losses = ", ".join(f"{r['loss_first']:.3f}->{r['loss_last']:.3f}" for r in runs)
    lines += ["", f"training loss (first->last 10%): {losses}",
              "wall time per seed: " + ", ".join(f"{r['total_s']:.0f}s (train {r['train_s']:.0f}s)" for r in runs)]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=ProofConfig.steps)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lr", type=float, default=ProofConfig.lr)
    p.add_argument("--no-decode", action="store_true", help="latent error only (faster)")
    p.add_argument("--frames", type=int, default=ProofConfig.frames)
    p.add_argument("--env-steps", type=int, default=ProofConfig.env_steps, help="steps of the environment-input-alone run (0: skip)")
    p.add_argument("--stage", type=int, default=ProofConfig.stage, choices=[1, 2])
    p.add_argument("--json", help="write the per-seed results and the summary here")
    args = p.parse_args(argv)
    cfg = ProofConfig(steps=args.steps, lr=args.lr, decode=not args.no_decode, frames=args.frames, stage=args.stage,
                      env_steps=args.env_steps)
    t0 = time.perf_counter()
    runs = []
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        runs.append(run_seed(seed, cfg, log=lambda s: print(s, flush=True)))
    summary = summarise(runs)
    print(format_table(summary, runs, cfg))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": asdict(cfg), "runs": runs,
                       "stats": {" | ".join(k): v for k, v in summary["stats"].items()},
                       "margins": {" | ".join(k): v for k, v in summary["margins"].items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
