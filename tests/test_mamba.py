"""Mamba temporal layers: the PyTorch selective scan is the recurrence; untrained layers are exact no-ops."""

import copy

import pytest
import torch
import torch.nn.functional as F

from aa2_core.models import DenoisingNet
from aa2_core.models.mamba_temporal import MambaConfig, MambaMixer, MambaTemporalLayer, motion_slots, resolve_slots
from aa2_core.models.selective_scan import kernels_available, selective_scan, selective_scan_torch
from conftest import inputs


def recurrence(u, delta, A, B, C, D, z, delta_bias):
    """Mamba's S6 written one frame at a time, straight from the equations (softplus delta, silu gate)."""
    delta = F.softplus(delta + delta_bias[:, None])
    h = torch.zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(delta[:, :, t, None] * A) * h + delta[:, :, t, None] * B[:, None, :, t] * u[:, :, t, None]
        ys.append((h * C[:, None, :, t]).sum(-1) + D * u[:, :, t])
    return torch.stack(ys, dim=-1) * F.silu(z)


def scan_inputs(b=3, d=5, n=4, length=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(b, d, length, generator=g), delta=torch.randn(b, d, length, generator=g),
        A=-torch.rand(d, n, generator=g) * 2, B=torch.randn(b, n, length, generator=g), C=torch.randn(b, n, length, generator=g),
        D=torch.randn(d, generator=g), z=torch.randn(b, d, length, generator=g), delta_bias=torch.randn(d, generator=g),
    )


@pytest.mark.parametrize("chunk, max_elements", [(8, 2**26), (5, 5 * 8 * 4), (64, 1)])
def test_pure_scan_equals_step_by_step_recurrence(chunk, max_elements):
    """Chunks of frames that do not divide the length, and row splits, carry the state exactly.

    Mutations seen failing: the state reset at each chunk; B read from C."""
    x = scan_inputs()
    ours = selective_scan_torch(**x, delta_softplus=True, chunk=chunk, max_chunk_elements=max_elements)
    torch.testing.assert_close(ours, recurrence(**x), rtol=1e-5, atol=1e-5)


def test_scan_keeps_dtype_and_refuses_missing_kernels():
    x = {k: v.to(torch.bfloat16) if k in ("u", "delta", "z") else v for k, v in scan_inputs(length=6).items()}
    assert selective_scan(**x, delta_softplus=True).dtype == torch.bfloat16
    if not kernels_available():
        with pytest.raises(RuntimeError, match="mamba-ssm"):
            selective_scan(**x, delta_softplus=True, backend="cuda")


@pytest.mark.skipif(not (torch.cuda.is_available() and kernels_available()), reason="needs CUDA and mamba_ssm")
def test_cuda_kernel_matches_torch_scan_in_bf16():
    torch.manual_seed(0)
    mixer = MambaMixer(64).cuda()
    with torch.no_grad():
        mixer.out_proj.weight.normal_(0, 0.05)
        x = torch.randn(8, 24, 64, device="cuda")
        ref = mixer(x, backend="torch")
        fast = mixer.to(torch.bfloat16)(x.bfloat16(), backend="cuda").float()
    torch.testing.assert_close(fast, ref, rtol=3e-2, atol=3e-2)


def random_layer(bidirectional, seed=0):
    torch.manual_seed(seed)
    layer = MambaTemporalLayer(32, MambaConfig(bidirectional=bidirectional)).eval()
    with torch.no_grad():
        for mixer in (layer.forward_mixer, layer.backward_mixer):
            if mixer is not None:
                mixer.out_proj.weight.normal_(0, 0.1)
    return layer


@torch.no_grad()
@pytest.mark.parametrize("bidirectional", [False, True])
def test_frames_see_later_frames_only_when_bidirectional(bidirectional):
    """Forward-only Mamba is causal along the frames; the backward scan lets frame 0 see the last frame."""
    layer, frames = random_layer(bidirectional), 6
    x = torch.randn(frames, 32, 3, 3)
    changed = x.clone()
    changed[-1] += torch.randn(changed[-1].shape)
    first = (layer(x, frames)[0] - layer(changed, frames)[0]).abs().max()
    assert (first > 1e-4) == bidirectional


def test_slot_names_follow_the_motion_module_layout(loaded):
    slots = list(motion_slots(loaded["denoising"].unet))
    assert slots[:2] == ["down_0_0", "down_0_1"] and "mid_0" in slots and slots[-1] == "up_3_2"
    assert resolve_slots(["mid", "up_1_0"], slots) == ["mid_0", "up_1_0"]
    with pytest.raises(ValueError, match="unknown motion-module slot 'up_9_9'"):
        resolve_slots(["up_9_9"], slots)


@torch.no_grad()
def test_untrained_mamba_is_exact_noop(loaded):
    """Mamba layers in every slot, after the temporal attention, untrained: the base output bit for bit."""
    net = copy.deepcopy(loaded["denoising"])
    x = inputs(frames=5)
    base = net(x["sample"], 500, x["context"])
    net.add_mamba(MambaConfig(slots=("all",)))
    assert len(net.mamba.layers) == 21
    assert torch.equal(net(x["sample"], 500, x["context"]), base)


@torch.no_grad()
@pytest.mark.parametrize("slot", ["down_1_0", "up_2_1"])
def test_trained_mamba_changes_output(loaded, slot):
    """The same comparison can fail: a non-zero out_proj in one slot moves the output (the layer is wired in)."""
    net = copy.deepcopy(loaded["denoising"])
    x = inputs(frames=4, seed=3)
    base = net(x["sample"], 500, x["context"])
    net.add_mamba(MambaConfig(slots=(slot,)))
    net.mamba.layers[slot].forward_mixer.out_proj.weight.normal_(0, 0.1)
    assert (net(x["sample"], 500, x["context"]) - base).abs().max() > 1e-4


@torch.no_grad()
def test_replace_skips_the_temporal_attention(loaded):
    """``replace=True`` in every slot, untrained: the net without its motion module."""
    net = copy.deepcopy(loaded["denoising"])
    x = inputs(frames=4, seed=5)
    no_motion = DenoisingNet(net.unet, motion=None)(x["sample"], 500, x["context"])
    with_motion = net(x["sample"], 500, x["context"])
    net.add_mamba(MambaConfig(replace=True, bidirectional=False))
    assert torch.equal(net(x["sample"], 500, x["context"]), no_motion)
    assert (with_motion - no_motion).abs().max() > 1e-4  # the motion module matters, so skipping it is seen


def mixer_by_hand(mixer: MambaMixer, x: torch.Tensor) -> torch.Tensor:
    """``mamba_ssm.Mamba`` on ``x (b, L, d)`` written out: projections, causal depthwise conv, S6 recurrence."""
    length = x.shape[1]
    xz = mixer.in_proj(x).transpose(1, 2)  # (b, 2 d_inner, L)
    u, z = xz.chunk(2, dim=1)
    u = F.silu(F.conv1d(u, mixer.conv1d.weight, mixer.conv1d.bias, padding=mixer.conv1d.padding[0], groups=u.shape[1])[..., :length])
    dt, B, C = mixer.x_proj(u.transpose(1, 2)).split([mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1)
    delta = (dt @ mixer.dt_proj.weight.T).transpose(1, 2)  # the bias goes in through the softplus
    y = recurrence(u, delta, -torch.exp(mixer.A_log), B.transpose(1, 2), C.transpose(1, 2), mixer.D, z, mixer.dt_proj.bias)
    return mixer.out_proj(y.transpose(1, 2))


@torch.no_grad()
def test_bidirectional_layer_is_the_forward_scan_plus_the_reversed_scan_flipped_back():
    """With trained (non-zero) weights the layer adds, per pixel, the forward mixer on the frames plus the
    backward mixer on the reversed frames, reversed back into frame order. Mutations it catches: the backward
    output not flipped back; the backward mixer fed the frames in order."""
    torch.manual_seed(0)
    layer = MambaTemporalLayer(8, MambaConfig(d_state=4, d_conv=3), norm_num_groups=4)
    for mixer in (layer.forward_mixer, layer.backward_mixer):
        torch.nn.init.normal_(mixer.out_proj.weight, std=0.3)
    frames, h, w = 5, 2, 3
    hidden = torch.randn(frames, 8, h, w)
    out = layer(hidden, frames)

    normed = F.group_norm(hidden, 4, layer.norm.weight, layer.norm.bias, eps=1e-6)
    for i in range(h):
        for j in range(w):
            seq = normed[:, :, i, j][None]  # (1, frames, channels)
            expected = seq.new_zeros(seq.shape)
            expected += mixer_by_hand(layer.forward_mixer, seq)
            expected += mixer_by_hand(layer.backward_mixer, seq.flip(1)).flip(1)
            torch.testing.assert_close(out[:, :, i, j] - hidden[:, :, i, j], expected[0], rtol=1e-4, atol=1e-5)
