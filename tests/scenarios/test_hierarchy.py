import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_forecast

from forecasting.evaluation import metrics as M
from forecasting.scenarios import (
    Hierarchy,
    ScenarioError,
    ScenarioSet,
    level_metrics,
    weighted_crps,
)


def integer_scenarios(panel, s=20, h=6):
    g = torch.Generator().manual_seed(0)
    v = torch.randint(-50, 500, (panel.num_series, s, h), generator=g).double()
    return ScenarioSet(v, torch.full((s,), 1 / s, dtype=torch.float64), panel.item_ids, panel.forecast_start(), panel.freq)


def test_aggregates_equal_sums_exactly(panel_truth):
    panel, _ = panel_truth
    hier = Hierarchy.from_panel(panel, ["store", "region"])
    assert hier.levels == ["store", "region", "total"]
    sc = integer_scenarios(panel)
    agg = hier.aggregate_scenarios(sc, include_bottom=True)
    assert agg.num_series == 12 + 3 + 2 + 1
    labels = hier.labels("store")
    for g in ["s0", "s1", "s2"]:
        node = list(agg.item_ids).index(f"store={g}")
        assert torch.equal(agg.values[node], sc.values[labels == g].sum(0))
    r0 = list(agg.item_ids).index("region=r0")
    assert torch.equal(agg.values[r0], agg.values[12] + agg.values[13])  # s0 + s1
    assert torch.equal(agg.values[-1], sc.values.sum(0))
    dense = hier.summing_matrix().to_dense().double()
    assert torch.equal(torch.einsum("gn,nsh->gsh", dense, sc.values), agg.values[12:])


def test_clear_errors_for_mismatched_hierarchies_and_shapes(panel_truth):
    panel, _ = panel_truth
    ids = panel.item_ids
    with pytest.raises(ScenarioError, match="not nested"):
        Hierarchy(ids, {"region": ["r0"] * 6 + ["r1"] * 6, "store": [f"s{i % 3}" for i in range(12)]})
    Hierarchy(ids, {"region": ["r0"] * 6 + ["r1"] * 6, "store": [f"s{i % 3}" for i in range(12)]}, nested=False)
    with pytest.raises(ScenarioError, match="11 labels for 12 series"):
        Hierarchy(ids, {"store": ["a"] * 11})
    with pytest.raises(ScenarioError, match="no label"):
        Hierarchy(ids, {"store": ["a"] * 11 + [None]})
    with pytest.raises(ScenarioError, match="unknown column"):
        Hierarchy.from_panel(panel, ["Dept"])
    frame = pd.DataFrame({"store": ["S1", "S1", "S2"], "dept": ["D1", None, "D2"]}, index=["a", "b", "c"])
    with pytest.raises(ScenarioError, match=r"level 'store/dept' has no label for series \['b'\]"):
        Hierarchy.from_frame(frame, [("store", "dept"), "store"])  # not a group named 'S1|None'
    hier = Hierarchy.from_panel(panel, ["store"])
    sc = integer_scenarios(panel)
    with pytest.raises(ScenarioError, match="hierarchy holds 12 series, the scenarios 11"):
        hier.aggregate_scenarios(sc.replace(values=sc.values[:11], item_ids=ids[:11], start=sc.start[:11]))
    with pytest.raises(ScenarioError, match="has 5 rows"):
        hier.aggregate_level(torch.zeros(5, 3), "store")
    shifted = sc.start.to_series().to_numpy().copy()
    shifted[0] = shifted[0] + np.timedelta64(7, "D")
    with pytest.raises(ScenarioError, match="different dates"):
        hier.aggregate_scenarios(sc.replace(start=pd.DatetimeIndex(shifted)))


def test_series_order_does_not_matter(panel_truth):
    panel, _ = panel_truth
    hier = Hierarchy.from_panel(panel, ["store"])
    sc = integer_scenarios(panel)
    perm = np.random.default_rng(0).permutation(12)
    shuffled = sc.replace(values=sc.values[perm], item_ids=sc.item_ids[perm], start=sc.start[perm])
    assert torch.equal(hier.aggregate_scenarios(sc).values, hier.aggregate_scenarios(shuffled).values)


def test_weighted_crps_matches_the_ensemble_crps():
    g = torch.Generator().manual_seed(1)
    v, y = torch.randn(3, 8, 4, generator=g).double(), torch.randn(3, 4, generator=g).double()
    uniform = torch.full((8,), 1 / 8, dtype=torch.float64)
    assert torch.allclose(weighted_crps(v, uniform, y), M.crps_ensemble(v, y))
    # weight 3/8 on sample 0 equals the ensemble with sample 0 three times
    w = torch.tensor([3, 1, 1, 1, 1, 1, 0, 0], dtype=torch.float64) / 8
    dup = torch.cat([v[:, :1], v[:, :1], v[:, :6]], 1)
    assert torch.allclose(weighted_crps(v, w, y), M.crps_ensemble(dup, y))


def test_level_metrics_per_level(panel_truth):
    panel, truth = panel_truth
    fc = make_forecast(panel, samples=100)
    sc = ScenarioSet.from_forecast(fc)
    hier = Hierarchy.from_panel(panel, ["store", "region"])
    lm = level_metrics(sc, hier, truth)
    assert list(lm.index) == ["bottom", "store", "region", "total"]
    assert list(lm.nodes) == [12, 3, 2, 1] and list(lm.points) == [72, 18, 12, 6]
    assert lm.loc["bottom", "crps"] == pytest.approx(float(M.crps(fc.samples, truth)), rel=1e-5)
    assert lm.loc["total", "crps"] == pytest.approx(float(M.crps(fc.samples.sum(0, keepdim=True), truth.sum(0, keepdim=True))), rel=1e-5)
    mask = torch.ones_like(truth, dtype=torch.bool)
    mask[0, 0] = False
    lm = level_metrics(sc, hier, truth, mask)
    assert list(lm.points) == [71, 17, 11, 5]  # an aggregate point needs all its series
    lm = level_metrics(sc, hier, truth, mask, missing="zero")
    assert list(lm.points) == [71, 18, 12, 6]
    with pytest.raises(ScenarioError, match="truth shape"):
        level_metrics(sc, hier, truth[:, :3])
    # NaN marks a missing truth value (mask=None): every level stays finite, the point is left out
    gap = truth.clone()
    gap[0, 0] = float("nan")
    lm_nan = level_metrics(sc, hier, gap)
    assert list(lm_nan.points) == [71, 17, 11, 5] and np.isfinite(lm_nan.to_numpy()).all()
    assert lm_nan.loc["bottom"].to_dict() == pytest.approx(level_metrics(sc, hier, truth, mask).loc["bottom"].to_dict())


def test_nested_levels_summed_from_the_level_below_equal_direct_sums(panel_truth):
    panel, _ = panel_truth
    x = torch.randn(panel.num_series, 7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for nested in (True, False):
        hier = Hierarchy.from_panel(panel, ["store", "region"], nested=nested)
        got = hier.aggregate(x)
        for lv in hier.levels:
            assert torch.allclose(got[lv], hier.aggregate_level(x, lv), atol=1e-12)


def test_level_metrics_is_nan_for_a_level_with_no_observed_point(panel_truth):
    panel, truth = panel_truth
    sc = ScenarioSet.from_forecast(make_forecast(panel, samples=50))
    hier = Hierarchy.from_panel(panel, ["store", "region"])
    mask = torch.ones_like(truth, dtype=torch.bool)
    mask[0] = False  # series x0 (store s0, region r0) has no truth: the total never is complete
    lm = level_metrics(sc, hier, truth, mask)
    assert lm.loc["total", "points"] == 0
    scores = ["crps", "scaled_crps", "wql", "coverage_50", "coverage_80", "coverage_95"]
    assert lm.loc["total", scores].isna().all()
    assert np.isfinite(lm.loc[["bottom", "store", "region"], scores].to_numpy()).all()
    assert (lm.loc[["bottom", "store", "region"], "points"] > 0).all()
