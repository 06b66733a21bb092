"""Baselines that produce sample paths. Every model of the package must beat these first.

All work on the right-aligned history ``[N, L]`` of every series at once; no loop over series.
"""
from __future__ import annotations

import math

import torch

from ..data.panel import Panel, PanelError
from ..forecast import Forecast
from .base import Model, check_nonnegative, floor_rows

__all__ = ["SeasonalNaive", "Naive", "GaussianNaive", "EmpiricalRecent"]


class _Unfitted(Model):
    """Baselines learn nothing: ``fit`` records the horizon."""

    def fit(self, panel: Panel, horizon: int) -> "_Unfitted":
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.horizon_ = horizon
        return self

    def used_known_covariates(self) -> frozenset[str]:
        """None: baselines read the target only."""
        return frozenset()


def _generator(seed: int | None, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(0 if seed is None else seed)
    return g


def _draw(values: torch.Tensor, ok: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` draws with replacement from the valid entries of each row: ``[N, L]`` -> ``[N, n]``.
    Rows with no valid entry give zeros."""
    if values.shape[1] == 0:  # no history to draw from (e.g. a one-step series): no spread
        return torch.zeros(values.shape[0], n, dtype=values.dtype, device=values.device)
    count = ok.sum(1)
    order = torch.argsort((~ok).to(torch.int8), dim=1, stable=True)  # valid positions first
    u = torch.rand(values.shape[0], n, generator=gen, device=values.device)
    pick = (u * count[:, None]).long().clamp_max((count - 1).clamp_min(0)[:, None])
    out = values.gather(1, order.gather(1, pick))
    return torch.where(count[:, None] > 0, out, torch.zeros_like(out))


def _forward_filled(hist: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Each unobserved step takes the last observed value before it (the first one if none)."""
    L = hist.shape[1]
    pos = torch.where(ok, torch.arange(L, device=hist.device), torch.full_like(hist, -1, dtype=torch.long))
    last = pos.cummax(1).values
    first = ok.to(torch.int8).argmax(1, keepdim=True).expand_as(last)
    return hist.gather(1, torch.where(last >= 0, last, first))


def _seasonal_bootstrap(hist, ok, season, horizon, num_samples, gen):
    """y_{T+t} = y_{T+t-m} + e with e drawn from the series' own observed seasonal differences.

    Steps more than one season ahead add one draw per season passed (a seasonal random walk),
    done for all steps at once by a cumulative sum over whole seasons."""
    N, L = hist.shape
    m = season
    d = hist[:, m:] - hist[:, :-m]
    dok = ok[:, m:] & ok[:, :-m]
    e = _draw(d, dok, num_samples * horizon, gen).view(N, num_samples, horizon)
    K = math.ceil(horizon / m)
    e = torch.nn.functional.pad(e, (0, K * m - horizon)).view(N, num_samples, K, m)
    walk = e.cumsum(2).view(N, num_samples, K * m)[..., :horizon]
    base = _forward_filled(hist, ok)[:, L - m + torch.arange(horizon, device=hist.device) % m]
    return base[:, None, :] + walk, dok.any(1)


class SeasonalNaive(_Unfitted):
    """Last season's values plus bootstrapped seasonal differences of the same series.

    ``season`` is the data's natural period (52 weekly, 12 monthly, 7 daily, 24 or 168 hourly).
    Series with no observed pair one season apart fall back to the bootstrapped :class:`Naive`.
    ``point=True`` returns the plain seasonal naive (every sample equal).

    ``nonnegative``: a last value plus a drawn difference can fall below zero (on walmart 5 % of
    the samples, on M5 24 %) although the series never did. With ``None`` (the default) the
    forecast of every series whose observed history has no negative value is floored at zero: the
    bootstrap's mass below zero becomes a point mass at zero, which can only lower the quantile
    loss and the CRPS of a non-negative truth. ``True`` floors every series, ``False`` none (the
    plain bootstrap; models saved before this option existed load as ``False``)."""

    name = "seasonal_naive"

    def __init__(self, season: int, point: bool = False, nonnegative: bool | None = None):
        if season < 1:
            raise ValueError(f"season must be >= 1, got {season}")
        self.season = season
        self.point = point
        self.nonnegative = check_nonnegative(nonnegative)

    def predict(self, panel: Panel, num_samples: int = 100, seed: int | None = None) -> Forecast:
        H = self._check_fitted(num_samples)
        hist, ok = panel.history(panel.num_steps)
        L, m = hist.shape[1], self.season
        has = (ok[:, m:] & ok[:, :-m]).any(1) if L > m else torch.zeros_like(ok[:, 0])
        if self.point:
            ff = _forward_filled(hist, ok)
            seasonal = ff[:, (L - m + torch.arange(H, device=hist.device) % m).clamp_min(0)]
            pt = torch.where(has[:, None], seasonal, ff[:, -1:].expand(-1, H))
            paths = pt[:, None, :].expand(-1, num_samples, -1).contiguous()
        else:
            gen = _generator(seed, hist.device)
            paths = None
            if bool(has.any()):
                paths, _ = _seasonal_bootstrap(hist, ok, m, H, num_samples, gen)
            if not bool(has.all()):
                naive, _ = _seasonal_bootstrap(hist, ok, 1, H, num_samples, gen)
                paths = naive if paths is None else torch.where(has[:, None, None], paths, naive)
        floor = floor_rows(hist, ok, getattr(self, "nonnegative", False))  # saved before the option: none
        if floor is not None:
            paths = torch.where(floor[:, None, None], paths.clamp_min(0), paths)
        return Forecast(paths, panel.item_ids, panel.forecast_start(), panel.freq)


class Naive(SeasonalNaive):
    """Last observed value plus a random walk of bootstrapped one-step differences."""

    name = "naive"

    def __init__(self, point: bool = False, nonnegative: bool | None = None):
        super().__init__(season=1, point=point, nonnegative=nonnegative)


class GaussianNaive(Naive):
    """Last observed value with Gaussian random-walk spread sigma * sqrt(h), sigma the RMS of the
    in-sample one-step differences (AutoGluon's ``Naive``; used for the fev protocol check)."""

    name = "gaussian_naive"

    def __init__(self):
        super().__init__(point=False, nonnegative=False)

    def predict(self, panel: Panel, num_samples: int = 100, seed: int | None = None) -> Forecast:
        H = self._check_fitted(num_samples)
        hist, ok = panel.history(panel.num_steps)
        gen = _generator(seed, hist.device)
        d = hist[:, 1:] - hist[:, :-1]
        dok = ok[:, 1:] & ok[:, :-1]
        sigma = ((d * dok) ** 2).sum(1) / dok.sum(1).clamp_min(1)
        sigma = sigma.sqrt()
        last = _forward_filled(hist, ok)[:, -1]
        eps = torch.randn(hist.shape[0], num_samples, H, generator=gen, device=hist.device)
        paths = last[:, None, None] + sigma[:, None, None] * eps.cumsum(-1)
        return Forecast(paths, panel.item_ids, panel.forecast_start(), panel.freq)


class EmpiricalRecent(_Unfitted):
    """Independent draws from each series' last ``window`` observed values: the baseline for
    intermittent counts (the empirical distribution of recent periods). Missing steps are skipped,
    so a series whose data stop early uses its last ``window`` observations."""

    name = "empirical"

    def __init__(self, window: int = 24):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window

    def predict(self, panel: Panel, num_samples: int = 100, seed: int | None = None) -> Forecast:
        H = self._check_fitted(num_samples)
        hist, ok = panel.history(panel.num_steps)
        if not bool(ok.any(1).all()):
            bad = ~ok.any(1)
            raise PanelError(f"no observed value before the forecast of series {list(panel.item_ids[bad.cpu().numpy()][:5])}")
        from_end = ok.flip(1).cumsum(1).flip(1)  # observed values at or after each step
        recent = ok & (from_end <= self.window)
        gen = _generator(seed, hist.device)
        paths = _draw(hist, recent, num_samples * H, gen).view(-1, num_samples, H)
        return Forecast(paths, panel.item_ids, panel.forecast_start(), panel.freq)
