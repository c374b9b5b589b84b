"""Issue 19: the Animate Anyone 2 recipe as the paper intends (shape-agnostic mask sizes, scale augmentation
from the unscaled mask, the reference crop and background) and the video metrics' resize as DisCo's."""

import numpy as np
import pytest
import torch

from aa2_core.metrics import clips


# ---------------------------------------------------------------------------------------------------
# Metrics: DisCo's DatasetFVDVideoResize does not clip the bicubic overshoot
# ---------------------------------------------------------------------------------------------------


def _edge_frame():
    frame = np.zeros((32, 32, 3), np.uint8)
    frame[:, 16:] = 255  # a hard black/white edge: bicubic rings on both sides
    frame[8:24, 4:10] = 255
    return frame


def test_clip_resize_keeps_the_bicubic_overshoot_as_disco():
    from PIL import Image

    frame = _edge_frame()
    out = clips.resize_bicubic(frame, 112)
    # DisCo: clean-fid's make_resizer("PIL", quantize_after=False, "bicubic") -> per channel float32 mode "F", no clip
    disco = np.concatenate([np.asarray(Image.fromarray(frame[..., c].astype(np.float32), mode="F")
                                       .resize((112, 112), resample=Image.BICUBIC)).reshape(112, 112, 1)
                            for c in range(3)], axis=2).astype(np.float32)
    assert out.dtype == np.float32 and np.array_equal(out, disco)
    assert out.min() < -1 and out.max() > 256  # the overshoot is there and kept
    clipped = clips.resize_bicubic(frame, 112, clip=True)
    assert clipped.min() == 0 and clipped.max() == 255  # clean-fid's later resizer, on request
    tensor = clips.clip_tensor(frame[None], 112)
    assert tensor.shape == (3, 1, 112, 112) and torch.equal(tensor[:, 0].permute(1, 2, 0), torch.from_numpy(disco))
