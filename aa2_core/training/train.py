"""``python -m aa2_core train``: train the Animate Anyone 2 modules on your own videos.

    python -m aa2_core train --data clips/ --models ComfyUI/models --out aa2_modules.safetensors
    torchrun --nproc_per_node 8 -m aa2_core train ...        # many GPUs (data parallel, gradients all-reduced)

Starts from the Moore-AnimateAnyone weights with the AA2 modules as exact no-ops, then learns them with
the paper's objective (noise prediction loss, here v-prediction as the Moore schedule; section 3.1):
environment input, object guider + spatial blending, depth-wise pose modulation. ``--train-base`` also
trains the UNets, motion module and pose guider, as the paper does from scratch. The image embedding and
reference are dropped at random (``--uncond-prob``) so classifier-free guidance keeps working. Writes
an ``aa2-modules`` file that AA2 Model Loader reads.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from einops import rearrange

from ..checkpoints.aa2_file import save_aa2_file
from ..errors import AA2Error
from ..pipeline import images
from ..pipeline.options import Schedule, SchedulerName
from ..pipeline.prepare import encode_reference, prepare_conditions
from ..pipeline.sampler import Models, network_inputs
from ..pipeline.schedulers import make_scheduler
from .data import list_videos, load_clip

POSE_AA2 = ("depth_trunk.", "depth_attention.", "temporal.")


def trainable_parameters(models, train_base: bool) -> list[torch.nn.Parameter]:
    """AA2 modules only (default), or everything but the frozen VAE and image encoder."""
    for net in (models.denoising, models.reference, models.pose):
        net.requires_grad_(train_base)
    aa2 = [p for n, p in models.denoising.named_parameters() if n.startswith(("env_conv_in", "object_guider", "spatial_blend"))]
    aa2 += [p for n, p in models.pose.named_parameters() if n.startswith(POSE_AA2)]
    for p in aa2:
        p.requires_grad_(True)
    return [p for net in (models.denoising, models.reference, models.pose) for p in net.parameters() if p.requires_grad]


def clip_conditions(models, clip, device, dtype):
    """A training clip -> the same ``Conditions`` the sampler gets, through the one ``prepare`` path."""
    def encode(x):
        return images.vae_encode(models.vae, x)

    size = tuple(clip.frames.shape[1:3])
    reference = encode_reference(clip.reference, size, encode, models.image_encoder.embed, models.reference, device, dtype)
    return prepare_conditions(reference, clip.skeleton, encode, depth=clip.depth, environment=clip.environment,
                              environment_mask=clip.environment_mask, objects=clip.objects)


def training_loss(models, clip, scheduler, generator, uncond_prob: float, device, dtype):
    """The denoising loss of one clip (batch of one video)."""
    cond = clip_conditions(models, clip, device, dtype)
    video = rearrange(images.vae_encode(models.vae, clip.frames).to(device), "f c h w -> 1 c f h w")  # frozen VAE
    noise = torch.randn(video.shape, generator=generator).to(device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (1,), generator=generator).to(device)
    noisy = scheduler.add_noise(video, noise, t)
    target = scheduler.get_velocity(video, noise, t) if scheduler.config.prediction_type == "v_prediction" else noise

    # the reference and its embedding dropped together, as the sampler's unconditional branch sees them
    drop = float(torch.rand((), generator=generator)) < uncond_prob
    embeds = cond.reference.image_embeds.to(device, dtype)
    embeds = torch.zeros_like(embeds) if drop else embeds
    reference = None if drop else models.denoising.reference_kv(cond.reference.tokens)
    inputs = network_inputs(Models(models.denoising, models.pose), cond, torch.arange(cond.num_frames), device, dtype)
    pred = models.denoising(noisy.to(dtype), t, embeds, reference=reference, **inputs)
    return F.mse_loss(pred.float(), target.float())


def save(models, path: str, base: str, train_base: bool) -> None:
    parts = {"denoising": models.denoising.state_dict() if train_base else models.denoising.aa2_state_dict(),
             "pose": {k: v for k, v in models.pose.state_dict().items() if train_base or k.startswith(POSE_AA2)}}
    if train_base:
        parts["reference"] = models.reference.state_dict()
    save_aa2_file(path, parts, base=base, fusion_blocks=models.denoising.fusion_blocks,
                  notes="trained with python -m aa2_core train" + (" (whole nets)" if train_base else ""))


def train(args) -> dict:
    from ..checkpoints.assembly import assemble_from_folder

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    if distributed:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank = torch.distributed.get_rank()
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    device, dtype = torch.device(args.device), torch.float32
    torch.manual_seed(args.seed)  # the AA2 modules' random initial weights (same on every rank), so --seed repeats a run
    models = assemble_from_folder(args.models, args.aa2_modules, args.fusion_blocks)
    for net in (models.denoising, models.reference, models.pose, models.image_encoder, models.vae):
        net.to(device, dtype)
    models.vae.requires_grad_(False)
    models.image_encoder.requires_grad_(False)
    params = trainable_parameters(models, args.train_base)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    scheduler = make_scheduler(SchedulerName.DDIM, args.schedule)
    videos = list_videos(args.data)
    generator = torch.Generator().manual_seed(args.seed + rank)
    losses = []
    for step in range(1, args.steps + 1):
        clip = load_clip(videos[int(torch.randint(0, len(videos), (), generator=generator))], args.frames, args.height, args.width, generator)
        loss = training_loss(models, clip, scheduler, generator, args.uncond_prob, device, dtype)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if distributed:  # data parallel: average the gradients of every rank's clip
            world = torch.distributed.get_world_size()
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                torch.distributed.all_reduce(p.grad)
                p.grad /= world
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if rank == 0 and (step % args.log_every == 0 or step == args.steps):
            print(f"step {step}/{args.steps} loss {sum(losses[-args.log_every:]) / len(losses[-args.log_every:]):.4f}", flush=True)
        if rank == 0 and (step % args.save_every == 0 or step == args.steps):
            save(models, args.out, base=os.path.abspath(args.models), train_base=args.train_base)
    if distributed:
        torch.distributed.destroy_process_group()
    return {"losses": losses}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m aa2_core train", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder of video folders (frames.mp4, mask.mp4, pose.mp4[, objects.mp4, depth.mp4])")
    p.add_argument("--models", required=True, help="ComfyUI-style models folder with the Moore weights")
    p.add_argument("--out", required=True, help="output .safetensors (aa2-modules)")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--frames", type=int, default=16, help="clip length (the paper: 16)")
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--uncond-prob", type=float, default=0.1)
    p.add_argument("--schedule", default=Schedule.MOORE.value, choices=Schedule.values())
    p.add_argument("--aa2-modules", help="start from this aa2-modules file (continue training)")
    p.add_argument("--fusion-blocks", default="full", choices=["full", "midup"])
    p.add_argument("--train-base", action="store_true", help="also train the UNets, motion module and pose guider")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    try:
        t0 = time.perf_counter()
        train(args)
        print(f"wrote {args.out} after {args.steps} steps in {time.perf_counter() - t0:.0f} s")
        return 0
    except AA2Error as e:
        print(f"error: {e}")
        return 1
