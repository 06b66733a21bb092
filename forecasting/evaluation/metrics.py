"""Forecast metrics as pure tensor functions.

Conventions: ``samples`` ``[N, S, H]``, quantiles ``[N, Q, H]``, point forecasts and truth ``y``
``[N, H]``, ``mask`` ``[N, H]`` bool (True = observed truth). Unobserved truth is excluded the same
way everywhere: its terms are dropped from numerators, denominators and counts. Functions that
return one number return a 0-d tensor.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..forecast import DEFAULT_QUANTILES

__all__ = [
    "crps_ensemble", "crps", "scaled_crps", "quantile_loss", "wql", "seasonal_scale", "mase",
    "coverage", "pit_values", "pit_coverage", "interval_score", "energy_score", "wspl",
]


def _mask(y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.isfinite(y)
    if mask.shape != y.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match truth shape {tuple(y.shape)}")
    return mask.bool() & torch.isfinite(y)


def _abs_sum(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Sum of |y| over observed points: the denominator of WQL and scaled CRPS. NaN (not inf) when
    it is 0, so an all-zero or fully masked window shows as undefined rather than as a huge score."""
    total = (torch.nan_to_num(y).abs() * m).sum()
    return torch.where(total > 0, total, torch.full_like(total, float("nan")))


def _mean_over(total: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``total`` divided by the number of points in ``m``; NaN when there is none (a window with no
    observed truth is undefined, not a perfect 0)."""
    total = total if total.is_floating_point() else total.float()
    n = m.sum()
    return torch.where(n > 0, total / n.clamp_min(1), torch.full_like(total, float("nan")))


def _check(pred: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if pred.shape[0] != y.shape[0] or pred.shape[-1] != y.shape[-1]:
        raise ValueError(f"{what} shape {tuple(pred.shape)} does not match truth shape {tuple(y.shape)}")


def crps_ensemble(samples: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact CRPS of the empirical distribution of ``samples`` ``[..., S, H]`` at ``y`` ``[..., H]``.

    CRPS = E|X - y| - E|X - X'|/2 with both expectations over the S samples (properscoring's
    ``crps_ensemble``). The pair term uses the sorted form sum_i x_(i) (2i - S - 1) / S^2, so the
    cost is O(S log S) per point instead of O(S^2). Returns ``[..., H]``."""
    if samples.dim() != y.dim() + 1 or samples.shape[:-2] != y.shape[:-1] or samples.shape[-1] != y.shape[-1]:
        raise ValueError(f"samples shape {tuple(samples.shape)} does not match truth shape {tuple(y.shape)}: "
                         "samples are [..., S, H] for truth [..., H] (e.g. [N, S, H] and [N, H])")
    S = samples.shape[-2]
    y_ = torch.nan_to_num(y)
    abs_err = (samples - y_.unsqueeze(-2)).abs().mean(-2)
    srt = samples.sort(dim=-2).values
    w = (2 * torch.arange(1, S + 1, device=samples.device, dtype=samples.dtype) - S - 1)
    pair = (srt * w[:, None]).sum(-2) / (S * S)
    return abs_err - pair


def crps(samples: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean CRPS over observed (series, step) points, in the target's units."""
    m = _mask(y, mask)
    return _mean_over((crps_ensemble(samples, y) * m).sum(), m)


def scaled_crps(samples: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of CRPS over observed points divided by the sum of |y| there (comparable with WQL)."""
    m = _mask(y, mask)
    return (crps_ensemble(samples, y) * m).sum() / _abs_sum(y, m)


def quantile_loss(q_pred: torch.Tensor, y: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """Pinball loss ``[N, Q, H]``: (y - q) * (tau - 1{y < q})."""
    _check(q_pred, y, "quantiles")
    if q_pred.dim() != 3 or q_pred.shape[1] != len(levels):
        raise ValueError(f"quantiles shape {tuple(q_pred.shape)} must be [N, Q, H] with Q = {len(levels)} levels")
    tau = torch.as_tensor(list(levels), dtype=q_pred.dtype, device=q_pred.device)[None, :, None]
    diff = torch.nan_to_num(y)[:, None, :] - q_pred
    return torch.maximum(tau * diff, (tau - 1) * diff)


def wql(q_pred: torch.Tensor, y: torch.Tensor, levels: Sequence[float] = DEFAULT_QUANTILES,
        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted quantile loss as GluonTS's ``mean_wQuantileLoss`` and fev-bench's WQL define it:
    the mean over levels of 2 * sum_{i,t} pinball / sum_{i,t} |y|, sums over observed points of all
    series. ``q_pred`` is ``[N, Q, H]`` for the ``levels``."""
    _check(q_pred, y, "quantiles")
    if q_pred.shape[1] != len(levels):
        raise ValueError(f"quantiles hold {q_pred.shape[1]} levels but {len(levels)} levels were given")
    m = _mask(y, mask)
    loss = (quantile_loss(q_pred, y, levels) * m[:, None, :]).sum((0, 2))
    return (2 * loss / _abs_sum(y, m)).mean()


def seasonal_scale(history: torch.Tensor, history_mask: torch.Tensor, season: int = 1) -> torch.Tensor:
    """``[N]`` mean |y_t - y_{t-season}| over pairs where both ends are observed (MASE's scale).

    NaN where a series has no such pair."""
    if history.shape[1] <= season:
        return torch.full(history.shape[:1], float("nan"), dtype=history.dtype, device=history.device)
    d = (history[:, season:] - history[:, :-season]).abs()
    ok = history_mask[:, season:] & history_mask[:, :-season]
    n = ok.sum(1)
    return torch.where(n > 0, (d * ok).sum(1) / n.clamp_min(1), torch.full_like(n, float("nan"), dtype=history.dtype))


def mase(point: torch.Tensor, y: torch.Tensor, scale: torch.Tensor,
         mask: torch.Tensor | None = None) -> torch.Tensor:
    """fev-bench's MASE: |y - point| / scale_i pooled (averaged) over all observed series x steps.

    ``scale`` ``[N]`` comes from :func:`seasonal_scale` on each series' training history. As in
    fev, a series with no valid difference in its history gets scale 1, and points of a series whose
    scale is exactly 0 are left out of the mean. A non-finite point forecast gives NaN."""
    _check(point, y, "point forecast")
    if scale.shape != (y.shape[0],):
        raise ValueError(f"scale shape {tuple(scale.shape)} must be [N] = ({y.shape[0]},): one per series "
                         "(see seasonal_scale)")
    scale = torch.where(torch.isnan(scale), torch.ones_like(scale), scale)
    err = (point - torch.nan_to_num(y)).abs() / scale[:, None]
    m = _mask(y, mask) & (scale != 0)[:, None]
    if not bool(torch.isfinite(point[m]).all()):  # a non-finite forecast is not silently dropped
        return torch.tensor(float("nan"), dtype=err.dtype, device=err.device)
    return _mean_over(torch.where(m, err, torch.zeros_like(err)).sum(), m)


def coverage(lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of observed points with lower <= y <= upper (NaN when no point is observed)."""
    _check(lower, y, "lower bounds")
    _check(upper, y, "upper bounds")
    m = _mask(y, mask)
    inside = (y >= lower) & (y <= upper)
    return _mean_over((inside & m).sum(), m)


def pit_values(samples: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomised PIT of each observed truth, ``P(X < y) + V P(X = y)`` with V uniform (Czado,
    Gneiting & Held, 2009): ``samples`` ``[N, S, H]``, ``y`` ``[N, H]`` -> ``[M]`` values in [0, 1]
    for the M observed points (series-major order). Uniform when the forecast is calibrated, for
    counts too."""
    m = _mask(y, mask)
    y_ = torch.nan_to_num(y)[:, None, :]
    below = (samples < y_).float().mean(1)
    equal = (samples == y_).float().mean(1)
    v = torch.rand(y.shape, generator=generator, device=y.device, dtype=below.dtype)
    return (below + v * equal)[m]


def pit_coverage(samples: torch.Tensor, y: torch.Tensor, level: float = 0.8, mask: torch.Tensor | None = None,
                 seed: int = 0, chunk: int = 2048) -> torch.Tensor:
    """Share of observed points whose randomised PIT (:func:`pit_values`) lies in the central
    ``level`` interval. For continuous forecasts this is the interval coverage; for counts it is
    the calibration measure that interval coverage is not: with many zeros the 10 % quantile is 0
    for most series, every zero counts as covered, and a calibrated forecast of intermittent
    demand shows, e.g., 93 % "coverage" of its 80 % interval. Calibrated: ``level``. V comes from
    a generator seeded with ``seed`` (the same number on every call); series are processed in
    chunks of ``chunk`` so memory stays bounded."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    _check(samples, y, "samples")
    m = _mask(y, mask)
    lo, hi = (1 - level) / 2, (1 + level) / 2
    gen = torch.Generator(device=samples.device).manual_seed(seed)
    inside = 0
    for a in range(0, samples.shape[0], chunk):
        u = pit_values(samples[a:a + chunk], y[a:a + chunk], m[a:a + chunk], gen)
        inside += int(((u >= lo) & (u <= hi)).sum())
    return torch.tensor(inside / int(m.sum()) if bool(m.any()) else float("nan"))


def interval_score(lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor, alpha: float,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean interval score (Gneiting & Raftery 2007) of the central (1 - alpha) interval:
    (u - l) + 2/alpha (l - y) 1{y < l} + 2/alpha (y - u) 1{y > u}, over observed points."""
    _check(lower, y, "lower bounds")
    _check(upper, y, "upper bounds")
    m = _mask(y, mask)
    y_ = torch.nan_to_num(y)
    s = (upper - lower) + 2 / alpha * ((lower - y_).clamp_min(0) + (y_ - upper).clamp_min(0))
    return _mean_over((s * m).sum(), m)


def energy_score(samples: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None,
                 chunk: int = 256) -> torch.Tensor:
    """Energy score of joint samples, one number per batch entry.

    ``samples`` ``[B, S, D]`` and ``y`` ``[B, D]``: ES = E||X - y|| - E||X - X'||/2 over the D
    dimensions (e.g. all series x steps of a window: B = 1, D = N*H). Unobserved dimensions are
    dropped (set equal in X and y). Pairwise distances run in chunks of ``chunk`` samples so memory
    stays O(chunk * S)."""
    if samples.ndim != 3 or y.shape != (samples.shape[0], samples.shape[2]):
        raise ValueError(f"energy_score needs samples [B, S, D] and y [B, D], got {tuple(samples.shape)} and {tuple(y.shape)}")
    m = _mask(y, mask)
    # centred on the truth (ES is shift-invariant): large levels do not eat the float precision
    x = (samples - torch.nan_to_num(y)[:, None, :]) * m[:, None, :]
    term1 = x.norm(dim=-1).mean(-1)
    S = x.shape[1]
    pair = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for i in range(0, S, chunk):  # chunks of samples bound memory; O(S / chunk) iterations
        # direct differences: cdist's matmul shortcut (used above 25 samples) cancels catastrophically
        # when the spread is small against the level
        d = torch.cdist(x[:, i:i + chunk], x, compute_mode="donot_use_mm_for_euclid_dist")
        pair += d.sum((1, 2), dtype=torch.float64)
    return (term1.double() - pair / (2 * S * S)).to(x.dtype)


M5_QUANTILES = (0.005, 0.025, 0.165, 0.25, 0.5, 0.75, 0.835, 0.975, 0.995)


def wspl(q_pred: torch.Tensor, y: torch.Tensor, scale: torch.Tensor, weights: torch.Tensor,
         levels: Sequence[float] = M5_QUANTILES, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted scaled pinball loss (M5 Uncertainty) for a set of aggregate series.

    ``q_pred`` ``[A, Q, H]`` quantiles of the A aggregate series, ``y`` ``[A, H]`` their truth,
    ``scale`` ``[A]`` mean |y_t - y_{t-1}| of each aggregate's history (from its first non-zero
    sale), ``weights`` ``[A]`` summing to 1 within each aggregation level. Returns sum_a w_a *
    mean_{q,t} pinball / scale_a divided by the number of levels (weights summing to L)."""
    _check(q_pred, y, "quantiles")
    m = _mask(y, mask)
    pin = (quantile_loss(q_pred, y, levels) * m[:, None, :]).sum((1, 2)) / (m.sum(1) * len(levels)).clamp_min(1)
    ok = (scale > 0) & torch.isfinite(scale)
    spl = torch.where(ok, pin / torch.where(ok, scale, torch.ones_like(scale)), torch.zeros_like(pin))
    return (weights * spl).sum() / weights.sum().round().clamp_min(1)
