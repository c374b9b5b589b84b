"""Environment formulation (Animate Anyone 2, section 3.2).

The environment is the driving video with the character region removed; the model paints the new
character into that region. Three pieces live here:

- ``shape_agnostic_mask``: the paper's equation (2). The character mask is cut, inside its bounding
  box, into a grid of blocks and every block takes its maximum, so the removed region follows the
  character only coarsely and the network cannot read the source body shape off the mask edge.
- ``environment_sequence`` / ``latent_mask``: the frames with that region filled with mid gray, and the
  mask at latent resolution, both at a size the VAE takes (multiples of 8).
- ``random_scale_augment``: the training-time augmentation that rescales the character and its
  objects, so that the (always larger) formulated mask is sometimes smaller than the character.

Layouts follow ComfyUI: frames are IMAGE tensors ``[T, H, W, 3]`` in 0..1, masks ``[T, H, W]`` in 0..1.
Long videos are processed in chunks of frames so that working memory does not grow with ``T``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import AA2Error

# Paper, section 3.2: "During inference, we set kh = h/10 and kw = w/10". Two readings (``INFERENCE_READINGS``):
# "pixels": kh is a block count, so blocks about 10 px whatever the box (INFERENCE_BLOCK_PIXELS);
# "grid": a 10 x 10 grid over the box (INFERENCE_GRID blocks a side). See ``shape_agnostic_mask`` for the default.
INFERENCE_BLOCK_PIXELS = 10
INFERENCE_GRID = 10
INFERENCE_READINGS = ("pixels", "grid")
INFERENCE_READING = "pixels"
# Training draws (``random_block_counts``): block SIZES log-uniform from TRAIN_BLOCK_MIN_PIXELS (one latent cell)
# to TRAIN_BLOCK_MAX_FRACTION of the box side, so masks range from near-silhouette to 4 x 4 coarse blocks.
# Measured with bench/mask_distribution.py (human silhouettes at 768x512 and 512x512): added area
# (mask / silhouette - 1) over 8 silhouettes x 200 draws: p10 25 %, median 52 %, p90 100 % (half the box as the
# top: median ~74 %, above the 20-60 % aimed at; the former uniform COUNTS: median 2-7 %, half the draws under 5 %).
TRAIN_BLOCK_MIN_PIXELS = 8
TRAIN_BLOCK_MAX_FRACTION = 0.25
# The environment is removed to mid gray: 0 once mapped to the VAE's [-1, 1] range, as in SD inpainting.
ENVIRONMENT_FILL = 0.5
LATENT_MULTIPLE = 8
DEFAULT_CHUNK = 16


# ---------------------------------------------------------------------------------------------------
# Input checks and resizing shared with objects.py
# ---------------------------------------------------------------------------------------------------


def check_frames(frames, name: str = "frames") -> None:
    """Raise AA2Error unless ``frames`` is an IMAGE tensor ``[T, H, W, 3]`` with at least one frame."""
    if not isinstance(frames, torch.Tensor):
        raise AA2Error(f"{name} must be an IMAGE tensor [T, H, W, 3], got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise AA2Error(f"{name} must be an IMAGE tensor [T, H, W, 3], got shape {tuple(frames.shape)}")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise AA2Error(f"{name} is empty (shape {tuple(frames.shape)})")


def as_mask_batch(mask, name: str = "mask") -> torch.Tensor:
    """A MASK as ``[T, H, W]``: a single ``[H, W]`` mask becomes one frame."""
    if not isinstance(mask, torch.Tensor):
        raise AA2Error(f"{name} must be a MASK tensor [T, H, W], got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise AA2Error(f"{name} must be a MASK tensor [T, H, W] (or [H, W]), got shape {tuple(mask.shape)}")
    if mask.shape[0] == 0 or mask.shape[1] == 0 or mask.shape[2] == 0:
        raise AA2Error(f"{name} is empty (shape {tuple(mask.shape)})")
    return mask


def check_mask_frames(mask: torch.Tensor, num_frames: int, name: str) -> None:
    """A mask sequence must have one mask per frame, or a single mask used for every frame."""
    if mask.shape[0] not in (1, num_frames):
        raise AA2Error(f"{name} has {mask.shape[0]} frames but frames has {num_frames} (give one mask per frame, or one mask)")


def binarize(mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """0/1 float mask: a pixel counts as covered when its value is >= threshold."""
    return (mask >= threshold).to(torch.float32)


def resize_mask(mask: torch.Tensor, height: int, width: int, threshold: float = 0.5) -> torch.Tensor:
    """Resize ``[T, h, w]`` masks to ``[T, height, width]`` 0/1 masks.

    Bilinear (antialiased when shrinking) then ``>= threshold``: the rule SAM2 uses for its own mask
    resizing. It keeps edges where they are, unlike nearest, which shifts them by up to a pixel.
    """
    if tuple(mask.shape[-2:]) == (height, width):
        return binarize(mask, threshold)
    shrinking = height < mask.shape[-2] or width < mask.shape[-1]
    resized = F.interpolate(
        mask[:, None].to(torch.float32), size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking
    )
    return binarize(resized[:, 0], threshold)


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``[T, h, w, 3]`` frames (bilinear, antialiased when shrinking), values kept in 0..1."""
    if tuple(frames.shape[1:3]) == (height, width):
        return frames
    shrinking = height < frames.shape[1] or width < frames.shape[2]
    resized = F.interpolate(
        frames.movedim(-1, 1).to(torch.float32),
        size=(height, width),
        mode="bilinear",
        align_corners=False,
        antialias=shrinking,
    )
    return resized.movedim(1, -1).clamp_(0.0, 1.0)


def mask_chunk(mask: torch.Tensor, start: int, stop: int, height: int, width: int, threshold: float = 0.5) -> torch.Tensor:
    """Frames ``start:stop`` of a checked mask sequence as 0/1 masks at ``height x width``.

    A single mask stands for every frame; a mask of another size than the frames is resized with
    ``resize_mask`` (bilinear + threshold).
    """
    if mask.shape[0] == 1:
        chunk = mask.expand(stop - start, -1, -1)
    else:
        chunk = mask[start:stop]
    return resize_mask(chunk, height, width, threshold)


def frame_chunks(num_frames: int, chunk_size: int):
    """``(start, stop)`` ranges covering ``num_frames`` in pieces of at most ``chunk_size``."""
    if int(chunk_size) < 1:
        raise AA2Error(f"chunk_size must be at least 1, got {chunk_size}")
    for start in range(0, num_frames, int(chunk_size)):
        yield start, min(start + int(chunk_size), num_frames)


def latent_aligned_size(height: int, width: int, multiple: int = LATENT_MULTIPLE) -> tuple[int, int]:
    """The nearest size whose sides are multiples of ``multiple`` (the VAE downsamples by 8).

    Rounds each side to the nearest multiple, at least one multiple: 509x766 -> 512x768.
    """
    if int(multiple) < 1:
        raise AA2Error(f"multiple must be a positive integer, got {multiple}")
    if int(height) < 1 or int(width) < 1:
        raise AA2Error(f"height and width must be positive, got {height}x{width}")

    def _round(side: int) -> int:
        return max(multiple, int(multiple * round(side / multiple)))

    return _round(int(height)), _round(int(width))


def _target_size(size: Sequence[int] | None, height: int, width: int) -> tuple[int, int]:
    """The output size: the given ``(height, width)`` (multiples of 8), else the frame size aligned to 8."""
    if size is None:
        return latent_aligned_size(height, width)
    if len(size) != 2:
        raise AA2Error(f"size must be (height, width), got {size!r}")
    target_h, target_w = int(size[0]), int(size[1])
    if target_h < LATENT_MULTIPLE or target_w < LATENT_MULTIPLE or target_h % LATENT_MULTIPLE or target_w % LATENT_MULTIPLE:
        raise AA2Error(
            f"size must be multiples of {LATENT_MULTIPLE} for the VAE, got {target_h}x{target_w}; "
            f"the nearest is {'x'.join(map(str, latent_aligned_size(max(target_h, 1), max(target_w, 1))))}"
        )
    return target_h, target_w


# ---------------------------------------------------------------------------------------------------
# Shape-agnostic mask, equation (2)
# ---------------------------------------------------------------------------------------------------


def mask_bounding_boxes(binary: torch.Tensor):
    """Per-frame bounding boxes of 0/1 masks ``[T, H, W]``.

    Returns ``(y0, height, x0, width, present)``, each ``[T]`` (int64 / bool). Frames without any
    covered pixel have ``present = False`` and a 0 x 0 box.
    """
    rows = binary.amax(dim=2) > 0
    cols = binary.amax(dim=1) > 0
    present = rows.any(dim=1)
    y0 = rows.to(torch.uint8).argmax(dim=1)
    y1 = rows.shape[1] - 1 - rows.flip(1).to(torch.uint8).argmax(dim=1)
    x0 = cols.to(torch.uint8).argmax(dim=1)
    x1 = cols.shape[1] - 1 - cols.flip(1).to(torch.uint8).argmax(dim=1)
    height = torch.where(present, y1 - y0 + 1, torch.zeros_like(y0))
    width = torch.where(present, x1 - x0 + 1, torch.zeros_like(x0))
    return y0, height, x0, width, present


def inference_block_counts(length: torch.Tensor, reading: str = INFERENCE_READING) -> torch.Tensor:
    """The paper's inference setting ``k = length / 10``, at least one block.

    ``reading="pixels"``: ``k = round(length / 10)``, blocks of about 10 pixels; ``"grid"``: ``k = 10``, a 10 x 10
    grid over the box (capped at one block per pixel by the caller).
    """
    if reading == "grid":
        return torch.full_like(length, INFERENCE_GRID).clamp(min=1)
    if reading != "pixels":
        raise AA2Error(f"inference reading must be one of {INFERENCE_READINGS}, got {reading!r}")
    return torch.div(length + INFERENCE_BLOCK_PIXELS // 2, INFERENCE_BLOCK_PIXELS, rounding_mode="floor").clamp(min=1)


def random_block_counts(length: torch.Tensor, generator: torch.Generator | None, draw: torch.Tensor | None = None,
                        min_pixels: float = TRAIN_BLOCK_MIN_PIXELS, max_fraction: float = TRAIN_BLOCK_MAX_FRACTION) -> torch.Tensor:
    """Training draw: a block SIZE log-uniform in ``[min_pixels, max_fraction * length]``, turned into a count.

    ``k = round(length / size)``, kept in the paper's open interval ``(1, length)``, i.e. ``2 .. length - 1``
    (boxes too small for that interval keep ``min(2, length)`` blocks). Drawing sizes, not counts: a uniform
    count over ``2 .. length - 1`` makes most blocks a few pixels wide, so the mask is nearly the silhouette
    (a median of about 1 % added area on a 768 x 512 person); sizes from two latent cells to half the box give
    masks from near-silhouette to a few coarse blocks (``bench/mask_distribution.py``: a median of about
    52 % added area, 10th percentile about 25 %). When the box is so small that ``max_fraction * length < min_pixels`` the size is
    ``max_fraction * length``. ``draw`` (uniform 0..1, one per frame) replaces the generator when given.
    """
    if not float(min_pixels) > 0 or not 0 < float(max_fraction) <= 1:
        raise AA2Error(f"block sizes need min_pixels > 0 and 0 < max_fraction <= 1, got {min_pixels}, {max_fraction}")
    low = length.clamp(max=2)
    high = torch.maximum(low, length - 1)
    if draw is None:
        draw = uniform_draws(length.shape[0], generator)
    draw = draw.to(length.device, torch.float64)
    largest = length.to(torch.float64).clamp(min=1) * float(max_fraction)
    smallest = torch.minimum(torch.full_like(largest, float(min_pixels)), largest)
    size = smallest * (largest / smallest) ** draw
    counts = torch.round(length.to(torch.float64) / size).to(length.dtype)
    return torch.minimum(torch.maximum(counts, low), high).clamp(min=1)


def uniform_draws(count: int, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` uniform numbers on the generator's own device (a CPU generator may serve CUDA masks)."""
    device = generator.device if generator is not None else "cpu"
    return torch.rand(count, generator=generator, device=device)


def _block_counts(k, length: torch.Tensor, draw: torch.Tensor | None, name: str,
                  reading: str = INFERENCE_READING) -> torch.Tensor:
    """Per-frame block counts along one axis: given, random (training, from ``draw``) or the inference default."""
    if k is None:
        counts = inference_block_counts(length, reading) if draw is None else random_block_counts(length, None, draw)
    else:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise AA2Error(f"{name} must be a positive integer number of blocks (or None), got {k!r}")
        counts = torch.full_like(length, k)
    # More blocks than pixels would leave empty blocks: cap at one block per pixel (the mask itself).
    return torch.minimum(counts, length.clamp(min=1))


def _block_index(length_axis: int, start, length, count, present, dummy: int) -> torch.Tensor:
    """``[t, L]``: which block along one axis each pixel belongs to; ``dummy`` outside the box.

    Pixel ``p`` of a box ``[start, start + length)`` cut into ``count`` blocks goes to block
    ``floor((p - start) * count / length)``: blocks tile the box exactly, their sizes differ by at most
    one pixel, and none reaches outside the box (hence none needs clipping at the image border).
    """
    coords = torch.arange(length_axis, device=start.device)[None, :]
    offset = coords - start[:, None]
    inside = (offset >= 0) & (offset < length[:, None]) & present[:, None]
    index = torch.div(offset.clamp(min=0) * count[:, None], length.clamp(min=1)[:, None], rounding_mode="floor")
    return torch.where(inside, index, torch.full_like(index, dummy))


def _block_max(binary: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, n_rows: int, n_cols: int) -> torch.Tensor:
    """Equation (2) on a chunk: each block takes the maximum over its pixels.

    Blocks are products of row and column intervals, so the maximum is taken in two passes
    (columns, then rows) with ``scatter_reduce`` and spread back with two ``gather``. The extra last
    slot on each axis collects the pixels outside the box, which are all zero.
    """
    t, height, width = binary.shape
    col_index = cols[:, None, :].expand(t, height, width)
    per_col = binary.new_zeros(t, height, n_cols + 1).scatter_reduce_(2, col_index, binary, "amax")
    row_index = rows[:, :, None].expand(t, height, n_cols + 1)
    per_block = binary.new_zeros(t, n_rows + 1, n_cols + 1).scatter_reduce_(1, row_index, per_col, "amax")
    return per_block.gather(1, row_index).gather(2, col_index)


def shape_agnostic_mask(
    mask: torch.Tensor,
    kh: int | None = None,
    kw: int | None = None,
    generator: torch.Generator | None = None,
    threshold: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK,
    inference: str = INFERENCE_READING,
) -> torch.Tensor:
    """The formulated mask ``M_f`` of equation (2), frame by frame.

    Each frame's mask is binarised (``>= threshold``); its bounding box (``h x w`` pixels) is cut into
    ``kh x kw`` non-overlapping blocks and every block is set to its maximum. The result contains the
    character mask, is constant on each block and never leaves the bounding box.

    **kh and kw are block counts**, as in the paper: "we divided the character mask ``M_c`` into
    ``kh x kw`` non-overlapping blocks, where ``kh in (1, h)``". One block (``k = 1``) would be the
    bounding box, ``h`` blocks the pixel-exact mask; the open interval excludes both.

    Training (a ``generator``, no ``kh``/``kw``): per frame and axis a block SIZE log-uniform from one latent
    cell (8 px) to a quarter of the box (``random_block_counts``), so masks range from near-silhouette to
    4 x 4 coarse blocks. On human silhouettes (``bench/mask_distribution.py``) they add a median of ~52 % area
    (10th percentile ~25 %, 90th ~100 %); the paper's point, breaking the tie between mask edge and body outline.

    Inference (``inference``): the paper's ``kh = h/10, kw = w/10`` has two readings. ``"pixels"`` (the
    default): ``kh`` is a block count as in eq. (2), so blocks of about 10 px; ``"grid"``: a 10 x 10 grid
    over the box. Measured on the bench's silhouettes (768x512 / 512x512, four poses), "pixels" adds
    15-25 % area and "grid" 38-88 %. The default is "pixels" because (1) it is the literal reading of the
    paper's notation (a count in ``(1, h)``), (2) at inference the mask decides how much of the driving scene
    is repainted, and a grid repaints up to ~90 % more than the person, and (3) 10-px blocks lie inside the
    training distribution (its fine end: 8-px blocks add ~12 %), so trained modules have seen such masks;
    with the scale augmentation they have also seen characters that overflow the mask. "grid" sits near the
    training median instead: choose it for a looser region (a character larger than the driving person).

    Args:
        mask: character masks ``[T, H, W]`` (or ``[H, W]``), values 0..1.
        kh, kw: blocks along the box height and width, the same for every frame; capped at one block
            per pixel. ``None``: with a ``generator``, drawn per frame (block sizes log-uniform, counts in
            ``(1, h)`` / ``(1, w)``, training); without one, the inference setting (``inference``).
        generator: random source for training draws.
        threshold: a pixel belongs to the character when its value is ``>= threshold``.
        chunk_size: frames processed at once (bounds working memory on long videos).
        inference: ``"pixels"`` (``round(h / 10)`` blocks, ~10 px) or ``"grid"`` (10 x 10 blocks); only used
            when ``kh``/``kw`` is None and there is no generator.

    Returns:
        0/1 float masks ``[T, H, W]`` (a 2-D mask gives one frame). Frames where the character is absent (empty mask,
        for example when it has left the frame) stay empty.
    """
    mask = as_mask_batch(mask, "mask")
    if inference not in INFERENCE_READINGS:
        raise AA2Error(f"inference must be one of {INFERENCE_READINGS}, got {inference!r}")
    out = torch.empty(mask.shape, dtype=torch.float32, device=mask.device)
    num_frames = mask.shape[0]
    # Training draws for the whole clip up front, so that chunk_size does not change the result.
    random = generator is not None
    draws_h = uniform_draws(num_frames, generator) if random and kh is None else None
    draws_w = uniform_draws(num_frames, generator) if random and kw is None else None
    for start, stop in frame_chunks(num_frames, chunk_size):
        draw_h = None if draws_h is None else draws_h[start:stop]
        draw_w = None if draws_w is None else draws_w[start:stop]
        out[start:stop] = _formulate_chunk(mask[start:stop], kh, kw, draw_h, draw_w, threshold, inference)
    return out


def _formulate_chunk(mask, kh, kw, draw_h, draw_w, threshold, inference: str = INFERENCE_READING) -> torch.Tensor:
    """Equation (2) on a chunk of frames (its temporaries are freed before the next chunk).

    The blocks never leave the frames' boxes, so the work is done on the chunk's union box only (the
    rest is zero); the values are those of the whole-frame computation.
    """
    covered = mask >= threshold  # ``binarize`` without its float copy of the whole frames
    rows_any, cols_any = covered.any(dim=2), covered.any(dim=1)
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    if not bool(rows_any.any()):
        return out
    ys, xs = rows_any.any(dim=0).nonzero()[:, 0], cols_any.any(dim=0).nonzero()[:, 0]
    top, left = int(ys[0]), int(xs[0])
    crop = (slice(None), slice(top, int(ys[-1]) + 1), slice(left, int(xs[-1]) + 1))
    binary = covered[crop].to(torch.float32)
    y0, box_h, x0, box_w, present = mask_bounding_boxes(binary)
    counts_h = _block_counts(kh, box_h, draw_h, "kh", inference)
    counts_w = _block_counts(kw, box_w, draw_w, "kw", inference)
    n_rows, n_cols = int(counts_h.max()), int(counts_w.max())
    rows = _block_index(binary.shape[1], y0, box_h, counts_h, present, dummy=n_rows)
    cols = _block_index(binary.shape[2], x0, box_w, counts_w, present, dummy=n_cols)
    out[crop] = _block_max(binary, rows, cols, n_rows, n_cols)
    return out


# ---------------------------------------------------------------------------------------------------
# Environment frames and latent mask
# ---------------------------------------------------------------------------------------------------


def environment_sequence(
    frames: torch.Tensor,
    formulated_mask: torch.Tensor,
    fill: float = ENVIRONMENT_FILL,
    size: Sequence[int] | None = None,
    threshold: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The environment sequence ``I_e``: the frames with the formulated mask region removed.

    Args:
        frames: driving video ``[T, H, W, 3]``, 0..1.
        formulated_mask: ``[T, h, w]`` (or one mask for every frame), usually from
            ``shape_agnostic_mask``. A mask of another size than the frames is resized to the frame
            size (bilinear + ``>= threshold``).
        fill: value of the removed pixels; 0.5 is 0 in the VAE's [-1, 1] range, as in SD inpainting.
        size: output ``(height, width)``, multiples of 8. ``None``: the frame size rounded to the
            nearest multiples of 8 (``latent_aligned_size``), unchanged when it already is.

    Returns:
        ``(environment_frames [T, H', W', 3], mask [T, H', W'])``; the mask is 0/1 and marks the
        removed (to be generated) region. Frames and mask are resized first and the fill applied
        after, so the filled region is exactly the returned mask, without a blurred gray rim.
    """
    check_frames(frames)
    formulated_mask = as_mask_batch(formulated_mask, "formulated_mask")
    num_frames, height, width = frames.shape[:3]
    check_mask_frames(formulated_mask, num_frames, "formulated_mask")
    out_h, out_w = _target_size(size, height, width)

    environment = torch.empty(num_frames, out_h, out_w, 3, dtype=torch.float32, device=frames.device)
    removed = torch.empty(num_frames, out_h, out_w, dtype=torch.float32, device=frames.device)
    same_size = (out_h, out_w) == (height, width) == tuple(formulated_mask.shape[1:]) and frames.dtype == torch.float32
    for start, stop in frame_chunks(num_frames, chunk_size):
        if same_size:  # nothing to resize: threshold once, copy, fill inside the mask's box (the same values)
            chunk = formulated_mask if formulated_mask.shape[0] == 1 else formulated_mask[start:stop]
            covered = (chunk >= threshold).expand(stop - start, -1, -1)
            removed[start:stop] = covered
            environment[start:stop] = frames[start:stop]
            box = _box_slices(covered)
            if box is not None:
                environment[start:stop][box].masked_fill_(covered[box][..., None], float(fill))
            continue
        chunk_mask = resize_mask(mask_chunk(formulated_mask, start, stop, height, width, threshold), out_h, out_w, threshold)
        removed[start:stop] = chunk_mask
        environment[start:stop] = _fill_chunk(frames[start:stop], chunk_mask, fill, out_h, out_w)
    return environment, removed


def _box_slices(covered: torch.Tensor):
    """``(:, rows, cols)`` slices of the box holding every covered pixel of bool masks ``[T, H, W]``, or None."""
    rows, cols = covered.any(dim=2).any(dim=0), covered.any(dim=1).any(dim=0)
    if not bool(rows.any()):
        return None
    ys, xs = rows.nonzero()[:, 0], cols.nonzero()[:, 0]
    return slice(None), slice(int(ys[0]), int(ys[-1]) + 1), slice(int(xs[0]), int(xs[-1]) + 1)


def _fill_chunk(frames: torch.Tensor, mask: torch.Tensor, fill: float, height: int, width: int) -> torch.Tensor:
    """Frames resized to ``height x width`` with the 0/1 ``mask`` region set to ``fill``."""
    # out of place: at the same size ``resize_frames`` returns the caller's own tensor
    resized = resize_frames(frames.to(torch.float32), height, width)
    return resized.masked_fill(mask[..., None].bool(), float(fill))


def latent_mask(mask: torch.Tensor, latent_h: int, latent_w: int, threshold: float = 0.5, feather: int = 0) -> torch.Tensor:
    """Pixel masks ``[T, H, W]`` -> masks ``[T, latent_h, latent_w]`` by coverage, with an optional soft edge.

    A latent cell is 1 when any pixel it covers is (``>= threshold``): adaptive max pooling, so no
    part of the character region is lost at latent resolution (a cell half covered by the character
    must still be generated). ``feather`` > 0 adds a soft edge that many cells wide *outside* the
    covered cells (``feathered``), so the generated region blends into the kept environment.
    This is the one latent-mask builder: the sampler and the trainer both get theirs from here.
    """
    mask = as_mask_batch(mask, "mask")
    if int(latent_h) < 1 or int(latent_w) < 1:
        raise AA2Error(f"latent size must be positive, got {latent_h}x{latent_w}")
    if int(feather) < 0:
        raise AA2Error(f"feather must be 0 or more, got {feather}")
    out = torch.empty(mask.shape[0], int(latent_h), int(latent_w), dtype=torch.float32, device=mask.device)
    for start, stop in frame_chunks(mask.shape[0], DEFAULT_CHUNK):
        cells = F.adaptive_max_pool2d(binarize(mask[start:stop], threshold)[:, None], (int(latent_h), int(latent_w)))[:, 0]
        out[start:stop] = feathered(cells, int(feather))
    return out


def feathered(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """``[T, H, W]`` 0/1 mask -> a soft mask: 1 on the mask, fading to 0 over ``radius`` cells outside it."""
    if radius <= 0:
        return mask.float()
    k = 2 * radius + 1
    m = mask.float()[:, None]
    grown = F.max_pool2d(m, k, stride=1, padding=radius)  # grow first, so the soft edge lies outside
    soft = F.avg_pool2d(grown, k, stride=1, padding=radius, count_include_pad=False)
    return torch.maximum(soft, m)[:, 0]


# ---------------------------------------------------------------------------------------------------
# Random scale augmentation (training)
# ---------------------------------------------------------------------------------------------------


def _union_box(masks: list[torch.Tensor], num_frames: int, height: int, width: int, threshold: float, chunk_size: int):
    """Bounding box ``(y0, y1, x0, x1)`` of the union of all masks over the whole clip, or None."""
    rows = torch.zeros(height, dtype=torch.bool, device=masks[0].device)
    cols = torch.zeros(width, dtype=torch.bool, device=masks[0].device)
    for start, stop in frame_chunks(num_frames, chunk_size):
        for mask in masks:
            chunk_rows, chunk_cols = _covered_lines(mask_chunk(mask, start, stop, height, width, threshold))
            rows |= chunk_rows
            cols |= chunk_cols
    if not rows.any():
        return None
    ys, xs = rows.nonzero()[:, 0], cols.nonzero()[:, 0]
    return int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1])


def _covered_lines(chunk: torch.Tensor):
    """Rows and columns of a 0/1 mask chunk that hold any covered pixel."""
    return chunk.amax(dim=(0, 2)) > 0, chunk.amax(dim=(0, 1)) > 0


def _scaling_grid(height: int, width: int, scale: float, anchor_y: float, anchor_x: float, device) -> torch.Tensor:
    """``grid_sample`` grid ``[1, H, W, 2]`` for a zoom by ``scale`` about ``(anchor_y, anchor_x)``.

    Output pixel ``p`` reads the source at ``anchor + (p - anchor) / scale`` (pixel-index
    coordinates, pixel centres at integers), normalised for ``align_corners=False``.
    """
    ys = anchor_y + (torch.arange(height, dtype=torch.float64, device=device) - anchor_y) / scale
    xs = anchor_x + (torch.arange(width, dtype=torch.float64, device=device) - anchor_x) / scale
    grid_y = (2 * ys + 1) / height - 1
    grid_x = (2 * xs + 1) / width - 1
    grid = torch.stack(torch.meshgrid(grid_y, grid_x, indexing="ij")[::-1], dim=-1)
    return grid[None].to(torch.float32)


def _check_masks_for_augment(frames, character_mask, object_masks):
    num_frames = frames.shape[0]
    character_mask = as_mask_batch(character_mask, "character_mask")
    check_mask_frames(character_mask, num_frames, "character_mask")
    object_masks = list(object_masks or [])
    for i, mask in enumerate(object_masks):
        object_masks[i] = as_mask_batch(mask, f"object_masks[{i}]")
        check_mask_frames(object_masks[i], num_frames, f"object_masks[{i}]")
    return character_mask, object_masks


def scale_about_anchor(
    frames: torch.Tensor,
    character_mask: torch.Tensor,
    object_masks: Sequence[torch.Tensor] | None,
    scale: float,
    anchor: str = "center",
    threshold: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK,
):
    """Rescale the character and its objects by ``scale`` and composite them back into the frames.

    The cut-out is the union of the character and object masks. It is scaled about one point for the
    whole clip, taken from the union's bounding box over all frames, so the same zoom applies to
    every frame and motion stays temporally consistent: ``anchor="center"`` uses the box centre,
    ``anchor="bottom"`` its bottom-centre (feet stay on the ground line).

    The scaled cut-out is alpha-composited (bilinear, soft edge) over the **original** frames. Where it
    shrinks, the vacated pixels keep the source content, remnants of the original character
    included: the paper recomposes "these scaled content back into the source video" and does not
    inpaint. Those remnants lie outside the new masks, which is the point of the augmentation: the
    formulated mask of the new character no longer has to contain every character pixel.

    Returns ``(frames, character_mask, object_masks)`` with the input shapes (masks at the frame
    size, 0/1); ``scale == 1`` or an empty union returns the inputs unchanged (as copies).
    """
    check_frames(frames)
    character_mask, object_masks = _check_masks_for_augment(frames, character_mask, object_masks)
    if anchor not in ("center", "bottom"):
        raise AA2Error(f"anchor must be 'center' or 'bottom', got {anchor!r}")
    if not float(scale) > 0:
        raise AA2Error(f"scale must be positive, got {scale}")
    num_frames, height, width = frames.shape[:3]
    masks = [character_mask] + object_masks
    box = _union_box(masks, num_frames, height, width, threshold, chunk_size)

    out_frames = frames.clone()
    out_masks = [torch.empty(num_frames, height, width, dtype=torch.float32, device=frames.device) for _ in masks]
    if box is None or float(scale) == 1.0:
        for out, mask in zip(out_masks, masks):
            for start, stop in frame_chunks(num_frames, chunk_size):
                out[start:stop] = mask_chunk(mask, start, stop, height, width, threshold)
        return out_frames, out_masks[0], out_masks[1:]

    anchor_y, anchor_x = _anchor_point(box, anchor)
    grid = _scaling_grid(height, width, float(scale), anchor_y, anchor_x, frames.device)
    for start, stop in frame_chunks(num_frames, chunk_size):
        chunk_masks = torch.stack([mask_chunk(mask, start, stop, height, width, threshold) for mask in masks], 1)
        chunk_frames, chunk_masks = _scale_chunk(frames[start:stop], chunk_masks, grid, threshold)
        out_frames[start:stop] = chunk_frames
        for i, out in enumerate(out_masks):
            out[start:stop] = chunk_masks[:, i]
    return out_frames, out_masks[0], out_masks[1:]


def _anchor_point(box, anchor: str) -> tuple[float, float]:
    """The fixed point ``(y, x)`` of the zoom for a union box ``(y0, y1, x0, x1)``."""
    y0, y1, x0, x1 = box
    # Pixel i spans [i - 0.5, i + 0.5]: the box's bottom edge is y1 + 0.5.
    anchor_y = (y0 + y1) / 2 if anchor == "center" else y1 + 0.5
    return anchor_y, (x0 + x1) / 2


def scaling_anchor(
    frames: torch.Tensor,
    character_mask: torch.Tensor,
    object_masks: Sequence[torch.Tensor] | None,
    anchor: str = "center",
    threshold: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[float, float] | None:
    """The point ``(y, x)`` (pixel-index coordinates) that ``scale_about_anchor`` zooms about, or None
    when the union of the masks is empty. A point ``q`` of the clip moves to ``anchor + (q - anchor) * scale``,
    which is how the trainer moves keypoints with the character."""
    check_frames(frames)
    character_mask, object_masks = _check_masks_for_augment(frames, character_mask, object_masks)
    if anchor not in ("center", "bottom"):
        raise AA2Error(f"anchor must be 'center' or 'bottom', got {anchor!r}")
    num_frames, height, width = frames.shape[:3]
    box = _union_box([character_mask] + object_masks, num_frames, height, width, threshold, chunk_size)
    return None if box is None else _anchor_point(box, anchor)


def _scale_chunk(frames: torch.Tensor, masks: torch.Tensor, grid: torch.Tensor, threshold: float):
    """Warp frames ``[t, H, W, 3]`` and 0/1 masks ``[t, M, H, W]`` with ``grid``; composite over the source.

    The union of the masks, warped bilinearly, is the alpha of the scaled cut-out; the warped masks
    are thresholded back to 0/1.
    """
    source = frames.to(torch.float32)
    planes = torch.cat([source.movedim(-1, 1), masks.amax(dim=1, keepdim=True), masks], 1)
    warped = F.grid_sample(planes, grid.expand(len(frames), -1, -1, -1), mode="bilinear", padding_mode="zeros", align_corners=False)
    composite = torch.lerp(source, warped[:, :3].movedim(1, -1), warped[:, 3:4].movedim(1, -1))
    return composite.to(frames.dtype), binarize(warped[:, 4:], threshold)


def scale_clip_about_anchor(
    frames: torch.Tensor,
    character_mask: torch.Tensor,
    object_masks: Sequence[torch.Tensor] | None,
    scale: float,
    anchor: str = "center",
    planes: Sequence[torch.Tensor] | None = None,
    threshold: float = 0.5,
):
    """``scale_about_anchor`` for a whole training window in one warp, with extra planes (depth) carried along.

    The same values, bit for bit, as ``scale_about_anchor`` on the frames plus one more call per plane (a
    plane ``[T, H, W]`` warped and composited as a grey image), which ``tests/test_training_data.py`` checks.
    It is faster because:

    * one warp for everything: the frames (uint8 ``[T, H, W, 3]`` are read as ``value / 255``) are sampled
      where they lie, channels last, and the union alpha, the masks and the planes in **one** ``grid_sample``
      over stacked channels (bilinear weights depend only on the grid, so each channel is what a separate
      call would give); the depth is no longer a second full warp and composite of a 3-channel grey image;
    * only the output pixels whose bilinear neighbours can touch the masks' union box are sampled and
      composited. Elsewhere the warped alpha is exactly 0, so ``lerp(source, warped, 0)`` is the source and
      the thresholded masks are 0: those pixels are copied, not computed. Only the source pixels those
      outputs read (the box plus two pixels) are converted into the sampler's input;
    * masks are thresholded once, not once per use.

    Returns ``(frames, character_mask, object_masks, planes, point)``: float32 frames ``[T, H, W, 3]`` in
    0..1, 0/1 float masks, float32 planes, and the zoom's fixed point ``(y, x)`` (``scaling_anchor``),
    None when the union of the masks is empty (then nothing moves; masks come back thresholded).
    Masks and planes must have the frames' ``T, H, W`` (a training window does).
    """
    check_frames(frames)
    if anchor not in ("center", "bottom"):
        raise AA2Error(f"anchor must be 'center' or 'bottom', got {anchor!r}")
    if not float(scale) > 0:
        raise AA2Error(f"scale must be positive, got {scale}")
    num_frames, height, width = frames.shape[:3]
    masks = [character_mask] + list(object_masks or [])
    planes = list(planes or [])
    for name, tensor in [("character_mask", character_mask)] + [(f"object_masks[{i}]", m) for i, m in enumerate(masks[1:])] \
            + [(f"planes[{i}]", p) for i, p in enumerate(planes)]:
        if tuple(tensor.shape) != (num_frames, height, width):
            raise AA2Error(f"{name} must be [{num_frames}, {height}, {width}] like the frames; got {tuple(tensor.shape)}")
    out_frames = frames.to(torch.float32).div_(255) if frames.dtype == torch.uint8 else frames.to(torch.float32, copy=True)
    covered = [_at_least(mask, threshold) for mask in masks]  # as ``binarize``, without its float copy
    union = covered[0]
    for extra in covered[1:]:
        union = union | extra
    out_planes = [p.to(torch.float32, copy=True) for p in planes]
    seen = union.amax(dim=0)
    rows, cols = seen.any(dim=1), seen.any(dim=0)
    if not bool(rows.any()):
        return out_frames, *_unmoved(covered), out_planes, None
    ys, xs = rows.nonzero()[:, 0], cols.nonzero()[:, 0]
    box = int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1])
    point = _anchor_point(box, anchor)
    if float(scale) == 1.0:
        return out_frames, *_unmoved(covered), out_planes, point

    y0, y1, x0, x1 = box
    # Output pixels that read the box: source coordinate within 1.5 px of it (its bilinear neighbours then
    # lie within 2 px; an output reading farther away has all four neighbours outside the box, alpha 0).
    out_rows = _reading_range(height, float(scale), point[0], y0 - 1.5, y1 + 1.5)
    out_cols = _reading_range(width, float(scale), point[1], x0 - 1.5, x1 + 1.5)
    out_masks = [torch.zeros(num_frames, height, width, dtype=torch.float32, device=frames.device) for _ in masks]
    if out_rows is None or out_cols is None:  # a zoom so small that no output pixel lands on the box
        return out_frames, out_masks[0], out_masks[1:], out_planes, point
    (r0, r1), (c0, c1) = out_rows, out_cols
    sy = slice(max(0, y0 - 2), min(height, y1 + 3))  # the source pixels those outputs read
    sx = slice(max(0, x0 - 2), min(width, x1 + 3))
    grid = _scaling_grid(height, width, float(scale), point[0], point[1], frames.device)[:, r0:r1, c0:c1]
    grid = grid.expand(num_frames, -1, -1, -1)
    # The frames are sampled in place, channels last through strides (no copy); the alpha, masks and planes
    # are stacked, only the [sy, sx] region that the sampler reads for these outputs written (the rest of
    # ``source`` is never read).
    warped_rgb = F.grid_sample(out_frames.movedim(-1, 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    source = torch.empty(num_frames, 1 + len(masks) + len(planes), height, width, dtype=torch.float32, device=frames.device)
    for i, plane in enumerate([union] + covered + out_planes):
        source[:, i, sy, sx] = plane[:, sy, sx]
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = warped[:, 0]
    out_frames[:, r0:r1, c0:c1].lerp_(warped_rgb.movedim(1, -1), alpha[..., None])
    for i, out in enumerate(out_masks):
        out[:, r0:r1, c0:c1] = warped[:, 1 + i] >= threshold  # binarize
    for i, out in enumerate(out_planes):
        out[:, r0:r1, c0:c1].lerp_(warped[:, 1 + len(masks) + i], alpha)
    return out_frames, out_masks[0], out_masks[1:], out_planes, point


def _unmoved(covered: list[torch.Tensor]):
    masks = [c.to(torch.float32) for c in covered]
    return masks[0], masks[1:]


def _at_least(mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """``mask >= threshold`` (bool); on uint8 masks through the equivalent integer comparison, which skips
    torch's per-element cast to float (the integer is found with the float comparison itself)."""
    if mask.dtype != torch.uint8:
        return mask >= threshold
    passing = (torch.arange(256, dtype=torch.uint8) >= threshold).nonzero()
    if len(passing) == 0:
        return torch.zeros(mask.shape, dtype=torch.bool, device=mask.device)
    return mask >= int(passing[0, 0])  # the test is monotone in the value


def _reading_range(length: int, scale: float, anchor: float, low: float, high: float):
    """``(start, stop)`` of the output pixels whose source coordinate ``anchor + (p - anchor) / scale``
    lies in ``[low, high]`` (a run, the map being increasing), or None when there is none."""
    coords = anchor + (torch.arange(length, dtype=torch.float64) - anchor) / scale
    inside = ((coords >= low) & (coords <= high)).nonzero()[:, 0]
    if len(inside) == 0:
        return None
    return int(inside[0]), int(inside[-1]) + 1


def random_scale_augment(
    frames: torch.Tensor,
    character_mask: torch.Tensor,
    object_masks: Sequence[torch.Tensor] | None = None,
    scale_range: tuple[float, float] = (0.8, 1.2),
    generator: torch.Generator | None = None,
    anchor: str = "center",
    threshold: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK,
):
    """Random scale augmentation (paper, section 3.2), one scale for the whole clip.

    The formulated mask always contains the character, a bias that would teach the model to paint
    characters smaller than the mask. Rescaling the character (and the objects it interacts with)
    by a random factor from ``scale_range`` before the mask is formulated breaks that: with a scale
    above 1 the character spills out of a mask formulated from the source. See
    ``scale_about_anchor`` for the compositing.

    Returns ``(frames, character_mask, object_masks)``; deterministic for a seeded ``generator``.
    """
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high:
        raise AA2Error(f"scale_range must be (low, high) with 0 < low <= high, got {tuple(scale_range)}")
    draw = float(torch.rand((), generator=generator))
    scale = low + (high - low) * draw
    return scale_about_anchor(frames, character_mask, object_masks, scale, anchor, threshold, chunk_size)


# ---------------------------------------------------------------------------------------------------
# The regenerated region at inference: driving person + the character's own extent, objects kept
# ---------------------------------------------------------------------------------------------------

# The character's extent from its (retargeted) skeleton: capsules around the limbs, the filled torso and a head
# disc, their radius a fraction of the body's size (``body_scale``: the longer of the neck-to-mid-hip length and
# 1.25 x the shoulder width, as a person seen from the side keeps its torso length but not its shoulder width).
# 0.2 of the torso length is about 10 cm on an adult: a limb's half-width with loose clothes; the head disc
# (0.3) covers hair. ``SKELETON_DILATE`` pixels are added on top, and the shape-agnostic blocks grow it again.
SKELETON_RADIUS = 0.2
SKELETON_HEAD_RADIUS = 0.3
SKELETON_DILATE = 0
# OpenPose-18 (0-based) limb pairs: arms, legs, neck-nose, face; the torso is filled from TORSO_JOINTS.
SKELETON_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
TORSO_JOINTS = (1, 2, 5, 8, 11)  # neck, shoulders, hips
HEAD_JOINTS = (0, 14, 15, 16, 17)  # nose, eyes, ears
FOOT_OF = ((13, (0, 1, 2)), (10, (3, 4, 5)))  # ankle -> its foot points (Pose.feet: left 0..2, right 3..5)


def body_scale(body) -> float | None:
    """Size of a body ``(18, 3)`` (pixels; confidence > 0 = visible): the longer of the neck-to-mid-hip length and
    1.25 x the shoulder width, or None when neither can be measured."""
    import numpy as np

    body = np.asarray(body, dtype=np.float64)
    seen = body[:, 2] > 0
    sizes = []
    hips = [j for j in (8, 11) if seen[j]]
    if seen[1] and hips:
        sizes.append(float(np.linalg.norm(body[1, :2] - body[hips, :2].mean(axis=0))))
    if seen[2] and seen[5]:
        sizes.append(1.25 * float(np.linalg.norm(body[2, :2] - body[5, :2])))
    sizes = [s for s in sizes if s > 0]
    return max(sizes) if sizes else None


def skeleton_extent(poses, height: int, width: int, radius: float = SKELETON_RADIUS,
                    head_radius: float = SKELETON_HEAD_RADIUS, dilate: float = SKELETON_DILATE) -> torch.Tensor:
    """The character's extent from its skeleton, one 0/1 mask ``[T, height, width]`` per ``Pose``.

    Give the skeleton the character is animated with (the output of AA2 Retarget Pose: the driving motion with the
    reference's proportions), so a character wider or taller than the driving person is inside the region. Per
    frame: capsules of radius ``radius * body_scale + dilate`` pixels around the limbs (``SKELETON_LIMBS``), the
    feet and the hand points, the convex hull of neck, shoulders and hips filled and grown by the same radius, and
    a disc of ``head_radius * body_scale + dilate`` about the visible head points' mean. Frames whose body size
    cannot be measured use the clip's median size; with none measurable, 0.25 of the visible joints' extent.
    Poses on another canvas are rescaled to ``height x width``; an empty pose gives an empty frame.
    """
    import numpy as np

    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise AA2Error(f"skeleton_extent: height and width must be positive, got {height}x{width}")
    if not float(radius) >= 0 or not float(head_radius) >= 0 or not float(dilate) >= 0:
        raise AA2Error(f"skeleton_extent: radius, head_radius and dilate must be 0 or more, got {radius}, {head_radius}, {dilate}")
    poses = list(poses)
    if not poses or not all(hasattr(p, "body") and hasattr(p, "resized") for p in poses):
        raise AA2Error("skeleton_extent: poses must be a non-empty list of Pose (one per frame), e.g. from "
                       "parse_pose_keypoint on AA2 Retarget Pose's POSE_KEYPOINT")
    poses = [p.resized(height, width) for p in poses]
    scales = [body_scale(p.body) for p in poses]
    known = [s for s in scales if s is not None]
    fallback = float(np.median(known)) if known else None
    out = torch.zeros(len(poses), height, width, dtype=torch.float32)
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    for t, (pose, scale) in enumerate(zip(poses, scales)):
        body = np.asarray(pose.body, dtype=np.float64)
        seen = body[:, 2] > 0
        points = [body[seen, :2]]
        for part in (pose.hands, pose.feet):
            if part is not None:
                part = np.asarray(part, dtype=np.float64).reshape(-1, 3)
                points.append(part[part[:, 2] > 0, :2])
        points = np.concatenate(points)
        if len(points) == 0:
            continue
        if scale is None:
            scale = fallback if fallback is not None else 0.25 * float(np.ptp(points, axis=0).max(initial=0.0))
        r = float(radius) * scale + float(dilate)
        frame = out[t]
        for a, b in SKELETON_LIMBS:
            if seen[a] and seen[b]:
                _paint_capsule(frame, body[a, :2], body[b, :2], r, ys, xs)
        for j in np.nonzero(seen)[0]:  # lone joints (a limb's other end missing) still count
            _paint_capsule(frame, body[j, :2], body[j, :2], r, ys, xs)
        if pose.feet is not None:
            feet = np.asarray(pose.feet, dtype=np.float64)
            for ankle, idx in FOOT_OF:
                for i in idx:
                    if feet[i, 2] > 0:
                        start = body[ankle, :2] if seen[ankle] else feet[i, :2]
                        _paint_capsule(frame, start, feet[i, :2], r, ys, xs)
        if pose.hands is not None:
            hands = np.asarray(pose.hands, dtype=np.float64).reshape(-1, 3)
            for x, y, c in hands:
                if c > 0:
                    _paint_capsule(frame, (x, y), (x, y), 0.5 * r, ys, xs)
        torso = body[[j for j in TORSO_JOINTS if seen[j]], :2]
        if len(torso) >= 3:
            _paint_convex(frame, torso, ys, xs)
        head = body[[j for j in HEAD_JOINTS if seen[j]], :2]
        if len(head):
            centre = head.mean(axis=0)
            _paint_capsule(frame, centre, centre, float(head_radius) * scale + float(dilate), ys, xs)
    return out


def _paint_capsule(frame: torch.Tensor, p0, p1, r: float, ys: torch.Tensor, xs: torch.Tensor) -> None:
    """Set to 1 the pixels (centres at integer coordinates) within ``r`` of the segment ``p0 p1`` (x, y)."""
    (x0, y0), (x1, y1) = (float(v) for v in p0), (float(v) for v in p1)
    height, width = frame.shape
    top, bottom = max(0, math.floor(min(y0, y1) - r)), min(height, math.ceil(max(y0, y1) + r) + 1)
    left, right = max(0, math.floor(min(x0, x1) - r)), min(width, math.ceil(max(x0, x1) + r) + 1)
    if top >= bottom or left >= right:
        return
    py, px = ys[top:bottom] - y0, xs[:, left:right] - x0
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    along = ((px * dx + py * dy) / length2).clamp(0, 1) if length2 > 0 else torch.zeros_like(px + py)
    dist2 = (px - along * dx) ** 2 + (py - along * dy) ** 2
    frame[top:bottom, left:right] = torch.maximum(frame[top:bottom, left:right], (dist2 <= r * r).float())


def _paint_convex(frame: torch.Tensor, points, ys: torch.Tensor, xs: torch.Tensor) -> None:
    """Fill the convex hull of ``points`` (x, y rows) on ``frame`` (its edges are drawn by the capsules)."""
    import numpy as np

    pts = sorted({(float(x), float(y)) for x, y in np.asarray(points)})
    if len(pts) < 3:
        return

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:  # Andrew's monotone chain
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    if len(hull) < 3:
        return
    inside = torch.ones(frame.shape, dtype=torch.bool)
    for (ax, ay), (bx, by) in zip(hull, hull[1:] + hull[:1]):  # counter-clockwise: inside is left of each edge
        inside &= (bx - ax) * (ys - ay) - (by - ay) * (xs - ax) >= 0
    frame[inside] = 1.0


def regenerated_region(
    character_mask: torch.Tensor,
    character_poses=None,
    object_mask: torch.Tensor | None = None,
    kh: int | None = None,
    kw: int | None = None,
    generator: torch.Generator | None = None,
    threshold: float = 0.5,
    inference: str = INFERENCE_READING,
    skeleton_radius: float = SKELETON_RADIUS,
    skeleton_dilate: float = SKELETON_DILATE,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """The region the model regenerates, ``[T, H, W]`` 0/1 at the character mask's size.

    ``shape_agnostic_mask`` of the union of the driving person's mask and, when ``character_poses`` are given,
    the character's extent from its skeleton (``skeleton_extent``): at inference the character may be wider or
    taller than the driving person (another body after AA2 Retarget Pose), and a region cut to the driving
    person would clip it. The union holds every driving-person pixel, so no part of the driving person (a
    "ghost") is left outside the region. Pixels of ``object_mask`` that are not driving-person pixels are taken
    out of the region: they stay the driving video's (the composite keeps them exactly, ``composite_environment``'s
    ``keep``). Where the two masks overlap the person wins, so the region never leaves a ghost. Without poses
    and objects this is ``shape_agnostic_mask(character_mask, kh, kw, ...)`` exactly.
    """
    character_mask = as_mask_batch(character_mask, "character_mask")
    num_frames, height, width = character_mask.shape
    frames = num_frames
    if character_poses is not None:
        character_poses = list(character_poses)
        frames = len(character_poses) if num_frames == 1 else num_frames
        if len(character_poses) not in (1, frames):
            raise AA2Error(f"character_poses has {len(character_poses)} frames but character_mask has {num_frames} "
                           "(give one pose per frame of the driving video)")
    if object_mask is not None:
        object_mask = as_mask_batch(object_mask, "object_mask")
        frames = max(frames, object_mask.shape[0]) if num_frames == 1 else frames
        check_mask_frames(object_mask, frames, "object_mask")
        if character_poses is not None and len(character_poses) not in (1, frames):
            raise AA2Error(f"character_poses has {len(character_poses)} frames but object_mask has {frames} "
                           "(give one pose and one object mask per frame of the driving video)")
    if character_poses is None and object_mask is None:
        return shape_agnostic_mask(character_mask, kh, kw, generator=generator, threshold=threshold,
                                   chunk_size=chunk_size, inference=inference)
    person = torch.empty(frames, height, width, dtype=torch.float32, device=character_mask.device)
    for start, stop in frame_chunks(frames, chunk_size):
        person[start:stop] = mask_chunk(character_mask, start, stop, height, width, threshold)
    union = person
    if character_poses is not None:
        if len(character_poses) == 1:
            character_poses = character_poses * frames
        extent = skeleton_extent(character_poses, height, width, skeleton_radius, SKELETON_HEAD_RADIUS, skeleton_dilate)
        union = torch.maximum(person, extent.to(person.device))
    region = shape_agnostic_mask(union, kh, kw, generator=generator, threshold=0.5, chunk_size=chunk_size,
                                 inference=inference)
    if object_mask is not None:
        for start, stop in frame_chunks(frames, chunk_size):
            kept = mask_chunk(object_mask, start, stop, height, width, threshold) * (1 - person[start:stop])
            region[start:stop] *= 1 - kept
    return region
