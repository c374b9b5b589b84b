"""Depth Anything through transformers, on a tiny randomly initialised model saved to a temp folder."""

import json

import numpy as np
import pytest
import torch

from aa2_core.conditions.depth import estimate_depth, load_depth_anything
from aa2_core.errors import AA2Error

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_depth_dir(tmp_path_factory):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        image_size=28, patch_size=14, out_features=["stage1", "stage2"], reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=16, reassemble_factors=[1, 1],
        neck_hidden_sizes=[8, 16], fusion_hidden_size=8, head_hidden_size=8, patch_size=14,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("depth_anything")
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    processor = DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14)
    processor.save_pretrained(folder)
    return folder


def test_estimate_depth_is_normalised_frame_sized_and_batch_independent(tiny_depth_dir):
    estimator = load_depth_anything(str(tiny_depth_dir))
    frames = torch.rand(5, 20, 30, 3, generator=torch.Generator().manual_seed(1))
    depth = estimate_depth(estimator, frames, batch_size=2)
    assert isinstance(depth, torch.Tensor) and depth.shape == (5, 20, 30) and depth.dtype == torch.float32
    flat = depth.reshape(5, -1)
    np.testing.assert_allclose(flat.min(1).values, 0.0, atol=1e-6)
    np.testing.assert_allclose(flat.max(1).values, 1.0, atol=1e-6)
    one_by_one = estimate_depth(estimator, frames, batch_size=1)
    torch.testing.assert_close(depth, one_by_one, atol=1e-5, rtol=0)
    as_uint8 = estimate_depth(estimator, (frames.numpy() * 255).round().astype(np.uint8), batch_size=5)
    assert isinstance(as_uint8, np.ndarray) and as_uint8.shape == (5, 20, 30)
    # "clip": one affine map for the whole clip, so each frame renormalised alone gives the per-frame depth,
    # while the frames' own ranges are not each 0..1 (mutation seen failing: "clip" normalised per frame)
    clip = estimate_depth(estimator, frames, batch_size=3, normalize="clip")
    assert clip.min() == 0.0 and clip.max() == 1.0
    low, high = clip.reshape(5, -1).min(1).values, clip.reshape(5, -1).max(1).values
    torch.testing.assert_close((clip - low[:, None, None]) / (high - low)[:, None, None], depth, atol=1e-4, rtol=0)
    assert (high - low).min() < 0.99, (low, high)


def test_metric_models_are_inverted_so_near_is_one(tiny_depth_dir, tmp_path):
    relative = load_depth_anything(str(tiny_depth_dir))
    frames = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(2))
    metric_dir = tmp_path / "metric"
    metric_dir.mkdir()
    for name in ("model.safetensors", "preprocessor_config.json"):
        (metric_dir / name).write_bytes((tiny_depth_dir / name).read_bytes())
    config = json.loads((tiny_depth_dir / "config.json").read_text())
    config["depth_estimation_type"] = "metric"
    (metric_dir / "config.json").write_text(json.dumps(config))
    metric = load_depth_anything(str(metric_dir))
    assert metric.is_metric and not relative.is_metric
    # the metric head ends in a sigmoid instead of a ReLU: compare against its own raw output
    inputs = metric.processor(images=list(frames.numpy()), return_tensors="pt", do_rescale=False)
    raw = metric.model(**inputs).predicted_depth
    near = estimate_depth(metric, frames, batch_size=2)
    raw = torch.nn.functional.interpolate(raw[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    argmin = raw.reshape(2, -1).argmin(1)
    np.testing.assert_allclose(near.reshape(2, -1)[torch.arange(2), argmin], 1.0, atol=1e-6)


def test_load_errors_name_the_folder(tmp_path):
    with pytest.raises(AA2Error, match="folder not found"):
        load_depth_anything(str(tmp_path / "nope"))
    with pytest.raises(AA2Error, match="config.json is missing"):
        load_depth_anything(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no_such_model"}))
    (tmp_path / "preprocessor_config.json").write_text("{}")
    with pytest.raises(AA2Error, match="could not load"):
        load_depth_anything(str(tmp_path))
