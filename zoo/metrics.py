"""Image-quality and clustering scores shared by the tasks.

``psnr`` and ``ssim`` score each item of a batch separately (B×C×H×W in [0, data_range] in, a
length-B tensor out), so a split's figure is the mean over items, not over pixels of one big
image. ``ssim`` is differentiable and serves as a loss term too. ``cluster_scores`` judges an
embedding by how well k-means recovers the true classes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# An exact reconstruction has infinite PSNR; one such item would make a split's mean infinite
# (and MLflow drops non-finite metrics), so the per-item MSE is floored: identical images score
# this many dB. 100 dB is far above anything an 8-bit image can differ by (48 dB for one level).
PSNR_MAX = 100.0


def psnr(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each item, in dB (capped at :data:`PSNR_MAX`)."""
    _check_pair(pred, target)
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    floor = data_range**2 * 10 ** (-PSNR_MAX / 10)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(floor))


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """Structural similarity of each item (Wang et al. 2004), averaged over channels and pixels.

    The standard form: an 11-tap Gaussian window (sigma 1.5), K1=0.01, K2=0.03, statistics over
    the window positions that fit inside the image (no padding, as scikit-image does). For an
    image smaller than the window the window shrinks to the image's side (odd), so 8 px digits
    still get a score.
    """
    _check_pair(pred, target)
    x, y = pred.float(), target.float()
    channels = x.shape[1]
    size = min(window_size, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2  # odd, so the window has a centre
    coords = torch.arange(size, dtype=torch.float32, device=x.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, size, size)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)

    # Variances as E[x²] - E[x]² cancel badly in float32 on bright flat areas; they do not
    # change under a shift, so take them about each image's own mean, then shift the means back.
    mean_x, mean_y = x.mean((2, 3), keepdim=True), y.mean((2, 3), keepdim=True)
    x, y = x - mean_x, y - mean_y
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    mu_x, mu_y = mu_x + mean_x, mu_y + mean_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return score.flatten(1).mean(1)


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(
            f"expected two B×C×H×W batches of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def cluster_scores(
    points: np.ndarray,
    labels: np.ndarray,
    *,
    k: int,
    seed: int = 0,
    silhouette_points: int = 2000,
) -> tuple[dict[str, float], np.ndarray]:
    """K-means with ``k`` clusters on ``points`` (N×D), scored against the true ``labels``.

    Returns ``({"nmi", "ari", "silhouette"}, assignments)``. NMI and ARI compare the k-means
    assignments with the true classes (1 is a perfect match, 0 chance). The silhouette is taken
    with the *true* classes as clusters: it says how well the embedding itself separates the
    classes, independent of k-means' luck, so it compares embeddings fairly. It is O(N²), so it
    runs on a seeded random subsample of at most ``silhouette_points`` points; it
    is NaN when fewer than two classes are present (undefined).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels)
    if len(points) != len(labels):
        raise ValueError(f"{len(points)} points but {len(labels)} labels")
    k = max(1, min(k, len(points)))
    assignments = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(points)
    scores = {
        "nmi": float(normalized_mutual_info_score(labels, assignments)),
        "ari": float(adjusted_rand_score(labels, assignments)),
        "silhouette": math.nan,
    }
    present = len(np.unique(labels))
    if 2 <= present < len(points):
        scores["silhouette"] = float(
            silhouette_score(points, labels, sample_size=min(silhouette_points, len(points)), random_state=seed)
        )
    return scores, assignments


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> tuple[np.ndarray, ...]:
    """Per equal-width confidence bin of (0, 1]: the count, the mean confidence and the accuracy
    (NaN where empty) of the predictions that fall in it."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(index, confidence, bins) / count
        accuracy = np.bincount(index, correct, bins) / count
    return count, mean_conf, accuracy


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): the gap between accuracy and confidence in each of ``bins``
    equal-width confidence bins, weighted by the share of predictions in it. 0: calibrated."""
    count, mean_conf, accuracy = calibration_bins(confidence, correct, bins)
    used = count > 0
    return float((count[used] * np.abs(accuracy[used] - mean_conf[used])).sum() / max(count.sum(), 1))
