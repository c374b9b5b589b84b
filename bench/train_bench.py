"""Training speed and memory: samples/s and peak memory per device at 512x768, 16-frame clips, bf16.

    python bench/train_bench.py                          # CPU: the tiny models (the full ones do not fit a CPU budget)
    python bench/train_bench.py --full --device cuda     # one GPU: full-size SD1.5 / AnimateDiff / Moore shapes, random weights

Four configurations, each in its own child process (so each peak is its own): ``--modules aa2`` (the AA2
modules, base frozen) and ``--modules all``, each with and without gradient checkpointing. One training
step is exactly the trainer's (``TrainStep``: prepare path, VAE, ReferenceNet, pose modulation, DenoisingNet,
v-prediction loss, backward, optimizer step) under bf16 autocast with fp32 master weights, on one random
clip per step. Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU; on the CPU the child's peak RSS
(weights and data included). Per device: with DDP each GPU holds this much (the batch per GPU is what counts).
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CONFIGS = [("aa2", False), ("aa2", True), ("all", False), ("all", True)]


def full_models():
    """Full-size shapes with random weights: SD1.5 UNets (both), AnimateDiff v2 motion modules, Moore's pose
    guider, the SD VAE and a ViT-L/14 image encoder (sd-image-variations, 768-d projection)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from aa2_core.checkpoints.assembly import ModelSet
    from aa2_core.models import DenoisingNet, MotionConfig, MotionModuleSet, PoseGuider, PoseModulation, ReferenceNet
    from aa2_core.models.image_encoder import ImageEncoder

    config = dict(attention_head_dim=8, cross_attention_dim=768)
    reference = ReferenceNet(UNet2DConditionModel(**config))
    reference.drop_output_head()
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                                          num_attention_heads=16, patch_size=14, image_size=224, projection_dim=768))
    return ModelSet(DenoisingNet(UNet2DConditionModel(**config), MotionModuleSet(MotionConfig())), reference,
                    PoseModulation(PoseGuider(320)), vae=vae, image_encoder=ImageEncoder(clip).eval())


def tiny_models():
    from aa2_core.check import write_tiny_models_dir
    from aa2_core.checkpoints.assembly import assemble_from_folder

    folder = tempfile.mkdtemp(prefix="aa2_train_bench_")
    write_tiny_models_dir(folder)
    return assemble_from_folder(folder)


def random_clip(frames, height, width, seed=0):
    from aa2_core.training.data import TrainingClip

    g = torch.Generator().manual_seed(seed)
    video = torch.rand(frames, height, width, 3, generator=g)
    mask = torch.zeros(frames, height, width)
    mask[:, height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = 1
    skeleton = torch.zeros(frames, height, width, 3)
    skeleton[:, height // 4 : 3 * height // 4, width // 2 - 4 : width // 2 + 4] = 1  # a limb: structured depth is not empty
    return TrainingClip(frames=video, reference=video[:1], environment=video * (1 - mask[..., None]) + 0.5 * mask[..., None],
                        environment_mask=mask, objects=torch.full_like(video, 0.5), skeleton=skeleton,
                        depth=torch.rand(frames, height, width, generator=g) * (skeleton[..., 0] > 0))


def run_one(args) -> dict:
    """One configuration (in the child process)."""
    from aa2_core.pipeline.schedulers import make_scheduler
    from aa2_core.training.engine import place_models
    from aa2_core.training.modules import count, select_trainable
    from aa2_core.training.optim import make_optimizer
    from aa2_core.training.step import TrainStep

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    models = full_models() if args.full else tiny_models()
    chosen = select_trainable(models, [args.modules], stage=2)
    place_models(models, chosen, device, args.precision, args.checkpointing)
    step = TrainStep(models, make_scheduler("ddim", "moore"), uncond_prob=0.1)
    params = [p for p in step.parameters() if p.requires_grad]
    optimizer, optimizer_name = make_optimizer(params, "auto", 1e-5)
    clip = random_clip(args.frames, args.height, args.width)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss = step([clip] * args.batch, [torch.Generator().manual_seed(i * 100 + b) for b in range(args.batch)])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    timed = times[args.warmup:]
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30
    return {"modules": args.modules, "checkpointing": args.checkpointing, "trained_params": count(models, chosen),
            "optimizer": optimizer_name, "s_per_step": sum(timed) / len(timed), "samples_per_s": args.batch * len(timed) / sum(timed),
            "peak_gib": peak, "loss": float(loss)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="full-size shapes (random weights); default: the tiny models")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=1, help="clips per step per device")
    p.add_argument("--steps", type=int, default=3, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"], help="autocast dtype (fp32: off; CPUs without bf16 units are slow in bf16)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (one is fastest on a shared box)")
    p.add_argument("--only", help="one configuration, e.g. aa2:ckpt or all:plain (default: all four)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--modules", default="aa2", help=argparse.SUPPRESS)
    p.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(run_one(args)), flush=True)
        return 0

    model = "full-size (SD1.5 shapes, random weights)" if args.full else "TINY models (aa2_core.tiny), not the full-size ones"
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"train_bench: {model} on {device_name}; {args.width}x{args.height}, {args.frames} frames, batch {args.batch} per device, "
          f"{args.precision} autocast, fp32 master weights; {args.steps} timed step(s) after {args.warmup} warm-up")
    configs = CONFIGS if not args.only else [(args.only.split(":")[0], args.only.split(":")[1] == "ckpt")]
    print(f"{'modules':<22} {'checkpointing':<14} {'trained params':>15} {'s/step':>9} {'samples/s':>10} {'peak GiB':>9}")
    for modules, ckpt in configs:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--modules", modules, "--device", args.device,
               "--height", str(args.height), "--width", str(args.width), "--frames", str(args.frames), "--batch", str(args.batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads), "--precision", args.precision]
        cmd += (["--full"] if args.full else []) + (["--checkpointing"] if ckpt else [])
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        run = subprocess.run(cmd, capture_output=True, text=True, env=env)
        label = "aa2 (base frozen)" if modules == "aa2" else "all"
        lines = [l for l in run.stdout.splitlines() if l.startswith("RESULT ")]
        if run.returncode != 0 or not lines:
            reason = "out of memory" if "out of memory" in run.stderr.lower() else f"failed (rc {run.returncode}): {run.stderr.strip().splitlines()[-1:]}"
            print(f"{label:<22} {'on' if ckpt else 'off':<14} {reason}")
            continue
        r = json.loads(lines[-1][7:])
        print(f"{label:<22} {'on' if ckpt else 'off':<14} {r['trained_params']:>15,} {r['s_per_step']:>9.2f} {r['samples_per_s']:>10.3f} "
              f"{r['peak_gib']:>9.2f}", flush=True)
    print("optimizer: " + (r["optimizer"] if lines else "?"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
