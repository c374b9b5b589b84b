"""The Fréchet distance between two Gaussians fitted to features (FID, FID-VID and FVD all end here).

``|mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr sqrt(S1 S2)`` on float64 means and unbiased (N - 1) covariances,
as pytorch-fid's ``calculate_frechet_distance`` and DisCo's ``frechet_distance``. They take ``Tr sqrt(S1 S2)``
from ``scipy.linalg.sqrtm`` of the non-symmetric product, which drifts (1e-4 relative) or turns complex and
stops when there are fewer samples than feature dimensions, common with a few test clips and 400-d I3D
logits. We take the same trace from the eigenvalues of the symmetric PSD ``S1^1/2 S2 S1^1/2`` (similar to
``S1 S2``): on well-conditioned features the two agree to rounding (tests/test_metrics.py checks this).
"""

from __future__ import annotations

import numpy as np

from ..errors import AA2Error


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of ``[N, D]`` features, float64 (``np.cov`` divides by N - 1)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise AA2Error(f"a Fréchet distance needs at least 2 feature vectors per side, got {features.shape[0] if features.ndim else 0}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise AA2Error(f"feature sizes differ: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    d = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(max(d, 0.0))  # a distance: identical rank-deficient sets can round to -1e-6


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``Tr sqrt(S1 S2)`` = sum of sqrt(eigenvalues of S1^1/2 S2 S1^1/2); round-off negatives count as 0."""
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    return float(np.sqrt(np.clip(eig, 0, None)).sum())


def features_distance(gen: np.ndarray, truth: np.ndarray) -> float:
    return frechet_distance(*statistics(gen), *statistics(truth))
