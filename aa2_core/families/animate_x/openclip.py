"""OpenCLIP's own files as the released Animate-X reads them: key conversion, the text tower's ``zero_y``, the
image input.

The released entrance builds ``FrozenOpenCLIPTextVisualEmbedder`` (``animatex/model/clip_embedder.py``, YAML
``layer: penultimate``) with ``open_clip.create_model_and_transforms("ViT-H-14", pretrained=
"open_clip_pytorch_model.bin")`` (open-clip-torch 2.24.0) and uses it twice:

* **image embedding** ``encode_image(x) = model.visual(x)``: OpenCLIP's ``VisionTransformer`` (conv1 patches, class
  token, positions, ``ln_pre``, resblocks, ``ln_post`` on the class token, ``@ proj``). Its keys convert one to one
  to transformers' ``CLIPVisionModelWithProjection`` (``vision_to_transformers``); the fused ``in_proj_weight`` /
  ``in_proj_bias`` of ``nn.MultiheadAttention`` hold the q, k, v rows in that order (``QKV``).
* **text context** ``_, _, zero_y = clip_encoder(text="")``: ``encode_with_transformer`` runs the token and position
  embeddings, the text resblocks *up to the last-but-one* (``layer_idx`` 1) under OpenCLIP's causal ``attn_mask``,
  then ``ln_final`` on every token: ``(1, 77, width)``. transformers' ``CLIPTextModel`` does exactly that (causal
  mask, ``final_layer_norm`` on the last hidden state) when built with one layer fewer than the file holds, so
  ``penultimate_text_model`` builds it so and never loads the last resblock.

Text towers are read from ``open_clip_pytorch_model.bin`` (keys ``token_embedding.weight``, ``positional_embedding``,
``transformer.resblocks.N.*``, ``ln_final.*``) or from SD2.x's ``v2-1_512-ema-pruned.ckpt`` (the same frozen
OpenCLIP ViT-H/14 text tower under ``cond_stage_model.model.*``). The configs come off the tensor shapes except the
head count, which no shape holds: OpenCLIP's text towers use 64-wide heads; its vision towers 64-wide except the
widths in ``VISION_HEAD_WIDTHS`` (ViT-H/14: 1280 wide, 80-wide heads, 16 heads). OpenCLIP's ViT-H/14 (laion2b) uses
exact GELU (``quick_gelu`` False in its config) and ``nn.LayerNorm``'s eps 1e-5.

**The released image input** (``released_clip_pixels``): the entrance's ``vit_transforms`` -- the 8-bit RGB image
resized to 224x224 by PIL's ``Image.BILINEAR`` (``utils/transforms.Resize``), ``ToTensor`` (/255), ``Normalize``
with the CLIP mean and std; no crop, so the picture is squashed to a square.

Matched to the released code on tiny random weights by ``bench/animate_x_clip_parity.py``
(``tests/test_animate_x_clip.py``).
"""

from __future__ import annotations

import os

import torch

from ...checkpoints.io import SAFETENSORS_EXTENSIONS, read_state_dict, unwrap_state_dict, write_safetensors
from ...errors import CheckpointError

VISION_KEY = "visual.conv1.weight"  # the key that says "OpenCLIP vision tower"
SD2_TEXT_PREFIX = "cond_stage_model.model."  # SD2.x checkpoints: FrozenOpenCLIPEmbedder's open_clip model
TEXT_PREFIXES = ("", SD2_TEXT_PREFIX)
TEXT_KEYS = ("token_embedding.weight", "positional_embedding", "transformer.resblocks.0.attn.in_proj_weight",
             "ln_final.weight")
QKV = ("q", "k", "v")  # row blocks of nn.MultiheadAttention's fused in_proj, in order
VISION_HEAD_WIDTHS = {1280: 80, 1408: 88, 1664: 104}  # open_clip model_configs: ViT-H-14, ViT-g-14, ViT-bigG-14
HEAD_WIDTH = 64  # every other OpenCLIP tower (CLIPVisionCfg.head_width default; text: width // heads = 64)
ACTIVATION = "gelu"  # nn.GELU (open_clip's act_layer when quick_gelu is False, as for ViT-H-14 laion2b)
LAYER_NORM_EPS = 1e-5  # open_clip LayerNorm = nn.LayerNorm defaults

# open_clip's tokenizer (SimpleTokenizer, context_length 77) gives [sot] + encode(text) + [eot], zero-padded to 77;
# encode("") is [] and the ids of <start_of_text> / <end_of_text> in its bpe_simple_vocab_16e6 vocabulary are
# 49406 / 49407. The empty prompt is the only text the released code encodes, so its 77 ids are written here and
# no tokenizer (nor its vocabulary file) is needed. bench/animate_x_clip_parity.py runs the real tokenizer on "".
SOT, EOT, PAD, CONTEXT = 49406, 49407, 0, 77

RESBLOCK = {  # open_clip resblock -> transformers CLIPEncoderLayer (in_proj handled apart)
    "ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
}


def is_open_clip_vision(sd: dict) -> bool:
    return VISION_KEY in sd


def text_prefix(sd: dict) -> str | None:
    """The prefix under which ``sd`` holds an OpenCLIP text tower ("" or ``cond_stage_model.model.``), or None."""
    for prefix in TEXT_PREFIXES:
        if all(prefix + k in sd for k in TEXT_KEYS):
            return prefix
    return None


def _layers(sd: dict, prefix: str) -> int:
    head = prefix + "transformer.resblocks."
    found = {int(k[len(head):].split(".")[0]) for k in sd if k.startswith(head)}
    if not found or found != set(range(len(found))):
        raise CheckpointError(f"OpenCLIP tower: resblocks {sorted(found)} under {head!r} are not numbered 0..n-1")
    return len(found)


def _resblocks(sd: dict, src: str, dst: str, layers: int, out: dict) -> None:
    for i in range(layers):
        s, d = f"{src}transformer.resblocks.{i}.", f"{dst}encoder.layers.{i}."
        for kind in ("weight", "bias"):
            fused = sd[f"{s}attn.in_proj_{kind}"]
            for name, part in zip(QKV, fused.chunk(3, dim=0)):
                out[f"{d}self_attn.{name}_proj.{kind}"] = part
            for a, b in RESBLOCK.items():
                out[f"{d}{b}.{kind}"] = sd[f"{s}{a}.{kind}"]


def _need(sd: dict, keys, source: str, what: str) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        raise CheckpointError(f"{source}: not {what} (missing {', '.join(missing[:4])})")


def vision_to_transformers(sd: dict, source: str = "OpenCLIP vision tower") -> dict[str, torch.Tensor]:
    """open_clip ``visual.*`` keys -> transformers ``CLIPVisionModelWithProjection`` keys."""
    v = "visual."
    _need(sd, [v + k for k in ("conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight",
                               "ln_post.weight", "proj")], source, "an OpenCLIP ViT image tower")
    out = {
        "vision_model.embeddings.patch_embedding.weight": sd[v + "conv1.weight"],
        "vision_model.embeddings.class_embedding": sd[v + "class_embedding"],
        "vision_model.embeddings.position_embedding.weight": sd[v + "positional_embedding"],
        "visual_projection.weight": sd[v + "proj"].t().contiguous(),  # x @ proj == Linear with weight proj^T
    }
    for a, b in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for kind in ("weight", "bias"):
            out[f"vision_model.{b}.{kind}"] = sd[f"{v}{a}.{kind}"]
    _resblocks(sd, v, "vision_model.", _layers(sd, v), out)
    return out


def vision_heads(width: int) -> int:
    return width // VISION_HEAD_WIDTHS.get(width, HEAD_WIDTH) or 1


def clip_vision_model(tsd: dict, source: str, heads: int | None = None):
    """transformers-layout vision tower (``vision_model.*``, ``visual_projection.weight``) -> an eval
    ``CLIPVisionModelWithProjection`` with OpenCLIP ViT's activation and eps; config off the shapes."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from ...checkpoints.loaders import build_loaded

    patch = tsd["vision_model.embeddings.patch_embedding.weight"]
    width, positions = patch.shape[0], tsd["vision_model.embeddings.position_embedding.weight"].shape[0]
    grid = round((positions - 1) ** 0.5)
    if grid * grid != positions - 1:
        raise CheckpointError(f"{source}: {positions} positions are not a square grid plus the class token")
    layers = len({k.split(".")[3] for k in tsd if k.startswith("vision_model.encoder.layers.")})
    config = CLIPVisionConfig(
        hidden_size=width, intermediate_size=tsd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        projection_dim=tsd["visual_projection.weight"].shape[0], num_hidden_layers=layers,
        num_attention_heads=heads or vision_heads(width), patch_size=patch.shape[-1], image_size=patch.shape[-1] * grid,
        num_channels=patch.shape[1], hidden_act=ACTIVATION, layer_norm_eps=LAYER_NORM_EPS)
    tsd = {k: v for k, v in tsd.items() if not k.endswith("position_ids")}
    return build_loaded(lambda: CLIPVisionModelWithProjection(config), tsd, source)


def text_to_transformers(sd: dict, prefix: str, layers: int) -> dict[str, torch.Tensor]:
    """The first ``layers`` resblocks of an open_clip text tower (keys under ``prefix``) + embeddings + ``ln_final``
    -> transformers ``CLIPTextModel`` keys."""
    out = {
        "embeddings.token_embedding.weight": sd[prefix + "token_embedding.weight"],
        "embeddings.position_embedding.weight": sd[prefix + "positional_embedding"],
        "final_layer_norm.weight": sd[prefix + "ln_final.weight"],
        "final_layer_norm.bias": sd[prefix + "ln_final.bias"],
    }
    _resblocks(sd, prefix, "", layers, out)
    return out


def penultimate_text_model(sd: dict, source: str = "OpenCLIP text tower", prefix: str | None = None):
    """``CLIPTextModel`` whose output is the released ``encode_with_transformer`` with ``layer="penultimate"``:
    the file's text resblocks but the last, then ``ln_final`` (float32, eval)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from ...checkpoints.loaders import build_loaded

    prefix = text_prefix(sd) if prefix is None else prefix
    if prefix is None:
        raise CheckpointError(f"{source}: no OpenCLIP text tower (expected {', '.join(TEXT_KEYS)}, bare or under "
                              f"{SD2_TEXT_PREFIX!r})")
    layers = _layers(sd, prefix)
    if layers < 2:
        raise CheckpointError(f"{source}: the text tower has {layers} resblock(s); the penultimate layer needs 2")
    tsd = {k: v.float() for k, v in text_to_transformers(sd, prefix, layers - 1).items()}
    vocab, width = tsd["embeddings.token_embedding.weight"].shape
    context = tsd["embeddings.position_embedding.weight"].shape[0]
    if vocab <= EOT or context != CONTEXT:
        raise CheckpointError(f"{source}: a text tower of {vocab} tokens x {context} positions is not OpenCLIP's "
                              f"(vocabulary {EOT + 1}, context {CONTEXT})")
    config = CLIPTextConfig(
        vocab_size=vocab, hidden_size=width, intermediate_size=tsd["encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=layers - 1, num_attention_heads=max(1, width // HEAD_WIDTH), max_position_embeddings=context,
        hidden_act=ACTIVATION, layer_norm_eps=LAYER_NORM_EPS, bos_token_id=SOT, eos_token_id=EOT, pad_token_id=PAD)
    return build_loaded(lambda: CLIPTextModel(config), tsd, source)


def empty_prompt_ids() -> torch.Tensor:
    """``open_clip.tokenize("")``: ``(1, 77)`` = [49406, 49407, 0, ..., 0] (see ``SOT`` above for why it is built)."""
    ids = torch.full((1, CONTEXT), PAD, dtype=torch.long)
    ids[0, 0], ids[0, 1] = SOT, EOT
    return ids


@torch.no_grad()
def zero_y_from_state_dict(sd: dict, source: str = "OpenCLIP text tower") -> torch.Tensor:
    """The released ``zero_y``: the empty prompt through the text tower's penultimate layer + ``ln_final``,
    ``(1, 77, width)`` float32 on the CPU."""
    model = penultimate_text_model(sd, source)
    return model(input_ids=empty_prompt_ids()).last_hidden_state.float()


def read_text_tower(path: str, what: str = "OpenCLIP text tower") -> dict[str, torch.Tensor] | None:
    """The OpenCLIP text-tower tensors of a file (keys as in the file), or None when it holds none. Reads only those
    tensors: safetensors by key, pickles memory-mapped (``weights_only=True``) when torch's zip format allows."""
    path = os.fspath(path)
    if path.lower().endswith(SAFETENSORS_EXTENSIONS):
        from safetensors import safe_open

        try:
            with safe_open(path, framework="pt") as f:
                keys = list(f.keys())
                prefix = text_prefix(dict.fromkeys(keys))
                if prefix is None:
                    return None
                return {k: f.get_tensor(k) for k in keys
                        if k.startswith(prefix) and not k.startswith(prefix + "visual.")}
        except Exception:  # not readable this way: the full reader gives the user-facing error
            sd = read_state_dict(path, what)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            sd = unwrap_state_dict(state, path, what)
        except Exception:  # old (non-zip) pickles cannot be memory-mapped; the full reader reports real errors
            sd = read_state_dict(path, what)
    prefix = text_prefix(sd)
    if prefix is None:
        return None
    return {k: v for k, v in sd.items() if k.startswith(prefix) and not k.startswith(prefix + "visual.")}


def save_zero_y(zero_y: torch.Tensor, path: str) -> str:
    """Write ``zero_y`` as ``animate_x_zero_y.safetensors`` (key ``zero_y``), atomically."""
    write_safetensors({"zero_y": zero_y.float().contiguous()}, os.fspath(path),
                      metadata={"format": "pt", "aa2_family": "animate_x"})
    return path


def released_clip_pixels(image: torch.Tensor, size: int = 224) -> torch.Tensor:
    """IMAGE ``[1, H, W, 3]`` in [0, 1] -> the released entrance's ``vit_transforms`` output ``(1, 3, size, size)``:
    8-bit RGB, PIL ``resize((size, size), Image.BILINEAR)``, ``ToTensor`` (/255), ``Normalize`` (CLIP mean/std)."""
    import numpy as np
    from PIL import Image

    from ...models.image_encoder import CLIP_MEAN, CLIP_STD

    u8 = (image[0].detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    square = np.asarray(Image.fromarray(u8, "RGB").resize((size, size), Image.BILINEAR))
    x = torch.from_numpy(square.copy()).permute(2, 0, 1).float().div(255)[None]
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std
