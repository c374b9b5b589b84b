"""Our Animate-X family against the released code's outputs (``bench/animate_x_parity.py`` made the fixtures with
the released modules on the same tiny weights; the weights are rebuilt here from their seed).

Also: the full-size key layout of the released UNet, the released schedule numbers, the loader on ``.pth`` and
``.safetensors``, a file in the wrong role, and that the fixtures catch a wrong weight mapping or changed CFG inputs.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from aa2_core.errors import CheckpointError
from aa2_core.families.animate_x import diffusion
from aa2_core.families.animate_x import vae as animate_x_vae
from aa2_core.families.animate_x.config import TINY_CONFIG, AnimateXConfig
from aa2_core.families.animate_x.loader import (convert_to_safetensors, load_animate_x_unet, load_animate_x_vae,
                                                unet_from_state_dict)
from aa2_core.families.animate_x.tiny import tiny_animate_x_state_dict, write_tiny_animate_x_files
from aa2_core.families.animate_x.unet import AnimateXUNet

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "animate_x")
PARITY = os.path.join(FIXTURES, "parity.safetensors")


@pytest.fixture(scope="module")
def fx():
    with safe_open(PARITY, framework="pt") as f:
        meta = json.loads(f.metadata()["animate_x_parity"])
    return load_file(PARITY), meta


@pytest.fixture(scope="module")
def state_dict(fx):
    return tiny_animate_x_state_dict(fx[1]["tiny_seed"])


@pytest.fixture(scope="module")
def unet(state_dict):
    return unet_from_state_dict(state_dict, "tiny Animate-X UNet")


def inputs(t: dict, frames: int) -> tuple[dict, dict]:
    """The entrance's conditional and unconditional inputs, in our names (as the bench builds them)."""
    local = (t["ref_u8"].float() / 255)[None, :, None].repeat(1, 1, frames, 1, 1)
    dwpose = (t["pose_u8"].float() / 255).permute(1, 0, 2, 3)[None]
    cond = dict(text=t["zero_y"], image_embed=t["image"], local_image=local, dwpose=dwpose,
                keypoints=t["keypoints"], driving_features=t["driving_features"])
    return cond, dict(text=t["zero_y"])


def randomref(t: dict, frames: int) -> torch.Tensor:
    return (t["ref_posterior"][:, :4] * 0.18215)[:, :, None].repeat(1, 1, frames, 1, 1)


def maxdiff(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


@torch.no_grad()
def forward_diffs(model, t, meta) -> dict[str, float]:
    f = meta["frames"]
    cond, uncond = inputs(t, f)
    ts = torch.tensor([meta["timestep"]])
    return dict(
        cond=maxdiff(model(t["x"], ts, **cond), t["forward_cond"]),
        uncond=maxdiff(model(t["x"], ts, **uncond), t["forward_uncond"]),
        cond_randomref=maxdiff(model(t["x"], ts, **cond, randomref=randomref(t, f)), t["forward_cond_randomref"]),
    )


def run_ddim(model, t, meta, uncond=None):
    cond, default_uncond = inputs(t, meta["frames"])
    noise = diffusion.initial_noise(torch.Generator().manual_seed(meta["seed"]), meta["frames"], *t["x"].shape[-2:])
    return diffusion.sample(lambda x, ts, kw: model(x, ts, **kw), noise, cond, uncond or default_uncond,
                            steps=meta["steps"], guide_scale=meta["guide_scale"])


# ---- parity with the released code -----------------------------------------------------------------
def test_fixture_metadata(fx):
    t, meta = fx
    assert meta["tiny_config"] == json.loads(json.dumps(TINY_CONFIG.to_dict()))
    assert meta["steps"] >= 4 and meta["frames"] >= 2
    assert os.path.getsize(PARITY) + os.path.getsize(os.path.join(FIXTURES, "full_layout.json")) < 2_000_000


def test_unet_forward_matches_released(unet, fx):
    t, meta = fx
    diffs = forward_diffs(unet, t, meta)
    assert all(d <= meta["forward_tolerance"] for d in diffs.values()), diffs


def test_ddim_cfg_loop_matches_released(unet, fx):
    t, meta = fx
    noise = diffusion.initial_noise(torch.Generator().manual_seed(meta["seed"]), meta["frames"], *t["x"].shape[-2:])
    assert torch.equal(noise, t["ddim_noise"])  # seed, reference posterior draw, noise, offset noise
    assert diffusion.ddim_timesteps(meta["steps"]) == t["ddim_timesteps"].tolist()
    final = run_ddim(unet, t, meta)
    assert maxdiff(final, t["ddim_final"]) <= meta["ddim_tolerance"]


def test_released_schedule_numbers(fx):
    t, _ = fx
    schedule = diffusion.Schedule.released()
    assert torch.equal(schedule.alphas_cumprod, t["alphas_cumprod"])
    ts = diffusion.ddim_timesteps(30)
    assert len(ts) == 31 and ts[0] == 991 and ts[-1] == 1 and all(a - b == 33 for a, b in zip(ts, ts[1:]))
    assert float(schedule.alphas_cumprod[0]) == pytest.approx(0.99915, abs=1e-12)
    assert float(schedule.alphas_cumprod[-1]) == 0.0
    with pytest.raises(ValueError, match="t = 999"):
        diffusion.ddim_timesteps(3)


def test_full_size_layout_is_the_released_one():
    """The released UNet as the YAML builds it (keys and shapes recorded by the bench) == ours from the defaults,
    and the config read off those shapes is the default one."""
    with open(os.path.join(FIXTURES, "full_layout.json")) as f:
        layout = json.load(f)
    with torch.device("meta"):
        model = AnimateXUNet(AnimateXConfig())
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == layout
    meta_sd = {k: torch.empty(v, device="meta") for k, v in layout.items()}
    assert AnimateXConfig.from_state_dict(meta_sd) == AnimateXConfig()


def test_vae_matches_released(tmp_path, fx):
    """SD2.1 VAE (first_stage_model.* of a tiny v2-1_512-ema-pruned.ckpt) through the pack's VAE loader: encoder
    moments, the entrance's seeded reference latent, and its decode of the loop's final latents."""
    t, meta = fx
    vae = load_animate_x_vae(write_tiny_animate_x_files(str(tmp_path), meta["tiny_seed"])["vae"])
    ref01 = (t["ref_u8"].float() / 255)[None]
    tol = meta["forward_tolerance"]
    assert maxdiff(animate_x_vae.posterior_moments(vae, ref01), t["vae_moments"]) <= tol
    latent = animate_x_vae.reference_latent(vae, ref01, torch.Generator().manual_seed(meta["seed"]))
    assert maxdiff(latent, t["vae_reference_latent"]) <= tol
    assert maxdiff(animate_x_vae.decode_latents(vae, t["ddim_final"]), t["vae_decoded"]) <= tol


# ---- the fixtures catch mistakes -------------------------------------------------------------------
def test_a_wrong_weight_mapping_fails_the_forward(state_dict, fx):
    t, meta = fx
    for a, b in (("dwpose_embedding_after.layers.0.0.fn.to_qkv.weight",  # two branches swapped
                  "local_image_embedding_after.layers.0.0.fn.to_qkv.weight"),
                 ("output_blocks.2.1.pose_attention.transformer_blocks_p.0.attn2.to_k.weight",  # k/v swapped
                  "output_blocks.2.1.pose_attention.transformer_blocks_p.0.attn2.to_v.weight")):
        sd = dict(state_dict)
        sd[a], sd[b] = state_dict[b], state_dict[a]
        diffs = forward_diffs(unet_from_state_dict(sd), t, meta)
        assert diffs["cond"] > 100 * meta["forward_tolerance"], (a, b, diffs)


def test_changed_unconditional_inputs_fail_the_forward(unet, fx):
    """Each way of building the unconditional branch other than the entrance's (zero_y, zero image tokens, zero
    keypoints and features through the live IPI, no pixel conditions) misses the released output."""
    t, meta = fx
    cond, uncond = inputs(t, meta["frames"])
    ts = torch.tensor([meta["timestep"]])
    wrong = dict(
        zero_image_embed=dict(uncond, image_embed=torch.zeros_like(t["image"])),  # pre_image_condition(0) != 0
        keeps_pose_frames=dict(uncond, dwpose=cond["dwpose"]),
        keeps_reference_pixels=dict(uncond, local_image=cond["local_image"]),
        keeps_ipi_inputs=dict(uncond, keypoints=cond["keypoints"], driving_features=cond["driving_features"]),
        zero_text=dict(text=torch.zeros_like(t["zero_y"])),
    )
    with torch.no_grad():
        diffs = {k: maxdiff(unet(t["x"], ts, **kw), t["forward_uncond"]) for k, kw in wrong.items()}
    assert all(d > 100 * meta["forward_tolerance"] for d in diffs.values()), diffs


def test_changed_cfg_inputs_fail_the_loop(unet, fx):
    t, meta = fx
    cond, uncond = inputs(t, meta["frames"])
    with_pose = dict(uncond, keypoints=cond["keypoints"], driving_features=cond["driving_features"])
    final = run_ddim(unet, t, meta, uncond=with_pose)
    assert maxdiff(final, t["ddim_final"]) > 100 * meta["ddim_tolerance"]


# ---- the loader ------------------------------------------------------------------------------------
def test_loader_reads_pth_and_safetensors_to_the_same_model(tmp_path, state_dict):
    files = write_tiny_animate_x_files(str(tmp_path))
    st = convert_to_safetensors(files["unet"], str(tmp_path / "animate-x_ckpt.safetensors"))
    a, b = load_animate_x_unet(files["unet"]), load_animate_x_unet(st)
    assert a.config == b.config == TINY_CONFIG
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() == state_dict.keys()
    assert all(torch.equal(sa[k], sb[k]) and torch.equal(sa[k], state_dict[k]) for k in sa)
    assert not any(p.is_meta for p in a.parameters()) and not a.training


def test_loader_unwraps_a_state_dict_container(tmp_path, state_dict):
    path = str(tmp_path / "wrapped.pth")
    torch.save({"state_dict": state_dict, "step": 1000}, path)
    assert load_animate_x_unet(path).config == TINY_CONFIG


def test_wrong_role_file_names_the_file_and_the_expected_model(moore_files):
    path = moore_files["denoising_unet"]
    with pytest.raises(CheckpointError) as err:
        load_animate_x_unet(path)
    text = str(err.value)
    assert path in text and "not an Animate-X UNet" in text and "animate-x_ckpt.pth" in text


def test_truncated_released_file_is_a_clear_error(tmp_path, state_dict):
    sd = {k: v for k, v in state_dict.items() if not k.startswith("output_blocks.3.")}
    path = str(tmp_path / "animate-x_ckpt.pth")
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="missing .* keys: output_blocks.3"):
        load_animate_x_unet(path)
