"""Dependence across series and steps, imposed on independent marginal samples.

A model's samples ``[N, S, H]`` are independent across series: sample ``s`` of one series has
nothing to do with sample ``s`` of another. The methods here keep every (series, step) marginal
exactly (they only permute the S values at each (series, step)) and choose the permutation so that
the scenarios share the rank dependence learned from the history:

- :class:`SchaakeShuffle`: the ranks of historical windows of all series (a rank template across
  series and steps) decide which sample goes to which scenario (Clark et al., 2004).
- :class:`GaussianCopula`: a Gaussian copula fitted to PIT residuals of the history, with a
  low-rank plus diagonal correlation across series (``L L^T + diag(d)``, so it scales to
  thousands of series) and, for each factor and for the idiosyncratic part, a Toeplitz correlation
  across steps. Draws from it are turned into ranks the same way. Or fitted to the PIT of
  an earlier window's truth under the same model's forecast (:func:`forecast_pit`): the
  dependence of forecast errors themselves.
- :class:`Independent`: the samples as they are (the reference).

With ``paths=True`` both methods keep each series' sample paths whole instead (the model's own
dependence across steps) and only choose which path of one series goes with which path of another:
the paths of a series are ranked by their horizon total and matched to the ranks of a scalar key
per scenario (a historical window's mean for the shuffle, the copula draw summed over the horizon),
so the dependence across series is imposed on horizon totals only.

Each method is ``fit(panel, horizon)`` on the history (only what lies before each series' end is
used: pass a window's training panel) and ``apply(samples, seed) -> samples`` on ``[N, S, H]``.
The history is first transformed (``"seasonal_diff"``, ``"diff"`` or ``"level"``): the rank
dependence of forecast errors resembles that of changes more than that of levels, which carry
trend and shared seasonality.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..data.panel import Panel
from ..forecast import Forecast
from .core import ScenarioError, ScenarioSet

__all__ = [
    "DEPENDENCE",
    "GaussianCopula",
    "Independent",
    "SchaakeShuffle",
    "forecast_pit",
    "historical_windows",
    "history_transform",
    "joint_scenarios",
    "make_dependence",
    "pair_paths",
    "reorder",
]

TRANSFORMS = ("seasonal_diff", "diff", "level")

#: series x scenarios x steps reordered at once; bounds the temporary tensors of `reorder` to a few
#: hundred MB (sort values + int64 order for 2^24 entries)
CHUNK_ELEMENTS = 1 << 24


def history_transform(panel: Panel, transform: str = "level", season: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The history on the panel's grid, transformed: values and mask, both ``[N, T]``.

    ``"level"`` is the target; ``"diff"`` is y_t - y_{t-1}; ``"seasonal_diff"`` is y_t - y_{t-m}
    with ``m = season``. A transformed value is observed where every value it uses is."""
    if transform not in TRANSFORMS:
        raise ScenarioError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    y, ok = panel.target, panel.observed
    if transform == "level":
        return y, ok
    lag = 1 if transform == "diff" else season
    if lag is None or int(lag) < 1:
        raise ScenarioError(f"transform 'seasonal_diff' needs season >= 1, got {season!r}")
    lag = int(lag)
    if panel.num_steps <= lag:
        raise ScenarioError(f"the history has {panel.num_steps} steps, too few for transform {transform!r} "
                            f"with lag {lag}")
    x = torch.zeros_like(y)
    m = torch.zeros_like(ok)
    x[:, lag:] = y[:, lag:] - y[:, :-lag]
    m[:, lag:] = ok[:, lag:] & ok[:, :-lag]
    return torch.where(m, x, torch.zeros_like(x)), m


def historical_windows(panel: Panel, horizon: int, transform: str = "level", season: int | None = None,
                       max_windows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of ``horizon`` consecutive grid steps of the transformed history, for all
    series at the same dates: values and mask ``[N, W, H]`` (W windows, oldest first).

    Windows with fewer than half of their (series, step) points observed are left out (e.g. those
    reaching back before the first seasonal difference); ``max_windows`` keeps the most recent
    ones. Raises when fewer than 2 windows remain."""
    if horizon < 1:
        raise ScenarioError(f"horizon must be >= 1, got {horizon}")
    x, ok = history_transform(panel, transform, season)
    if x.shape[1] < horizon:
        raise ScenarioError(f"the history has {x.shape[1]} steps, fewer than the horizon {horizon}: "
                            "no historical window to learn the dependence from")
    xw = x.unfold(1, horizon, 1)  # [N, W, H]
    okw = ok.unfold(1, horizon, 1)
    keep = okw.float().mean((0, 2)) >= 0.5
    xw, okw = xw[:, keep], okw[:, keep]
    if max_windows is not None:
        if max_windows < 2:
            raise ScenarioError(f"max_windows must be >= 2 or None, got {max_windows}")
        xw, okw = xw[:, -max_windows:], okw[:, -max_windows:]
    if xw.shape[1] < 2:
        raise ScenarioError(
            f"only {xw.shape[1]} historical window(s) of {horizon} steps with transform {transform!r}: "
            f"the history ({panel.num_steps} steps) is too short; use a shorter lag or transform='level'")
    return xw.contiguous(), okw.contiguous()


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g


def _sort_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` sorted along its last dim. On CPU through numpy, whose SIMD sort is far faster than
    torch's here (measured on this package's CI machine, 114M float32 in rows of 1000, one
    thread: numpy 0.9 s, torch 15 s)."""
    if x.device.type == "cpu":
        if x.is_contiguous():
            return torch.from_numpy(np.sort(x.numpy(), axis=-1))
        a = x.contiguous().numpy()  # a fresh copy: sorted in place (one copy fewer)
        a.sort(axis=-1)
        return torch.from_numpy(a)
    return x.sort(dim=-1).values


def _argsort_last(x: torch.Tensor, stable: bool = False) -> torch.Tensor:
    """Argsort along the last dim (numpy on CPU: 3.6 s vs torch 15 s for the case above)."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.argsort(x.contiguous().numpy(), axis=-1, kind="stable" if stable else None))
    return x.argsort(dim=-1, stable=stable)


def _chunks(n: int, s: int, h: int):
    step = max(1, CHUNK_ELEMENTS // max(1, s * h))
    return [slice(i, i + step) for i in range(0, n, step)]


def reorder(samples: torch.Tensor, key: torch.Tensor, progress: bool = False) -> torch.Tensor:
    """Permute the samples of each (series, step) so that their order follows ``key``.

    ``samples`` and ``key`` ``[N, S, H]``: the scenario with the k-th smallest key at (i, h) gets the
    k-th smallest sample of (i, h). The multiset of samples at every (i, h) is unchanged (the
    marginals are kept exactly); the rank dependence of ``key`` is imposed. Works in chunks of
    series so the temporaries stay bounded."""
    if key.shape != samples.shape:
        raise ScenarioError(f"key shape {tuple(key.shape)} does not match samples {tuple(samples.shape)}")
    n, s, h = samples.shape
    out = torch.empty_like(samples)
    # a loop over chunks of series bounds memory; each chunk is one batched sort and scatter
    for sl in tqdm(_chunks(n, s, h), disable=not progress, desc="reorder", leave=False):
        srt = _sort_last(samples[sl].transpose(1, 2))  # [n, H, S]
        order = _argsort_last(key[sl].transpose(1, 2))
        out[sl].transpose(1, 2).scatter_(-1, order.to(srt.device), srt)
    return out


def pair_paths(samples: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Permute whole sample paths of each series so that their horizon totals follow ``key``.

    ``samples`` ``[N, S, H]``, ``key`` ``[N, S]``: scenario s of series i gets the path of series i
    whose horizon total has the same rank among the S paths as ``key[i, s]`` among the S keys. Each
    path is kept as it is (every step of it moves together), so each series' joint distribution over
    the horizon is unchanged; only the pairing of paths across series follows the key."""
    if key.shape != samples.shape[:2]:
        raise ScenarioError(f"key shape {tuple(key.shape)} does not match samples' [series, samples] "
                            f"{tuple(samples.shape[:2])}")
    by_total = _argsort_last(samples.double().sum(-1))  # [N, S]: paths by total
    by_key = _argsort_last(key.to(samples.device))  # scenarios by key (the key may be built on the CPU)
    path_of = torch.empty_like(by_key).scatter_(-1, by_key, by_total)  # [N, S]: path of each scenario
    return samples.gather(1, path_of[:, :, None].expand_as(samples))


def _align(item_ids: pd.Index, forecast_ids: pd.Index, what: str) -> np.ndarray | None:
    """Positions of ``forecast_ids`` in ``item_ids`` (None when they are equal)."""
    if item_ids.equals(forecast_ids):
        return None
    pos = item_ids.get_indexer(forecast_ids)
    if (pos < 0).any() or len(forecast_ids) != len(item_ids):
        missing = list(forecast_ids[pos < 0][:5])
        extra = list(item_ids.difference(forecast_ids)[:5])
        raise ScenarioError(
            f"{what} was fitted on {len(item_ids)} series but the samples hold {len(forecast_ids)}; "
            f"unknown series: {missing}, series without samples: {extra}")
    return pos


class Independent:
    """No dependence: the model's samples as they come (the reference for the other methods)."""

    name = "independent"

    def fit(self, panel: Panel, horizon: int) -> Independent:
        self.item_ids_ = panel.item_ids
        self.horizon_ = horizon
        return self

    def apply(self, samples: torch.Tensor, seed: int | None = None, item_ids: pd.Index | None = None) -> torch.Tensor:
        """``[N, S, H]`` -> the same tensor."""
        return samples


class _Reordering:
    name = "reordering"

    def _check(self, samples: torch.Tensor, item_ids: pd.Index | None):
        if getattr(self, "item_ids_", None) is None:
            raise ScenarioError(f"{type(self).__name__} is not fitted: call fit(panel, horizon) first")
        if samples.ndim != 3:
            raise ScenarioError(f"samples must be [series, samples, horizon], got shape {tuple(samples.shape)}")
        if samples.shape[2] != self.horizon_:
            raise ScenarioError(f"samples have horizon {samples.shape[2]} but {type(self).__name__} was fitted "
                                f"for horizon {self.horizon_}")
        if item_ids is None:
            if samples.shape[0] != len(self.item_ids_):
                raise ScenarioError(f"samples hold {samples.shape[0]} series, {type(self).__name__} was fitted on "
                                    f"{len(self.item_ids_)}")
            return None
        return _align(self.item_ids_, item_ids, type(self).__name__)


class SchaakeShuffle(_Reordering):
    """The Schaake shuffle: scenario s takes, at every (series, step), the sample whose rank equals
    the rank of historical window w_s there.

    With W historical windows and S > W scenarios, each window serves S / W scenarios (rounded),
    which share its block of ranks; with S <= W, S windows are drawn without repetition. Missing
    history points get a random rank (no dependence imposed there).

    ``transform`` / ``season``: see :func:`history_transform`; ``max_windows``: the most recent
    windows only. ``paths=True``: keep each series' sample paths whole and pair them across series
    by the ranks of the windows' means (:func:`pair_paths`); the template is then ``[N, 1, W]``."""

    name = "schaake"

    def __init__(self, transform: str = "level", season: int | None = None, max_windows: int | None = None,
                 paths: bool = False):
        if transform not in TRANSFORMS:
            raise ScenarioError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        self.transform, self.season, self.max_windows, self.paths = transform, season, max_windows, paths
        if paths:
            self.name = "schaake_paths"

    def fit(self, panel: Panel, horizon: int) -> SchaakeShuffle:
        x, ok = historical_windows(panel, horizon, self.transform, self.season, self.max_windows)
        if self.paths:  # one number per (series, window): the mean over its observed steps
            n_obs = ok.sum(-1, keepdim=True)
            x, ok = (x * ok).sum(-1, keepdim=True) / n_obs.clamp_min(1), n_obs > 0
        W = x.shape[1]
        x, ok = x.transpose(1, 2).contiguous(), ok.transpose(1, 2).contiguous()  # [N, H, W]: sorts run on the last dim
        # the rank of each window at each (series, step); ties and missing points are placed at
        # random (a fixed generator: fitting is deterministic)
        g = _generator(0)
        noise = torch.rand(x.shape, generator=g, dtype=torch.float64)
        n_obs = ok.sum(-1, keepdim=True).clamp_min(1)
        key = torch.where(ok, x.double(), torch.full_like(noise, float("inf")))
        perm = _argsort_last(noise)
        by_key = perm.gather(-1, _argsort_last(key.gather(-1, perm), stable=True))  # windows by value, ties random
        obs_rank = torch.empty_like(by_key).scatter_(-1, by_key, torch.arange(W).expand_as(by_key).contiguous())
        u = torch.where(ok, (obs_rank.double() + 0.5) / n_obs, noise)  # missing: anywhere at random
        self.ranks_ = _argsort_last(_argsort_last(u)).to(torch.int32)  # [N, H, W]
        self.item_ids_ = panel.item_ids
        self.horizon_ = horizon
        self.num_windows_ = W
        return self

    def apply(self, samples: torch.Tensor, seed: int | None = None, item_ids: pd.Index | None = None,
              progress: bool = False) -> torch.Tensor:
        """Samples ``[N, S, H]`` reordered into joint scenarios ``[N, S, H]``. With ``item_ids`` the
        rows are matched to the fitted series by name (any order).

        Scenario s uses window w_s; at (i, h) the windows' ranks give each window a block of
        sample ranks as long as the number of scenarios using it, taken by those scenarios in a
        fixed order. (Within-block order adds a comonotone part of only (1/W)^2 of the rank
        variance.) This counting form needs no sort of S keys, only of the samples."""
        pos = self._check(samples, item_ids)
        ranks = self.ranks_ if pos is None else self.ranks_[torch.as_tensor(pos)]
        n, s, h = samples.shape
        W = self.num_windows_
        g = _generator(seed)
        count = torch.zeros(W, dtype=torch.long)  # scenarios per window, as equal as possible
        if s <= W:
            count[torch.randperm(W, generator=g)[:s]] = 1
        else:
            count += s // W
            count[torch.randperm(W, generator=g)[: s % W]] += 1
        used = torch.randperm(W, generator=g)
        used = used[count[used] > 0]  # windows in scenario order: scenarios of a window are adjacent
        reps = count[used]
        within = torch.arange(s) - torch.repeat_interleave(torch.cumsum(reps, 0) - reps, reps)  # [S]
        # scenario positions in random order, so that any subset of scenarios (e.g. the first k) is a
        # random one rather than a few windows' blocks
        place = torch.randperm(s, generator=g)
        out = torch.empty_like(samples)
        for sl in tqdm(_chunks(n, s, h), disable=not progress, desc="schaake", leave=False):
            rk = ranks[sl].long()  # [n, H, W]
            by_rank = rk.argsort(dim=-1)  # the window at each rank
            c = count[by_rank]
            start = torch.empty_like(c).scatter_(-1, by_rank, torch.cumsum(c, -1) - c)  # first rank of each window's block
            blocks = start[..., used]
            if blocks.device.type == "cpu":  # numpy's repeat: 3x faster than torch's repeat_interleave here
                rank_of = torch.from_numpy(np.repeat(blocks.numpy(), reps.numpy(), axis=-1)) + within  # [n, H, S]
            else:
                rank_of = torch.repeat_interleave(blocks, reps.to(blocks.device), dim=-1) + within.to(blocks.device)
            if self.paths:  # rank_of [n, 1, S]: the rank of each scenario's key among the S
                key = torch.empty_like(rank_of[:, 0]).scatter_(-1, place.expand_as(rank_of[:, 0]), rank_of[:, 0])
                out[sl] = pair_paths(samples[sl], key)
                continue
            srt = _sort_last(samples[sl].transpose(1, 2))  # [n, H, S]
            out[sl].transpose(1, 2).scatter_(-1, place.to(srt.device).expand_as(srt), srt.gather(-1, rank_of.to(srt.device)))
        return out


def _norm_ppf(u: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2.0) * torch.erfinv(2 * u - 1)


def _toeplitz_sqrt(acf: torch.Tensor) -> torch.Tensor:
    """``[..., H]`` autocorrelations (lag 0 = 1) -> ``[..., H, H]`` symmetric square roots of the
    Toeplitz correlation matrices. Biased ACF estimates give positive semi-definite matrices;
    eigenvalues below 0 can only be rounding and are set to 0."""
    h = acf.shape[-1]
    idx = (torch.arange(h)[:, None] - torch.arange(h)[None, :]).abs()
    R = acf[..., idx].double()
    evals, evecs = torch.linalg.eigh(R)
    return (evecs * evals.clamp_min(0).sqrt()[..., None, :]) @ evecs.transpose(-1, -2)


def _biased_acf(x: torch.Tensor, ok: torch.Tensor, lags: int, center: bool = True) -> torch.Tensor:
    """``[B, T]`` -> ``[B, lags]`` autocorrelation with the biased (divide by n) estimator, which keeps
    the Toeplitz matrix positive semi-definite. Missing points count as the mean (0 after centring).
    ``center=False``: about 0 instead of the sample mean (for residuals whose mean is known to be 0,
    where a series' mean over a short window is the persistent part of its error, not noise)."""
    n = ok.sum(1, keepdim=True).clamp_min(1)
    mean = (x * ok).sum(1, keepdim=True) / n if center else torch.zeros_like(x[:, :1])
    xc = torch.where(ok, x - mean, torch.zeros_like(x)).double()
    T = x.shape[1]
    var = (xc * xc).sum(1)
    out = torch.zeros(x.shape[0], lags, dtype=torch.float64)
    for k in range(min(lags, T)):  # H lags of a [B, T] product: a handful of vector ops
        out[:, k] = (xc[:, k:] * xc[:, : T - k]).sum(1)
    return torch.where(var[:, None] > 0, out / var.clamp_min(1e-300)[:, None], torch.eye(1, lags, dtype=torch.float64))


class GaussianCopula(_Reordering):
    """A Gaussian copula on PIT residuals with correlation ``L L^T + diag(d)`` across series.

    Fit: the transformed history of each series (see :func:`history_transform`) goes through its
    own empirical CDF (the probability integral transform, mid-ranks) and the normal quantile
    function, giving residuals z ``[N, T]`` with standard normal margins. The cross-series
    correlation of z is approximated by its leading ``rank`` principal components,
    ``C ~ L L^T + diag(1 - rowsum(L^2))`` (``L`` ``[N, rank]``); the factor scores and the
    idiosyncratic remainder each get a Toeplitz correlation across the H steps from their
    autocorrelation. Sampling z ``[N, S, H]`` costs O(N S (rank + H) H); no N x N matrix is formed.

    Apply: draw z for S scenarios and reorder the samples by it (:func:`reorder`), so each series'
    marginal samples are kept exactly. Series with fewer than ``min_obs`` residuals get no factor
    loading (independent of the rest); they are listed in ``independent_series_``.

    ``groups``: a static categorical column of the panel (e.g. ``"Store"``) or ``[N]`` labels. The
    leading factors miss part of the correlation within small groups (45 stores cannot all be among
    10 factors: on walmart they keep 0.17 of the history's mean within-store correlation of 0.19).
    With ``groups``, each group gets one more factor, with an equal loading ``b_g`` on its series,
    ``b_g^2`` the mean correlation left between them after the leading factors (0 when negative, and
    at most what ``d`` leaves), so that the copula keeps the history's mean correlation within each
    group: ``C ~ L L^T + B + diag(d)``, ``B_ij = b_g^2`` for i, j in group g.

    ``paths=True``: keep each series' sample paths whole and pair them across series by the draws
    summed over the horizon (:func:`pair_paths`): the copula's dependence between horizon totals."""

    name = "copula"

    def __init__(self, rank: int = 10, transform: str = "level", season: int | None = None,
                 temporal: bool = True, min_obs: int = 8, paths: bool = False, groups=None):
        if rank < 0:
            raise ScenarioError(f"rank must be >= 0, got {rank}")
        if transform not in TRANSFORMS:
            raise ScenarioError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        self.rank, self.transform, self.season, self.temporal, self.min_obs = rank, transform, season, temporal, min_obs
        self.paths, self.groups = paths, groups
        if paths:
            self.name = "copula_paths"

    def _group_codes(self, panel: Panel) -> tuple[torch.Tensor, pd.Index]:
        """``[N]`` int64 group of each series and the group labels, from ``groups``."""
        if isinstance(self.groups, str):
            from .hierarchy import static_frame
            frame = static_frame(panel)
            if self.groups not in frame.columns:
                raise ScenarioError(f"groups={self.groups!r} is not a static column of the panel; "
                                    f"available: {list(frame.columns)}")
            labels = frame[self.groups].to_numpy()
        else:
            labels = np.asarray(self.groups, dtype=object)
        if labels.shape != (panel.num_series,):
            raise ScenarioError(f"groups must hold one label per series ({panel.num_series}), got shape {labels.shape}")
        codes, uniq = pd.factorize(labels)
        if (codes < 0).any():
            raise ScenarioError("groups has missing labels")
        return torch.from_numpy(codes.astype(np.int64)), pd.Index(uniq)

    def fit(self, panel: Panel, horizon: int, residuals: torch.Tensor | None = None) -> GaussianCopula:
        """Fit on the transformed history of ``panel`` or, with ``residuals``, on PIT values of past
        forecasts' realised values: ``[N, T]`` in (0, 1), NaN where there is none, rows in the order of
        ``panel``'s series (e.g. :func:`forecast_pit` of one or more earlier windows, concatenated
        along the last dim). Forecast residuals carry the dependence of forecast errors, which the
        history's levels or changes only approximate (they also hold the shared seasonality a model
        already forecasts). They are not centred: a series' mean PIT over a window is the persistent
        part of its error, which the copula must keep. With few residual steps T for many series N,
        factors whose eigenvalue lies below the Marchenko-Pastur noise edge ``(sqrt(N/T) + 1)^2`` are
        dropped (``rank`` is then a cap; ``rank_`` is the number kept): the leading components of
        pure noise already explain about rank / T of each series' variance and would only add spurious
        correlation (the group factors of ``groups`` take the within-group remainder). ``panel`` then only gives the series and the
        static columns of ``groups``; ``transform`` is not used."""
        if horizon < 1:
            raise ScenarioError(f"horizon must be >= 1, got {horizon}")
        if residuals is None:
            x, ok = history_transform(panel, self.transform, self.season)
            cols = ok.any(0)
            x, ok = x[:, cols].double(), ok[:, cols]
            if x.shape[1] < 2:
                raise ScenarioError(f"the history holds {x.shape[1]} usable steps for transform {self.transform!r}: "
                                    "too few to fit a copula")
            n_obs = ok.sum(1)
            few = n_obs < self.min_obs
            # PIT through each series' empirical CDF (mid-ranks: tied values share their mean rank, so
            # an intermittent series' zeros get one value, not ranks rising with time; missing last)
            key = torch.where(ok, x, torch.full_like(x, float("inf")))
            ranks = _mid_ranks(key)
            u = (ranks + 0.5) / n_obs.clamp_min(1)[:, None].double()
            z = torch.where(ok & ~few[:, None], _norm_ppf(u.clamp(1e-6, 1 - 1e-6)), torch.zeros_like(u))
            z = torch.where(ok, z - (z * ok).sum(1, keepdim=True) / n_obs.clamp_min(1)[:, None], torch.zeros_like(z))
        else:
            u = torch.as_tensor(residuals).double().cpu()
            if u.ndim != 2 or u.shape[0] != panel.num_series:
                raise ScenarioError(f"residuals must be [series, steps] with one row per series of the panel "
                                    f"({panel.num_series}), got shape {tuple(u.shape)}")
            ok = ~torch.isnan(u)
            bad = ok & ((u < 0) | (u > 1))
            if bad.any():
                i = int(bad.any(1).nonzero()[0])
                raise ScenarioError(f"residuals must be PIT values in [0, 1]; series {panel.item_ids[i]!r} has "
                                    f"{float(u[i][bad[i]][0])!r}")
            if u.shape[1] < 2:
                raise ScenarioError(f"residuals hold {u.shape[1]} step(s): too few to fit a copula")
            n_obs = ok.sum(1)
            few = n_obs < self.min_obs
            z = torch.where(ok & ~few[:, None], _norm_ppf(torch.nan_to_num(u, 0.5).clamp(1e-4, 1 - 1e-4)),
                            torch.zeros_like(u))
        center = residuals is None
        norm = z.norm(dim=1, keepdim=True)
        zn = torch.where(norm > 0, z / norm.clamp_min(1e-300), torch.zeros_like(z))  # rows of unit length
        r = min(self.rank, zn.shape[1] - 1, zn.shape[0])
        if r < self.rank:
            warnings.warn(f"GaussianCopula: rank {self.rank} lowered to {r}: the correlation of {zn.shape[0]} series "
                          f"over {zn.shape[1]} steps has at most min(series, steps - 1) = {r} principal components",
                          UserWarning, stacklevel=2)
        if r > 0:
            U, sig, Vh = torch.linalg.svd(zn, full_matrices=False)
            if residuals is not None:
                # few residual steps (T) for many series (N): pure noise already gives leading
                # eigenvalues of zn zn^T up to the Marchenko-Pastur edge (sqrt(N'/T) + 1)^2 (N' rows
                # with residuals), and those factors only add spurious correlation; keep the ones above
                n_rows = float((norm[:, 0] > 0).sum())
                edge = (math.sqrt(n_rows / zn.shape[1]) + 1) ** 2
                r = min(r, int((sig.pow(2) > edge).sum()))
            L = U[:, :r] * sig[:r]  # [N, r]: C = zn zn^T ~ L L^T + diag(d)
            scores = Vh[:r]  # [r, T] unit-norm factor time series
        else:
            L = torch.zeros(zn.shape[0], 0, dtype=torch.float64)
            scores = torch.zeros(0, zn.shape[1], dtype=torch.float64)
        d = (1 - (L * L).sum(1)).clamp_min(0)  # >= 0 up to rounding: rows of zn have unit norm
        resid = zn - L @ scores  # [N, T]: what the leading factors leave
        H = horizon
        if self.groups is not None:
            codes, labels = self._group_codes(panel)
            G = len(labels)
            # mean off-diagonal residual correlation of each group, from group sums (no N x N matrix)
            sums = torch.zeros(G, resid.shape[1], dtype=torch.float64).index_add_(0, codes, resid)
            own = torch.zeros(G, dtype=torch.float64).index_add_(0, codes, (resid * resid).sum(1))
            size = torch.bincount(codes[~few], minlength=G).double()  # series with too few residuals stay out
            pairs = size * (size - 1)
            rho = torch.where(pairs > 0, (sums.pow(2).sum(1) - own) / pairs.clamp_min(1), torch.zeros_like(own))
            b2 = torch.where(few, torch.zeros_like(d), torch.minimum(rho.clamp_min(0)[codes], d))
            d = d - b2
            self.group_codes_, self.groups_ = codes, labels
            self.group_loadings_ = b2.sqrt().float()
            self.group_correlation_ = rho.float()
            # the group factors' correlation across steps: pooled ACF of the groups' residual sums
            ok_g = torch.ones_like(sums, dtype=torch.bool)
            acf_g = _biased_acf(sums, ok_g, H, center)
            wg = sums.pow(2).sum(1)
            acf_g = (acf_g * wg[:, None]).sum(0) / wg.sum().clamp_min(1e-300) if self.temporal \
                else torch.eye(1, H, dtype=torch.float64)[0]
            self.group_sqrt_ = _toeplitz_sqrt(acf_g).float()
        self.loadings_ = L.float()
        self.rank_ = L.shape[1]
        self.idiosyncratic_ = d.float()
        if self.temporal:
            acf_e = _biased_acf(resid, ok, H, center)
            w = (resid * resid).sum(1)  # weight series by their idiosyncratic variance
            acf_e = (acf_e * w[:, None]).sum(0) / w.sum().clamp_min(1e-300)
            acf_f = _biased_acf(scores, torch.ones_like(scores, dtype=torch.bool), H, center)
        else:
            acf_e = torch.eye(1, H, dtype=torch.float64)[0]
            acf_f = torch.eye(1, H, dtype=torch.float64).expand(r, H)
        self.factor_sqrt_ = _toeplitz_sqrt(acf_f).float()  # [r, H, H]
        self.idiosyncratic_sqrt_ = _toeplitz_sqrt(acf_e).float()  # [H, H]
        self.factor_acf_, self.idiosyncratic_acf_ = acf_f.float(), acf_e.float()
        self.item_ids_ = panel.item_ids
        self.horizon_ = H
        self.independent_series_ = panel.item_ids[few.cpu().numpy()]
        return self

    def correlation(self, rows=None) -> torch.Tensor:
        """The fitted cross-series correlation ``L L^T + diag(d)`` of the series at positions
        ``rows`` (all by default; N x N, so only for a few thousand series)."""
        L, d = self.loadings_, self.idiosyncratic_
        rows = torch.arange(L.shape[0]) if rows is None else torch.as_tensor(rows)
        L, d = L[rows], d[rows]
        out = L @ L.T + torch.diag(d)
        if self.groups is not None:
            b, g = self.group_loadings_[rows], self.group_codes_[rows]
            out += torch.outer(b, b) * (g[:, None] == g[None, :])
        return out

    def _factors(self, num_samples: int, g: torch.Generator) -> torch.Tensor:
        """``[r (+ G), H, S]`` factor paths shared by every series, then those of the groups."""
        r, H = self.loadings_.shape[1], self.horizon_
        f = self.factor_sqrt_ @ torch.randn(r, H, num_samples, generator=g)
        if self.groups is None:
            return f
        return torch.cat([f, self.group_sqrt_ @ torch.randn(len(self.groups_), H, num_samples, generator=g)])

    def _loadings(self, rows) -> torch.Tensor:
        """``[n, r (+ G)]`` loadings of the series ``rows`` on the factors of :meth:`_factors`: a group
        factor loads only on its own series, so the group part is one-hot (one matrix product for
        all factors instead of a gather of group paths per series)."""
        L = self.loadings_[rows]
        if self.groups is None:
            return L
        onehot = torch.nn.functional.one_hot(self.group_codes_[rows], len(self.groups_)).to(L.dtype)
        return torch.cat([L, onehot * self.group_loadings_[rows][:, None]], 1)

    def _normal_t(self, f: torch.Tensor, rows, g: torch.Generator) -> torch.Tensor:
        """``[n, H, S]`` Gaussian draws of the series ``rows`` given the factor paths ``f``."""
        d = self.idiosyncratic_[rows]
        n, (k, H, S) = d.shape[0], f.shape
        z = self.idiosyncratic_sqrt_ @ torch.randn(n, H, S, generator=g)
        z.mul_(d.sqrt()[:, None, None])
        if k:
            z.view(n, H * S).addmm_(self._loadings(rows), f.reshape(k, H * S))  # in place: no [n, H, S] temporary
        return z

    def sample_normal(self, num_samples: int, seed: int | None = None, rows=None) -> torch.Tensor:
        """Draws ``[N, S, H]`` from the copula's Gaussian (unit variance at every point)."""
        g = _generator(seed)
        rows = torch.arange(len(self.item_ids_)) if rows is None else torch.as_tensor(rows)
        return self._normal_t(self._factors(num_samples, g), rows, g).transpose(1, 2)

    def apply(self, samples: torch.Tensor, seed: int | None = None, item_ids: pd.Index | None = None,
              progress: bool = False) -> torch.Tensor:
        """Samples ``[N, S, H]`` reordered by copula draws into joint scenarios ``[N, S, H]``."""
        pos = self._check(samples, item_ids)
        rows = torch.arange(samples.shape[0]) if pos is None else torch.as_tensor(pos)
        n, s, h = samples.shape
        g = _generator(seed)
        f = self._factors(s, g)
        out = torch.empty_like(samples)
        # chunks of series bound memory; the factor paths are shared by all chunks
        for sl in tqdm(_chunks(n, s, h), disable=not progress, desc="copula", leave=False):
            z = self._normal_t(f, rows[sl], g)  # [n, H, S]
            if self.paths:
                out[sl] = pair_paths(samples[sl], z.sum(1))
                continue
            srt = _sort_last(samples[sl].transpose(1, 2))
            order = _argsort_last(z).to(srt.device)
            out[sl].transpose(1, 2).scatter_(-1, order, srt)
        return out


DEPENDENCE = {"independent": Independent, "schaake": SchaakeShuffle, "copula": GaussianCopula}


def make_dependence(name: str, **options):
    """A dependence method by name: ``"independent"``, ``"schaake"`` or ``"copula"``."""
    try:
        cls = DEPENDENCE[name]
    except KeyError:
        raise ScenarioError(f"unknown dependence method {name!r}; choose one of {', '.join(DEPENDENCE)}") from None
    return cls(**options)


def forecast_pit(forecast: Forecast, target: torch.Tensor, mask: torch.Tensor | None = None, seed: int = 0,
                 item_ids: pd.Index | None = None, chunk: int = 512) -> torch.Tensor:
    """Randomised PIT of realised values under a past forecast's samples: the residuals
    :meth:`GaussianCopula.fit` learns forecast-error dependence from.

    ``target`` ``[N, H]`` (and ``mask``, True where observed) holds the truth of the forecast's
    window, rows in the forecast's series order. Returns ``[N, H]`` float64 values
    ``P(X < y) + V P(X = y)`` (V uniform; :func:`forecasting.evaluation.metrics.pit_values`), NaN
    where there is no truth. With ``item_ids`` the rows are returned in that order instead (series
    the forecast lacks get NaN rows), e.g. to line up with the panel a copula is fitted on."""
    from ..evaluation.metrics import pit_values

    samples = forecast.samples
    target = torch.as_tensor(target)
    if target.shape != (samples.shape[0], samples.shape[2]):
        raise ScenarioError(f"target must be [series, horizon] = {(samples.shape[0], samples.shape[2])} like the "
                            f"forecast, got {tuple(target.shape)}")
    ok = ~torch.isnan(target) if mask is None else torch.as_tensor(mask, dtype=torch.bool) & ~torch.isnan(target)
    g = torch.Generator(device=samples.device).manual_seed(int(seed))
    out = torch.full(target.shape, float("nan"), dtype=torch.float64)
    for a in range(0, samples.shape[0], chunk):  # chunks bound the [chunk, S, H] comparisons
        sl = slice(a, a + chunk)
        m = ok[sl].to(samples.device)
        out[sl][m.cpu()] = pit_values(samples[sl], target[sl].to(samples.device), m, generator=g).double().cpu()
    if item_ids is None:
        return out
    pos = pd.Index(forecast.item_ids).get_indexer(item_ids)
    full = torch.full((len(item_ids), out.shape[1]), float("nan"), dtype=torch.float64)
    have = torch.as_tensor(pos >= 0)
    full[have] = out[torch.as_tensor(pos[pos >= 0])]
    return full


def joint_scenarios(forecast: Forecast, dependence, seed: int | None = 0, progress: bool = False) -> ScenarioSet:
    """Equal-weight joint scenarios ``[N, S, H]`` from a forecast and a fitted dependence method."""
    if isinstance(dependence, Independent):
        values = forecast.samples
    else:
        values = dependence.apply(forecast.samples, seed=seed, item_ids=forecast.item_ids, progress=progress)
    return ScenarioSet.from_forecast(forecast, values, method=dependence.name)


def _mid_ranks(key: torch.Tensor) -> torch.Tensor:
    """0-based ranks along the last dimension, ties given the mean of the ranks they span (float64)."""
    sv, order = key.sort(dim=-1, stable=True)
    T = key.shape[-1]
    pos = torch.arange(T, device=key.device).expand_as(sv)
    starts = torch.ones_like(sv, dtype=torch.bool)
    starts[..., 1:] = sv[..., 1:] != sv[..., :-1]
    ends = torch.ones_like(starts)
    ends[..., :-1] = starts[..., 1:]
    first = torch.cummax(torch.where(starts, pos, torch.zeros_like(pos)), dim=-1).values
    last = (T - 1) - torch.cummax(torch.where(ends, (T - 1) - pos, torch.zeros_like(pos)).flip(-1), dim=-1).values.flip(-1)
    return torch.empty(key.shape, dtype=torch.float64, device=key.device).scatter_(
        -1, order, (first + last).double() / 2)
