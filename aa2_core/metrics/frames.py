"""Per-frame metrics on 8-bit RGB videos (``[T, H, W, 3]`` uint8), all in float64.

* ``psnr_star``: DisCo's corrected PSNR (tool/metrics/ssim_l1_lpips_psnr.py ``psnr_eval`` after its overflow
  fix): per frame ``20 log10(255 / sqrt(MSE))`` on the 0..255 values cast to float64, 100 when MSE is 0,
  then the mean over frames.
* ``squared_error``: sums for plain PSNR over a whole set (one MSE over every pixel, as torchmetrics'
  ``PeakSignalNoiseRatio(data_range=255)`` accumulates it); ``psnr_from`` turns them into decibels.
* ``ssim``: Wang et al. 2004 with an 11-tap Gaussian window (sigma 1.5) on each RGB channel, population
  covariances, averaged over the valid region (5 px border left out, as the reference MATLAB code and skimage
  with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``). torchmetrics' SSIM uses the same
  window but also averages the border, computed on reflect-padded frames: its map, cropped, gives our number.
  ``ssim_disco`` is DisCo's variant: OpenCV grayscale, skimage defaults (7x7 uniform window, sample covariances).
* ``l1_disco``: DisCo's ``l1_eval``: mean |a - b| over the 0..255 values divided by H*W (the papers' "L1").
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PSNR_CAP = 100.0  # DisCo returns 100 for identical frames
PEAK = 255.0


def psnr_star(gen: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-frame PSNR* values ``[T]`` (DisCo)."""
    diff = gen.astype(np.float64) - truth.astype(np.float64)
    mse = (diff ** 2).reshape(len(diff), -1).mean(axis=1)
    out = np.full(len(mse), PSNR_CAP)
    nonzero = mse > 0
    out[nonzero] = 20 * np.log10(PEAK / np.sqrt(mse[nonzero]))
    return out


def squared_error(gen: np.ndarray, truth: np.ndarray) -> tuple[float, int]:
    """(sum of squared errors, number of values), to pool into one MSE over many videos."""
    diff = gen.astype(np.float64) - truth.astype(np.float64)
    return float((diff ** 2).sum()), diff.size


def psnr_from(sse: float, count: int) -> float:
    mse = sse / count
    return math.inf if mse == 0 else 10 * math.log10(PEAK ** 2 / mse)


def l1_disco(gen: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-frame L1 values ``[T]`` (DisCo: mean absolute 0..255 difference / (H*W))."""
    t, h, w = gen.shape[:3]
    diff = np.abs(gen.astype(np.float64) - truth.astype(np.float64))
    return diff.reshape(t, -1).mean(axis=1) / (h * w)


def _window(gaussian: bool) -> np.ndarray:
    """1-D weights: 11-tap Gaussian (sigma 1.5, radius int(3.5 * 1.5 + 0.5) = 5, as scipy's gaussian_filter
    and torchmetrics build it), or skimage's default 7-tap uniform window."""
    if not gaussian:
        return np.full(7, 1 / 7)
    x = np.arange(-5, 6, dtype=np.float64)
    k = np.exp(-0.5 * (x / 1.5) ** 2)
    return k / k.sum()


def _filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable weighted mean over every full window (the valid region: no border, so no padding rule)."""
    x = np.tensordot(sliding_window_view(x, len(k), axis=0), k, axes=([-1], [0]))
    return np.tensordot(sliding_window_view(x, len(k), axis=1), k, axes=([-1], [0]))


def ssim_image(a: np.ndarray, b: np.ndarray, gaussian: bool = True, sample_covariance: bool = False,
               data_range: float = PEAK) -> float:
    """Mean SSIM of two ``[H, W]`` or ``[H, W, C]`` images (channels averaged), like skimage's
    ``structural_similarity``: windowed statistics averaged over the valid region."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.ndim == 3:
        return float(np.mean([ssim_image(a[..., c], b[..., c], gaussian, sample_covariance, data_range)
                              for c in range(a.shape[-1])]))
    k = _window(gaussian)
    if min(a.shape) < len(k):
        raise ValueError(f"SSIM needs frames of at least {len(k)}x{len(k)} pixels, got {a.shape[1]}x{a.shape[0]}")
    n = len(k) ** 2
    cov_norm = n / (n - 1) if sample_covariance else 1.0  # skimage's default unbiased window statistics
    ux, uy = _filter_valid(a, k), _filter_valid(b, k)
    vx = cov_norm * (_filter_valid(a * a, k) - ux * ux)
    vy = cov_norm * (_filter_valid(b * b, k) - uy * uy)
    vxy = cov_norm * (_filter_valid(a * b, k) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


def ssim(gen: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-frame SSIM values ``[T]`` (Gaussian window, RGB)."""
    return np.array([ssim_image(g, t) for g, t in zip(gen, truth)])


def ssim_disco(gen: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-frame SSIM values ``[T]`` as DisCo computes them (grayscale, 7x7 uniform window, sample covariances)."""
    return np.array([ssim_image(gray(g), gray(t), gaussian=False, sample_covariance=True) for g, t in zip(gen, truth)])


def gray(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's 8-bit RGB -> gray (DisCo converts with ``cv2.COLOR_BGR2GRAY`` on its BGR reads; same weights)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
