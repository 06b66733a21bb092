"""Hierarchies and groupings: aggregate scenarios as sums of the bottom series.

A :class:`Hierarchy` maps each of the N bottom series to one group per level (e.g. dept-in-store
-> store -> store type -> total). Aggregated scenarios are sums of the joint bottom scenarios, so
every level is coherent by construction: scenario s of a store is exactly the sum of scenario s of
its series. Levels come from a panel's static columns or from any user-given labels.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.panel import Panel
from ..evaluation import metrics as M
from ..forecast import DEFAULT_QUANTILES
from .core import ScenarioError, ScenarioSet, sort_scenarios

__all__ = ["TOTAL", "Hierarchy", "aggregate_truth", "level_metrics", "weighted_crps"]

TOTAL = "total"
#: how a non-nested level is allowed, in the error that rejects it (the command line says its own)
CROSSED_HINT = "pass nested=False for crossed groupings"


def _label(level: str, value) -> str:
    return TOTAL if level == TOTAL else f"{level}={value}"


class Hierarchy:
    """Group labels of N bottom series at one or more aggregation levels.

    ``item_ids`` ``[N]`` names the bottom series; ``levels`` maps a level name to the ``[N]`` labels
    of each series' group at that level, finest level first. With ``nested=True`` (a hierarchy)
    each level must be a coarsening of the one before it; ``nested=False`` allows crossed groupings
    (e.g. dept across stores beside store). Sums stay coherent either way.

    ``codes(level)`` ``[N]`` int64 and ``groups(level)`` (the G labels) describe a level;
    :meth:`aggregate` sums any ``[N, ...]`` tensor into ``{level: [G, ...]}``."""

    def __init__(self, item_ids: Sequence, levels: Mapping[str, Sequence], nested: bool = True):
        self.item_ids = pd.Index(item_ids)
        n = len(self.item_ids)
        if self.item_ids.has_duplicates:
            raise ScenarioError("duplicate series ids in the hierarchy: "
                                f"{self.item_ids[self.item_ids.duplicated()][:5].tolist()}")
        if not levels:
            raise ScenarioError("a hierarchy needs at least one level")
        self._codes: dict[str, torch.Tensor] = {}
        self._groups: dict[str, pd.Index] = {}
        self._labels: dict[str, np.ndarray] = {}
        for name, labels in levels.items():
            arr = np.asarray(labels, dtype=object) if not isinstance(labels, np.ndarray) else labels
            if arr.shape != (n,):
                raise ScenarioError(f"level {name!r} has {arr.shape[0] if arr.ndim else 0} labels for {n} series")
            missing = pd.isna(arr)
            if missing.any():
                raise ScenarioError(f"level {name!r} has no label for series {self.item_ids[missing][:5].tolist()}")
            codes, uniq = pd.factorize(arr, sort=True)
            self._codes[name] = torch.from_numpy(codes.astype(np.int64))
            self._groups[name] = pd.Index(uniq, name=name)
            self._labels[name] = arr
        self.nested = nested
        if nested:
            names = list(levels)
            for fine, coarse in itertools.pairwise(names):
                pairs = pd.DataFrame({"fine": self._codes[fine].numpy(), "coarse": self._codes[coarse].numpy()})
                parents = pairs.drop_duplicates().groupby("fine")["coarse"].nunique()
                split = parents[parents > 1]
                if len(split):
                    g = self._groups[fine][split.index[0]]
                    sub = pairs[pairs.fine == split.index[0]].coarse.unique()
                    raise ScenarioError(
                        f"level {fine!r} is not nested in {coarse!r}: group {g!r} belongs to "
                        f"{[self._groups[coarse][c] for c in sub[:5]]}; {CROSSED_HINT}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_panel(cls, panel: Panel, levels: Sequence[str | Sequence[str]], total: bool = True,
                   nested: bool = True) -> Hierarchy:
        """Levels from the panel's static categorical columns, finest first. A level may combine
        columns (``("Store", "Dept")``); ``total`` adds the grand total on top.

        Walmart: ``Hierarchy.from_panel(panel, ["Store", "Type"])`` gives series -> store -> type -> total."""
        frame = static_frame(panel)
        return cls.from_frame(frame, levels, total=total, nested=nested)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, levels: Sequence[str | Sequence[str]], total: bool = True,
                   nested: bool = True) -> Hierarchy:
        """Levels from columns of ``frame`` (one row per bottom series, indexed by series id)."""
        out: dict[str, np.ndarray] = {}
        for level in levels:
            cols = [level] if isinstance(level, str) else list(level)
            unknown = [c for c in cols if c not in frame.columns]
            if unknown:
                raise ScenarioError(f"unknown column(s) {unknown} for a hierarchy level; available: {list(frame.columns)}")
            name = "/".join(cols)
            if len(cols) == 1:
                out[name] = frame[cols[0]].to_numpy(dtype=object)
            else:  # a missing part stays missing (refused with the series' names), not the string 'None'
                joined = frame[cols].astype(str).agg("|".join, axis=1).to_numpy(dtype=object)
                out[name] = np.where(frame[cols].isna().any(axis=1).to_numpy(), None, joined)
        if total:
            out[TOTAL] = np.full(len(frame), TOTAL, dtype=object)
        return cls(frame.index, out, nested=nested)

    # ------------------------------------------------------------------ views
    @property
    def levels(self) -> list[str]:
        return list(self._codes)

    @property
    def num_series(self) -> int:
        return len(self.item_ids)

    def codes(self, level: str) -> torch.Tensor:
        return self._codes[self._check_level(level)]

    def groups(self, level: str) -> pd.Index:
        return self._groups[self._check_level(level)]

    def labels(self, level: str) -> np.ndarray:
        """``[N]`` the group label of each bottom series at ``level``."""
        return self._labels[self._check_level(level)]

    def frame(self) -> pd.DataFrame:
        """One row per bottom series, one column per level (its group label)."""
        return pd.DataFrame({lv: self._labels[lv] for lv in self.levels}, index=self.item_ids)

    def node_ids(self) -> pd.Index:
        """Names of every aggregate node, level by level (``"Store=1"``, ..., ``"total"``)."""
        return pd.Index([_label(lv, g) for lv in self.levels for g in self._groups[lv]], name="item_id")

    def num_nodes(self) -> int:
        return sum(len(g) for g in self._groups.values())

    def _check_level(self, level: str) -> str:
        if level not in self._codes:
            raise ScenarioError(f"unknown level {level!r}; the hierarchy has {self.levels}")
        return level

    def __repr__(self) -> str:
        sizes = ", ".join(f"{lv}: {len(g)}" for lv, g in self._groups.items())
        return f"Hierarchy({self.num_series} series; {sizes})"

    def summing_matrix(self) -> torch.Tensor:
        """Sparse ``[G_total, N]`` 0/1 matrix: row g sums the bottom series of aggregate node g
        (nodes in :meth:`node_ids` order)."""
        rows, offset = [], 0
        for lv in self.levels:
            rows.append(self._codes[lv] + offset)
            offset += len(self._groups[lv])
        r = torch.cat(rows)
        c = torch.arange(self.num_series).repeat(len(self.levels))
        return torch.sparse_coo_tensor(torch.stack([r, c]), torch.ones(r.shape[0]), (offset, self.num_series),
                                       check_invariants=True).coalesce()

    # ------------------------------------------------------------------ aggregation
    def align(self, item_ids: pd.Index) -> Hierarchy:
        """The same hierarchy with its series in the order of ``item_ids`` (which must name exactly
        the hierarchy's series)."""
        item_ids = pd.Index(item_ids)
        if item_ids.equals(self.item_ids):
            return self
        pos = self.item_ids.get_indexer(item_ids)
        if (pos < 0).any() or len(item_ids) != self.num_series:
            missing = list(item_ids[pos < 0][:5])
            absent = list(self.item_ids.difference(item_ids)[:5])
            raise ScenarioError(f"the hierarchy holds {self.num_series} series, the scenarios {len(item_ids)}: "
                                f"series not in the hierarchy {missing}, hierarchy series without scenarios {absent}")
        return Hierarchy(item_ids, {lv: self._labels[lv][pos] for lv in self.levels}, nested=self.nested)

    def aggregate_level(self, x: torch.Tensor, level: str) -> torch.Tensor:
        """Sum ``x`` ``[N, ...]`` into the G groups of ``level``: ``[G, ...]``."""
        if x.shape[0] != self.num_series:
            raise ScenarioError(f"the tensor has {x.shape[0]} rows, the hierarchy {self.num_series} series")
        codes = self.codes(level).to(x.device)
        out = torch.zeros((len(self._groups[level]), *x.shape[1:]), dtype=x.dtype, device=x.device)
        return out.index_add_(0, codes, x)

    def aggregate(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{level: [G, ...]}`` sums of ``x`` ``[N, ...]`` at every level. In a nested hierarchy
        each level after the first is summed from the one before (G rows instead of N)."""
        out: dict[str, torch.Tensor] = {}
        prev = None
        for lv in self.levels:
            if self.nested and prev is not None:
                parent = torch.zeros(len(self._groups[prev]), dtype=torch.long)
                parent[self._codes[prev]] = self._codes[lv]  # the group of each finer group
                acc = torch.zeros((len(self._groups[lv]), *x.shape[1:]), dtype=x.dtype, device=x.device)
                out[lv] = acc.index_add_(0, parent.to(x.device), out[prev])
            else:
                out[lv] = self.aggregate_level(x, lv)
            prev = lv
        return out

    def aggregate_all(self, x: torch.Tensor) -> torch.Tensor:
        """Every aggregate node stacked (``[G_total, ...]`` in :meth:`node_ids` order)."""
        return torch.cat(list(self.aggregate(x).values()))

    def _group_start(self, start: pd.DatetimeIndex, level: str) -> pd.DatetimeIndex:
        codes = self._codes[level].numpy()
        frame = pd.DataFrame({"g": codes, "start": start})
        n = frame.groupby("g")["start"].nunique()
        if (n > 1).any():
            g = int(n.index[(n > 1).to_numpy()][0])
            members = self.item_ids[codes == g]
            first = frame[frame.g == g]["start"].unique()[:3]
            raise ScenarioError(
                f"the series of {_label(level, self._groups[level][g])!r} start their scenarios at different dates "
                f"({[str(t) for t in first]}, e.g. series {members[:5].tolist()}): steps would be summed across dates. "
                "Build the scenarios from one forecast origin (e.g. windows with align='grid')")
        return pd.DatetimeIndex(frame.groupby("g")["start"].first().sort_index().to_numpy())

    def aggregate_scenarios(self, scenarios: ScenarioSet, include_bottom: bool = False) -> ScenarioSet:
        """A ScenarioSet of every aggregate node (``[G_total, S, H]``, names from :meth:`node_ids`),
        optionally after the bottom series. Every node's scenario s is the sum of scenario s of its
        bottom series. Raises when a group's series start at different dates."""
        h = self.align(scenarios.item_ids)
        starts = [h._group_start(scenarios.start, lv) for lv in h.levels]
        values = h.aggregate_all(scenarios.values)
        ids, start = h.node_ids(), pd.DatetimeIndex(np.concatenate([s.to_numpy() for s in starts]))
        if include_bottom:
            values = torch.cat([scenarios.values, values])
            ids = pd.Index([str(i) for i in scenarios.item_ids] + list(ids), name="item_id")
            start = scenarios.start.append(start)
        return ScenarioSet(values, scenarios.weights, ids, start, scenarios.freq, scenarios.method)

    def level_scenarios(self, scenarios: ScenarioSet) -> dict[str, ScenarioSet]:
        """``{level: ScenarioSet [G, S, H]}`` for every level (the bottom one under ``"bottom"``)."""
        h = self.align(scenarios.item_ids)
        out = {"bottom": scenarios}
        for lv in h.levels:
            start = h._group_start(scenarios.start, lv)
            out[lv] = ScenarioSet(h.aggregate_level(scenarios.values, lv), scenarios.weights,
                                  pd.Index([_label(lv, g) for g in h.groups(lv)], name="item_id"), start,
                                  scenarios.freq, scenarios.method)
        return out

    def quantiles(self, scenarios: ScenarioSet, levels: Sequence[float] = DEFAULT_QUANTILES) -> dict[str, torch.Tensor]:
        """``{level: [G, Q, H]}`` quantiles of the coherent aggregates (bottom level included)."""
        return {lv: s.quantile(levels) for lv, s in self.level_scenarios(scenarios).items()}


def static_frame(panel: Panel) -> pd.DataFrame:
    """The panel's static categorical columns as labels, one row per series."""
    if panel.static_cat is None or not panel.static_cat_names:
        raise ScenarioError("the panel has no static categorical columns to build a hierarchy from")
    codes = panel.static_cat.cpu().numpy()
    return pd.DataFrame({name: np.asarray(levels)[codes[:, j]]
                         for j, (name, levels) in enumerate(zip(panel.static_cat_names, panel.static_cat_levels))},
                        index=panel.item_ids)


def aggregate_truth(hierarchy: Hierarchy, y: torch.Tensor, mask: torch.Tensor | None = None,
                    missing: str = "mask") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{level: (y [G, H], mask [G, H])}`` sums of the truth ``y`` ``[N, H]``.

    ``missing="mask"``: an aggregate point is observed only where all its series are (the sum is
    exact or absent); ``missing="zero"``: unobserved series count as 0 and a point is observed
    where any of its series is (for sales data whose missing rows mean no sale)."""
    if missing not in ("mask", "zero"):
        raise ScenarioError(f"missing must be 'mask' or 'zero', got {missing!r}")
    if mask is None:
        mask = torch.isfinite(y)
    if mask.shape != y.shape:
        raise ScenarioError(f"mask shape {tuple(mask.shape)} does not match truth {tuple(y.shape)}")
    y0 = torch.where(mask, torch.nan_to_num(y), torch.zeros_like(y))
    out = {}
    for lv in hierarchy.levels:
        total = hierarchy.aggregate_level(y0, lv)
        seen = hierarchy.aggregate_level(mask.to(y.dtype), lv)
        count = hierarchy.aggregate_level(torch.ones_like(y), lv)
        ok = seen == count if missing == "mask" else seen > 0
        out[lv] = (total, ok)
    return out


def weighted_crps(values: torch.Tensor, weights: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CRPS of weighted samples: sum_i w_i |x_i - y| - 1/2 sum_ij w_i w_j |x_i - x_j|.

    ``values`` ``[N, S, H]``, ``weights`` ``[S]`` summing to 1, ``y`` ``[N, H]`` -> ``[N, H]``. The pair
    term uses the sorted form 2 sum_i w_i x_(i) (W_{<i} - W_{>i}), O(S log S) per point; with equal
    weights it equals :func:`forecasting.evaluation.metrics.crps_ensemble`."""
    w = weights.to(values.dtype)
    abs_err = ((values - torch.nan_to_num(y)[:, None, :]).abs() * w[None, :, None]).sum(1)
    if torch.allclose(weights, torch.full_like(weights, 1.0 / weights.shape[0])):
        srt = sort_scenarios(values)  # equal weights: the numpy sort, no gather of weights
        S = values.shape[1]
        k = torch.arange(1, S + 1, dtype=values.dtype, device=values.device)
        return abs_err - (srt * (2 * k - S - 1)[:, None]).sum(1) / (S * S)
    srt, order = values.sort(dim=1)
    ws = w[order]
    cum = ws.cumsum(1)
    below, above = cum - ws, 1 - cum
    pair = 2 * (ws * srt * (below - above)).sum(1)
    return abs_err - pair / 2


def level_metrics(scenarios: ScenarioSet, hierarchy: Hierarchy, y: torch.Tensor, mask: torch.Tensor | None = None,
                  quantiles: Sequence[float] = DEFAULT_QUANTILES, missing: str = "mask") -> pd.DataFrame:
    """Scores of the coherent scenarios at the bottom level and every aggregate level.

    ``y`` / ``mask`` ``[N, H]`` is the truth of the bottom series (in the scenarios' row order).
    Columns: ``nodes``, ``points`` (observed aggregate points), ``crps`` (mean, target units),
    ``scaled_crps`` (sum CRPS / sum abs(y)), ``wql`` over ``quantiles``, ``coverage_50`` /
    ``coverage_80`` / ``coverage_95`` of the central intervals. See :func:`aggregate_truth` for
    ``missing``. A level with no observed point (``points`` 0: under ``missing="mask"`` an aggregate
    is unobserved at every step where one of its series has no truth, e.g. series that end before
    the window does) gets NaN for every score, not 0, which would read as a perfect score."""
    if y.shape != (scenarios.num_series, scenarios.horizon):
        raise ScenarioError(f"truth shape {tuple(y.shape)} does not match the scenarios "
                            f"[{scenarios.num_series}, {scenarios.horizon}]")
    h = hierarchy.align(scenarios.item_ids)
    mask = torch.isfinite(y) if mask is None else mask.bool()
    truth = {"bottom": (y, mask), **aggregate_truth(h, y, mask, missing)}
    levels = sorted(set(quantiles) | {0.025, 0.1, 0.25, 0.75, 0.9, 0.975})
    rows = []
    for lv, sc in h.level_scenarios(scenarios).items():
        yt, mt = truth[lv]
        q = sc.quantile(levels)
        at = {lev: q[:, i] for i, lev in enumerate(levels)}
        # NaN marks a missing truth value: masked with where (NaN * 0 would stay NaN)
        c = torch.where(mt, weighted_crps(sc.values, sc.weights, yt), torch.zeros_like(yt))
        points = int(mt.sum())
        scores = {"crps": float(c.sum() / mt.sum().clamp_min(1)),
                  "scaled_crps": float(c.sum() / M._abs_sum(yt, mt)),
                  "wql": float(M.wql(torch.stack([at[lev] for lev in quantiles], 1), yt, quantiles, mt))}
        for cov, (lo, hi) in {50: (0.25, 0.75), 80: (0.1, 0.9), 95: (0.025, 0.975)}.items():
            scores[f"coverage_{cov}"] = float(M.coverage(at[lo], at[hi], yt, mt))
        if points == 0:  # nothing observed: no score (the metrics would read 0, a perfect score)
            scores = dict.fromkeys(scores, float("nan"))
        rows.append({"level": lv, "nodes": sc.num_series, "points": points, **scores})
    return pd.DataFrame(rows).set_index("level")
