"""Low VRAM inside the real ComfyUI, on the CPU: ComfyUI's partial loading streams our layers (weights left
on the offload device, cast to the input's device at each call), and the result equals a full load's.

On a CPU the load and offload devices are the same, so "offloaded" is read off ComfyUI's own state: the
layers it put in cast mode, the bytes it counts as loaded, and the casts that actually ran.
"""

import sys
from contextlib import contextmanager
from importlib import import_module

import pytest
import torch

from conftest import comfyui_path

comfyui_path()

FRAMES, STEPS, LATENT = 6, 2, 8  # two 4-frame clips (1 motion frame), 8x8 latents


@pytest.fixture(scope="module")
def aa2(comfy):
    """The tiny model set through our loader node, and the pack's own modules (imported as ComfyUI did)."""
    nodes, _ = comfy
    loader = nodes.NODE_CLASS_MAPPINGS["AA2ModelLoader"]
    pack = sys.modules[loader.__module__].__package__.rsplit(".", 1)[0]
    (model,) = loader().load("denoising_unet.pth", "reference_unet.pth", "pose_guider.pth", "motion_module.pth",
                             "full", "fp32", image_encoder="image_encoder.safetensors")
    return model, lambda name: import_module(f"{pack}.{name}")


def weight_layers(model):
    """Leaf modules that hold weights: what ComfyUI's partial loading must be able to stream."""
    return [m for m in model.modules() if not any(m.children()) and any(True for _ in m.parameters(recurse=False))]


def cast_mode(model):
    return [m for m in model.modules() if getattr(m, "comfy_cast_weights", False)]


@contextmanager
def comfy_novram():
    """ComfyUI's ``--novram`` state for the next ``load_models_gpu``. ComfyUI never streams to a CPU
    "GPU" (it loads fully there), so for the load only it is told the CPU is not one."""
    import comfy.model_management as mm

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mm, "vram_state", mm.VRAMState.NO_VRAM)
        mp.setattr(mm, "is_device_cpu", lambda device: False)
        yield


@contextmanager
def counting_casts():
    """Every layer that goes through ComfyUI's cast (``comfy.ops.cast_bias_weight``), and every weight
    layer that runs at all."""
    import comfy.ops

    cast, ran = set(), set()
    real = comfy.ops.cast_bias_weight

    def spy(s, *args, **kwargs):
        cast.add(id(s))
        return real(s, *args, **kwargs)

    def seen(module, args):
        if any(True for _ in module.parameters(recurse=False)) and not any(module.children()):
            ran.add(id(module))

    hook = torch.nn.modules.module.register_module_forward_pre_hook(seen)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(comfy.ops, "cast_bias_weight", spy)
        try:
            yield cast, ran
        finally:
            hook.remove()


def conditions(aa2_core, reference_net):
    g = torch.Generator().manual_seed(0)
    prepare = aa2_core("aa2_core.pipeline.prepare")
    latents, embeds = torch.randn(1, 4, LATENT, LATENT, generator=g), torch.randn(1, 1, 32, generator=g)
    with torch.no_grad():
        tokens = reference_net(latents, embeds)
    cond = prepare.Conditions(prepare.Reference(latents, embeds, tokens),
                              skeleton=torch.rand(FRAMES, 8 * LATENT, 8 * LATENT, 3, generator=g))
    cond.environment_latents = torch.randn(FRAMES, 4, LATENT, LATENT, generator=g)
    cond.environment_mask = torch.zeros(FRAMES, LATENT, LATENT)
    cond.environment_mask[:, 2:6, 3:7] = 1
    cond.object_latents = torch.randn(FRAMES, 4, LATENT, LATENT, generator=g)
    return cond


def sample(aa2_core, patchers, cond):
    options, sampler = aa2_core("aa2_core.pipeline.options"), aa2_core("aa2_core.pipeline.sampler")
    settings = options.SamplerSettings(steps=STEPS, cfg=3.5, seed=3,
                                       stitching=options.Stitching(clip_length=4, motion_frames=1))
    models = aa2_core("aa2_core.families.moore").MooreModels(patchers["denoising"].model, patchers["pose"].model)
    return sampler.Sampler(models, settings).sample(cond)


def unload_all():
    import comfy.model_management as mm

    mm.unload_all_models()


def test_every_weight_layer_is_streamable(aa2):
    model, _ = aa2
    for name, patcher in model["patchers"].items():
        layers = weight_layers(patcher.model)
        plain = [type(m).__name__ for m in layers if not hasattr(m, "comfy_cast_weights")]
        assert layers and not plain, f"{name}: layers ComfyUI cannot stream: {sorted(set(plain))}"


def test_novram_streams_every_layer_and_samples_as_a_full_load(aa2):
    model, aa2_core = aa2
    bridge, patchers = aa2_core("nodes.comfy_bridge"), model["patchers"]
    den, pose = patchers["denoising"], patchers["pose"]
    unload_all()
    bridge.load_on_device(patchers["reference"])
    cond = conditions(aa2_core, patchers["reference"].model)

    bridge.load_on_device(den, pose)  # the CPU: a full load
    assert not cast_mode(den.model) and den.loaded_size() == den.model_size()
    full = sample(aa2_core, patchers, cond)
    unload_all()

    with comfy_novram():
        bridge.load_on_device(den, pose, memory_required=2**20)
    try:
        for p in (den, pose):  # every weight layer left offloaded, in cast mode; nothing counted as loaded
            assert p.model.model_lowvram and p.loaded_size() == 0
            assert len(cast_mode(p.model)) == len(weight_layers(p.model)) > 0
        with counting_casts() as (cast, ran):
            streamed = sample(aa2_core, patchers, cond)
        assert ran and cast == ran  # every weight layer that ran took its weights through ComfyUI's cast
    finally:
        unload_all()
    assert not cast_mode(den.model)  # ComfyUI restored the layers on unload
    assert torch.equal(streamed, full)  # same kernels on the same weights: bit for bit


def test_partial_load_mixes_loaded_and_streamed_layers(aa2):
    """A budget of half the ReferenceNet: ComfyUI loads the largest layers that fit and streams the rest;
    the reference tokens equal a full load's."""
    import comfy.model_management as mm

    model, aa2_core = aa2
    patcher = model["patchers"]["reference"]
    g = torch.Generator().manual_seed(1)
    latents, embeds = torch.randn(1, 4, LATENT, LATENT, generator=g), torch.randn(1, 1, 32, generator=g)
    unload_all()
    aa2_core("nodes.comfy_bridge").load_on_device(patcher)
    with torch.no_grad():
        full = patcher.model(latents, embeds)
    unload_all()

    loaded = mm.LoadedModel(patcher)
    loaded.model_load(lowvram_model_memory=patcher.model_size() // 2)  # what load_models_gpu does with its budget
    try:
        streamed, layers = len(cast_mode(patcher.model)), len(weight_layers(patcher.model))
        assert 0 < streamed < layers and 0 < patcher.loaded_size() <= patcher.model_size() // 2
        with torch.no_grad():
            partial = patcher.model(latents, embeds)
    finally:
        patcher.detach()
    assert full.keys() == partial.keys() and all(torch.equal(full[k], partial[k]) for k in full)


def test_unstreamable_pieces_follow_the_load_device(aa2):
    """What ComfyUI neither loads nor casts (the blend gates beside their conv, the positional tables) is
    moved to the load device after ComfyUI's load; streamed weights stay on the offload device. The meta
    device stands in for a GPU (a fresh model: it cannot come back from there)."""
    _, aa2_core = aa2
    bridge, models, tiny = aa2_core("nodes.comfy_bridge"), aa2_core("aa2_core.models"), aa2_core("aa2_core.tiny")
    net = models.DenoisingNet(tiny.tiny_unet(0), tiny.tiny_motion())
    patcher = bridge.model_patcher(net, torch.device("meta"), torch.device("cpu"))
    patcher.load(torch.device("meta"), lowvram_model_memory=0.1)  # what --novram asks for
    assert len(cast_mode(net)) == len(weight_layers(net))
    assert all(p.device.type == "cpu" for m in weight_layers(net) for p in m.parameters(recurse=False))
    assert net.spatial_blend_mid[0].gate.device.type == "meta"
    buffers = dict(net.named_buffers())
    assert buffers and all(b.device.type == "meta" for b in buffers.values())


def test_load_on_device_leaves_the_budget_to_comfyui(aa2, monkeypatch):
    """No forced full load: ComfyUI picks the weight budget, told how much the activations need."""
    import comfy.model_management as mm

    model, aa2_core = aa2
    calls = []
    monkeypatch.setattr(mm, "load_models_gpu", lambda models, **kw: calls.append(kw))
    aa2_core("nodes.comfy_bridge").load_on_device(model["patchers"]["pose"], memory_required=123)
    assert calls == [{"memory_required": 123}]


def test_activation_estimate_follows_the_clip_not_the_video(aa2):
    model, aa2_core = aa2
    options, estimate = aa2_core("aa2_core.pipeline.options"), aa2_core("nodes.sampler").activation_bytes
    cond = conditions(aa2_core, model["patchers"]["reference"].model)
    long = conditions(aa2_core, model["patchers"]["reference"].model)
    long.skeleton = torch.zeros(480, 1, 1, 3)

    def settings(**kw):
        return options.SamplerSettings(cfg=3.5, stitching=options.Stitching(clip_length=4, motion_frames=1), **kw)

    tokens = 3 * 4 * sum(t.numel() for t in cond.reference.tokens.values())
    batched = estimate(settings(), cond, torch.float32)
    assert estimate(settings(), long, torch.float32) == batched > tokens
    assert estimate(settings(cfg_batch=False), cond, torch.float32) - tokens == pytest.approx((batched - tokens) / 2)


def test_streamed_models_compute_on_the_load_device(aa2):
    """Every weight left on the CPU, the meta device as the GPU: pose features and a denoising call (with
    environment, objects and reference tokens) run on meta inputs. A layer that read its weights without
    ComfyUI's cast, or a buffer left behind, would mix devices and fail."""
    _, aa2_core = aa2
    bridge, models, tiny = aa2_core("nodes.comfy_bridge"), aa2_core("aa2_core.models"), aa2_core("aa2_core.tiny")
    meta, cpu = torch.device("meta"), torch.device("cpu")
    net = models.DenoisingNet(tiny.tiny_unet(0), tiny.tiny_motion())
    pose = models.PoseModulation(tiny.tiny_pose_guider())
    for model in (net, pose):
        bridge.model_patcher(model, meta, cpu).load(meta, lowvram_model_memory=0.1)
    f, h, w = 4, LATENT, LATENT
    with torch.no_grad():
        features = pose(torch.rand(f, 3, 8 * h, 8 * w, device=meta), torch.rand(f, 1, 8 * h, 8 * w, device=meta), num_frames=f)
        layers = dict(net.unet.named_modules())
        kv = net.reference_kv({name: torch.randn(1, 16, layers[name].to_k.in_features, device=meta) for name in net.fused_layers})
        out = net(torch.randn(1, 4, f, h, w, device=meta), 999, torch.randn(1, 1, 32, device=meta), pose_features=features,
                  environment=torch.randn(1, 5, f, h, w, device=meta),
                  object_features=net.encode_objects(torch.randn(1, 4, f, h, w, device=meta)), reference=kv)
    assert out.device == meta and out.shape == (1, 4, f, h, w)
    assert all(p.device == cpu for m in (net, pose) for layer in weight_layers(m) for p in layer.parameters(recurse=False))
