"""Proof on a CPU that the Animate Anyone 2 model learns content, on held-out clips, region by region.

    python bench/train_proof.py --jobs 2               # 3 seeds x 3 models, 2 at a time (see the README for time and machine)
    python bench/train_proof.py --seeds 0 --steps 150  # one quick seed
    python bench/train_proof.py --json proof.json      # per-seed figures and the summary
    python bench/train_proof.py --eval-at 200,400 --progress p.jsonl   # a learning curve, kept if cut short
    python bench/train_proof.py --curve p.jsonl        # the checks per measured step

Per seed: tiny models in the real file formats (random weights of that seed), a synthetic training set and a
held-out one with other scenes and characters (``aa2_core.training.synthetic``: a textured panning scene, a
jointed character, a ball in its hand, exact masks / keypoints / depth), read by ``TrainingSet`` as the trainer
reads them, with its options passed explicitly (printed; its defaults change). The whole tiny model trains
(the trainer's ``--modules all``: DenoisingNet with its AA2 modules, ReferenceNet, pose guider; stage 1, single
frames) with the trainer's own pieces: ``select_trainable``, ``batches.draw``, ``TrainStep``'s loss,
``make_optimizer``, gradient clipping. accelerate is left out to keep the run short. A random *frozen* base
cannot route what the environment input shows to the output, which is why the base trains here. The base
restarts from PyTorch's default init (``fresh_init_``): from the tiny files' ``randomize_``d weights, or above
lr ~3e-4, the unnormalised pose guider's features grow to std 40-170 and drown the other inputs.

Three models per seed, from the same initial weights, on the same drawn samples and noise:

* **trained**: the recipe (shape-agnostic masks, object frames);
* **without object input**: the same clips with no object frames (the object guider sees nothing);
* **exact masks**: the environment cut out with the character's exact silhouette instead of eq. (2).

Each held-out clip is noised with fixed noise to fixed timesteps (700, 950: the noisy latents hardly show the
clean frame) and the denoiser's one-step estimate of the clean latents ``x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v``
is compared with the true latents inside

* environment: outside the formulated mask (what the environment input shows the model);
* object: the ball where the formulated mask hides it (there only the object frames show it; the ball is held
  against the chest, ``--ball-hold front``: at arm's length ~95 % of it stays in the environment input);
* character: the character's mask;

against the best constant guess (each region's true mean latent per channel, an oracle: a model that only
learned the latents' statistics reaches it; beating it needs content), and with the environment input zeroed
or the object frames emptied (``OBJECT_BACKGROUND`` everywhere, what the trainer feeds a clip without objects).

Shape leak: the same held-out clips get a formulated mask LARGER than the character (eq. 2 at the inference
setting, ``--leak-mask``). In the ring ``mask - character - ball`` the truth is the scene. There the estimate is
scored against the truth (``ring_mse``) and along the direction from the truth to a *leaked* frame (the
character stretched to fill the mask: each ring pixel takes its nearest character pixel's colour):
``leak = <x0 - truth, leaked - truth> / |leaked - truth|^2`` over the ring's latent cells, 0 = scene, 1 = the
character fills the mask.

The tiny VAE's latents are rescaled to unit std first (``unit_scale_vae``), as SD1.5's are; torch runs on one
thread (on a shared 2-core machine two OpenMP threads per small op stall, ~50x slower).

Frames are 128x128 (16x16 latents): at 64x64 the environment is learned several times slower (one seed, 600
steps: 0.89 of the best constant at 64, 0.75 at 128 from step 300). The random tiny VAE as built is not local: its
group norms take statistics over the whole frame, so filling the mask grey moves the latents of the scene far
from it (copying the environment input's latents gives ~0.93 of the best constant; a model plateaus at ~0.73 from
step 500 to 1000). A trained VAE's latents are nearly local (ComfyUI previews SD1.5 latents with one linear map
per latent pixel), so by default the encoder's group norms take statistics fixed once on training frames
(``--vae-norms fixed``, ``local_vae_``; copying then gives ~0.5). The row ``input latents copied`` is what copying
an input gives: the environment input's latents in the environment, the object frames' in the ball's region.

On a GPU (``--device cuda``) a step takes as long as here: the tiny model's step is bound by Python and the CPU
side, not by arithmetic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aa2_core.check import write_tiny_models_dir  # noqa: E402
from aa2_core.checkpoints.assembly import assemble_from_folder  # noqa: E402
from aa2_core.conditions.environment import environment_sequence, shape_agnostic_mask  # noqa: E402
from aa2_core.conditions.objects import OBJECT_BACKGROUND  # noqa: E402
from aa2_core.families.moore import MooreModels as Models, network_inputs  # noqa: E402
from aa2_core.pipeline import images  # noqa: E402
from aa2_core.pipeline.schedulers import make_scheduler  # noqa: E402
from aa2_core.training import batches  # noqa: E402
from aa2_core.training.data import TrainingSet  # noqa: E402
from aa2_core.training.dataset_format import read_clip, read_index  # noqa: E402
from aa2_core.training.modules import parameter_groups, select_trainable  # noqa: E402
from aa2_core.training.optim import make_optimizer  # noqa: E402
from aa2_core.training.step import TrainStep, clip_conditions  # noqa: E402
from aa2_core.training.blend_init import BLEND_INITS, init_blends  # noqa: E402
from aa2_core.training.synthetic import BALL_HOLDS, write_synthetic_set  # noqa: E402

MODELS = ("trained", "without object input", "exact masks")  # trained per seed; the last two are ablations
ABLATIONS = {"no_objects": "without object input", "exact_masks": "exact masks"}
# rows of the region table: (model, how it is fed at evaluation)
VARIANTS = ("untrained", "trained", "trained, env zeroed", "trained, objects emptied", "without object input",
            "exact masks", "best constant", "input latents copied")
COPIED = VARIANTS[-1]
REGIONS = ("environment", "object", "character")
LEAK_METRICS = ("ring_mse", "leak")


@dataclass
class ProofConfig:
    steps: int = 1000
    lr: float = 2e-4
    batch: int = 1  # samples per step (batches.draw's per_process)
    modules: tuple = ("all",)  # the trainer's --modules groups
    lr_scale: tuple = (("aa2", 10.0),)  # the trainer's --lr-scale: the zero-initialised AA2 modules start from nothing
    stage: int = 1  # the trainer's --stage: 1 = single frames, temporal layers left out; 2 = clips
    frames: int = 4  # frames per training sample in stage 2, and per held-out sample
    height: int = 128  # 16x16 latents: at 64 (8x8) the environment is learned several times slower
    width: int = 128
    train_clips: int = 16
    eval_clips: int = 6
    clip_frames: int = 16  # frames per synthetic clip
    eval_timesteps: tuple = (700, 950)
    uncond_prob: float = 0.1  # the trainer's default
    # TrainingSet options, passed explicitly (its defaults are the recipe's and change); the held-out set never
    # scale-augments and never applies the EPI
    scale_range: tuple | None = None  # off: the shape-leak comparison isolates the mask (see the README)
    pose_indicator: bool = False  # the EPI realigns the skeleton to another clip's pose: off on 16 synthetic clips
    reference_background: str = "colour"
    reference_crop: bool = True
    leak_mask: str = "pixels"  # shape_agnostic_mask's inference reading for the larger mask of the leak figure
    ablations: tuple = ("no_objects", "exact_masks")
    fresh_init: bool = True  # restart the base from PyTorch's default init (see fresh_init_)
    threads: int = 1  # a loaded 2-core machine: two OpenMP threads per small op spin and stall (50x slower)
    device: str = "cpu"  # the models' device ("cuda" for a GPU run; data, noise and metrics stay on the CPU)
    eval_at: tuple = ()  # step counts, besides the last, at which each model is measured too (a learning curve)
    vae_norms: str = "fixed"  # the tiny VAE encoder's group norms: statistics calibrated once (local_vae_) or "frame"
    # where the synthetic character holds its ball: "front" (against the chest, where the formulated mask hides ~2/3 of
    # it, as it hides a held object in the paper's videos) or "out" (at arm's length: ~95 % of it stays in the
    # environment input, which then shows the ball and leaves the object guider nothing to add)
    ball_hold: str = "front"
    blend_init: str = "auto"  # the trainer's --blend-init (auto: "paper" here, as the base trains too)

    def data_options(self, heldout: bool = False) -> dict:
        return dict(scale_range=None if heldout else self.scale_range,
                    pose_indicator=None if heldout or not self.pose_indicator else True,
                    reference_background=self.reference_background, reference_crop=self.reference_crop)


@dataclass
class EvalSample:
    """One held-out clip, noised at a fixed timestep with fixed noise."""

    clip: object  # TrainingClip (the held-out set's own formulated mask)
    leak_clip: object  # the same with the larger inference mask
    latents: torch.Tensor  # (1, 4, f, h, w) clean
    noisy: torch.Tensor
    t: int
    regions: dict  # name -> latent weights [f, h, w] (pixel area per latent cell)
    ring: torch.Tensor  # latent weights of the ring larger mask - character - ball
    leaked: torch.Tensor  # (1, 4, f, h, w) latents of the frames with the character stretched over the ring
    ball_hidden: float  # the fraction of the ball's pixels inside the formulated mask


# ---- data and models ----------------------------------------------------------------------------

def prepare_run(seed: int, cfg: ProofConfig, workdir: str):
    """Tiny models of this seed, a training set and a held-out set (different scenes and characters)."""
    models_dir = os.path.join(workdir, "models")
    write_tiny_models_dir(models_dir, seed)
    write_synthetic_set(os.path.join(workdir, "train"), cfg.train_clips, cfg.clip_frames, cfg.height, cfg.width, seed=seed,
                        ball_hold=cfg.ball_hold)
    unit_scale_vae(os.path.join(models_dir, "vae", "sd-vae-ft-mse.safetensors"), os.path.join(workdir, "train"))
    write_synthetic_set(os.path.join(workdir, "heldout"), cfg.eval_clips, cfg.clip_frames, cfg.height, cfg.width,
                        seed=1_000_003 + seed, ball_hold=cfg.ball_hold)
    train = TrainingSet(os.path.join(workdir, "train"), frames=1 if cfg.stage == 1 else cfg.frames, **cfg.data_options())
    heldout = TrainingSet(os.path.join(workdir, "heldout"), frames=cfg.frames, **cfg.data_options(heldout=True))
    return models_dir, train, heldout


def load_models(models_dir: str, cfg: ProofConfig, seed: int):
    torch.manual_seed(seed)  # the AA2 modules' random initial parts, as train --seed
    models = assemble_from_folder(models_dir)
    if cfg.fresh_init:
        fresh_init_(models)
    if cfg.stage == 1:  # as the trainer's stage 1: the UNet without its motion modules
        models.denoising.motion = None
    if cfg.vae_norms == "fixed":
        local_vae_(models.vae, calibration_frames(os.path.join(os.path.dirname(models_dir), "train")))
    for name in ("denoising", "reference", "pose", "vae", "image_encoder"):
        getattr(models, name).to(cfg.device, torch.float32)
    return models


def fresh_init_(models) -> None:
    """The base as a from-scratch run starts it: every layer of both UNets and the pose guider re-initialised by
    its own ``reset_parameters`` (PyTorch's defaults), the guider's output conv at zero as ``PoseGuider`` (and
    Moore) build it. The tiny files' weights are ``randomize_``d for tests (every layer, zero convs included, at
    fan-in scale so activations stay O(1)): a poor start for training. The AA2 modules keep their zero init."""
    for net in (models.denoising.unet, models.reference, models.pose.guider):
        for module in net.modules():
            if hasattr(module, "reset_parameters") and next(module.parameters(recurse=False), None) is not None:
                module.reset_parameters()
    torch.nn.init.zeros_(models.pose.guider.conv_out.weight)
    torch.nn.init.zeros_(models.pose.guider.conv_out.bias)


def calibration_frames(data_root: str) -> torch.Tensor:
    """The first 4 training clips' frames, IMAGE 0..1: what the VAE's scale (and fixed norms) are measured on."""
    return torch.cat([read_clip(os.path.join(data_root, c["name"], "clip.safetensors")).frames
                      for c in read_index(data_root)["clips"][:4]]).float() / 255


class FixedGroupNorm(torch.nn.Module):
    """A ``GroupNorm`` whose statistics were measured once, on calibration frames, instead of on each input: an
    affine map per channel, so what one part of a frame holds no longer shifts the features of every other part."""

    def __init__(self, norm: torch.nn.GroupNorm):
        super().__init__()
        self.norm = norm
        self.register_buffer("mean", None)  # buffers, so .to(device) moves them once set
        self.register_buffer("std", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = x.reshape(x.shape[0], self.norm.num_groups, -1)
        if self.mean is None:  # the calibration pass
            self.mean = groups.mean((0, 2), keepdim=True)
            self.std = (groups.var((0, 2), unbiased=False, keepdim=True) + self.norm.eps).sqrt()
        y = ((groups - self.mean) / self.std).reshape(x.shape)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return y * self.norm.weight.reshape(shape) + self.norm.bias.reshape(shape)


@torch.no_grad()
def local_vae_(vae, frames: torch.Tensor) -> float:
    """Make the random tiny VAE's encoder local, as a trained SD VAE nearly is (``--vae-norms fixed``).

    Its group norms take statistics over the whole frame, so filling the mask grey changes the latents of the
    scene far from it (copying the environment input's latents gives ~0.9 of the best constant). Each encoder
    group norm becomes a ``FixedGroupNorm`` calibrated on ``frames``; the latents are then rescaled to unit std
    again (``quant_conv``'s mean half, as ``unit_scale_vae``). The weights are untouched; the receptive field
    still spans several latent cells. Returns the rescale factor."""
    norms = []
    for module in list(vae.encoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.GroupNorm):
                norms.append(FixedGroupNorm(child))
                setattr(module, name, norms[-1])
    frames = frames[::4]  # 16 frames of 4 clips
    images.vae_encode(vae, frames, chunk=len(frames))  # one pass over them all: the statistics
    k = 1.0 / float(images.vae_encode(vae, frames).std())
    c = vae.post_quant_conv.weight.shape[1]
    vae.quant_conv.weight[:c] *= k
    vae.quant_conv.bias[:c] *= k
    return k


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
    k = 1.0 / float(images.vae_encode(load_vae(path), calibration_frames(data_root)).std())
    c = sd["post_quant_conv.weight"].shape[1]
    sd["quant_conv.weight"][:c] *= k
    sd["quant_conv.bias"][:c] *= k
    sd["post_quant_conv.weight"] /= k
    save_file(sd, path)
    return k


def without_objects(clip):
    """The clip as a set without object annotations gives it: no object frames (the guider is not fed)."""
    return replace(clip, objects=None)


def objects_emptied(clip):
    """Object frames of background only: what the trainer feeds a clip without objects next to one with."""
    return replace(clip, objects=torch.full_like(clip.frames, OBJECT_BACKGROUND))


def exact_masks(clip):
    """The environment cut out with the character's exact silhouette (after any scale augmentation) instead of
    eq. (2)'s blocks."""
    environment, mask = environment_sequence(clip.frames, clip.character_mask, size=tuple(clip.frames.shape[1:3]))
    return replace(clip, environment=environment, environment_mask=mask)


FEEDS = {"trained": lambda c: c, "without object input": without_objects, "exact masks": exact_masks}


class Fed:
    """A TrainingSet whose samples pass through ``feed`` (a wrapper ``batches.draw`` reads like the set)."""

    def __init__(self, source: TrainingSet, feed):
        self.source, self.feed = source, feed

    def __len__(self) -> int:
        return len(self.source)

    def sample(self, generator, clip_index=None):
        return self.feed(self.source.sample(generator, clip_index=clip_index))


# ---- evaluation samples ------------------------------------------------------------------------

def latent_weights(pixel_mask: torch.Tensor, latent_hw) -> torch.Tensor:
    return F.adaptive_avg_pool2d(pixel_mask.float()[:, None], latent_hw)[:, 0]


def stretched_character(frames: torch.Tensor, character: torch.Tensor, ring: torch.Tensor) -> torch.Tensor:
    """Frames whose ``ring`` pixels take the colour of their nearest character pixel (the character grown to
    fill the mask: what a model that conforms to the mask boundary paints there)."""
    from scipy.ndimage import distance_transform_edt

    out = frames.clone()
    for f in range(frames.shape[0]):
        inside = character[f].numpy() >= 0.5
        if not inside.any():
            continue
        _, (iy, ix) = distance_transform_edt(~inside, return_indices=True)
        nearest = frames[f][torch.from_numpy(iy), torch.from_numpy(ix)]
        out[f] = torch.where(ring[f, ..., None] >= 0.5, nearest, frames[f])
    return out


@torch.no_grad()
def eval_samples(models, heldout: TrainingSet, cfg: ProofConfig, seed: int) -> list[EvalSample]:
    """Fixed held-out inputs: one sample per clip (its own generator) at each timestep, with fixed noise."""
    scheduler = make_scheduler("ddim", "moore")
    out = []
    for i in range(len(heldout)):
        clip = heldout.sample(torch.Generator().manual_seed(seed * 7919 + i), clip_index=i)
        latents = rearrange(images.vae_encode(models.vae, clip.frames), "f c h w -> 1 c f h w")
        hw = latents.shape[-2:]
        info = clip.info
        record = read_clip(os.path.join(heldout.root, info["clip"], "clip.safetensors"), info["start"], info["start"] + heldout.span)
        character, ball = clip.character_mask.float(), record.objects.float()
        # the object region is the ball where the formulated mask hides it: there only the object frames show it
        pixel = {"environment": 1 - clip.environment_mask.float(), "object": ball * clip.environment_mask.float(),
                 "character": character}
        regions = {name: latent_weights(m, hw) for name, m in pixel.items()}
        larger = shape_agnostic_mask(character, inference=cfg.leak_mask)
        environment, mask = environment_sequence(clip.frames, larger, size=heldout.size)
        ring = mask * (1 - character) * (1 - ball)
        leaked = rearrange(images.vae_encode(models.vae, stretched_character(clip.frames, character, ring)), "f c h w -> 1 c f h w")
        leak_clip = replace(clip, environment=environment, environment_mask=mask)
        for j, t in enumerate(cfg.eval_timesteps):
            noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed * 104729 + 31 * i + j))
            noisy = scheduler.add_noise(latents, noise, torch.tensor([t]))
            out.append(EvalSample(clip, leak_clip, latents, noisy, int(t), regions, latent_weights(ring, hw), leaked,
                                  float(pixel["object"].sum() / max(float(ball.sum()), 1e-6))))
    return out


# ---- training ----------------------------------------------------------------------------------

def train_model(models, source, cfg: ProofConfig, seed: int, log=print, steps: int | None = None, at=None) -> list[float]:
    """The trainer's step (``TrainStep``: its loss, its batches) on ``cfg.modules``, ``make_optimizer``'s AdamW on
    ``parameter_groups`` (``--lr-scale``), the gradient clipped at 1 as ``train`` does. The trainer's own loop adds accelerate around the same pieces.
    ``at(step)`` is called after each step in ``cfg.eval_at`` short of the last (gradients off while it runs)."""
    steps = cfg.steps if steps is None else steps
    chosen = select_trainable(models, list(cfg.modules), stage=cfg.stage)
    log(f"  {init_blends(models, cfg.blend_init, chosen)}")
    step = TrainStep(models, make_scheduler("ddim", "moore"), cfg.uncond_prob)
    params = [p for p in step.parameters() if p.requires_grad]
    optimizer, _ = make_optimizer(parameter_groups(models, cfg.lr, dict(cfg.lr_scale)), "adamw", cfg.lr)
    losses, every = [], max(1, steps // 4)
    for i in range(steps):
        clips, generators = batches.draw(source, seed, i, 0, cfg.batch)
        loss = step(clips, generators)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (i + 1) % every == 0:
            log(f"  step {i + 1}/{steps} loss {np.mean(losses[-every:]):.4f}")
        if at is not None and i + 1 in cfg.eval_at and i + 1 < steps:
            at(i + 1)
    for p in params:
        p.requires_grad_(False)
    return losses


# ---- measuring ---------------------------------------------------------------------------------

@torch.no_grad()
def predict_x0(models, clip, noisy: torch.Tensor, t: int, zero_environment: bool = False) -> torch.Tensor:
    """The denoiser's one-step clean-latent estimate for a held-out clip, (1, 4, f, h, w)."""
    scheduler = make_scheduler("ddim", "moore")
    device = next(models.denoising.parameters()).device
    cond = clip_conditions(models, clip, device, torch.float32)  # the reference through this model's ReferenceNet
    inputs = network_inputs(Models(models.denoising, models.pose), cond, torch.arange(cond.num_frames), device, torch.float32)
    if zero_environment and "environment" in inputs:
        inputs["environment"] = torch.zeros_like(inputs["environment"])
    reference = models.denoising.reference_kv(cond.reference.tokens)
    v = models.denoising(noisy.to(device), torch.tensor([t], device=device), cond.reference.image_embeds.to(device),
                         reference=reference, **inputs)
    a = scheduler.alphas_cumprod[t].float()
    return a.sqrt() * noisy - (1 - a).sqrt() * v.float().cpu()


def weighted(err: torch.Tensor, w: torch.Tensor) -> float:
    return float((err * w).sum() / w.sum())


@torch.no_grad()
def measure(models, samples: list[EvalSample], feed=lambda c: c, zero_environment: bool = False) -> dict:
    """Region -> {"latent_mse": mean over the held-out samples}."""
    acc = {r: [] for r in REGIONS}
    for s in samples:
        x0 = predict_x0(models, feed(s.clip), s.noisy, s.t, zero_environment)
        err = ((x0 - s.latents) ** 2).mean(1)[0]  # (f, h, w), channels averaged
        for region, w in s.regions.items():
            if w.sum() > 1e-6:  # e.g. the ball hidden behind the body
                acc[region].append(weighted(err, w))
    return {r: {"latent_mse": float(np.mean(v))} for r, v in acc.items() if v}


@torch.no_grad()
def measure_leak(models, samples: list[EvalSample]) -> dict:
    """In the ring (larger mask - character - ball, where the truth is the scene): the estimate's error and its
    leak coefficient, 0 = the scene, 1 = the character stretched to fill the mask."""
    mse, num, den = [], 0.0, 0.0
    for s in samples:
        if s.ring.sum() < 1e-6:
            continue
        x0 = predict_x0(models, s.leak_clip, s.noisy, s.t)
        mse.append(weighted(((x0 - s.latents) ** 2).mean(1)[0], s.ring))
        direction = s.leaked - s.latents
        num += float((((x0 - s.latents) * direction).sum(1)[0] * s.ring).sum())
        den += float(((direction ** 2).sum(1)[0] * s.ring).sum())
    return {"ring_mse": float(np.mean(mse)), "leak": num / max(den, 1e-12)}


def best_constant(samples: list[EvalSample]) -> dict:
    """The latent error of the best constant guess: each region's true mean latent per channel (an oracle).

    A model that only learned the latents' mean (calibration) reaches this; beating it needs content.
    """
    acc = {r: [] for r in REGIONS}
    for s in samples:
        x = s.latents[0]  # (c, f, h, w)
        for region, w in s.regions.items():
            if w.sum() < 1e-6:
                continue
            mean = (x * w).sum((1, 2, 3), keepdim=True) / w.sum()
            acc[region].append(float((((x - mean) ** 2).mean(0) * w).sum() / w.sum()))
    return {r: {"latent_mse": float(np.mean(v))} for r, v in acc.items() if v}


@torch.no_grad()
def inputs_copied(models, samples: list[EvalSample]) -> dict:
    """The error of an input's own latents taken as the answer (what a model that copies it gets): the
    environment input's in the environment region, the object frames' in the ball's. With the tiny VAE as built
    its latents are not local (its group norms take statistics over the whole frame, its receptive field spans
    it): the latents of the scene with the mask filled grey differ from the frame's even far from the mask."""
    acc = {"environment": [], "object": []}
    for s in samples:
        for region, frames in (("environment", s.clip.environment), ("object", s.clip.objects)):
            w = s.regions[region]
            if frames is not None and w.sum() > 1e-6:
                copied = rearrange(images.vae_encode(models.vae, frames), "f c h w -> 1 c f h w")
                acc[region].append(weighted(((copied - s.latents) ** 2).mean(1)[0], w))
    return {r: {"latent_mse": float(np.mean(v))} for r, v in acc.items() if v}


def model_names(cfg: ProofConfig) -> tuple:
    return ("trained",) + tuple(ABLATIONS[a] for a in cfg.ablations)


@torch.no_grad()
def evaluate_model(models, name: str, samples: list[EvalSample]) -> dict:
    """One trained model's rows: its regions (the exact-mask model evaluated on the recipe's masks), for the
    recipe's model also with the environment input zeroed and the object frames emptied, and the shape leak."""
    feed = FEEDS[name] if name != "exact masks" else (lambda c: c)
    results, leak = {name: measure(models, samples, feed)}, {}
    if name == "trained":
        results["trained, env zeroed"] = measure(models, samples, zero_environment=True)
        results["trained, objects emptied"] = measure(models, samples, objects_emptied)
    if name in ("trained", "exact masks"):
        leak[name] = measure_leak(models, samples)
    return {"results": results, "leak": leak}


def run_seed(seed: int, cfg: ProofConfig, log=print, names=None, progress=None) -> dict:
    """One seed: the baselines, then each model in ``names`` (default: the recipe's and the ablations) trained
    from the same initial weights. ``progress(record)`` gets every measurement as it is made (``--progress``)."""
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    results, leak, losses, train_s = {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="aa2_proof_") as workdir:
        models_dir, trainset, heldout = prepare_run(seed, cfg, workdir)
        models = load_models(models_dir, cfg, seed)
        samples = eval_samples(models, heldout, cfg, seed)
        results["untrained"] = measure(models, samples)
        results["best constant"] = best_constant(samples)
        results[COPIED] = inputs_copied(models, samples)
        if progress:
            progress({"seed": seed, "model": "baselines", "step": 0, "results": dict(results), "leak": {}})
        for name in names or model_names(cfg):
            log(f"  {name}")
            models = load_models(models_dir, cfg, seed)  # the same initial weights for every model

            def checkpoint(step, models=models, name=name):
                if progress:
                    progress({"seed": seed, "model": name, "step": step, **evaluate_model(models, name, samples)})

            t1 = time.perf_counter()
            losses[name] = train_model(models, Fed(trainset, FEEDS[name]), cfg, seed, log, at=checkpoint)
            train_s[name] = time.perf_counter() - t1
            measured = evaluate_model(models, name, samples)
            results.update(measured["results"])
            leak.update(measured["leak"])
            if progress:
                progress({"seed": seed, "model": name, "step": cfg.steps, **measured})
    added = float(np.mean([float(s.ring.sum() / max(float(s.regions["character"].sum()), 1e-6)) for s in samples]))
    hidden = float(np.mean([s.ball_hidden for s in samples]))
    return {"seed": seed, "results": results, "leak": leak, "ring_over_character": added, "ball_hidden": hidden,
            "loss_first": {k: float(np.mean(v[: max(1, len(v) // 10)])) for k, v in losses.items()},
            "loss_last": {k: float(np.mean(v[-max(1, len(v) // 10):])) for k, v in losses.items()},
            "train_s": train_s, "total_s": time.perf_counter() - t0}


def merge_runs(parts: list[dict]) -> dict:
    """One seed's run from the runs of its models in separate processes (each measured the same baselines)."""
    run = {"seed": parts[0]["seed"], "ring_over_character": parts[0]["ring_over_character"],
           "ball_hidden": parts[0].get("ball_hidden"), "total_s": 0.0}
    for key in ("results", "leak", "loss_first", "loss_last", "train_s"):
        run[key] = {k: v for part in parts for k, v in part[key].items()}
    run["total_s"] = sum(part["total_s"] for part in parts)
    return run


class ProgressFile:
    """Appends each measurement as one JSON line (picklable: each process opens the file itself), so a run cut
    short still leaves its learning curve."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def runs_at_steps(records: list[dict]) -> dict:
    """Progress records -> {step: [run per seed]} for the steps every seed's recipe model reached."""
    baselines = {r["seed"]: r for r in records if r["model"] == "baselines"}
    by_step = {}
    for r in records:
        if r["model"] != "baselines" and r["seed"] in baselines:
            run = by_step.setdefault(r["step"], {}).setdefault(r["seed"], {"seed": r["seed"], "results": dict(baselines[r["seed"]]["results"]), "leak": {}})
            run["results"].update(r["results"])
            run["leak"].update(r["leak"])
    seeds = sorted(baselines)
    return {step: [runs[s] for s in seeds] for step, runs in sorted(by_step.items())
            if all(s in runs and "trained" in runs[s]["results"] for s in seeds)}


def format_curve(records: list[dict]) -> str:
    """The checks at each measured step (mean ± std over the seeds that reached it)."""
    lines = ["| steps | seeds | env / best constant | env zeroed / env | object: emptied - trained | object: without object input - trained | leak: exact - trained |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for step, runs in runs_at_steps(records).items():
        checks = summarise(runs)["checks"]

        def cell(key, paired=False):
            if key not in checks:
                return "-"
            v = checks[key]
            return f"{v[0]:+.3f} ± {v[3]:.3f} (min {v[1]:+.3f})" if paired else f"{v[0]:.3f} ± {v[1]:.3f}"

        lines.append(f"| {step} | {len(runs)} | {cell('env / best constant')} | {cell('env zeroed / env')} | "
                     f"{cell('object: trained, objects emptied - trained', True)} | {cell('object: without object input - trained', True)} | "
                     f"{cell('leak: exact masks - trained', True)} |")
    return "\n".join(lines)


# ---- the table ---------------------------------------------------------------------------------

def mean_std(values) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def summarise(runs: list[dict]) -> dict:
    """Mean and std over seeds per variant/region, and the three checks of the proof (paired per seed)."""
    stats = {}
    for variant in VARIANTS:
        for region in REGIONS:
            vals = [r["results"].get(variant, {}).get(region, {}).get("latent_mse") for r in runs]
            if all(v is not None for v in vals):
                stats[(variant, region)] = mean_std(vals)
    leak = {}
    for model in ("trained", "exact masks"):
        for metric in LEAK_METRICS:
            vals = [r["leak"].get(model, {}).get(metric) for r in runs]
            if all(v is not None for v in vals):
                leak[(model, metric)] = mean_std(vals)

    def env(r, v):
        return r["results"][v]["environment"]["latent_mse"]

    def obj(r, v):
        return r["results"][v]["object"]["latent_mse"]

    checks = {
        "env / best constant": mean_std([env(r, "trained") / env(r, "best constant") for r in runs]),
        "env zeroed / env": mean_std([env(r, "trained, env zeroed") / env(r, "trained") for r in runs]),
    }
    if all(COPIED in r["results"] for r in runs):
        checks["env copied / best constant"] = mean_std([env(r, COPIED) / env(r, "best constant") for r in runs])
    for other in ("without object input", "trained, objects emptied"):
        if all(other in r["results"] for r in runs):
            paired = [obj(r, other) - obj(r, "trained") for r in runs]
            spread = max(stats[("trained", "object")][1], stats[(other, "object")][1])
            checks[f"object: {other} - trained"] = (float(np.mean(paired)), float(np.min(paired)), spread, float(np.std(paired)))
    if ("exact masks", "leak") in leak:
        paired = [r["leak"]["exact masks"]["leak"] - r["leak"]["trained"]["leak"] for r in runs]
        checks["leak: exact masks - trained"] = (float(np.mean(paired)), float(np.min(paired)),
                                                 max(leak[("trained", "leak")][1], leak[("exact masks", "leak")][1]),
                                                 float(np.std(paired)))
    return {"stats": stats, "leak": leak, "checks": checks}


def format_table(summary: dict, runs: list[dict], cfg: ProofConfig) -> str:
    stats, leak, checks = summary["stats"], summary["leak"], summary["checks"]
    lines = [f"seeds {[r['seed'] for r in runs]}; modules {','.join(cfg.modules)}, stage {cfg.stage}, {cfg.steps} steps x "
             f"batch {cfg.batch} at lr {cfg.lr}; {cfg.width}x{cfg.height}, {cfg.train_clips} training clips; VAE norms {cfg.vae_norms!r}; held-out "
             f"{cfg.eval_clips} clips x {cfg.frames} frames x timesteps {list(cfg.eval_timesteps)}; ball held {cfg.ball_hold!r}; "
             f"blend init {cfg.blend_init!r}",
             f"TrainingSet options: {cfg.data_options()} (held-out: {cfg.data_options(heldout=True)}); "
             f"larger mask for the leak: inference reading {cfg.leak_mask!r}",
             "one-step x0 estimate vs the true latents, latent MSE per region (mean ± std over seeds); the object region: "
             f"the ball where the formulated mask hides it ({100 * np.mean([r.get('ball_hidden') or 0 for r in runs]):.0f} % of "
             "the ball's pixels)", ""]
    lines += ["| variant | environment | object | character |", "| --- | --- | --- | --- |"]
    for variant in VARIANTS:
        if any((variant, r) in stats for r in REGIONS):
            cells = " | ".join(f"{stats[(variant, r)][0]:.3f} ± {stats[(variant, r)][1]:.3f}" if (variant, r) in stats else "-"
                               for r in REGIONS)
            lines.append(f"| {variant} | {cells} |")
    if leak:
        ring = np.mean([r["ring_over_character"] for r in runs])
        lines += ["", f"shape leak, given the larger mask (its ring outside character and ball: {100 * ring:.0f} % of the "
                      "character's area):", "| model | ring latent MSE | leak (0 scene, 1 character fills the mask) |",
                  "| --- | --- | --- |"]
        for model in ("trained", "exact masks"):
            if (model, "leak") in leak:
                lines.append(f"| {model} | {leak[(model, 'ring_mse')][0]:.3f} ± {leak[(model, 'ring_mse')][1]:.3f} | "
                             f"{leak[(model, 'leak')][0]:.3f} ± {leak[(model, 'leak')][1]:.3f} |")
    lines += ["", "checks:"]
    a, b = checks["env / best constant"], checks["env zeroed / env"]
    lines.append(f"  (a) environment error / best constant: {a[0]:.3f} ± {a[1]:.3f} (target <= 0.70); "
                 f"zeroing the environment input: x{b[0]:.2f} ± {b[1]:.2f} (target >= 1.20)")
    if "env copied / best constant" in checks:
        c = checks["env copied / best constant"]
        lines.append(f"      for reference, the environment input's own latents copied: {c[0]:.3f} ± {c[1]:.3f} of the best constant "
                     f"(VAE norms {cfg.vae_norms!r})")
    for key, value in checks.items():
        if key.startswith(("object", "leak")):
            (mean, low, spread, paired_spread), tag = value, "(b)" if key.startswith("object") else "(c)"
            lines.append(f"  {tag} {key}: {mean:+.3f} (smallest paired {low:+.3f}; its spread over seeds {paired_spread:.3f}; "
                         f"the errors' own seed spread {spread:.3f})")
    names = list(runs[0]["loss_first"])
    lines += ["", "training loss (first->last 10%): " + "; ".join(
        f"{n}: " + ", ".join(f"{r['loss_first'][n]:.3f}->{r['loss_last'][n]:.3f}" for r in runs) for n in names),
        "wall time per seed: " + ", ".join(f"{r['total_s']:.0f}s (training " + "+".join(f"{s:.0f}" for s in r["train_s"].values()) + "s)"
                                           for r in runs)]
    return "\n".join(lines)


def run_task(seed: int, names: tuple, cfg: ProofConfig, progress_path: str | None = None) -> dict:
    """One process's share: one seed's models ``names``, its lines prefixed with the seed."""
    tag = f"seed {seed}" + (f", {'/'.join(names)}" if names != model_names(cfg) else "")
    print(tag, flush=True)
    return run_seed(seed, cfg, log=lambda line: print(f"[{tag}] {line.strip()}", flush=True), names=names,
                    progress=ProgressFile(progress_path) if progress_path else None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=ProofConfig.steps)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lr", type=float, default=ProofConfig.lr)
    p.add_argument("--batch", type=int, default=ProofConfig.batch)
    p.add_argument("--train-clips", type=int, default=ProofConfig.train_clips)
    p.add_argument("--eval-clips", type=int, default=ProofConfig.eval_clips)
    p.add_argument("--size", type=int, default=ProofConfig.height, help="square frames, a multiple of 8")
    p.add_argument("--scale-range", type=float, nargs=2, default=None, help="TrainingSet scale augmentation (default off)")
    p.add_argument("--pose-indicator", action="store_true", help="TrainingSet's EPI on (default off)")
    p.add_argument("--reference-background", choices=("colour", "other_clip"), default=ProofConfig.reference_background)
    p.add_argument("--leak-mask", choices=("pixels", "grid"), default=ProofConfig.leak_mask)
    p.add_argument("--ablations", default=",".join(ProofConfig.ablations),
                   help=f"comma-separated, from {', '.join(ABLATIONS)} ('' for none)")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes, each training one seed's one model (one thread "
                                                         "each; the figures are the same as one after another)")
    p.add_argument("--device", default=ProofConfig.device, help="the models' device, e.g. cuda (data and metrics stay on the CPU)")
    p.add_argument("--eval-at", default="", help="comma-separated step counts at which each model is measured too (a learning curve)")
    p.add_argument("--progress", help="append every measurement here as a JSON line as it is made (kept if the run is cut short)")
    p.add_argument("--curve", metavar="PROGRESS", help="only print the checks per step from a --progress file, then exit")
    p.add_argument("--vae-norms", choices=("frame", "fixed"), default=ProofConfig.vae_norms,
                   help="the tiny VAE encoder's group norms: per frame (as built) or statistics fixed once (local latents)")
    p.add_argument("--ball-hold", choices=BALL_HOLDS, default=ProofConfig.ball_hold,
                   help="the synthetic ball: against the chest (mostly under the mask) or at arm's length (mostly visible)")
    p.add_argument("--blend-init", choices=BLEND_INITS, default=ProofConfig.blend_init, help="the trainer's --blend-init")
    p.add_argument("--json", help="write the per-seed results and the summary here")
    args = p.parse_args(argv)
    if args.curve:
        with open(args.curve) as f:
            print(format_curve([json.loads(line) for line in f if line.strip()]))
        return 0
    cfg = ProofConfig(steps=args.steps, lr=args.lr, batch=args.batch, train_clips=args.train_clips, eval_clips=args.eval_clips,
                      height=args.size, width=args.size, scale_range=tuple(args.scale_range) if args.scale_range else None,
                      pose_indicator=args.pose_indicator, reference_background=args.reference_background,
                      leak_mask=args.leak_mask, ablations=tuple(a for a in args.ablations.split(",") if a),
                      device=args.device, eval_at=tuple(int(s) for s in args.eval_at.split(",") if s), vae_norms=args.vae_norms,
                      ball_hold=args.ball_hold, blend_init=args.blend_init)
    print(f"TrainingSet options: {cfg.data_options()}; held-out: {cfg.data_options(heldout=True)}", flush=True)
    t0 = time.perf_counter()
    if args.jobs > 1:  # one process per seed and model, each on cfg.threads threads
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        tasks = [(seed, (name,)) for seed in args.seeds for name in model_names(cfg)]
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            parts = list(pool.map(run_task, *zip(*tasks), [cfg] * len(tasks), [args.progress] * len(tasks)))
        runs = [merge_runs([part for (s, _), part in zip(tasks, parts) if s == seed]) for seed in args.seeds]
    else:
        runs = [run_task(seed, model_names(cfg), cfg, args.progress) for seed in args.seeds]
    summary = summarise(runs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": asdict(cfg), "runs": runs,
                       "stats": {" | ".join(k): v for k, v in summary["stats"].items()},
                       "leak": {" | ".join(k): v for k, v in summary["leak"].items()},
                       "checks": summary["checks"]}, f, indent=1)
    print(format_table(summary, runs, cfg))
    if cfg.eval_at and args.progress:
        with open(args.progress) as f:
            print("\nlearning curve (from --progress):\n" + format_curve([json.loads(line) for line in f if line.strip()]))
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
