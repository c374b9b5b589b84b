"""SAM2 video segmentation: prompt checks and the chunk plan everywhere; the real `sam2` model (its own
config, random weights) where the package imports."""

import pytest
import torch

from aa2_core.conditions.sam2_video import ObjectPrompt, chunk_plan, config_for, validate_prompts
from aa2_core.errors import AA2Error


def test_missing_package_message(monkeypatch):
    import builtins

    from aa2_core.conditions import sam2_video

    real_import = builtins.__import__

    def no_sam2(name, *args, **kwargs):
        if name.startswith("sam2"):
            raise ImportError("No module named 'sam2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sam2)
    with pytest.raises(AA2Error, match="pip install sam2.*any other MASK node"):
        sam2_video._sam2()


@pytest.mark.parametrize("prompts, message", [
    ([], "at least one object"),
    ([ObjectPrompt(frame=9, points=[[1, 1]], labels=[1])], "outside the video"),
    ([ObjectPrompt(points=[[1, 1], [2, 2]], labels=[1])], "2 points but 1 labels"),
    ([ObjectPrompt()], "points or a box"),
    ([ObjectPrompt(box=[5, 5, 2, 8])], "x0 < x1"),
    ([ObjectPrompt(points=[[40, 1]], labels=[1])], "outside the 32x16 frame"),
    ([ObjectPrompt(frame=0, box=[1, 1, 4, 4]), ObjectPrompt(frame=1, box=[1, 1, 4, 4])], "same frame"),
])
def test_prompt_validation(prompts, message):
    with pytest.raises(AA2Error, match=message):
        validate_prompts(prompts, num_frames=5, height=16, width=32)


def test_chunk_plan_covers_every_frame_with_shared_seams():
    plan = chunk_plan(10, prompt_frame=4, chunk_size=3)
    assert plan == [(4, 7, False), (6, 9, False), (8, 10, False), (2, 5, True), (0, 3, True)]
    covered = set()
    for s, e, _ in plan:
        covered |= set(range(s, e))
    assert covered == set(range(10))
    assert chunk_plan(5, 0, 64) == [(0, 5, False)]


def test_config_detection_from_shapes():
    sd = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(96, 3, 7, 7)}
    sd.update({f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)})
    assert config_for(sd, "sam2_hiera_tiny.pt") == "configs/sam2/sam2_hiera_t.yaml"
    assert config_for(sd, "sam2.1_hiera_tiny.safetensors") == "configs/sam2.1/sam2.1_hiera_t.yaml"
    sd["no_obj_embed_spatial"] = torch.zeros(1, 64)
    assert config_for(sd, "model.pt") == "configs/sam2.1/sam2.1_hiera_t.yaml"
    with pytest.raises(AA2Error, match="not a SAM2 model"):
        config_for({}, "x.pt")


def test_real_sam2_model_per_object_masks(tmp_path):
    try:
        import sam2.build_sam  # noqa: F401
    except Exception as e:
        pytest.skip(f"sam2 is not importable here ({type(e).__name__}); it needs torch + torchvision builds")
    from safetensors.torch import save_file

    from aa2_core.conditions.sam2_video import load_sam2_video_predictor, segment_video

    torch.manual_seed(0)
    predictor = sam2.build_sam.build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu",
                                                          hydra_overrides_extra=["++model.image_size=256"])
    path = str(tmp_path / "sam2.1_hiera_tiny.safetensors")
    save_file({k: v.contiguous() for k, v in predictor.state_dict().items()}, path)
    loaded = load_sam2_video_predictor(path, image_size=256)
    frames = torch.rand(5, 48, 40, 3)
    prompts = [ObjectPrompt(frame=2, points=[[10, 12]], labels=[1]), ObjectPrompt(frame=2, box=[20, 20, 35, 40])]
    chunks, tracked = [], []
    propagate = loaded.propagate_in_video

    def spy(state, **kwargs):  # records which frames SAM2 actually tracked, and for which objects
        for frame_idx, obj_ids, logits in propagate(state, **kwargs):
            tracked.append((state["num_frames"], frame_idx, tuple(obj_ids), tuple(logits.shape)))
            yield frame_idx, obj_ids, logits

    loaded.propagate_in_video = spy
    masks = segment_video(loaded, frames, prompts, chunk_size=3, on_chunk=lambda d, t: chunks.append((d, t)))
    assert masks.shape == (2, 5, 48, 40)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert chunks == [(1, 2), (2, 2)]  # forward chunk (2..4), backward chunk (0..2)
    assert len(tracked) == 6 and all(obj_ids == (0, 1) for _, _, obj_ids, _ in tracked)  # 3 + 3 frames, both objects
    assert all(shape == (2, 1, 48, 40) for *_, shape in tracked)  # masks come back at the video's size


def test_in_memory_state_is_the_state_sam2_builds_from_files(tmp_path):
    """init_state_from_frames gives what sam2's own init_state gives for the same video as a JPEG folder
    (the path sam2 documents): same keys, same kinds of values, same frames and sizes. A sam2 release that
    changes its state layout fails here, not deep inside tracking."""
    try:
        import sam2.build_sam  # noqa: F401
    except Exception as e:
        pytest.skip(f"sam2 is not importable here ({type(e).__name__}); it needs torch + torchvision builds")
    from PIL import Image

    from aa2_core.conditions.sam2_video import _normalised, init_state_from_frames

    torch.manual_seed(0)
    predictor = sam2.build_sam.build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu",
                                                          hydra_overrides_extra=["++model.image_size=64"])
    y, x = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 48), indexing="ij")
    frames = torch.stack([torch.stack([x, y, (x + y + t / 3) % 1 * 0.5], -1) for t in range(3)])  # smooth: filters agree
    for i, frame in enumerate(frames):
        Image.fromarray((frame.numpy() * 255).astype("uint8")).save(tmp_path / f"{i:05d}.jpg", quality=100)
    theirs = predictor.init_state(str(tmp_path), offload_video_to_cpu=True, offload_state_to_cpu=True)
    ours = init_state_from_frames(predictor, _normalised(frames, predictor.image_size, "cpu"), 40, 48)
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        if key == "cached_features":  # sam2 warms frame 0 up front; ours computes it on first use
            continue
        assert type(ours[key]) is type(value), key
        if not isinstance(value, torch.Tensor):
            assert ours[key] == value, key
    assert ours["images"].shape == theirs["images"].shape
    assert (ours["images"].float() - theirs["images"]).abs().mean() < 0.05  # same pictures (JPEG, resize filters apart)
