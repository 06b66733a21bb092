"""Drive a SimPy discrete-event inventory model with joint demand scenarios.

    python docs/examples/simpy_inventory.py --data-dir ../shared/data     # walmart, store 1
    python docs/examples/simpy_inventory.py                               # synthetic data if walmart is absent

Steps: forecast (seasonal naive) -> joint scenarios (Schaake shuffle learned from the history) ->
base-stock levels from the scenarios -> reduce 200 -> 20 weighted scenarios (weights that keep the
means of demand and of its shortfall and leftover against the levels) -> run the policy through
a SimPy model of the store (one event process per department: weekly review, deliveries after the
lead time, demand, end-of-week holding cost) via ``run_policy`` -> KPI distribution. The same
policy through the package's vectorised ``InventorySimulator`` gives the same KPIs, which checks
both models. Needs ``simpy`` (``pip install forecasting[sim]``).
"""
from __future__ import annotations

import argparse
from typing import ClassVar

import numpy as np
import pandas as pd
import simpy
import torch

import forecasting
from forecasting import Panel
from forecasting.datasets import DatasetError
from forecasting.models import SeasonalNaive
from forecasting.scenarios import (
    InventorySimulator,
    SchaakeShuffle,
    Simulator,
    base_stock_levels,
    joint_scenarios,
    newsvendor_features,
    reduce_scenarios,
    run_policy,
)


class SimPyStore:
    """A SimPy model of one store: each series is a department with its own stock.

    Week t runs from time t to t + 1: deliveries arrive at t, the weekly review at t + 0.1 orders
    up to the base-stock level (delivered ``lead_time`` weeks later), the week's demand is served
    at t + 0.5 (unmet demand is lost; negative demand is a return), and holding cost is charged on
    the stock left at t + 0.9. Implements the :class:`forecasting.scenarios.Simulator` protocol."""

    kpis = ("total_cost", "holding_cost", "shortage_cost", "fill_rate")
    higher_is_worse: ClassVar[dict[str, bool]] = {"fill_rate": False}

    def __init__(self, lead_time: int = 2, holding_cost: float = 1.0, shortage_cost: float = 9.0):
        if lead_time < 1:
            raise ValueError(f"this model needs lead_time >= 1 week, got {lead_time}")
        self.lead_time, self.holding_cost, self.shortage_cost = lead_time, holding_cost, shortage_cost

    def _department(self, env, demand, levels, totals):
        stock = simpy.Container(env, init=max(float(levels[0]), 0.0), capacity=float("inf"))
        on_order = [0.0]

        def deliver(q):
            yield env.timeout(self.lead_time - 0.1)
            on_order[0] -= q
            yield stock.put(q)

        def week(t):
            yield env.timeout(t + 0.1 - env.now)
            q = max(float(levels[t]) - (stock.level + on_order[0]), 0.0)
            if q > 0:
                on_order[0] += q
                env.process(deliver(q))
            yield env.timeout(0.4)
            d = float(demand[t])
            if d < 0:
                yield stock.put(-d)
            else:
                served = min(stock.level, d)
                if served > 0:
                    yield stock.get(served)
                totals["lost"] += d - served
                totals["demand"] += d
            yield env.timeout(0.4)
            totals["holding"] += self.holding_cost * stock.level

        def run():
            for t in range(len(demand)):
                yield env.process(week(t))

        return run()

    def simulate(self, demand: torch.Tensor, base_stock: torch.Tensor) -> dict[str, torch.Tensor]:
        """``demand`` ``[N, S, H]``, ``base_stock`` ``[N, H]`` -> ``{kpi: [S]}``. One SimPy run per
        scenario (a discrete-event model steps through events, not tensors)."""
        n, s, _ = demand.shape
        out = {k: torch.zeros(s, dtype=torch.float64) for k in self.kpis}
        for j in range(s):
            env = simpy.Environment()
            totals = {"holding": 0.0, "lost": 0.0, "demand": 0.0}
            for i in range(n):
                env.process(self._department(env, demand[i, j].double().numpy(), base_stock[i].double().numpy(), totals))
            env.run()
            out["holding_cost"][j] = totals["holding"]
            out["shortage_cost"][j] = self.shortage_cost * totals["lost"]
            out["fill_rate"][j] = 1 - totals["lost"] / totals["demand"] if totals["demand"] > 0 else 1.0
        out["total_cost"] = out["holding_cost"] + out["shortage_cost"]
        return out


def load_panel(data_dir):
    """Store 1's departments of walmart (history up to the last 39 weeks), or synthetic weeks."""
    try:
        ds = forecasting.load("walmart", data_dir, download=False)
        panel = ds.panel
        store = panel.static_cat[:, list(panel.static_cat_names).index("Store")]
        sub = panel.select(store == 0)
        return sub.windows(39, 1, align="grid")[0].train, 39, "walmart store 1"
    except DatasetError as err:  # walmart is not public; fall back to synthetic weeks
        print(f"walmart not available ({type(err).__name__}); using synthetic data")
    rng = np.random.default_rng(0)
    n, t = 15, 120
    common = np.cumsum(rng.normal(0, 20, t))
    y = 1000 + 200 * np.sin(2 * np.pi * np.arange(t) / 52) + common + rng.normal(0, 50, (n, t))
    ts = pd.date_range("2020-01-03", periods=t, freq="W-FRI")
    df = pd.DataFrame({"item_id": np.repeat([f"d{i}" for i in range(n)], t), "timestamp": np.tile(ts, n),
                       "target": y.reshape(-1)})
    return Panel.from_long(df, freq="W-FRI"), 26, "synthetic"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--lead-time", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    history, horizon, name = load_panel(args.data_dir)
    forecast = SeasonalNaive(52).fit(history, horizon).predict(history, 200, seed=0)
    scenarios = joint_scenarios(forecast, SchaakeShuffle("level").fit(history, horizon), seed=1)
    levels = base_stock_levels(scenarios, args.lead_time, 1, service_level=9 / 10)
    reduced, red = reduce_scenarios(scenarios, 20, match=newsvendor_features(scenarios, levels, args.lead_time + 1))
    print(f"{name}: {scenarios.num_series} series, {scenarios.num_scenarios} joint scenarios -> "
          f"{reduced.num_scenarios} (transport distance {red.transport:,.0f})")

    store = SimPyStore(lead_time=args.lead_time)
    if not isinstance(store, Simulator):
        raise SystemExit("SimPyStore does not implement the Simulator protocol")
    report = run_policy(store, reduced, levels)
    print("SimPy store, 20 weighted scenarios:")
    print(report.summary.round(3).to_string())

    vectorised = InventorySimulator(lead_time=args.lead_time, negative_demand="return")
    reference = run_policy(vectorised, reduced, levels)
    full = run_policy(vectorised, scenarios, levels)
    for k in store.kpis:
        a, b = report.mean(k), reference.mean(k)
        print(f"  {k:14s} SimPy {a:14,.3f}   vectorised {b:14,.3f}   all {scenarios.num_scenarios} scenarios "
              f"{full.mean(k):14,.3f}")
        if not np.isclose(a, b, rtol=1e-6):
            raise SystemExit(f"the two simulators disagree on {k}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
