"""Simulators driven by scenarios: a protocol, a policy runner with KPI distributions, and a
reference periodic-review inventory simulator vectorised over scenarios x series.

A simulator implements :class:`Simulator`: ``simulate(demand [N, S, H], policy) -> {kpi: [S]}``
(one value per scenario). :func:`run_policy` feeds it a ScenarioSet (or a stream, chunk by chunk)
and returns the weighted KPI distributions: mean, standard deviation, quantiles and CVaR.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .core import ScenarioError, ScenarioSet, name_series, weighted_quantile
from .export import ScenarioStream

__all__ = [
    "InventorySimulator",
    "KPIReport",
    "Simulator",
    "base_stock_levels",
    "cvar",
    "kpi_features",
    "newsvendor_features",
    "point_base_stock",
    "protection_demand",
    "run_policy",
]


@runtime_checkable
class Simulator(Protocol):
    """What a simulator implements to be driven by scenarios.

    - ``kpis``: the names of the KPIs ``simulate`` returns
    - ``simulate(demand, policy)``: ``demand`` ``[N, S, H]`` (series, scenarios, steps, one chunk of
      scenarios at a time) -> ``{kpi: [S]}``
    - optional ``higher_is_worse``: ``{kpi: bool}``, the tail CVaR looks at (default True: costs)
    - optional ``check_demand(demand, item_ids)``: raise a :class:`ScenarioError` naming the series
      (``item_ids`` ``[N]``) whose demand ``[N, S, H]`` the simulator cannot take; :func:`run_policy`
      and :func:`kpi_features` call it on the whole set before simulating
    """

    kpis: tuple[str, ...]

    def simulate(self, demand: torch.Tensor, policy) -> dict[str, torch.Tensor]:
        ...


def cvar(values: torch.Tensor, weights: torch.Tensor, alpha: float = 0.95, upper: bool = True) -> float:
    """Conditional value at risk: the weighted mean of the worst ``1 - alpha`` probability mass of
    ``values`` ``[S]`` (the highest when ``upper``), the boundary scenario counted in part."""
    if not 0 <= alpha < 1:
        raise ScenarioError(f"alpha must be in [0, 1), got {alpha!r}")
    v = values.double()
    w = weights.double().to(v.device)
    order = v.argsort(descending=upper)
    v, w = v[order], w[order]
    mass = 1 - alpha
    cum = w.cumsum(0)
    take = (torch.minimum(cum, torch.tensor(mass, dtype=torch.float64)) - (cum - w)).clamp_min(0)
    return float((take * v).sum() / take.sum())


@dataclass(frozen=True)
class KPIReport:
    """KPIs of a policy over a scenario set: ``values`` ``{kpi: [S]}``, ``weights`` ``[S]`` and
    ``summary`` (one row per KPI: mean, std, quantiles ``q<level>``, ``cvar<alpha>``)."""

    values: dict[str, torch.Tensor]
    weights: torch.Tensor
    summary: pd.DataFrame

    def mean(self, kpi: str) -> float:
        return float(self.summary.loc[kpi, "mean"])

    def __repr__(self) -> str:
        # values hold one number per scenario and KPI (thousands): shapes and the summary only
        S = self.weights.shape[0]
        return (f"KPIReport({len(self.values)} KPIs x {S} scenarios: values {{kpi: [{S}]}}, weights [{S}])\n"
                f"{self.summary.to_string(float_format=lambda x: f'{x:.6g}')}")


def run_policy(simulator: Simulator, scenarios: ScenarioSet | ScenarioStream, policy,
               quantiles: Sequence[float] = (0.05, 0.5, 0.95), alpha: float = 0.95,
               chunk_size: int = 256, progress: bool = False) -> KPIReport:
    """Run ``policy`` through ``simulator`` on every scenario, chunk by chunk, and summarise each
    KPI's weighted distribution across scenarios. ``policy`` is passed to ``simulate`` unchanged
    (it must not depend on the chunk)."""
    if not isinstance(simulator, Simulator):
        raise ScenarioError(f"{type(simulator).__name__} does not implement the Simulator protocol "
                            "(a `kpis` attribute and a `simulate(demand, policy)` method)")
    check = getattr(simulator, "check_demand", None)
    if check is not None and isinstance(scenarios, ScenarioSet):
        check(scenarios.values, scenarios.item_ids)  # once on the whole set: every culprit named
    stream = scenarios if isinstance(scenarios, ScenarioStream) else ScenarioStream.from_set(scenarios, chunk_size)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in simulator.kpis}
    weights = []
    simulate = _unchecked(simulator)
    for chunk in tqdm(stream, disable=not progress, desc="simulate", leave=False):
        if check is not None and isinstance(scenarios, ScenarioStream):
            check(chunk.values, stream.item_ids)
        out = simulate(chunk.values, policy)
        s = chunk.values.shape[1]
        for k in simulator.kpis:
            parts[k].append(_kpi(out, k, s))
        weights.append(chunk.weights.double().cpu())
    w = torch.cat(weights)
    values = {k: torch.cat(v) for k, v in parts.items()}
    worse = getattr(simulator, "higher_is_worse", {})
    rows = []
    for k, v in values.items():
        mean = float((w * v).sum())
        row = {"kpi": k, "mean": mean, "std": float((w * (v - mean) ** 2).sum().sqrt())}
        qs = weighted_quantile(v[:, None], w, quantiles)[:, 0]
        row.update({f"q{q:g}": float(x) for q, x in zip(quantiles, qs)})
        row[f"cvar{alpha:g}"] = cvar(v, w, alpha, upper=worse.get(k, True))
        rows.append(row)
    return KPIReport(values, w, pd.DataFrame(rows).set_index("kpi"))


def _unchecked(simulator: Simulator):
    """``simulator.simulate`` for demand its ``check_demand`` has passed already: a simulator whose
    ``simulate`` takes ``check`` (the :class:`InventorySimulator`) is told not to check it again."""
    try:
        takes_check = "check" in inspect.signature(simulator.simulate).parameters
    except (TypeError, ValueError):  # a builtin or C callable
        takes_check = False
    if takes_check and getattr(simulator, "check_demand", None) is not None:
        return lambda demand, policy: simulator.simulate(demand, policy, check=False)
    return simulator.simulate


def _kpi(out, k: str, s: int) -> torch.Tensor:
    """KPI ``k`` of a simulator's output as a float64 CPU tensor ``[s]``: tensors, numpy arrays and
    lists are taken; a missing KPI or one of another shape is an error."""
    if not isinstance(out, dict) or k not in out:
        raise ScenarioError(f"the simulator did not return KPI {k!r}" + ("" if isinstance(out, dict) else
                                                                          f" (it returned a {type(out).__name__}, "
                                                                          "not a dict {kpi: [S]})"))
    v = out[k]
    try:
        t = v.detach() if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise ScenarioError(f"KPI {k!r} must be numbers, one per scenario (a tensor, array or list), got "
                            f"{type(v).__name__}: {err}") from None
    if t.shape != (s,):
        raise ScenarioError(f"KPI {k!r} has shape {tuple(t.shape)}, expected one value per scenario [{s}]")
    return t.double().cpu()


def kpi_features(simulator: Simulator, scenarios: ScenarioSet, policy, groups,
                 kpis: Sequence[str] = ("holding_cost", "shortage_cost"), standardize: bool = True) -> torch.Tensor:
    """``[S, G * len(kpis)]`` per-scenario KPIs of each group of series: the features to reduce
    scenarios on when a simulator's KPI means should survive the reduction
    (``reduce_scenarios(..., features=kpi_features(...))``).

    ``groups`` ``[N]`` labels the series (e.g. their store); the simulator runs once per group on
    that group's rows (``policy`` is sliced on its first dim when it is a tensor with one row per
    series), so it must treat series independently and ``kpis`` must be additive over series
    (costs and units, not rates). Only the scenarios are used, never realised demand. With
    ``standardize`` each column is divided by its weighted standard deviation across scenarios
    (constant columns are dropped), so every group's KPI counts alike in the distance."""
    N = scenarios.num_series
    labels = np.asarray(groups)
    if labels.shape != (N,):
        raise ScenarioError(f"groups must hold one label per series ({N}), got shape {labels.shape}")
    unknown = [k for k in kpis if k not in simulator.kpis]
    if unknown or not kpis:
        raise ScenarioError(f"kpis must be a non-empty subset of the simulator's {simulator.kpis}, got {list(kpis)}")
    check = getattr(simulator, "check_demand", None)
    if check is not None:
        check(scenarios.values, scenarios.item_ids)  # the per-group runs below see positions, not ids
    simulate = _unchecked(simulator)
    cols = []
    # one simulation per group, batched over the group's series and every scenario
    for g in pd.unique(labels):
        rows = torch.as_tensor(np.nonzero(labels == g)[0])
        pol = policy
        if isinstance(policy, torch.Tensor) and policy.ndim >= 1 and policy.shape[0] == N:
            pol = policy[rows.to(policy.device)]
        out = simulate(scenarios.values[rows.to(scenarios.values.device)], pol)
        cols += [_kpi(out, k, scenarios.num_scenarios) for k in kpis]
    x = torch.stack(cols, 1)  # [S, G * K]
    return _standardized(x, scenarios.weights) if standardize else x


def _standardized(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[S, F]`` columns divided by their weighted standard deviation across scenarios; constant
    columns are dropped (they cannot tell scenarios apart)."""
    w = weights.double().cpu()[:, None]
    sd = ((w * (x - (w * x).sum(0)) ** 2).sum(0)).sqrt()
    keep = sd > 1e-12 * x.abs().amax(0).clamp_min(1e-300)
    return x[:, keep] / sd[keep]


def newsvendor_features(scenarios: ScenarioSet, levels: torch.Tensor, periods: int, groups=None,
                        standardize: bool = False) -> torch.Tensor:
    """``[S, 3 G]`` per-scenario quantities behind a base-stock policy's KPIs, whose means a reduced
    set should keep (``reduce_scenarios(..., match=newsvendor_features(...))``).

    For each group of series (``groups`` ``[N]`` labels; None: all series together, G = 1):
    demand summed over series and steps; shortfall, sum over series and steps of
    ``(D_t - S_t)_+``, the protection-interval demand ``D_t`` (``periods`` steps from t, see
    :func:`protection_demand`) above the order-up-to level ``S_t`` (``levels`` ``[N, H]``), what
    lost sales grow with; and leftover, ``(S_t - D_t)_+``, what stock on hand grows with.
    Computed from the scenario values and the policy alone: no simulation, no realised demand.

    ``standardize``: each column divided by its weighted standard deviation across scenarios
    (constant ones dropped), so every group counts alike when they are the selection features of
    ``reduce_scenarios(..., features=newsvendor_features(..., groups=store, standardize=True))``."""
    N, S, H = scenarios.values.shape
    if levels.shape != (N, H):
        raise ScenarioError(f"levels must be [N, H] = [{N}, {H}], got shape {tuple(levels.shape)}")
    codes = np.zeros(N, dtype=np.int64)
    if groups is not None:
        labels = np.asarray(groups)
        if labels.shape != (N,):
            raise ScenarioError(f"groups must hold one label per series ({N}), got shape {labels.shape}")
        codes = pd.factorize(labels)[0]
    codes = torch.as_tensor(codes)
    G = int(codes.max()) + 1
    prot = protection_demand(scenarios.values, periods).double()
    gap = prot - levels.double().to(prot.device)[:, None, :]
    parts = (scenarios.values.double().sum(-1), gap.clamp_min(0).sum(-1), (-gap).clamp_min(0).sum(-1))  # [N, S] each
    cols = [torch.zeros(G, S, dtype=torch.float64).index_add_(0, codes, x.cpu()) for x in parts]
    x = torch.cat(cols).T  # [S, 3 G]: demand of each group, then shortfall, then leftover
    return _standardized(x, scenarios.weights) if standardize else x


def protection_demand(demand: torch.Tensor, periods: int) -> torch.Tensor:
    """Demand over the ``periods`` steps starting at each step: ``[..., H]`` -> ``[..., H]``; windows
    that run past the horizon are cut at its end (the simulation ends there too). ``periods`` must
    lie in ``[1, H]``: a longer interval would be cut at every step."""
    H = demand.shape[-1]
    if not 1 <= periods <= H:
        raise ScenarioError(f"a protection interval of {periods} steps (periods, or lead_time + review_period) "
                            f"must be between 1 and the horizon ({H} steps)")
    cs = torch.nn.functional.pad(demand.double().cumsum(-1), (1, 0))
    hi = (torch.arange(H, device=demand.device) + periods).clamp_max(H)
    return (cs[..., hi] - cs[..., :H]).to(demand.dtype)


def base_stock_levels(scenarios: ScenarioSet, lead_time: int, review_period: int = 1,
                      service_level: float = 0.9) -> torch.Tensor:
    """``[N, H]`` order-up-to levels: the ``service_level`` quantile (weighted, across scenarios) of
    demand over the protection interval (``lead_time + review_period`` steps from each step).
    Joint scenarios matter here: the sum over steps needs the dependence across steps."""
    if not 0 < service_level < 1:
        raise ScenarioError(f"service_level must be in (0, 1), got {service_level!r}")
    prot = protection_demand(scenarios.values, lead_time + review_period)  # [N, S, H]
    if scenarios.uniform:
        return torch.quantile(prot.float(), service_level, dim=1).to(scenarios.values.dtype)
    return weighted_quantile(prot, scenarios.weights, [service_level])[:, 0]


def point_base_stock(point: torch.Tensor, lead_time: int, review_period: int = 1) -> torch.Tensor:
    """``[N, H]`` order-up-to levels from a point forecast ``[N, H]``: its sum over the protection
    interval (no safety stock; the usual plan from a single number)."""
    return protection_demand(point, lead_time + review_period)


class InventorySimulator:
    """Periodic-review base-stock inventory, all scenarios x series at once.

    Each step t: (1) receive the orders due; (2) on review steps (every ``review_period``) order
    ``max(S_t - inventory position, 0)``, which arrives ``lead_time`` steps later (0: at once);
    (3) demand is served from stock, the rest is lost (``lost_sales=True``) or backordered;
    (4) costs: ``holding_cost`` per unit on hand at the end of the step, ``shortage_cost`` per unit
    lost (lost sales) or per unit backordered at the end of the step (backorders).

    ``simulate(demand [N, S, H], base_stock)``: ``base_stock`` ``[N]``, ``[N, H]`` or ``[N, S, H]``;
    stock starts at ``initial_inventory`` (``[N]``; default the first base-stock level, at least 0
    under lost sales) with nothing on order. Negative demand (returns) raises unless ``negative_demand="return"``, which
    puts it back on the shelf. KPIs per scenario (sums over series and steps): ``total_cost``,
    ``holding_cost``, ``shortage_cost``, ``shortage_units`` (units of demand not served from stock
    when demanded: lost, or backordered and counted once), ``demand`` (positive demand),
    ``ordered``, ``fill_rate`` (1 - shortage units / positive demand: the share served from stock)."""

    kpis = ("total_cost", "holding_cost", "shortage_cost", "shortage_units", "demand", "ordered", "fill_rate")
    higher_is_worse: ClassVar[dict[str, bool]] = {"fill_rate": False}

    def __init__(self, lead_time: int = 1, review_period: int = 1, holding_cost=1.0, shortage_cost=9.0,
                 lost_sales: bool = True, initial_inventory: torch.Tensor | None = None,
                 negative_demand: str = "raise"):
        if lead_time < 0 or review_period < 1:
            raise ScenarioError(f"lead_time must be >= 0 and review_period >= 1, got {lead_time} and {review_period}")
        if negative_demand not in ("raise", "return"):
            raise ScenarioError(f"negative_demand must be 'raise' or 'return', got {negative_demand!r}")
        for name, c in (("holding_cost", holding_cost), ("shortage_cost", shortage_cost)):
            if bool((torch.as_tensor(c) < 0).any()):
                raise ScenarioError(f"{name} must be >= 0")
        self.lead_time, self.review_period = lead_time, review_period
        self.holding_cost, self.shortage_cost = holding_cost, shortage_cost
        self.lost_sales, self.initial_inventory, self.negative_demand = lost_sales, initial_inventory, negative_demand

    @property
    def critical_ratio(self) -> float:
        """shortage / (shortage + holding): the newsvendor service level (scalar costs)."""
        b, h = float(torch.as_tensor(self.shortage_cost).mean()), float(torch.as_tensor(self.holding_cost).mean())
        return b / (b + h)

    def _levels(self, base_stock, N: int, S: int, H: int, device) -> torch.Tensor:
        b = torch.as_tensor(base_stock, device=device)
        if b.shape == (N,):
            b = b[:, None, None].expand(N, S, H)
        elif b.shape == (N, H):
            b = b[:, None, :].expand(N, S, H)
        elif b.shape != (N, S, H):
            raise ScenarioError(f"base_stock must be [N]=[{N}], [N, H]=[{N}, {H}] or [N, S, H], got {tuple(b.shape)}")
        if not bool(torch.isfinite(b).all()):
            raise ScenarioError("base_stock has non-finite levels")
        return b

    def check_demand(self, demand: torch.Tensor, item_ids: Sequence | None = None) -> None:
        """Raise when ``demand`` ``[N, S, H]`` is not finite, or negative under ``negative_demand="raise"``,
        naming the series by ``item_ids`` ``[N]`` (by position when None)."""
        if demand.ndim != 3:
            raise ScenarioError(f"demand must be [series, scenarios, steps], got shape {tuple(demand.shape)}")

        def culprits(bad: torch.Tensor) -> str:  # bad [N, S, H]
            rows = bad.flatten(1).any(1).cpu().numpy()
            if item_ids is None:
                return f"series at positions ({name_series(np.nonzero(rows)[0])})"
            return name_series(pd.Index(item_ids)[rows])

        if not bool(torch.isfinite(demand).all()):
            raise ScenarioError(f"non-finite demand for {culprits(~torch.isfinite(demand))}")
        if self.negative_demand == "raise" and bool((demand < 0).any()):
            raise ScenarioError(f"negative demand (returns) for {culprits(demand < 0)}; "
                                "pass negative_demand='return' to put returns back in stock")

    def simulate(self, demand: torch.Tensor, base_stock, check: bool = True) -> dict[str, torch.Tensor]:
        """``demand`` ``[N, S, H]`` -> ``{kpi: [S]}`` (see the class docstring). ``check=False``
        skips :meth:`check_demand` (``run_policy`` and ``kpi_features`` run it once on the whole
        set, naming the series, before they simulate)."""
        if check:
            self.check_demand(demand)
        N, S, H = demand.shape
        d_all = demand.double()
        levels = self._levels(base_stock, N, S, H, demand.device).double()
        h = torch.as_tensor(self.holding_cost, dtype=torch.float64, device=demand.device)
        b = torch.as_tensor(self.shortage_cost, dtype=torch.float64, device=demand.device)
        h = h[:, None] if h.ndim == 1 else h
        b = b[:, None] if b.ndim == 1 else b
        if self.initial_inventory is None:
            # stock on hand cannot be negative under lost sales; with backorders it is a backlog
            net = levels[..., 0].clamp_min(0) if self.lost_sales else levels[..., 0].clone()
        else:
            init = torch.as_tensor(self.initial_inventory, dtype=torch.float64, device=demand.device)
            if init.shape != (N,):
                raise ScenarioError(f"initial_inventory must be [N]=[{N}], got {tuple(init.shape)}")
            net = init[:, None].expand(N, S).clone()
        L = self.lead_time
        pipeline = torch.zeros(max(L, 1), N, S, dtype=torch.float64, device=demand.device)
        zeros = torch.zeros(N, S, dtype=torch.float64, device=demand.device)
        holding, shortage, short_units, ordered = zeros.clone(), zeros.clone(), zeros.clone(), zeros.clone()
        # the state of step t depends on step t-1: a loop over the H steps, batched over N x S
        for t in range(H):
            if L > 0:
                net += pipeline[0]
                pipeline = torch.cat([pipeline[1:], zeros[None]])
            if t % self.review_period == 0:
                position = net + pipeline.sum(0) if L > 0 else net
                q = (levels[..., t] - position).clamp_min(0)  # a base-stock policy never orders < 0
                ordered += q
                if L > 0:
                    pipeline[L - 1] += q
                else:
                    net += q
            d = d_all[..., t]
            if self.lost_sales:
                pos_d = d.clamp_min(0)
                served = torch.minimum(net.clamp_min(0), pos_d)
                lost = pos_d - served
                net = net - served - d.clamp_max(0)  # returns (d < 0) go back on the shelf
                short_units += lost
                shortage += b * lost
            else:
                # units of this step's demand not served from stock (backordered: counted once, when
                # demanded); the cost accrues on the whole backlog at the end of every step
                short_units += d.clamp_min(0) - torch.minimum(net.clamp_min(0), d.clamp_min(0))
                net = net - d
                shortage += b * (-net).clamp_min(0)
            holding += h * net.clamp_min(0)
        pos_demand = d_all.clamp_min(0).sum((0, 2))
        su = short_units.sum(0)
        out = {"holding_cost": holding.sum(0), "shortage_cost": shortage.sum(0), "shortage_units": su,
               "demand": pos_demand, "ordered": ordered.sum(0)}
        out["total_cost"] = out["holding_cost"] + out["shortage_cost"]
        out["fill_rate"] = torch.where(pos_demand > 0, 1 - su / pos_demand.clamp_min(1e-300), torch.ones_like(su))
        return out
