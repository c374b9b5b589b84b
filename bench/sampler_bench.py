"""Sampler speed and memory: seconds per frame, peak memory, achieved FLOP/s, and growth with length.

    python bench/sampler_bench.py                     # CPU, tiny model (runs anywhere)
    python bench/sampler_bench.py --full --device cuda --dtype fp16   # full-size SD1.5 model, random weights

Settings follow the target: 512x768, 24-frame clips, 25 steps, CFG 3.5 (tiny mode uses 64x64 and 2 steps).
Prints a table; nothing here is a test.

Peak VRAM through ComfyUI's model management (``--vram``, on by default with ``--full --device cuda``; needs
ComfyUI importable: run with ComfyUI's Python and ``COMFYUI_PATH``). The models are loaded as the nodes load
them (``nodes/comfy_bridge.py``) and sampled at 24, 120 and 480 frames in three modes:
``normal`` (ComfyUI's default state), ``lowvram`` (``--lowvram`` on a card capped to ``--vram-cap-gb``,
12 GB by default: ComfyUI sees that much memory and allocations past it fail) and ``novram`` (``--novram``:
every layer streamed). On a CPU it runs in a reduced form (12 and 24 frames, tiny model): ComfyUI always
loads fully onto a CPU, so the ``lowvram`` row gets half the weights' size as its budget and ``novram``
none; peak memory is then the process's peak RSS (it never goes down), and the useful columns are the
weights ComfyUI left on the device and the count of streamed layers.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aa2_core.models import DenoisingNet, MotionConfig, MotionModuleSet, PoseGuider, PoseModulation, ReferenceNet  # noqa: E402
from aa2_core.pipeline.options import SamplerSettings, Stitching  # noqa: E402
from aa2_core.pipeline.prepare import Conditions, Reference  # noqa: E402
from aa2_core.families.moore import MooreModels as Models  # noqa: E402
from aa2_core.pipeline.sampler import Sampler, total_steps  # noqa: E402

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}  # dense fp16/bf16


def build(full: bool):
    from diffusers import UNet2DConditionModel

    from aa2_core import tiny

    if full:
        config = dict(attention_head_dim=8, cross_attention_dim=768)
        unet, ref = UNet2DConditionModel(**config), UNet2DConditionModel(**config)
        motion, guider = MotionModuleSet(MotionConfig()), PoseGuider(320)
    else:
        unet, ref, motion, guider = tiny.tiny_unet(0), tiny.tiny_unet(1), tiny.tiny_motion(), tiny.tiny_pose_guider()
    return Models(DenoisingNet(unet, motion), PoseModulation(guider)), ReferenceNet(ref)


@torch.no_grad()
def conditions(reference_net, frames, height, width, dim):
    """Random latents and embedding; the ReferenceNet runs once, as the ReferenceNet node does."""
    g = torch.Generator().manual_seed(0)
    latents, embeds = torch.randn(1, 4, height // 8, width // 8, generator=g), torch.randn(1, 1, dim, generator=g)
    param = next(reference_net.parameters())
    tokens = reference_net(latents.to(param.device, param.dtype), embeds.to(param.device, param.dtype))
    return Conditions(Reference(latents, embeds, tokens), torch.rand(frames, height, width, 3, generator=g))


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="full-size SD1.5 model with random weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--frames", help="video lengths (default 24,48,96,192; with --vram 24,120,480 on a GPU, 12,24 on a CPU)")
    p.add_argument("--steps", type=int)
    p.add_argument("--vram", choices=["auto", "on", "off"], default="auto",
                   help="peak VRAM in normal/lowvram/novram mode through ComfyUI (auto: with --full on a GPU)")
    p.add_argument("--vram-modes", default="normal,lowvram,novram")
    p.add_argument("--vram-cap-gb", type=float, default=12.0, help="card size the lowvram mode stands in for")
    p.add_argument("--skip-speed", action="store_true", help="only the --vram table")
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    height, width, steps = (768, 512, 25) if args.full else (64, 64, 2)
    steps = args.steps or steps
    models, reference_net = build(args.full)
    vram = args.vram == "on" or (args.vram == "auto" and args.full and device.type == "cuda")
    if not args.skip_speed:
        speed_table(args, models, reference_net, device, dtype, height, width, steps)
    if vram:
        vram_table(args, models, reference_net, device, dtype, height, width, steps)


def speed_table(args, models, reference_net, device, dtype, height, width, steps):
    for m in (models.denoising, reference_net, models.pose):
        m.to(device, dtype).eval()
    dim = models.denoising.unet.config.cross_attention_dim
    settings = SamplerSettings(steps=steps, cfg=3.5, stitching=Stitching(clip_length=24, motion_frames=4))

    # FLOPs of one denoising call (both CFG branches) on one 24-frame clip
    probe = Sampler(models, settings, device=device, dtype=dtype)
    cond = conditions(reference_net, 24, height, width, dim)
    with FlopCounterMode(display=False) as counter:
        Sampler(models, SamplerSettings(steps=1, cfg=3.5), device=device, dtype=dtype).sample(cond)
    flops_per_clip_step = counter.get_total_flops()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    print(f"device: {name}, dtype: {args.dtype}, size {width}x{height}, {steps} steps, clip 24 (+4 motion frames), cfg batch")
    print(f"FLOPs per 24-frame clip step (CFG batch): {flops_per_clip_step / 1e12:.3f} TFLOP")
    print(f"{'frames':>7} {'clips':>5} {'seconds':>9} {'s/frame':>8} {'peak MB':>9} {'TFLOP/s':>8} {'% of peak':>9}")
    for frames in [int(f) for f in (args.frames or "24,48,96,192").split(",")]:
        cond = conditions(reference_net, frames, height, width, dim)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        probe.sample(cond)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        calls = total_steps(settings, frames)
        clips = calls // steps
        tflops = flops_per_clip_step * calls / seconds / 1e12
        share = f"{100 * tflops / peak:.1f}" if peak else "n/a"
        print(f"{frames:>7} {clips:>5} {seconds:>9.2f} {seconds / frames:>8.3f} {peak_memory_mb(device):>9.0f} {tflops:>8.3f} {share:>9}")


# ---- peak VRAM through ComfyUI's model management ---------------------------------------------------

def comfy_modules(device):
    """ComfyUI's model management (on the CPU when benchmarking the CPU) and our bridge, imported as a
    package without the node modules (so no ``folder_paths`` set-up is needed)."""
    import importlib
    import types

    path = os.environ.get("COMFYUI_PATH")
    if not path or not os.path.isfile(os.path.join(path, "main.py")):
        sys.exit("--vram needs COMFYUI_PATH set to a ComfyUI checkout (and ComfyUI's Python)")
    sys.path.insert(0, path)
    from comfy.cli_args import args

    args.cpu = device.type == "cpu"
    import comfy.model_management as mm

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name, folder in (("aa2_bench_pack", root), ("aa2_bench_pack.nodes", os.path.join(root, "nodes"))):
        package = types.ModuleType(name)
        package.__path__ = [folder]
        sys.modules.setdefault(name, package)
    bridge = importlib.import_module("aa2_bench_pack.nodes.comfy_bridge")
    node_sampler = importlib.import_module("aa2_bench_pack.nodes.sampler")
    return mm, bridge, node_sampler


class VramMode:
    """Puts ComfyUI in one VRAM mode for a load, and loads the patchers in it."""

    def __init__(self, mm, bridge, name, device, cap_bytes):
        self.mm, self.bridge, self.name, self.device, self.cap = mm, bridge, name, device, cap_bytes
        self.state = {"normal": mm.VRAMState.NORMAL_VRAM, "lowvram": mm.VRAMState.LOW_VRAM,
                      "novram": mm.VRAMState.NO_VRAM}[name]

    def load(self, patchers, memory_required):
        if self.device.type == "cpu":
            return self._load_on_cpu(patchers)
        mm, saved = self.mm, (self.mm.vram_state, self.mm.get_free_memory)
        mm.vram_state = self.state
        if self.name == "lowvram":  # ComfyUI sizes its budget off free memory: show it a smaller card
            mm.get_free_memory = self._capped_free_memory
            total = torch.cuda.get_device_properties(self.device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, self.cap / total), self.device)
        try:
            self.bridge.load_on_device(*patchers, memory_required=memory_required)
        finally:
            mm.vram_state, mm.get_free_memory = saved
        return []

    def _capped_free_memory(self, dev=None, torch_free_too=False):
        stats = torch.cuda.memory_stats(self.device)
        reserved, active = stats["reserved_bytes.all.current"], stats["active_bytes.all.current"]
        free_torch = reserved - active
        free = max(0, self.cap - reserved) + free_torch
        return (free, free_torch) if torch_free_too else free

    def _load_on_cpu(self, patchers):
        """ComfyUI never streams onto a CPU, so the budget goes straight to its partial load (what
        ``load_models_gpu`` does with the budget it computes): half the weights, or none."""
        loaded = []
        for p in patchers:
            budget = {"normal": 0, "lowvram": p.model_size() // 2, "novram": 0.1}[self.name]
            model = self.mm.LoadedModel(p)
            model.model_load(lowvram_model_memory=budget)
            loaded.append(model)
        return loaded

    def unload(self, patchers):
        self.mm.unload_all_models()
        for p in patchers:  # the CPU loads above are not in ComfyUI's list
            p.detach()
        if self.device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0, self.device)
            torch.cuda.empty_cache()


def vram_table(args, models, reference_net, device, dtype, height, width, steps):
    mm, bridge, node_sampler = comfy_modules(device)
    load_device, offload = mm.get_torch_device(), mm.unet_offload_device()
    lengths = [int(f) for f in (args.frames or ("12,24" if device.type == "cpu" else "24,120,480")).split(",")]
    settings = SamplerSettings(steps=steps, cfg=3.5, stitching=Stitching(clip_length=24, motion_frames=4))
    dim = models.denoising.unet.config.cross_attention_dim

    # the ReferenceNet runs once, then leaves the device, as with the ReferenceNet node
    reference_net.to(load_device, dtype).eval()
    conds = {}
    for frames in lengths:
        cond = conditions(reference_net, frames, height, width, dim)
        cond.reference.tokens = {k: v.cpu() for k, v in cond.reference.tokens.items()}
        conds[frames] = cond
    reference_net.to(offload)
    patchers = [bridge.model_patcher(m.to(offload, dtype).eval(), load_device, offload) for m in (models.denoising, models.pose)]
    weights_mb = sum(p.model_size() for p in patchers) / 2**20

    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}, lowvram on a {args.vram_cap_gb:g} GB card"
    else:
        where = "cpu (reduced: lowvram budget half the weights, peak = the process's peak RSS)"
    print(f"\npeak memory through ComfyUI's model management, {where}; weights {weights_mb:.0f} MB, "
          f"{args.dtype}, {width}x{height}, {steps} steps")
    print(f"{'mode':>8} {'frames':>7} {'seconds':>9} {'peak MB':>9} {'weights on device MB':>21} {'streamed layers':>16}")
    for name in args.vram_modes.split(","):
        mode = VramMode(mm, bridge, name, device, args.vram_cap_gb * 2**30)
        for frames in lengths:
            print(vram_row(mode, patchers, models, conds[frames], settings, node_sampler, load_device, dtype, frames))


def vram_row(mode, patchers, models, cond, settings, node_sampler, load_device, dtype, frames):
    device = mode.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        mode.load(patchers, node_sampler.activation_bytes(settings, cond, dtype))
        on_device = sum(p.loaded_size() for p in patchers) / 2**20
        streamed = sum(getattr(m, "comfy_cast_weights", False) for p in patchers for m in p.model.modules())
        t0 = time.perf_counter()
        Sampler(models, settings, device=load_device, dtype=dtype).sample(cond)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = f"{time.perf_counter() - t0:9.2f}"
        peak = f"{peak_memory_mb(device):9.0f}"
    except torch.cuda.OutOfMemoryError:
        seconds, peak, on_device, streamed = f"{'OOM':>9}", f"{'> cap':>9}", float("nan"), -1
    finally:
        mode.unload(patchers)
    return f"{mode.name:>8} {frames:>7} {seconds} {peak} {on_device:>21.0f} {streamed:>16}"


if __name__ == "__main__":
    main()
