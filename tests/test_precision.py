"""fp32 and bf16 forward passes agree within a stated tolerance.

Tolerance: the bf16 output's error, relative to the fp32 output's scale (RMS), stays under 5%.
bf16 keeps 8 mantissa bits (~0.4% per rounding); a UNet forward compounds a few dozen roundings.
"""

import copy

import torch

from conftest import inputs

BF16_RELATIVE_RMS = 0.05


@torch.no_grad()
def test_bf16_matches_fp32(loaded):
    x = inputs(seed=3)
    outs = {}
    for dtype in (torch.float32, torch.bfloat16):
        net = copy.deepcopy(loaded["denoising"]).to(dtype)
        ref = copy.deepcopy(loaded["reference"]).to(dtype)
        pose = copy.deepcopy(loaded["pose"]).to(dtype)
        kv = net.reference_kv(ref(x["ref_latents"].to(dtype), x["context"].to(dtype)))
        features = pose(x["skeleton"].to(dtype), x["depth"].to(dtype), num_frames=4)
        out = net(x["sample"].to(dtype), 500, x["context"].to(dtype), pose_features=features, reference=kv)
        assert out.dtype == dtype
        outs[dtype] = out.float()
    ref32, low = outs[torch.float32], outs[torch.bfloat16]
    rel = ((low - ref32).pow(2).mean().sqrt() / ref32.pow(2).mean().sqrt()).item()
    assert rel < BF16_RELATIVE_RMS, rel
    assert rel > 0  # it really ran in bf16
