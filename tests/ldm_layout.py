"""Test fixture: diffusers SD1.5 state dicts -> the original LDM single-file key layout.

diffusers ships only the other direction (LDM -> diffusers), which the loaders use. Writing tiny files
in the LDM layout lets tests push them through that real conversion path; this mapping is the
well-known inverse of it, for SD1.5-shaped UNets (2 resnets per level) and VAEs.
"""

RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))


def _rename(sd, out, old, new, inner=()):
    for k, v in sd.items():
        if k.startswith(old + "."):
            rest = k[len(old) + 1:]
            for a, b in inner:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
            out[new + "." + rest] = v


def unet_to_ldm(sd, levels=4, layers=2, prefix="model.diffusion_model."):
    out = {}
    _rename(sd, out, "time_embedding.linear_1", "time_embed.0")
    _rename(sd, out, "time_embedding.linear_2", "time_embed.2")
    _rename(sd, out, "conv_in", "input_blocks.0.0")
    _rename(sd, out, "conv_norm_out", "out.0")
    _rename(sd, out, "conv_out", "out.2")
    block = 1
    for i in range(levels):
        for j in range(layers):
            _rename(sd, out, f"down_blocks.{i}.resnets.{j}", f"input_blocks.{block}.0", RESNET)
            _rename(sd, out, f"down_blocks.{i}.attentions.{j}", f"input_blocks.{block}.1")
            block += 1
        if i < levels - 1:
            _rename(sd, out, f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{block}.0.op")
            block += 1
    _rename(sd, out, "mid_block.resnets.0", "middle_block.0", RESNET)
    _rename(sd, out, "mid_block.attentions.0", "middle_block.1")
    _rename(sd, out, "mid_block.resnets.1", "middle_block.2", RESNET)
    block = 0
    for i in range(levels):
        has_attn = any(k.startswith(f"up_blocks.{i}.attentions.") for k in sd)
        for j in range(layers + 1):
            _rename(sd, out, f"up_blocks.{i}.resnets.{j}", f"output_blocks.{block}.0", RESNET)
            _rename(sd, out, f"up_blocks.{i}.attentions.{j}", f"output_blocks.{block}.1")
            block += 1
        _rename(sd, out, f"up_blocks.{i}.upsamplers.0.conv", f"output_blocks.{block - 1}.{2 if has_attn else 1}.conv")
    assert len(out) == len(sd), "unmapped UNet keys"
    return {prefix + k: v for k, v in out.items()}


def vae_to_ldm(sd, levels=4, prefix=""):
    vae_resnet = (("conv_shortcut", "nin_shortcut"),)
    attn = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))
    out = {}
    for part in ("encoder", "decoder"):
        _rename(sd, out, f"{part}.conv_in", f"{part}.conv_in")
        _rename(sd, out, f"{part}.conv_out", f"{part}.conv_out")
        _rename(sd, out, f"{part}.conv_norm_out", f"{part}.norm_out")
        _rename(sd, out, f"{part}.mid_block.resnets.0", f"{part}.mid.block_1", vae_resnet)
        _rename(sd, out, f"{part}.mid_block.resnets.1", f"{part}.mid.block_2", vae_resnet)
        _rename(sd, out, f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1", attn)
        for i in range(levels):
            ldm = i if part == "encoder" else levels - 1 - i
            kind = "down" if part == "encoder" else "up"
            for j in range(3):
                _rename(sd, out, f"{part}.{kind}_blocks.{i}.resnets.{j}", f"{part}.{kind}.{ldm}.block.{j}", vae_resnet)
            sampler = "downsample" if part == "encoder" else "upsample"
            _rename(sd, out, f"{part}.{kind}_blocks.{i}.{sampler}rs.0.conv", f"{part}.{kind}.{ldm}.{sampler}.conv")
    _rename(sd, out, "quant_conv", "quant_conv")
    _rename(sd, out, "post_quant_conv", "post_quant_conv")
    for k in list(out):  # LDM VAE attention projections are 1x1 convs
        if ".mid.attn_1." in k and k.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
            out[k] = out[k][:, :, None, None]
    assert len(out) == len(sd), "unmapped VAE keys"
    return {prefix + k: v for k, v in out.items()}
