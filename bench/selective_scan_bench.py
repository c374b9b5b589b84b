"""Selective scan: time and peak memory against clip length (16 ... 1024 frames).

    python bench/selective_scan_bench.py [--rows 64] [--channels 256] [--state 16] [--chunk 64] [--device cpu]

Rows are the sequences scanned together (pixels x batch at one UNet level), channels Mamba's inner width.
Peak memory: on the CPU, from ``torch.profiler`` with ``profile_memory=True``: every allocation and free the
profiler records (each op's self allocations at its start, frees as they happen) summed in time order; the
peak of that running sum, above what was allocated before the scan (the inputs). On CUDA,
``torch.cuda.max_memory_allocated`` above the inputs. It runs the PyTorch scan (``--backend torch``) or
``mamba_ssm``'s kernel (``--backend cuda``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from aa2_core.models.selective_scan import selective_scan  # noqa: E402


def scan_inputs(rows, channels, state, frames, device):
    g = torch.Generator().manual_seed(0)
    x = dict(u=torch.randn(rows, channels, frames, generator=g), delta=torch.randn(rows, channels, frames, generator=g),
             A=-torch.rand(channels, state, generator=g), B=torch.randn(rows, state, frames, generator=g),
             C=torch.randn(rows, state, frames, generator=g), D=torch.randn(channels, generator=g),
             z=torch.randn(rows, channels, frames, generator=g), delta_bias=torch.randn(channels, generator=g))
    return {k: v.to(device) for k, v in x.items()}


def cpu_peak_bytes(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    changes = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    running = peak = 0
    for _, delta in changes:
        running += delta
        peak = max(peak, running)
    return peak


def run(args) -> list[dict]:
    device = torch.device(args.device)
    rows = []
    for frames in args.frames:
        x = scan_inputs(args.rows, args.channels, args.state, frames, device)

        def scan():
            return selective_scan(**x, delta_softplus=True, backend=args.backend, chunk=args.chunk)

        with torch.no_grad():
            scan()  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                scan()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - t0) / args.repeats
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                scan()
                peak = torch.cuda.max_memory_allocated() - base
            else:
                peak = cpu_peak_bytes(scan)
        output = args.rows * args.channels * frames * 4
        rows.append(dict(frames=frames, ms=1000 * seconds, peak_mib=peak / 2**20, output_mib=output / 2**20))
        print(f"{frames:5d} frames  {1000 * seconds:9.1f} ms  {1000 * seconds / frames:6.3f} ms/frame  "
              f"peak {peak / 2**20:8.1f} MiB  ({peak / output:4.1f}x the fp32 output)", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--state", type=int, default=16)
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512, 1024])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="torch", choices=("torch", "cuda", "auto"))
    args = p.parse_args(argv)
    print(f"selective scan ({args.backend}) on {args.device}: rows={args.rows} channels={args.channels} "
          f"state={args.state} chunk={args.chunk}; threads={torch.get_num_threads()}")
    run(args)


if __name__ == "__main__":
    main()
