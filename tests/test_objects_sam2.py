"""Object sequence content and checks; SAM2 prompt checks, model detection, and the chunked tracking
plumbing (frame mapping, seeds, the carried prompt frame) through a stand-in predictor that segments
by colour, so it runs without `sam2`. The real `sam2` model runs where the package imports."""


import pytest
import torch

from aa2_core.conditions import sam2_video
from aa2_core.conditions.objects import object_sequence
from aa2_core.conditions.sam2_video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ObjectPrompt,
    as_prompts,
    config_for,
    config_path,
    segment_video,
    validate_prompts,
)
from aa2_core.errors import AA2Error

# --- object sequence ---------------------------------------------------------------------------------


def test_object_frames_keep_the_union_and_each_mask():
    frames = torch.rand(4, 8, 10, 3)
    a = torch.zeros(4, 8, 10)
    a[:, 1:3, 1:4] = 0.9
    a[:, 6, 6] = 0.3  # below the threshold: not the object
    b = torch.zeros(1, 8, 10)  # one mask for every frame
    b[0, 5:8, 7:10] = 1
    images, masks = object_sequence(frames, [a, b], background=0.25)
    assert images.shape == (4, 8, 10, 3) and masks.shape == (2, 4, 8, 10)
    assert torch.equal(masks[0], (a >= 0.5).float()) and torch.equal(masks[1], b.expand(4, -1, -1))
    union = masks.amax(0).bool()
    assert union.sum() == 4 * (6 + 9)
    assert torch.equal(images[union], frames[union]) and (images[~union] == 0.25).all()
    same, same_masks = object_sequence(frames, torch.stack([a, b.expand(4, -1, -1)]), background=0.25, chunk=1)
    assert torch.equal(same, images) and torch.equal(same_masks, masks)  # [N, T, H, W] tensor, 1-frame chunks


def test_object_masks_are_resized_to_the_frames_and_to_the_output_size():
    frames = torch.rand(2, 8, 8, 3)
    small = torch.zeros(2, 4, 4)
    small[:, 0:2, 0:2] = 1  # the top-left quarter at half size
    images, masks = object_sequence(frames, [small])
    expected = torch.zeros(2, 8, 8)
    expected[:, 0:4, 0:4] = 1
    assert torch.equal(masks[0], expected) and torch.equal(images[:, :4, :4], frames[:, :4, :4])
    images, masks = object_sequence(torch.rand(2, 12, 12, 3), [torch.ones(2, 12, 12)], size=(16, 8))
    assert images.shape == (2, 16, 8, 3) and masks.shape == (1, 2, 16, 8) and masks.all()
    with pytest.raises(AA2Error, match="multiples of 8"):
        object_sequence(frames, [small], size=(12, 8))


def test_object_sequence_errors():
    frames = torch.rand(3, 8, 8, 3)
    with pytest.raises(AA2Error, match="object mask 0 has shape.*2 frames but frames has 3"):
        object_sequence(frames, [torch.zeros(2, 8, 8)])
    with pytest.raises(AA2Error, match="at least one object mask"):
        object_sequence(frames, [])
    with pytest.raises(AA2Error, match=r"frames must be an IMAGE tensor \[T, H, W, 3\]"):
        object_sequence(frames[..., 0], [torch.zeros(3, 8, 8)])


# --- SAM2: prompts, package, model detection ---------------------------------------------------------


def test_missing_sam2_is_a_clear_error_from_both_entry_points(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sam2(name, *args, **kwargs):
        if name == "sam2" or name.startswith("sam2."):
            raise ImportError("No module named 'sam2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sam2)
    message = r"needs the `sam2` package.*pip install sam2.*any other MASK node"
    with pytest.raises(AA2Error, match=message):
        sam2_video.load_sam2_video_predictor("sam2.1_hiera_tiny.safetensors")
    with pytest.raises(AA2Error, match=message):  # valid prompts: the package is the problem
        segment_video(object(), torch.rand(3, 8, 8, 3), [{"frame": 0, "points": [[1, 1]], "labels": [1]}])


@pytest.mark.parametrize("prompts, message", [
    ([{"frame": 0, "point": [[1, 1]]}], r"unknown prompt keys \['point'\]"),
    ([{"frame": 0, "points": [[1, 1]], "labels": [2]}], "labels must be 1 .* or 0"),
    ([{"frame": 1.5, "box": [1, 1, 4, 4]}], "integer frame index"),
    ([{"points": [[1, 2, 3]], "labels": [1]}], r"points must be \[\[x, y\], \.\.\.\]"),
    ([{"box": [1, 1, 40, 4]}], "box .* reaches outside the 32x16 frame"),
    ([{"box": [1, 1, 4]}], "x0 < x1"),
    ("not a list", "one entry per object"),
    ([7], "a prompt must be a dict"),
    ([{"frame": 6, "box": [1, 1, 4, 4]}], r"object 0: prompt frame 6 is outside the video \(0\.\.4\)"),
    ([{"frame": 0, "box": [1, 1, 4, 4]}, {"frame": 0, "points": [[1, 1], [3, 3]], "labels": [1]}], "object 1: 2 points but 1 labels"),
])
def test_prompt_checks_name_the_object(prompts, message):
    with pytest.raises(AA2Error, match=message):
        validate_prompts(prompts, num_frames=5, height=16, width=32)


def test_dict_prompts_become_object_prompts():
    prompts = as_prompts([{"frame": 2, "points": [[3, 4]], "labels": [1]}, {"frame": 2, "box": [0, 0, 32, 16]}])
    assert prompts == [ObjectPrompt(2, [[3, 4]], [1], None), ObjectPrompt(2, [], [], [0, 0, 32, 16])]
    validate_prompts(prompts, num_frames=5, height=16, width=32)  # a box may reach the frame's edges


def test_config_names_and_sizes():
    assert config_path("sam2.1_hiera_l") == "configs/sam2.1/sam2.1_hiera_l.yaml"
    assert config_path("sam2_hiera_b+.yaml") == "configs/sam2/sam2_hiera_b+.yaml"
    assert config_path("configs/sam2/sam2_hiera_s.yaml") == "configs/sam2/sam2_hiera_s.yaml"
    for (width, blocks), size in {(96, 12): "t", (96, 16): "s", (112, 24): "b+", (144, 48): "l"}.items():
        sd = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(width, 3, 1, 1)}
        sd.update({f"image_encoder.trunk.blocks.{i}.attn.qkv.weight": torch.zeros(1) for i in range(blocks)})
        assert config_for(sd, "model.safetensors") == f"configs/sam2/sam2_hiera_{size}.yaml"
        sd["obj_ptr_tpos_proj.weight"] = sd["no_obj_embed_spatial"] = torch.zeros(1)  # only SAM2.1 has these
        assert config_for(sd, "model.safetensors") == f"configs/sam2.1/sam2.1_hiera_{size}.yaml"
    sd = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(80, 3, 1, 1)}
    with pytest.raises(AA2Error, match="unknown SAM2 trunk"):
        config_for(sd, "odd.pt")


# --- SAM2: chunked tracking through a stand-in predictor ---------------------------------------------


class ColourPredictor:
    """Segments object k as the pixels whose channel k is bright; records what the tracker asked."""

    image_size = 16

    def __init__(self):
        self.images = None
        self.log = []

    def _colour(self, state, idx):
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return state["images"][idx].float() * std + mean

    def init_state(self, images, height, width):
        self.log.append(("init", len(images)))
        return {"images": images, "num_frames": len(images), "size": (height, width)}

    def add_new_points_or_box(self, state, frame_idx, obj_id, points=None, labels=None, box=None):
        self.log.append(("prompt", frame_idx, obj_id, self._colour(state, frame_idx)))

    def add_new_mask(self, state, frame_idx, obj_id, mask):
        self.log.append(("seed", frame_idx, obj_id, mask.clone()))

    def propagate_in_video(self, state, start_frame_idx, reverse):
        order = range(start_frame_idx, -1, -1) if reverse else range(start_frame_idx, state["num_frames"])
        for idx in order:
            colour = self._colour(state, idx)[:2]  # red: object 0, green: object 1
            logits = torch.where(colour > 0.5, 1.0, -1.0)[:, None]
            self.log.append(("track", idx))
            yield idx, [0, 1], torch.nn.functional.interpolate(logits, size=state["size"], mode="nearest")


def _moving_squares(num_frames=9):
    frames = torch.zeros(num_frames, 16, 16, 3)
    truth = torch.zeros(2, num_frames, 16, 16)
    for t in range(num_frames):
        truth[0, t, 2:6, t : t + 4] = 1  # red square moving right
        truth[1, t, 10:14, 8 - t : 12 - t] = 1  # green square moving left
    frames[..., 0], frames[..., 1] = truth[0], truth[1]
    return frames, truth


@pytest.fixture
def colour_predictor(monkeypatch):
    predictor = ColourPredictor()

    monkeypatch.setattr(sam2_video, "_sam2", lambda: None)
    monkeypatch.setattr(sam2_video, "init_state_from_frames", lambda p, images, height, width: p.init_state(images, height, width))
    return predictor


def test_chunks_map_every_frame_back_and_carry_the_prompt_frame(colour_predictor):
    frames, truth = _moving_squares()
    prompts = [{"frame": 4, "points": [[5, 3]], "labels": [1]}, {"frame": 4, "box": [4, 10, 8, 14]}]
    progress = []
    masks = segment_video(colour_predictor, frames, prompts, chunk_size=3, on_chunk=lambda d, n: progress.append((d, n)))
    assert torch.equal(masks, truth)  # every frame written, each from its own image
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]  # chunks (4..6), (6..8), back (2..4), (0..2)

    log = colour_predictor.log
    inits = [i for i, e in enumerate(log) if e[0] == "init"]
    chunks = [log[a:b] for a, b in zip(inits, inits[1:] + [len(log)])]
    assert [c[0][1] for c in chunks] == [3, 4, 3, 4]  # later chunks hold one extra frame: the prompt frame
    prompt_colour = frames[4].movedim(-1, 0)
    for chunk, prompt_idx in zip(chunks, [0, 0, 2, 3]):  # forward: first slot; backward: last slot
        prompted = [e for e in chunk if e[0] == "prompt"]
        assert [e[2] for e in prompted] == [0, 1] and all(e[1] == prompt_idx for e in prompted)
        assert all(torch.allclose(e[3], prompt_colour, atol=1e-2) for e in prompted)  # fp16 storage
    seeds = {(i, e[1], e[2]): e[3] for i, c in enumerate(chunks) for e in c if e[0] == "seed"}
    assert sorted(seeds) == [(1, 1, 0), (1, 1, 1), (3, 2, 0), (3, 2, 1)]  # seams: frame 6 (local 1), frame 2 (local 2)
    assert torch.equal(seeds[(1, 1, 0)], truth[0, 6].bool()) and torch.equal(seeds[(3, 2, 1)], truth[1, 2].bool())
    tracked = [[e[1] for e in c if e[0] == "track"] for c in chunks]
    assert tracked == [[0, 1, 2], [1, 2, 3], [2, 1, 0], [2, 1, 0]]  # the carried slot is never tracked


def test_chunks_without_the_carried_prompt_frame(colour_predictor):
    frames, truth = _moving_squares(7)
    prompts = [ObjectPrompt(frame=0, box=[0, 2, 4, 6]), ObjectPrompt(frame=0, box=[8, 10, 12, 14])]
    masks = segment_video(colour_predictor, frames, prompts, chunk_size=4, keep_prompt_frame=False)
    assert torch.equal(masks, truth)
    assert [e[1] for e in colour_predictor.log if e[0] == "init"] == [4, 4]  # (0..3), (3..6); nothing backwards
    assert sum(e[0] == "prompt" for e in colour_predictor.log) == 2  # only the first chunk gets the marks


# --- SAM2: the real model ---------------------------------------------------------------------------


def test_real_sam2_pt_checkpoint_and_carried_prompt_frame(tmp_path, monkeypatch):
    try:
        import sam2.build_sam
    except (ImportError, RuntimeError) as e:  # missing, or a broken build
        pytest.skip(f"sam2 is not importable here ({type(e).__name__}: {e}); it needs hydra-core, iopath and torch builds")

    torch.manual_seed(0)
    built = sam2.build_sam.build_sam2_video_predictor("configs/sam2/sam2_hiera_t.yaml", device="cpu",
                                                      hydra_overrides_extra=["++model.image_size=128"])
    path = str(tmp_path / "tiny.pt")
    torch.save({"model": built.state_dict()}, path)  # the official .pt layout
    predictor = sam2_video.load_sam2_video_predictor(path, image_size=128)
    assert type(predictor).__name__ == "SAM2VideoPredictor" and predictor.image_size == 128
    assert not hasattr(predictor, "no_obj_embed_spatial") or predictor.no_obj_embed_spatial is None  # SAM2, not 2.1
    for (name, a), b in zip(built.state_dict().items(), predictor.state_dict().values()):
        assert torch.equal(a, b), name

    frames = torch.rand(7, 40, 48, 3)
    sizes = []
    init_state = sam2_video.init_state_from_frames

    def spy(*args, **kwargs):
        state = init_state(*args, **kwargs)
        sizes.append((state["num_frames"], state["video_height"], state["video_width"]))
        return state

    monkeypatch.setattr(sam2_video, "init_state_from_frames", spy)
    masks = segment_video(predictor, frames, [{"frame": 3, "points": [[10, 12], [30, 30]], "labels": [1, 0]}], chunk_size=3)
    assert masks.shape == (1, 7, 40, 48) and set(masks.unique().tolist()) <= {0.0, 1.0}
    assert sizes == [(3, 40, 48), (3, 40, 48), (3, 40, 48), (3, 40, 48)]  # (3..5), (5..6)+prompt, (1..3), (0..1)+prompt
