import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(2)

from aa2_core.tiny import write_tiny_moore_files  # noqa: E402


@pytest.fixture(scope="session")
def moore_files(tmp_path_factory):
    """Tiny Moore-AnimateAnyone files (.pth, released key layout)."""
    return write_tiny_moore_files(str(tmp_path_factory.mktemp("moore")))


@pytest.fixture(scope="session")
def loaded(moore_files):
    from aa2_core.checkpoints.loaders import load_denoising_net, load_pose_modulation, load_reference_net

    return dict(
        denoising=load_denoising_net(moore_files["denoising_unet"], moore_files["motion_module"]),
        reference=load_reference_net(moore_files["reference_unet"]),
        pose=load_pose_modulation(moore_files["pose_guider"]),
    )


def inputs(frames=4, h=8, w=8, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    return dict(
        sample=torch.randn(batch, 4, frames, h, w, generator=g),
        context=torch.randn(batch, 1, 32, generator=g),
        ref_latents=torch.randn(batch, 4, h, w, generator=g),
        skeleton=torch.rand(batch * frames, 3, 8 * h, 8 * w, generator=g),
        depth=torch.rand(batch * frames, 1, 8 * h, 8 * w, generator=g),
        environment=torch.randn(batch, 5, frames, h, w, generator=g),
        objects=torch.randn(batch, 4, frames, h, w, generator=g),
    )


def sampler_settings(clip_length=24, motion_frames=None, stitching="motion_frames", context_overlap=None, fusion="pyramid",
                     context_schedule="open", **kw):
    """SamplerSettings with the stitching options given flat (test shorthand; overlaps default to 4, less for short clips)."""
    from aa2_core.pipeline.options import SamplerSettings, Stitching

    motion_frames = min(4, clip_length - 1) if motion_frames is None else motion_frames
    context_overlap = min(4, clip_length - 1) if context_overlap is None else context_overlap
    return SamplerSettings(stitching=Stitching(stitching, clip_length, motion_frames, context_overlap, fusion, context_schedule), **kw)


def sampler_models(loaded):
    from aa2_core.families.moore import MooreModels as Models

    return Models(loaded["denoising"], loaded["pose"])


@torch.no_grad()
def sampler_conditions(reference_net, frames=6, seed=0, environment=False, objects=False, size=8):
    """Random network inputs at ``size x size`` latents; the ReferenceNet runs once on the random latents."""
    from aa2_core.pipeline.prepare import Conditions, Reference

    g = torch.Generator().manual_seed(seed)
    latents, embeds = torch.randn(1, 4, size, size, generator=g), torch.randn(1, 1, 32, generator=g)
    cond = Conditions(Reference(latents, embeds, reference_net(latents, embeds)),
                      skeleton=torch.rand(frames, 8 * size, 8 * size, 3, generator=g))
    if environment:
        cond.environment_latents = torch.randn(frames, 4, size, size, generator=g)
        cond.environment_mask = torch.zeros(frames, size, size)
        cond.environment_mask[:, size // 4 : 3 * size // 4, 3 * size // 8 : 7 * size // 8] = 1
    if objects:
        cond.object_latents = torch.randn(frames, 4, size, size, generator=g)
    return cond


@pytest.fixture(scope="module")
def pack():
    """The node pack imported as ComfyUI imports custom nodes, with ``folder_paths`` (ComfyUI's module)
    replaced by a small stand-in listing a few file names. No ComfyUI needed."""
    import importlib.util
    import types

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fake = types.ModuleType("folder_paths")
    fake.folder_names_and_paths = {"animate_anyone2": (["/x"], set()), "animatediff_models": (["/y"], set())}
    fake.folder_names_and_paths["dwpose"] = (["/z"], {".onnx"})
    fake.folder_names_and_paths["sam2"] = (["/s"], {".safetensors"})
    fake.get_filename_list = lambda folder: {"animate_anyone2": ["denoising_unet.pth", "aa2.safetensors"],
                                             "animatediff_models": ["mm_sd_v15_v2.ckpt"], "dwpose": ["yolox_l.onnx"], "sam2": ["sam2.1_hiera_tiny.safetensors"]}[folder]
    fake.get_input_directory = lambda: "/nonexistent"
    fake.supported_pt_extensions = {".safetensors", ".pth"}
    fake.models_dir = "/models"
    mp = pytest.MonkeyPatch()
    mp.setitem(sys.modules, "folder_paths", fake)
    spec = importlib.util.spec_from_file_location("aa2_pack", os.path.join(root, "__init__.py"), submodule_search_locations=[root])
    module = importlib.util.module_from_spec(spec)
    mp.setitem(sys.modules, "aa2_pack", module)
    spec.loader.exec_module(module)
    yield module
    mp.undo()
