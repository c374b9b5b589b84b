"""Load the files users have (Moore-AnimateAnyone, AnimateDiff, SD1.5, VAE, CLIP vision) into our models.

Every loader takes a path, reads the config off the tensor shapes, builds the model on the ``meta``
device, checks the keys and shapes, and only then assigns the tensors: a wrong or truncated file fails
with a message that names it, says what it looks like, and lists the first missing or unexpected keys.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_animatediff_checkpoint_to_diffusers,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)
from torch import nn

from ..errors import AA2Error, CheckpointError, describe_keys
from ..models import DenoisingNet, MotionConfig, MotionModuleSet, PoseGuider, PoseModulation, ReferenceNet
from . import detect
from .io import read_metadata, read_state_dict

REFERENCE_OPTIONAL = ("conv_norm_out.", "conv_out.")


def check_keys(model: nn.Module, sd: dict, source: str, optional: tuple[str, ...] = ()) -> None:
    """Raise a readable error unless ``sd`` fits ``model`` (keys and shapes)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd and not k.startswith(optional) and not k.endswith("pos_embed.pe")]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items() if k in sd and sd[k].shape != v.shape]
    raise_unless_fits(f"{source}: the file does not fit the model it should load into (file looks like: {detect.kind_of(sd)}).",
                      missing, unexpected, wrong)


def raise_unless_fits(header: str, missing: list, unexpected: list, wrong: list) -> None:
    """One readable error for every key/shape mismatch between a file and the network it loads into."""
    if missing or unexpected or wrong:
        parts = [header]
        if missing:
            parts.append(f"missing {len(missing)} keys: {describe_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {describe_keys(unexpected)}")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches: {'; '.join(wrong[:4])}")
        raise CheckpointError("\n".join(parts))


def build_loaded(factory, sd: dict, source: str, optional: tuple[str, ...] = ()) -> nn.Module:
    """Build ``factory()`` with its parameters on the meta device, check ``sd`` against it, then assign.

    Buffers are built for real, so fixed ones (sinusoidal positions, position ids) need no file copy.
    Parameters under ``optional`` prefixes may stay on meta; the caller decides what to do with them.
    """
    with parameters_on_meta(), library_errors(source, "building the model it describes", "widths the model accepts"):
        model = factory()
    check_keys(model, sd, source, optional)
    model.load_state_dict(sd, strict=False, assign=True)
    still_meta = [n for n, p in model.named_parameters() if p.is_meta and not n.startswith(optional)]
    if still_meta:
        raise CheckpointError(f"{source}: no weights for {describe_keys(still_meta)}")
    return model.eval()


@contextmanager
def parameters_on_meta():
    """Create parameters on the meta device (no memory, no init cost), like accelerate's init_empty_weights."""
    register = nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register(module, name, param)
        if param is not None:
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


@contextmanager
def library_errors(source: str, doing: str, expected: str):
    """Library converters and constructors raise bare KeyError/ValueError on unexpected files: name the file."""
    try:
        yield
    except AA2Error:
        raise
    except (KeyError, ValueError, IndexError) as e:
        reason = f"missing key {e.args[0]!r}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise CheckpointError(f"{source}: {doing} failed ({reason}); expected {expected}") from e


def _present(converted: dict) -> dict:
    """diffusers' LDM converters map some absent keys to None: drop them, so they are reported as missing."""
    return {k: v for k, v in converted.items() if v is not None}


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{what}: could not read {path} as JSON ({e})") from e


# ---- UNets -------------------------------------------------------------------------------------
def read_unet_state_dict(path: str, what: str) -> tuple[dict, dict]:
    """(config, diffusers-keyed state dict) of a UNet file or diffusers folder, SD1.5 single files included."""
    if os.path.isdir(path):
        return _read_diffusers_folder(path, "unet", what)
    sd, source = read_state_dict(path, what), f"{what} ({path})"
    if detect.kind_of(sd) == "sd15_single_file":
        original = detect.ldm_original_config(sd, source)
        with library_errors(source, "converting the SD1.5 single file", "a complete SD1.5 UNet in the LDM layout"):
            config = create_unet_diffusers_config_from_ldm(original, sd)
            return config, _present(convert_ldm_unet_checkpoint(sd, config))
    return detect.unet_config(sd, source), sd


def _read_diffusers_folder(path: str, subfolder: str, what: str) -> tuple[dict, dict]:
    folder = os.path.join(path, subfolder) if os.path.isdir(os.path.join(path, subfolder)) else path
    config_path = os.path.join(folder, "config.json")
    weights = [
        os.path.join(folder, name)
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")
        if os.path.isfile(os.path.join(folder, name))
    ]
    if not os.path.isfile(config_path) or not weights:
        raise CheckpointError(
            f"{what}: {path} is a folder but not a diffusers model folder (expected {subfolder}/config.json and "
            "diffusion_pytorch_model.safetensors)"
        )
    config = {k: v for k, v in _read_json(config_path, what).items() if not k.startswith("_")}
    return config, read_state_dict(weights[0], what)


def split_motion_keys(sd: dict) -> tuple[dict, dict]:
    """A 3D UNet file may carry its motion modules: split them off (spatial, motion)."""
    motion = {k: v for k, v in sd.items() if ".motion_modules." in k}
    return {k: v for k, v in sd.items() if k not in motion}, motion


def load_unet(path: str, what: str = "UNet", optional: tuple[str, ...] = ()) -> tuple[UNet2DConditionModel, dict]:
    """Returns the 2D UNet and any motion-module tensors the file also held."""
    config, sd = read_unet_state_dict(path, what)
    sd, motion = split_motion_keys(sd)
    unet = build_loaded(lambda: UNet2DConditionModel(**config), sd, f"{what} ({path})", optional)
    return unet, motion


def load_reference_net(path: str, fusion_blocks: str = "full") -> ReferenceNet:
    unet, _ = load_unet(path, "ReferenceNet", optional=REFERENCE_OPTIONAL)
    net = ReferenceNet(unet, fusion_blocks)
    if unet.conv_out.weight.is_meta or unet.conv_norm_out.weight.is_meta:
        net.drop_output_head()
    return net


def load_denoising_net(path: str, motion_path: str | None = None, fusion_blocks: str = "full") -> DenoisingNet:
    unet, motion_sd = load_unet(path, "denoising UNet", optional=())
    motion = None
    if motion_path:
        motion = load_motion_modules(motion_path)
    elif motion_sd:
        motion = motion_modules_from_state_dict(motion_sd, f"motion modules inside {path}")
    if motion is not None and tuple(motion.config.block_out_channels) != tuple(unet.config.block_out_channels):
        raise CheckpointError(
            f"motion module {motion_path or path} is for UNet channels {motion.config.block_out_channels}, "
            f"but the denoising UNet {path} has {tuple(unet.config.block_out_channels)}"
        )
    return DenoisingNet(unet, motion, fusion_blocks)


# ---- motion modules ------------------------------------------------------------------------------
def load_motion_modules(path: str, num_attention_heads: int | None = None) -> MotionModuleSet:
    sd = read_state_dict(path, "motion module")
    return motion_modules_from_state_dict(sd, f"motion module ({path})", num_attention_heads)


def motion_modules_from_state_dict(sd: dict, source: str, num_attention_heads: int | None = None) -> MotionModuleSet:
    """Original AnimateDiff / Moore keys or diffusers ``MotionAdapter`` keys -> ``MotionModuleSet``."""
    if detect.kind_of(sd) != "motion_module":
        raise CheckpointError(f"{source}: not an AnimateDiff motion module (looks like: {detect.kind_of(sd)})")
    original_len = detect.original_motion_pe_length(sd)
    if any(".temporal_transformer." in k for k in sd):
        sd = convert_animatediff_checkpoint_to_diffusers(sd)
    config = detect.motion_config(sd, source)
    if original_len is not None:
        config = MotionConfig(**{**config.to_dict(), "max_seq_length": original_len})
    if num_attention_heads:
        config = MotionConfig(**{**config.to_dict(), "num_attention_heads": num_attention_heads})
    sd = {k: v for k, v in sd.items() if not k.endswith("pos_embed.pe")}
    return build_loaded(lambda: MotionModuleSet(config), sd, source)


# ---- pose ----------------------------------------------------------------------------------------
def load_pose_guider(path: str) -> PoseGuider:
    sd = read_state_dict(path, "pose guider")
    cfg = detect.pose_guider_config(sd, f"pose guider ({path})")
    return build_loaded(
        lambda: PoseGuider(cfg["embedding_channels"], cfg["in_channels"], cfg["block_out_channels"]),
        sd,
        f"pose guider ({path})",
    )


def load_pose_modulation(path: str) -> PoseModulation:
    """The Moore pose guider wrapped with (untrained) AA2 depth/temporal modules; AA2 weights load later."""
    return PoseModulation(load_pose_guider(path)).eval()


# ---- VAE -----------------------------------------------------------------------------------------
def load_vae(path: str) -> AutoencoderKL:
    source = f"VAE ({path})"
    if os.path.isdir(path):
        config, sd = _read_diffusers_folder(path, "vae", "VAE")
    else:
        sd = read_state_dict(path, "VAE")
        kind = detect.kind_of(sd)
        if kind in ("vae_ldm", "sd15_single_file"):
            original = {"model": {"params": {"first_stage_config": {"params": {"ddconfig": detect.vae_ldm_params(sd)}}}}}
            with library_errors(source, "converting the LDM VAE", "a complete VAE in the LDM layout"):
                config = create_vae_diffusers_config_from_ldm(original, sd)
                sd = _present(convert_ldm_vae_checkpoint(sd, config))
            config["norm_num_groups"] = detect.norm_groups(config["block_out_channels"])  # diffusers assumes 32
        elif kind == "vae_diffusers":
            config = _vae_diffusers_config(sd, source)
        else:
            raise CheckpointError(f"{source}: not a VAE (looks like: {kind}; keys: {describe_keys(sd)})")
    return build_loaded(lambda: AutoencoderKL(**config), sd, source)


def _vae_diffusers_config(sd: dict, source: str) -> dict:
    levels = detect._indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    if not levels:
        raise CheckpointError(f"{source}: no encoder.down_blocks.* or encoder.down.* keys (expected a VAE)")
    expected = "a diffusers AutoencoderKL"
    first_resnets = [f"encoder.down_blocks.{i}.resnets.0.conv2.weight" for i in levels]
    widths = tuple(detect.require(sd, key, source, expected).shape[0] for key in first_resnets)
    return dict(
        in_channels=sd["encoder.conv_in.weight"].shape[1],
        out_channels=detect.require(sd, "decoder.conv_out.weight", source, expected).shape[0],
        down_block_types=("DownEncoderBlock2D",) * len(levels),
        up_block_types=("UpDecoderBlock2D",) * len(levels),
        block_out_channels=widths,
        layers_per_block=len(detect._indices(sd, r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")),
        latent_channels=sd["decoder.conv_in.weight"].shape[1],
        norm_num_groups=detect.norm_groups(widths),
    )


# ---- CLIP image encoder --------------------------------------------------------------------------
# widths do not fix the head count: ViT-B, ViT-L/14, ViT-H/14, bigG
CLIP_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}
# OpenAI's CLIP (ViT-B, ViT-L: sd-image-variations' encoder) uses quick_gelu; the LAION OpenCLIP ViT-H and ViT-bigG
# exact GELU (as ComfyUI's clip_vision_config_h.json / _g.json say)
CLIP_ACTIVATIONS = {1280: "gelu", 1664: "gelu"}
CLIP_REQUIRED = (
    "vision_model.embeddings.patch_embedding.weight",
    "vision_model.embeddings.position_embedding.weight",
    "vision_model.encoder.layers.0.mlp.fc1.weight",
    "visual_projection.weight",
)


def load_clip_vision(path: str):
    """CLIP vision tower with projection (sd-image-variations ``image_encoder`` or a ComfyUI clip_vision file)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if os.path.isdir(path):
        folder = os.path.join(path, "image_encoder") if os.path.isdir(os.path.join(path, "image_encoder")) else path
        try:
            return CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True).eval()
        except Exception as e:
            raise CheckpointError(f"CLIP vision ({path}): not a transformers CLIP vision folder ({e})") from e
    sd = read_state_dict(path, "CLIP vision")
    sd = {k: v for k, v in sd.items() if k.startswith(("vision_model.", "visual_projection."))}
    missing = [k for k in CLIP_REQUIRED if k not in sd]
    if missing:
        raise CheckpointError(
            f"CLIP vision ({path}): expected a CLIP vision model with projection (missing {', '.join(missing)})"
        )
    patch = sd["vision_model.embeddings.patch_embedding.weight"]
    hidden, positions = patch.shape[0], sd["vision_model.embeddings.position_embedding.weight"].shape[0]
    config = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        projection_dim=sd["visual_projection.weight"].shape[0],
        num_hidden_layers=len(detect._indices(sd, r"vision_model\.encoder\.layers\.(\d+)\.")),
        num_attention_heads=clip_heads(path, hidden),
        hidden_act=clip_activation(path, hidden),
        patch_size=patch.shape[-1],
        image_size=patch.shape[-1] * round((positions - 1) ** 0.5),
    )
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    return build_loaded(lambda: CLIPVisionModelWithProjection(config), sd, f"CLIP vision ({path})")


def clip_heads(path: str, hidden: int) -> int:
    """Attention heads of a CLIP vision file: as the file or a config.json beside it states, else known by width."""
    heads = _stated_clip_heads(path, hidden) or CLIP_HEADS.get(hidden) or (hidden // 64 if hidden % 64 == 0 else None)
    if heads is None:
        raise CheckpointError(
            f"CLIP vision ({path}): width {hidden} is none of the known CLIP models ({', '.join(map(str, CLIP_HEADS))}) "
            "nor a multiple of 64, so its number of attention heads is unknown; expected num_attention_heads in the "
            "file's metadata or in a transformers config.json beside it"
        )
    if hidden % heads:
        raise CheckpointError(f"CLIP vision ({path}): {heads} attention heads do not divide the width {hidden}")
    return heads


def clip_activation(path: str, hidden: int) -> str:
    """The MLP activation of a CLIP vision file: as its metadata or a config.json beside it states, else by width
    (``CLIP_ACTIVATIONS``; OpenAI's quick_gelu otherwise). A wrong one still loads and gives other embeddings."""
    from transformers.activations import ACT2FN

    stated = read_metadata(path).get("hidden_act") or _beside_config(path, hidden).get("hidden_act")
    act = stated or CLIP_ACTIVATIONS.get(hidden, "quick_gelu")
    if act not in ACT2FN:
        raise CheckpointError(f"CLIP vision ({path}): hidden_act {act!r} is not an activation transformers knows; "
                              "expected gelu or quick_gelu")
    return act


def _beside_config(path: str, hidden: int) -> dict:
    """The vision config in a config.json next to ``path`` when it describes a model of this width, else {}."""
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if not os.path.isfile(config_path):
        return {}
    config = _read_json(config_path, "CLIP vision")
    config = config.get("vision_config", config)
    return config if config.get("hidden_size") == hidden else {}  # else the config of another model in the folder


def _stated_clip_heads(path: str, hidden: int) -> int | None:
    metadata = read_metadata(path)
    if "num_attention_heads" in metadata:
        return _head_count(metadata["num_attention_heads"], f"CLIP vision ({path}): metadata num_attention_heads")
    config = _beside_config(path, hidden)
    if "num_attention_heads" not in config:
        return None
    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    return _head_count(config["num_attention_heads"], f"CLIP vision: num_attention_heads in {config_path}")


def _head_count(value, where: str) -> int:
    heads = int(value) if str(value).isdigit() else 0
    if heads < 1:
        raise CheckpointError(f"{where} is {value!r}; expected a positive whole number")
    return heads
