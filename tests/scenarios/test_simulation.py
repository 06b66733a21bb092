import pandas as pd
import pytest
import torch

from forecasting.scenarios import (
    InventorySimulator,
    ScenarioError,
    ScenarioSet,
    ScenarioStream,
    Simulator,
    base_stock_levels,
    cvar,
    kpi_features,
    newsvendor_features,
    point_base_stock,
    protection_demand,
    run_policy,
)


def test_lost_sales_by_hand():
    # one series, one scenario, lead time 1, base stock 10; demand 4, 12, 3
    sim = InventorySimulator(lead_time=1, holding_cost=1.0, shortage_cost=5.0)
    d = torch.tensor([[[4.0, 12.0, 3.0]]])
    out = sim.simulate(d, torch.tensor([10.0]))
    # t0: stock 10, order 0, sell 4 -> 6 (hold 6); t1: order 4 (arrives t2), sell 6 of 12 -> 0, lose 6
    # t2: receive 4, position 4 -> order 6, sell 3 -> 1 (hold 1)
    assert out["holding_cost"].item() == 7.0 and out["shortage_units"].item() == 6.0
    assert out["shortage_cost"].item() == 30.0 and out["total_cost"].item() == 37.0
    assert out["ordered"].item() == 10.0 and out["fill_rate"].item() == pytest.approx(1 - 6 / 19)


def test_backorders_and_returns():
    sim = InventorySimulator(lead_time=0, holding_cost=1.0, shortage_cost=2.0, lost_sales=False)
    d = torch.tensor([[[4.0, 12.0]]])
    out = sim.simulate(d, torch.tensor([10.0]))
    # lead time 0: order up to 10 at the start of each step; t1: 10 - 12 = -2 backordered
    assert out["holding_cost"].item() == 6.0 and out["shortage_units"].item() == 2.0
    # a backordered unit is short once, not once per step it waits: demand 10 from empty stock,
    # lead time 3 -> 10 units short (fill rate 0), cost 9 per unit for each of the 3 steps of backlog
    late = InventorySimulator(lead_time=3, lost_sales=False, holding_cost=1.0, shortage_cost=9.0,
                              initial_inventory=torch.tensor([0.0]))
    out = late.simulate(torch.tensor([[[10.0, 0, 0, 0, 0, 0]]]), torch.tensor([10.0]))
    assert out["shortage_units"].item() == 10.0 and out["fill_rate"].item() == 0.0
    assert out["shortage_cost"].item() == 9.0 * 10 * 3
    with pytest.raises(ScenarioError, match="negative demand"):
        InventorySimulator().simulate(torch.tensor([[[1.0, -2.0]]]), torch.tensor([3.0]))
    ret = InventorySimulator(lead_time=1, negative_demand="return").simulate(torch.tensor([[[1.0, -2.0]]]), torch.tensor([3.0]))
    assert ret["holding_cost"].item() == 2.0 + 4.0  # the return goes back on the shelf


def test_vectorised_over_scenarios_and_series_matches_one_by_one():
    g = torch.Generator().manual_seed(0)
    d = torch.rand(5, 8, 10, generator=g) * 10
    levels = torch.rand(5, 10, generator=g) * 20
    sim = InventorySimulator(lead_time=2, review_period=2)
    full = sim.simulate(d, levels)
    for s in range(8):
        for k in ("total_cost", "ordered"):
            alone = sum(sim.simulate(d[i:i + 1, s:s + 1], levels[i:i + 1])[k] for i in range(5))
            assert full[k][s].item() == pytest.approx(alone.item(), rel=1e-9)


def test_base_stock_levels_from_scenarios_and_point():
    d = torch.arange(6.0).view(1, 1, 6).expand(1, 4, 6) + torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 4, 1)
    prot = protection_demand(d, 2)
    assert prot[0, 0].tolist() == [1.0, 3.0, 5.0, 7.0, 9.0, 5.0]  # cut at the horizon end
    sc = ScenarioSet(d, torch.full((4,), 0.25, dtype=torch.float64), pd.Index(["a"]), pd.DatetimeIndex(["2021-01-01"]), "D")
    lv = base_stock_levels(sc, lead_time=1, service_level=0.5)
    assert lv[0, 0].item() == pytest.approx(float(torch.quantile(prot[0, :, 0], 0.5)))
    assert point_base_stock(d[:, 0], 1)[0].tolist() == prot[0, 0].tolist()


def test_run_policy_weighted_kpis_and_cvar():
    v = torch.tensor([0.0, 10.0, 20.0, 30.0]).view(1, 4, 1)
    sc = ScenarioSet(v, torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64), pd.Index(["a"]),
                     pd.DatetimeIndex(["2021-01-01"]), "D")
    rep = run_policy(InventorySimulator(lead_time=0, holding_cost=1.0, shortage_cost=1.0), sc, torch.tensor([15.0]),
                     chunk_size=3)
    # costs per scenario: holding 15, 5, 0, 0 and shortage 0, 0, 5, 15 -> total 15, 5, 5, 15
    assert rep.values["total_cost"].tolist() == [15.0, 5.0, 5.0, 15.0]
    assert rep.mean("total_cost") == pytest.approx(0.4 * 15 + 0.3 * 5 + 0.2 * 5 + 0.1 * 15)
    assert rep.summary.loc["total_cost", "cvar0.95"] == pytest.approx(15.0)
    assert cvar(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.full((4,), 0.25), alpha=0.5) == pytest.approx(3.5)
    assert cvar(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.full((4,), 0.25), alpha=0.6) == pytest.approx((3 * 0.15 + 4 * 0.25) / 0.4)
    assert cvar(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.full((4,), 0.25), alpha=0.5, upper=False) == pytest.approx(1.5)


def test_any_object_with_kpis_and_simulate_is_a_simulator():
    class Revenue:
        kpis = ("revenue",)

        def simulate(self, demand, price):
            return {"revenue": (demand * price).sum((0, 2))}

    assert isinstance(Revenue(), Simulator)
    sc = ScenarioSet(torch.ones(2, 3, 4), torch.full((3,), 1 / 3, dtype=torch.float64), pd.Index(["a", "b"]),
                     pd.DatetimeIndex(["2021-01-01"] * 2), "D")
    assert run_policy(Revenue(), sc, 2.0).mean("revenue") == pytest.approx(16.0)
    with pytest.raises(ScenarioError, match="Simulator protocol"):
        run_policy(object(), sc, 2.0)

    class Wrong(Revenue):
        def simulate(self, demand, price):
            return {"revenue": torch.zeros(7)}

    with pytest.raises(ScenarioError, match="one value per scenario"):
        run_policy(Wrong(), sc, 1.0)


def test_kpi_features_are_per_group_simulations():
    g = torch.Generator().manual_seed(3)
    demand = 10 + 3 * torch.randn(6, 40, 5, generator=g).abs()
    sc = ScenarioSet(demand, torch.full((40,), 1 / 40, dtype=torch.float64), pd.Index([f"x{i}" for i in range(6)]),
                     pd.DatetimeIndex(["2021-01-01"] * 6), "D")
    sim = InventorySimulator(lead_time=1)
    levels = base_stock_levels(sc, 1, 1, sim.critical_ratio)  # [N, H]: sliced by group
    groups = ["a", "b", "a", "c", "b", "a"]
    raw = kpi_features(sim, sc, levels, groups, kpis=("holding_cost", "shortage_cost"), standardize=False)
    assert raw.shape == (40, 6)
    full = sim.simulate(demand, levels)
    # group columns add up to the KPIs of the whole set, scenario by scenario
    assert torch.allclose(raw[:, 0::2].sum(1), full["holding_cost"].double())
    assert torch.allclose(raw[:, 1::2].sum(1), full["shortage_cost"].double())
    z = kpi_features(sim, sc, levels, groups)
    keep = raw.std(0, unbiased=False) > 0
    assert z.shape == (40, int(keep.sum()))
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(z.shape[1], dtype=torch.float64))
    with pytest.raises(ScenarioError, match="one label per series"):
        kpi_features(sim, sc, levels, groups[:3])
    with pytest.raises(ScenarioError, match="subset of the simulator"):
        kpi_features(sim, sc, levels, groups, kpis=("profit",))


def test_newsvendor_features_by_hand_and_by_group():
    # two series, two scenarios, three steps; protection interval 2 steps; levels 5 everywhere
    v = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 4.0, 0.0]],
                      [[0.0, 0.0, 6.0], [2.0, 2.0, 2.0]]])
    sc = ScenarioSet(v, torch.tensor([0.5, 0.5], dtype=torch.float64), pd.Index(["a", "b"]),
                     pd.DatetimeIndex(["2021-01-01"] * 2), "D")
    levels = torch.full((2, 3), 5.0)
    x = newsvendor_features(sc, levels, 2)
    # protection demand: a: [3, 5, 3] and [8, 4, 0]; b: [0, 6, 6] and [4, 4, 2]
    # shortfall: scenario 0: 0 + 2 = 2 (b: 1 + 1); scenario 1: a 3, b 0 -> 3
    # leftover: scenario 0: a 2 + 0 + 2, b 5 + 0 + 0 -> 9; scenario 1: a 0 + 1 + 5, b 1 + 1 + 3 -> 11
    assert x.tolist() == [[12.0, 2.0, 9.0], [14.0, 3.0, 11.0]]
    by = newsvendor_features(sc, levels, 2, groups=["g1", "g2"])
    assert by.shape == (2, 6) and torch.equal(by[:, [0, 2, 4]] + by[:, [1, 3, 5]], x)
    # standardised: two equally weighted scenarios -> each column differs by 2 sd; constant columns dropped
    z = newsvendor_features(sc, levels, 2, standardize=True)
    assert z.shape == (2, 3) and torch.allclose(z[1] - z[0], torch.full((3,), 2.0, dtype=torch.float64))
    zb = newsvendor_features(sc, levels, 2, groups=["g1", "g2"], standardize=True)
    assert zb.shape[1] == int((by.std(0) > 0).sum())
    with pytest.raises(ScenarioError, match="levels"):
        newsvendor_features(sc, torch.zeros(2, 2), 2)


def test_negative_demand_errors_name_the_series_and_count_them():
    g = torch.Generator().manual_seed(0)
    demand = torch.rand(9, 20, 4, generator=g) * 10
    demand[[1, 2, 4, 6, 7, 8], 3, 1] = -1.0  # returns in 6 of the 9 series, one scenario
    sc = ScenarioSet(demand, torch.full((20,), 1 / 20, dtype=torch.float64),
                     pd.Index([f"{i}_{i + 50}" for i in range(9)]), pd.DatetimeIndex(["2021-01-01"] * 9), "D")
    sim = InventorySimulator(lead_time=1)
    levels = base_stock_levels(sc, 1)
    named = (r"negative demand \(returns\) for 6 series: '1_51', '2_52', '4_54', '6_56', '7_57' and 1 more; "
             r"pass negative_demand='return'")
    with pytest.raises(ScenarioError, match=named):
        run_policy(sim, sc, levels)
    with pytest.raises(ScenarioError, match=named):
        run_policy(sim, ScenarioStream.from_set(sc, 8), levels)
    with pytest.raises(ScenarioError, match=named):
        kpi_features(sim, sc, levels, groups=["a", "b", "c"] * 3)
    # a simulator called on a bare tensor has no ids: positions, and the count
    with pytest.raises(ScenarioError, match=r"series at positions \(6 series: 1, 2, 4, 6, 7 and 1 more\)"):
        sim.simulate(demand, levels)
    with pytest.raises(ScenarioError, match=r"non-finite demand for 1 series: '0_50'"):
        sim.check_demand(torch.where(torch.arange(9)[:, None, None] == 0, torch.nan, demand.abs()), sc.item_ids)
    assert run_policy(InventorySimulator(lead_time=1, negative_demand="return"), sc, levels).mean("demand") > 0


def test_a_protection_interval_longer_than_the_horizon_is_an_error():
    sc = ScenarioSet(torch.ones(2, 3, 4), torch.full((3,), 1 / 3, dtype=torch.float64), pd.Index(["a", "b"]),
                     pd.DatetimeIndex(["2021-01-01"] * 2), "D")
    levels = torch.ones(2, 4)
    assert newsvendor_features(sc, levels, 4).shape == (3, 3)
    for periods in (5, 500, 0):
        with pytest.raises(ScenarioError, match=r"protection interval of -?\d+ steps .* between 1 and the horizon \(4 steps\)"):
            newsvendor_features(sc, levels, periods)
    with pytest.raises(ScenarioError, match="lead_time \\+ review_period"):
        base_stock_levels(sc, lead_time=4, review_period=1)


def test_kpi_report_repr_is_compact():
    sc = ScenarioSet(torch.rand(3, 1000, 5) * 10, torch.full((1000,), 1e-3, dtype=torch.float64),
                     pd.Index(["a", "b", "c"]), pd.DatetimeIndex(["2021-01-01"] * 3), "D")
    report = run_policy(InventorySimulator(lead_time=1), sc, base_stock_levels(sc, 1))
    text = repr(report)
    assert text.startswith("KPIReport(7 KPIs x 1000 scenarios")
    assert "tensor(" not in text and len(text.splitlines()) <= 3 + 7  # header, column and index names, a row per KPI
    assert "total_cost" in text and f"{report.mean('total_cost'):.6g}" in text


def _small_set():
    return ScenarioSet(torch.rand(2, 5, 3), torch.full((5,), 0.2, dtype=torch.float64), pd.Index(["a", "b"]),
                       pd.DatetimeIndex(["2020-01-03"] * 2), "W-FRI")


def test_a_simulator_may_return_numpy_kpis_and_a_wrong_shape_is_named():
    import numpy as np

    class NumpySim:
        kpis = ("cost", "units")

        def simulate(self, demand, policy):
            return {"cost": demand.sum((0, 2)).numpy(), "units": demand.sum((0, 2)).tolist()}

    sc = _small_set()
    report = run_policy(NumpySim(), sc, None)
    expected = float((sc.weights * sc.values.double().sum((0, 2))).sum())
    assert report.mean("cost") == pytest.approx(expected) and report.mean("units") == pytest.approx(expected)

    class Scalar:
        kpis = ("cost",)

        def simulate(self, demand, policy):
            return {"cost": np.float64(1.0)}

    with pytest.raises(ScenarioError, match=r"KPI 'cost' has shape \(\), expected one value per scenario \[5\]"):
        run_policy(Scalar(), sc, None)


def test_run_policy_checks_the_demand_once():
    calls = []

    class Counting(InventorySimulator):
        def check_demand(self, demand, item_ids=None):
            calls.append(tuple(demand.shape))
            super().check_demand(demand, item_ids)

    sc = _small_set()
    run_policy(Counting(), sc, torch.tensor([1.0, 1.0]), chunk_size=2)
    assert calls == [(2, 5, 3)]  # the whole set, once; simulate is told not to check its chunks again
    calls.clear()
    kpi_features(Counting(), sc, torch.tensor([1.0, 1.0]), ["g", "g"], standardize=False)
    assert calls == [(2, 5, 3)]
    with pytest.raises(ScenarioError, match="non-finite demand"):  # simulate alone still checks
        InventorySimulator().simulate(torch.full((1, 1, 2), float("nan")), torch.tensor([1.0]))
