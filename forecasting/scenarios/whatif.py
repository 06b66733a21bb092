"""What-if: re-forecast under changed known covariates, shock scenarios, pick stress scenarios.

- :func:`reforecast` runs a fitted model on a copy of the panel whose known covariates (price,
  promotion, holiday flags ...) are overridden for chosen series and dates
  (:class:`CovariateOverride`), so the model answers "what if we run this promotion".
- :func:`apply_shock` multiplies the scenarios of chosen series over a date range (store closure:
  factor 0; demand surge: factor 1.3).
- :func:`stress_scenarios` keeps the worst tail of the scenarios by a statistic (e.g. the 5 % with
  the highest total demand), with their weights renormalised.

Series are chosen by ``series``: None (all), a list of series ids, a boolean mask ``[N]``, or a
dict ``{column: label or [labels]}`` on static attributes (a Panel's static categoricals or a
Hierarchy's levels), e.g. ``{"Store": [1, 2]}``. Dates are chosen by ``start`` / ``end``
(inclusive; timestamps, or ints for step positions of the scenarios' horizon). On series with a
time zone (e.g. pedestrian's Australia/Melbourne), a naive timestamp is wall-clock time in that
zone (``"2016-12-25 00:00"`` is local midnight) and a time-zone-aware one is converted to it; on
naive series, bounds must be naive.

:func:`apply_shock` acts on bottom series: shock the scenarios before
``Hierarchy.aggregate_scenarios`` (a set that already holds aggregates is refused, since scaling a
bottom series would leave its aggregates unchanged and the set incoherent).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..data.calendar import forecast_dates
from ..data.panel import Panel
from ..forecast import Forecast
from .core import ScenarioError, ScenarioSet, name_series
from .hierarchy import Hierarchy, static_frame

__all__ = [
    "CovariateOverride",
    "apply_shock",
    "override_covariates",
    "reforecast",
    "series_mask",
    "step_mask",
    "stress_scenarios",
]


def _plain(values) -> list:
    """``values`` as Python scalars, for messages (numpy 2 shows ``np.int64(1)`` otherwise)."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def series_mask(item_ids: pd.Index, series=None, attributes: pd.DataFrame | Panel | Hierarchy | None = None) -> np.ndarray:
    """``[N]`` bool: the series chosen by ``series`` (see the module docstring)."""
    n = len(item_ids)
    if series is None:
        return np.ones(n, dtype=bool)
    if isinstance(series, Mapping):
        if attributes is None:
            raise ScenarioError(f"selecting series by {dict(series)} needs attributes (a Panel, Hierarchy or frame)")
        frame = (static_frame(attributes) if isinstance(attributes, Panel)
                 else attributes.frame() if isinstance(attributes, Hierarchy) else attributes)
        frame = frame.reindex(item_ids)
        mask = np.ones(n, dtype=bool)
        for col, value in series.items():
            if col not in frame.columns:
                raise ScenarioError(f"unknown attribute {col!r} in the series selection; available: {list(frame.columns)}")
            values = list(value) if isinstance(value, (list, tuple, set, np.ndarray, pd.Index)) else [value]
            known = set(frame[col].dropna().unique())
            unknown = [v for v in values if v not in known]
            if unknown:
                raise ScenarioError(f"no series has {col} in {_plain(unknown)}; {col} takes values "
                                    f"{_plain(sorted(known, key=str)[:10])}")
            mask &= frame[col].isin(values).to_numpy()
        return mask
    arr = np.asarray(series)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ScenarioError(f"a series mask must have {n} entries, got shape {arr.shape}")
        return arr
    pos = item_ids.get_indexer(pd.Index(list(series)))
    if (pos < 0).any():
        raise ScenarioError(f"unknown series {pd.Index(list(series))[pos < 0][:5].tolist()}")
    mask = np.zeros(n, dtype=bool)
    mask[pos] = True
    return mask


def _bound(x, default: pd.Timestamp, tz=None) -> pd.Timestamp:
    """``x`` as a timestamp comparable with dates in time zone ``tz`` (None: naive dates): a naive
    ``x`` is wall-clock time in ``tz``, an aware one is converted to it."""
    if x is None:
        return default if tz is None else default.tz_localize("UTC")  # an aware bound compares across zones
    try:
        t = pd.Timestamp(x)
    except (TypeError, ValueError) as err:
        raise ScenarioError(f"{x!r} is not a timestamp (or an int step position): {err}") from None
    if tz is None:
        if t.tz is not None:
            raise ScenarioError(f"the dates are time-zone naive but the bound {x!r} has time zone {t.tz}; "
                                "give a naive timestamp")
        return t
    if t.tz is not None:
        return t.tz_convert(tz)
    try:
        return t.tz_localize(tz)
    except (ValueError, TypeError) as err:  # a wall-clock time that a DST change skips or repeats
        raise ScenarioError(f"{x!r} is not a single wall-clock time in {tz}: {err}; give a time-zone-aware "
                            "timestamp") from None


def step_mask(start: pd.DatetimeIndex, freq: str, horizon: int, first=None, last=None) -> np.ndarray:
    """``[N, H]`` bool: the steps of each series' horizon inside ``[first, last]`` (inclusive).
    Ints are step positions (0 = each series' first step), anything else a timestamp."""
    if isinstance(first, (int, np.integer)) or isinstance(last, (int, np.integer)):
        lo = 0 if first is None else int(first)
        hi = horizon - 1 if last is None else int(last)
        if not (0 <= lo <= hi < horizon):
            raise ScenarioError(f"step range [{first}, {last}] must satisfy 0 <= start <= end < horizon ({horizon})")
        steps = np.arange(horizon)
        return np.broadcast_to((steps >= lo) & (steps <= hi), (len(start), horizon)).copy()
    offset = pd.tseries.frequencies.to_offset(freq)
    tz = pd.DatetimeIndex(start).tz
    # [N, H] int64 nanoseconds: UTC instants for zoned dates, wall-clock for naive ones, as the bounds
    ts = forecast_dates(start, horizon, offset).asi8.reshape(len(start), horizon)
    lo, hi = _bound(first, pd.Timestamp.min, tz), _bound(last, pd.Timestamp.max, tz)
    if lo > hi:
        raise ScenarioError(f"start {lo} is after end {hi}")
    return (ts >= lo.value) & (ts <= hi.value)


# ---------------------------------------------------------------------- covariates through the model
@dataclass(frozen=True)
class CovariateOverride:
    """Set (``value``) or scale (``multiplier``) the known covariate ``column`` for the chosen
    ``series`` between ``start`` and ``end`` (inclusive timestamps on the panel's covariate grid;
    None = open)."""

    column: str
    value: float | None = None
    multiplier: float | None = None
    series: object = None
    start: object = None
    end: object = None

    def __post_init__(self):
        if (self.value is None) == (self.multiplier is None):
            raise ScenarioError(f"override of {self.column!r}: give exactly one of value= or multiplier=")
        for name in ("value", "multiplier"):
            v = getattr(self, name)
            if v is not None and not np.isfinite(v):
                raise ScenarioError(f"override of {self.column!r}: {name} must be finite, got {v!r}")


def override_covariates(panel: Panel, overrides: Sequence[CovariateOverride]) -> Panel:
    """A copy of ``panel`` with its ``known`` ``[N, T + F, K]`` covariates changed by ``overrides``
    (applied in order). Raises when a column is unknown, a range covers no covariate step, or a
    multiplier meets a missing (NaN) covariate value."""
    if panel.known is None:
        raise ScenarioError("the panel has no known covariates to override")
    known = panel.known.clone()
    grid = panel.known_index
    for ov in overrides:
        if ov.column not in panel.known_names:
            raise ScenarioError(f"unknown covariate {ov.column!r}; the panel's known covariates are {list(panel.known_names)}")
        k = panel.known_names.index(ov.column)
        rows = series_mask(panel.item_ids, ov.series, panel)
        lo, hi = _bound(ov.start, pd.Timestamp.min, grid.tz), _bound(ov.end, pd.Timestamp.max, grid.tz)
        cols = np.asarray((grid >= lo) & (grid <= hi))
        if not cols.any():
            raise ScenarioError(f"override of {ov.column!r}: no covariate step between {ov.start} and {ov.end} "
                                f"(the grid covers {grid[0]}..{grid[-1]})")
        if not rows.any():
            raise ScenarioError(f"override of {ov.column!r}: the series selection is empty")
        r = torch.as_tensor(np.nonzero(rows)[0], device=known.device)
        c = torch.as_tensor(np.nonzero(cols)[0], device=known.device)
        block = known[r[:, None], c[None, :], k]
        if ov.value is not None:
            block = torch.full_like(block, float(ov.value))
        else:
            if bool(torch.isnan(block).any()):
                i = int(torch.isnan(block).any(1).nonzero()[0, 0])
                raise ScenarioError(f"override of {ov.column!r}: series {panel.item_ids[int(r[i])]!r} has missing values "
                                    "in the range, which a multiplier cannot scale; give value= instead")
            block = block * float(ov.multiplier)
        known[r[:, None], c[None, :], k] = block
    return dataclasses.replace(panel, known=known)


def reforecast(model, panel: Panel, overrides: Sequence[CovariateOverride], num_samples: int = 100,
               seed: int | None = None) -> Forecast:
    """Sample paths ``[N, num_samples, H]`` of a fitted ``model`` (any
    :class:`forecasting.models.base.Model`) on ``panel`` with its known covariates overridden.
    Compare with ``model.predict(panel, num_samples, seed)`` under the same seed to read the effect.

    Raises when the model tells (``model.used_known_covariates()``, a set of column names) that it
    does not read an overridden column: the forecast would come back unchanged. A model whose method
    returns None, or that has none, is trusted."""
    changed = override_covariates(panel, overrides)
    used_fn = getattr(model, "used_known_covariates", None)
    used = used_fn() if callable(used_fn) else None
    if used is not None:
        unused = list(dict.fromkeys(ov.column for ov in overrides if ov.column not in used))
        if unused:
            uses = f"uses known covariates {sorted(used)}" if used else "uses no known covariates"
            raise ScenarioError(f"{type(model).__name__} {uses}; overriding {', '.join(map(repr, unused))} "
                                "would change nothing")
    return model.predict(changed, num_samples=num_samples, seed=seed)


# ---------------------------------------------------------------------- scenario shocks and stress
def apply_shock(scenarios: ScenarioSet, factor: float, series=None, start=None, end=None,
                attributes: pd.DataFrame | Panel | Hierarchy | None = None) -> ScenarioSet:
    """Scenarios with the values of the chosen series and steps multiplied by ``factor`` (>= 0;
    0 = closure). Every other value is unchanged."""
    if not np.isfinite(factor) or factor < 0:
        raise ScenarioError(f"factor must be finite and >= 0, got {factor!r}")
    _refuse_aggregates(scenarios, attributes)
    rows = series_mask(scenarios.item_ids, series, attributes)
    steps = step_mask(scenarios.start, scenarios.freq, scenarios.horizon, start, end)
    hit = torch.as_tensor(rows[:, None] & steps, device=scenarios.values.device)  # [N, H]
    if not bool(hit.any()):
        raise ScenarioError(f"the shock selects no (series, step): series={series!r}, start={start!r}, end={end!r}")
    values = torch.where(hit[:, None, :], scenarios.values * factor, scenarios.values)
    return scenarios.replace(values=values)


def _refuse_aggregates(scenarios: ScenarioSet, attributes) -> None:
    """Raise when ``scenarios`` holds aggregate nodes: a Hierarchy's node ids, else the names
    ``Hierarchy.aggregate_scenarios`` gives them (``total``, ``<level>=<value>`` with ``<level>`` a
    column of the attributes, or any ``<name>=<value>`` without attributes) that are not series of
    the attributes."""
    ids = pd.Index(scenarios.item_ids)
    if isinstance(attributes, Hierarchy):
        nodes = ids[ids.isin(attributes.node_ids())]
    else:
        frame = static_frame(attributes) if isinstance(attributes, Panel) else attributes
        labels = ids.astype(str)
        prefix = labels.str.split("=", n=1).str[0]
        named = labels.str.contains("=", regex=False) & (prefix.isin(list(frame.columns)) if frame is not None
                                                         else np.ones(len(ids), dtype=bool))
        bottom = ids.isin(frame.index) if frame is not None else np.zeros(len(ids), dtype=bool)
        nodes = ids[((labels == "total") | named) & ~bottom]
    if len(nodes):
        told = "" if isinstance(attributes, Hierarchy) else (
            " (told by their names: if these are series of their own, pass attributes= the panel, or a frame "
            "indexed by the series ids, that lists them)")
        raise ScenarioError(f"the scenarios hold aggregates ({name_series(list(nodes))}){told}; a shock of their "
                            "bottom series would leave the aggregates unchanged and the set incoherent: shock the "
                            "bottom series' scenarios first, then aggregate them (Hierarchy.aggregate_scenarios)")


def stress_scenarios(scenarios: ScenarioSet, tail: float = 0.05, statistic: str | Callable = "total",
                     upper: bool = True, series=None, start=None, end=None,
                     attributes: pd.DataFrame | Panel | Hierarchy | None = None) -> tuple[ScenarioSet, torch.Tensor]:
    """The scenarios in the worst ``tail`` probability mass of a statistic, weights renormalised.

    ``statistic``: ``"total"`` (sum over the chosen series and steps), ``"peak"`` (largest step
    total over the chosen series), or a callable ``values [N, S, H] -> [S]``. ``upper=True`` keeps the
    highest values (demand surge), False the lowest. Scenarios are taken from the extreme inwards
    until their weight reaches ``tail`` (the last one may overshoot it). Returns the stressed set and
    the statistic ``[S]`` of the full set."""
    if not 0 < tail <= 1:
        raise ScenarioError(f"tail must be in (0, 1], got {tail!r}")
    v = scenarios.values
    if callable(statistic):
        stat = statistic(v)
        if stat.shape != (scenarios.num_scenarios,):
            raise ScenarioError(f"the statistic must return [{scenarios.num_scenarios}], got {tuple(stat.shape)}")
    else:
        rows = series_mask(scenarios.item_ids, series, attributes)
        steps = step_mask(scenarios.start, scenarios.freq, scenarios.horizon, start, end)
        hit = torch.as_tensor(rows[:, None] & steps, device=v.device).to(v.dtype)
        if not bool(hit.any()):
            raise ScenarioError("the stress statistic selects no (series, step)")
        sel = v * hit[:, None, :]
        if statistic == "total":
            stat = sel.sum((0, 2))
        elif statistic == "peak":
            stat = sel.sum(0).masked_fill(~hit.bool().any(0)[None, :], float("-inf")).max(1).values
        else:
            raise ScenarioError(f"statistic must be 'total', 'peak' or a callable, got {statistic!r}")
    order = stat.argsort(descending=upper)
    cum = scenarios.weights[order.to(scenarios.weights.device)].cumsum(0)
    count = int((cum < tail - 1e-12).sum()) + 1
    return scenarios.select(order[:count].cpu()), stat
