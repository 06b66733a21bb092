import pandas as pd
import pytest
import torch
from conftest import make_forecast, make_panel

from forecasting.scenarios import (
    GaussianCopula,
    Independent,
    ScenarioError,
    SchaakeShuffle,
    historical_windows,
    joint_scenarios,
    make_dependence,
    reorder,
)


def same_marginals(a, b):
    return torch.equal(a.sort(dim=1).values, b.sort(dim=1).values)


def rank_corr(x, y):
    rx, ry = x.argsort().argsort().double(), y.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([rx, ry]))[0, 1])


@pytest.mark.parametrize("method", [SchaakeShuffle("diff"), SchaakeShuffle("level"), GaussianCopula(3, "diff")])
def test_marginals_are_kept_exactly(panel_truth, method):
    panel, _ = panel_truth
    fc = make_forecast(panel, samples=300)
    out = method.fit(panel, 6).apply(fc.samples, seed=3)
    assert out.shape == fc.samples.shape
    assert same_marginals(out, fc.samples)
    assert not torch.equal(out, fc.samples)


def test_series_of_a_store_move_together_after_the_shuffle_and_the_copula(panel_truth):
    panel, _ = panel_truth  # x0, x3, x6, x9 share store s0's random walk
    fc = make_forecast(panel, samples=400)
    for dep in (SchaakeShuffle("diff"), GaussianCopula(3, "diff")):
        out = dep.fit(panel, 6).apply(fc.samples, seed=1)
        assert rank_corr(out[0, :, 2], out[3, :, 2]) > 0.6, dep
        assert abs(rank_corr(fc.samples[0, :, 2], fc.samples[3, :, 2])) < 0.2
    # the copula's fitted correlation sees the stores
    c = GaussianCopula(3, "diff").fit(panel, 6).correlation()
    assert torch.allclose(c.diagonal(), torch.ones(12), atol=1e-5)
    assert c[0, 3] > 0.7 and abs(c[0, 1]) < 0.3


def test_schaake_follows_the_template_ranks_exactly_when_windows_equal_scenarios():
    panel, _ = make_panel(n=4, t=30, horizon=3)
    dep = SchaakeShuffle("level").fit(panel, 3)
    W = dep.num_windows_
    assert W == 28
    x, _ok = historical_windows(panel, 3, "level")
    samples = torch.randn(4, W, 3)
    out = dep.apply(samples, seed=0)
    # every scenario is one window: its samples' ranks equal that window's ranks at every point
    order_out = out.argsort(1).argsort(1)  # [N, S, H] rank of each scenario
    tpl_rank = x.argsort(1).argsort(1)  # [N, W, H]
    # scenario s uses some window w_s, the same at every (series, step)
    match = (order_out[:, :, None, :] == tpl_rank[:, None, :, :]).all(-1).all(0)  # [S, W]
    assert bool(match.any(1).all())


def test_reorder_imposes_the_key_order():
    samples = torch.tensor([[[3.0], [1.0], [2.0]]])
    key = torch.tensor([[[10.0], [30.0], [20.0]]])
    assert reorder(samples, key)[0, :, 0].tolist() == [1.0, 3.0, 2.0]


def test_rows_are_matched_by_name(panel_truth):
    panel, _ = panel_truth
    fc = make_forecast(panel, samples=100)
    dep = SchaakeShuffle("diff").fit(panel, 6)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    a = dep.apply(fc.samples, seed=2)
    b = dep.apply(fc.samples[perm], seed=2, item_ids=fc.item_ids[perm.numpy()])
    assert torch.equal(a[perm], b)


def test_clear_errors(panel_truth):
    panel, _ = panel_truth
    dep = SchaakeShuffle("diff").fit(panel, 6)
    with pytest.raises(ScenarioError, match="horizon 5"):
        dep.apply(torch.zeros(12, 10, 5))
    with pytest.raises(ScenarioError, match="unknown series"):
        dep.apply(torch.zeros(12, 10, 6), item_ids=pd.Index([f"y{i}" for i in range(12)]))
    with pytest.raises(ScenarioError, match="not fitted"):
        GaussianCopula().apply(torch.zeros(12, 10, 6))
    with pytest.raises(ScenarioError, match="too short"):
        SchaakeShuffle("seasonal_diff", season=57).fit(panel, 6)  # 3 differences: 1 window
    with pytest.raises(ScenarioError, match="transform"):
        SchaakeShuffle("log")
    with pytest.raises(ScenarioError, match="unknown dependence"):
        make_dependence("vine")


def test_joint_scenarios_wraps_the_forecast(panel_truth):
    panel, _ = panel_truth
    fc = make_forecast(panel, samples=50)
    sc = joint_scenarios(fc, Independent().fit(panel, 6))
    assert torch.equal(sc.values, fc.samples) and sc.method == "independent"
    assert float(sc.weights.sum()) == pytest.approx(1.0)
    sc = joint_scenarios(fc, GaussianCopula(2).fit(panel, 6), seed=0)
    assert sc.method == "copula" and same_marginals(sc.values, fc.samples)
