"""The ScenarioSet: weighted joint sample paths ``[series, scenarios, horizon]`` and their index.

A scenario is one joint path of every series over the horizon. Unlike a :class:`Forecast`, whose
samples are independent across series, the scenarios of a set are meant to be read column by
column (scenario ``s`` of every series together) and carry probability ``weights`` that sum to 1.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..data.panel import _names
from ..forecast import DEFAULT_QUANTILES, Forecast

__all__ = ["ScenarioError", "ScenarioSet", "linear_quantile", "name_series", "sort_scenarios", "weighted_quantile"]

#: how far weights may stray from summing to 1 (float32 rounding of thousands of weights)
WEIGHT_TOL = 1e-5


class ScenarioError(ValueError):
    """Bad scenarios, weights, hierarchies or overrides. The message names the argument."""


def name_series(item_ids: Sequence, limit: int = 5) -> str:
    """``"154 series: '1_54', '2_48', '2_54', '3_32', '3_54' and 149 more"``, for error messages."""
    return f"{len(item_ids)} series: {_names(item_ids, limit)}"


def sort_scenarios(values: torch.Tensor) -> torch.Tensor:
    """``values`` ``[..., S, H]`` sorted along the scenario dim (a ``[..., S, H]`` view). On CPU
    through numpy, whose SIMD sort is ~15x faster than torch's on 10^8 values (see
    :mod:`forecasting.scenarios.dependence`)."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.sort(values.transpose(-1, -2).contiguous().numpy(), axis=-1)).transpose(-1, -2)
    return values.sort(dim=-2).values


def linear_quantile(srt: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """Quantiles ``[..., Q, H]`` of sorted samples ``srt`` ``[..., S, H]`` with linear interpolation
    (numpy's and torch's default rule)."""
    q = torch.as_tensor(list(levels), dtype=torch.float64)
    if bool(((q < 0) | (q > 1)).any()):
        raise ScenarioError(f"quantile levels must lie in [0, 1], got {list(levels)}")
    pos = q * (srt.shape[-2] - 1)
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = (pos - lo).to(srt.dtype if srt.is_floating_point() else torch.float32).to(srt.device)[:, None]
    a, b = srt[..., lo.to(srt.device), :], srt[..., hi.to(srt.device), :]
    return a + frac * (b - a)


def weighted_quantile(values: torch.Tensor, weights: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """Quantiles of weighted samples along dim -2.

    ``values`` ``[..., S, H]``, ``weights`` ``[S]`` (summing to 1) -> ``[..., Q, H]``. The quantile
    at level q is the smallest value whose cumulative weight reaches q (the inverse of the
    weighted empirical CDF), so reduced scenario sets answer with values they hold."""
    q = torch.as_tensor(list(levels), dtype=torch.float64, device=values.device)
    if bool(((q < 0) | (q > 1)).any()):
        raise ScenarioError(f"quantile levels must lie in [0, 1], got {list(levels)}")
    srt, order = values.sort(dim=-2)
    cum = weights.to(torch.float64)[order].cumsum(-2)  # [..., S, H]
    # first position with cum >= q (tolerance for rounding of the cumulative sum)
    idx = (cum[..., None, :, :] < q[:, None, None] - 1e-9).sum(-2)  # [..., Q, H]
    idx = idx.clamp_max(values.shape[-2] - 1)
    return srt.gather(-2, idx)


@dataclass(frozen=True, eq=False)
class ScenarioSet:
    """Joint scenarios of N series.

    - ``values``: ``[N, S, H]`` float tensor; ``values[:, s]`` is scenario ``s`` of every series
    - ``weights``: ``[S]`` non-negative probabilities summing to 1 (float64)
    - ``item_ids`` ``[N]``, ``start`` ``[N]`` (first timestamp of each series), ``freq``
    - ``method``: how the dependence across series was made (``"independent"``, ``"schaake"``, ...)
    """

    values: torch.Tensor
    weights: torch.Tensor
    item_ids: pd.Index
    start: pd.DatetimeIndex
    freq: str
    method: str = "independent"

    def __post_init__(self):
        v, w = self.values, self.weights
        if v.ndim != 3:
            raise ScenarioError(f"values must be [series, scenarios, horizon], got shape {tuple(v.shape)}")
        n, s, _ = v.shape
        if len(self.item_ids) != n or len(self.start) != n:
            raise ScenarioError(f"values hold {n} series but item_ids has {len(self.item_ids)} "
                                f"and start has {len(self.start)}")
        if w.ndim != 1 or w.shape[0] != s:
            raise ScenarioError(f"weights must be [scenarios] = [{s}], got shape {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ScenarioError("weights must be finite and non-negative")
        total = float(w.double().sum())
        if abs(total - 1.0) > WEIGHT_TOL:
            raise ScenarioError(f"weights must sum to 1, they sum to {total:.8f}")
        if w.dtype != torch.float64:
            object.__setattr__(self, "weights", w.double())
        if not bool(torch.isfinite(v).all()):
            bad = ~torch.isfinite(v).reshape(n, -1).all(1)
            raise ScenarioError("non-finite scenario values for series "
                                f"{self.item_ids[bad.cpu().numpy()][:5].tolist()}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_forecast(cls, forecast: Forecast, values: torch.Tensor | None = None,
                      method: str = "independent") -> ScenarioSet:
        """Equal-weight scenarios from a forecast's samples (or from ``values`` ``[N, S, H]``
        that replace them, e.g. the same samples reordered)."""
        v = forecast.samples if values is None else values
        if v.shape != forecast.samples.shape:
            raise ScenarioError(f"values {tuple(v.shape)} do not match the forecast {tuple(forecast.samples.shape)}")
        s = v.shape[1]
        w = torch.full((s,), 1.0 / s, dtype=torch.float64, device=v.device)
        return cls(v, w, forecast.item_ids, forecast.start, forecast.freq, method)

    def replace(self, **changes) -> ScenarioSet:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ views
    @property
    def num_series(self) -> int:
        return self.values.shape[0]

    @property
    def num_scenarios(self) -> int:
        return self.values.shape[1]

    @property
    def horizon(self) -> int:
        return self.values.shape[2]

    @property
    def uniform(self) -> bool:
        """True when every scenario has the same weight."""
        return bool(torch.allclose(self.weights, torch.full_like(self.weights, 1.0 / self.num_scenarios)))

    def __repr__(self) -> str:
        return (f"ScenarioSet({self.num_series} series x {self.num_scenarios} scenarios x {self.horizon} steps, "
                f"method={self.method!r}, freq={self.freq!r})")

    def mean(self) -> torch.Tensor:
        """``[N, H]`` weighted mean."""
        return (self.values * self.weights.to(self.values.dtype)[None, :, None]).sum(1)

    def quantile(self, levels: Sequence[float] = DEFAULT_QUANTILES) -> torch.Tensor:
        """``[N, Q, H]``. Equal weights: linear interpolation as :meth:`Forecast.quantile`; other
        weights: the inverse weighted empirical CDF (:func:`weighted_quantile`)."""
        if self.uniform:
            return linear_quantile(sort_scenarios(self.values), levels)
        return weighted_quantile(self.values, self.weights, levels)

    def to_forecast(self) -> Forecast:
        """The scenarios as a Forecast (samples ``[N, S, H]``); only for equal weights, since a
        Forecast has none."""
        if not self.uniform:
            raise ScenarioError("the scenarios have unequal weights; a Forecast cannot carry them "
                                "(use quantile() or resample first)")
        return Forecast(self.values, self.item_ids, self.start, self.freq)

    def select(self, scenarios) -> ScenarioSet:
        """The scenarios at positions ``scenarios`` (ints or bool mask), weights renormalised."""
        idx = torch.as_tensor(np.asarray(scenarios), device=self.values.device)
        if idx.dtype == torch.bool:
            if idx.shape != (self.num_scenarios,):
                raise ScenarioError(f"a scenario mask must be [{self.num_scenarios}], got {tuple(idx.shape)}")
            idx = idx.nonzero().squeeze(1)
        if idx.numel() == 0:
            raise ScenarioError("no scenario selected")
        w = self.weights[idx]
        if float(w.sum()) <= 0:
            raise ScenarioError("the selected scenarios have zero total weight")
        return self.replace(values=self.values[:, idx], weights=w / w.sum())

    def timestamps(self) -> pd.DatetimeIndex:
        """``[N * H]`` timestamps of every (series, step), series-major."""
        return Forecast(self.values[:, :1], self.item_ids, self.start, self.freq).timestamps()

    def save(self, path):
        """Write values, weights and index with ``torch.save``, atomically; read with :meth:`load`."""
        from .export import write_torch
        return write_torch(path, self)

    @classmethod
    def load(cls, path, map_location="cpu") -> ScenarioSet:
        from .export import read_torch
        return read_torch(path, map_location)
