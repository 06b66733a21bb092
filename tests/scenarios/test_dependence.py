import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_forecast, make_panel

from forecasting.scenarios import (
    GaussianCopula,
    Independent,
    ScenarioError,
    SchaakeShuffle,
    forecast_pit,
    historical_windows,
    joint_scenarios,
    make_dependence,
    pair_paths,
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


def path_permutation(out, samples):
    """For each series, the path of ``samples`` each scenario of ``out`` is (None if a path is not one)."""
    perms = []
    for i in range(samples.shape[0]):
        eq = (out[i][:, None, :] == samples[i][None, :, :]).all(-1)  # [S, S]
        if not bool(eq.any(1).all()):
            return None
        perms.append(eq.float().argmax(1))
    return torch.stack(perms)


@pytest.mark.parametrize("method", [SchaakeShuffle("level", paths=True), SchaakeShuffle("diff", paths=True),
                                    GaussianCopula(3, "diff", paths=True)])
def test_paths_mode_keeps_every_path_whole_and_only_pairs_them(panel_truth, method):
    panel, _ = panel_truth
    fc = make_forecast(panel, samples=300)
    out = method.fit(panel, 6).apply(fc.samples, seed=3)
    perm = path_permutation(out, fc.samples)
    assert perm is not None  # every scenario of every series is one of its sample paths, untouched
    assert bool((perm.sort(1).values == torch.arange(300)).all())  # a permutation of the paths, per series
    assert not bool((perm == torch.arange(300)).all())  # the pairing did change
    assert same_marginals(out, fc.samples)


def test_paths_mode_pairs_the_totals_of_a_store(panel_truth):
    panel, _ = panel_truth  # x0, x3, x6, x9 share store s0's random walk
    fc = make_forecast(panel, samples=400)
    for dep in (SchaakeShuffle("diff", paths=True), GaussianCopula(3, "diff", paths=True)):
        out = dep.fit(panel, 6).apply(fc.samples, seed=1)
        assert rank_corr(out[0].sum(1), out[3].sum(1)) > 0.5, dep.name
        assert abs(rank_corr(fc.samples[0].sum(1), fc.samples[3].sum(1))) < 0.2
        assert dep.name.endswith("_paths") and joint_scenarios(fc, dep).method == dep.name


def test_paths_mode_follows_the_window_means_when_windows_equal_scenarios():
    panel, _ = make_panel(n=4, t=30, horizon=3)
    dep = SchaakeShuffle("level", paths=True).fit(panel, 3)
    x, _ok = historical_windows(panel, 3, "level")
    samples = torch.randn(4, dep.num_windows_, 3)
    out = dep.apply(samples, seed=0)
    # scenario s uses one window: the rank of its path total is that window's mean's rank, in every series
    tot_rank = out.sum(2).argsort(1).argsort(1)  # [N, S]
    tpl_rank = x.mean(2).argsort(1).argsort(1)  # [N, W]
    assert bool((tot_rank[:, :, None] == tpl_rank[:, None, :]).all(0).any(1).all())


def test_pair_paths_by_hand():
    samples = torch.tensor([[[1.0, 1.0], [5.0, 5.0], [3.0, 0.0]]])  # totals 2, 10, 3
    key = torch.tensor([[0.5, 0.1, 0.9]])  # ranks 1, 0, 2
    assert pair_paths(samples, key)[0].tolist() == [[3.0, 0.0], [1.0, 1.0], [5.0, 5.0]]
    with pytest.raises(ScenarioError, match="key shape"):
        pair_paths(samples, torch.zeros(1, 2))


def test_group_factors_restore_the_within_group_correlation_the_leading_factors_miss():
    panel, _ = make_panel(n=24, t=80, horizon=6, seed=4)  # 3 stores of 8 series sharing a random walk
    stores = np.array([f"s{i % 3}" for i in range(24)])
    same = torch.tensor(stores[:, None] == stores[None, :]) & ~torch.eye(24, dtype=torch.bool)
    hist = GaussianCopula(24, "diff").fit(panel, 6).correlation()  # (almost) the sample correlation
    plain = GaussianCopula(1, "diff").fit(panel, 6)
    grouped = GaussianCopula(1, "diff", groups="store").fit(panel, 6)
    c_plain, c_grouped = plain.correlation(), grouped.correlation()
    assert float(c_plain[same].mean()) < float(hist[same].mean()) - 0.1  # one factor cannot hold 3 stores
    assert float(c_grouped[same].mean()) == pytest.approx(float(hist[same].mean()), abs=0.02)
    assert torch.allclose(c_grouped.diagonal(), torch.ones(24), atol=1e-5)
    assert bool((torch.linalg.eigvalsh(c_grouped.double()) > -1e-6).all())
    # labels work as well as a column name, and the draws follow the fitted correlation
    by_labels = GaussianCopula(1, "diff", groups=stores).fit(panel, 6)
    assert torch.allclose(by_labels.correlation(), c_grouped)
    z = grouped.sample_normal(4000, seed=0)[:, :, 0]
    assert torch.allclose(torch.corrcoef(z), c_grouped, atol=0.08)
    fc = make_forecast(panel, samples=200)
    assert same_marginals(grouped.apply(fc.samples, seed=0), fc.samples)
    with pytest.raises(ScenarioError, match="static column"):
        GaussianCopula(1, groups="region_x").fit(panel, 6)
    with pytest.raises(ScenarioError, match="one label per series"):
        GaussianCopula(1, groups=["a", "b"]).fit(panel, 6)


def test_forecast_pit_by_hand():
    panel, _ = make_panel(n=3, t=30, horizon=4)
    fc = make_forecast(panel, samples=4, horizon=4)
    fc = type(fc)(torch.arange(4.0)[None, :, None].expand(3, 4, 4).contiguous(), fc.item_ids, fc.start, fc.freq)
    y = torch.tensor([[-1.0, 0.5, 1.5, 9.0], [2.5, 2.5, float("nan"), 0.5], [0.5] * 4])
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[2, 1] = False
    u = forecast_pit(fc, y, mask)
    expect = torch.tensor([[0.0, 0.25, 0.5, 1.0], [0.75, 0.75, float("nan"), 0.25], [0.25, float("nan"), 0.25, 0.25]],
                          dtype=torch.float64)
    assert torch.equal(torch.isnan(u), torch.isnan(expect))
    assert torch.allclose(torch.nan_to_num(u), torch.nan_to_num(expect))
    assert torch.equal(torch.nan_to_num(forecast_pit(fc, y, mask, chunk=2)), torch.nan_to_num(u))  # chunked alike
    # rows follow item_ids by name; a series the forecast lacks gets NaN
    names = pd.Index([fc.item_ids[2], "nope", fc.item_ids[0]])
    v = forecast_pit(fc, y, mask, item_ids=names)
    assert torch.allclose(torch.nan_to_num(v[0]), torch.nan_to_num(u[2])) and bool(torch.isnan(v[1]).all())
    assert torch.allclose(v[2], u[0])
    with pytest.raises(ScenarioError, match="target must be"):
        forecast_pit(fc, y[:, :3])


def test_copula_learns_forecast_error_dependence_from_pit_residuals():
    panel, _ = make_panel(n=12, t=30, horizon=6)  # stores s0, s1, s2: series i is in store i % 3
    g = torch.Generator().manual_seed(0)
    T = 120
    store_err = torch.randn(3, T, generator=g)
    bias = torch.randn(12, 1, generator=g)  # a persistent error of each series over the window
    z = 0.7 * store_err[torch.arange(12) % 3] + 0.5 * bias + 0.5 * torch.randn(12, T, generator=g)
    u = torch.distributions.Normal(0, 1).cdf(z / z.std(1, keepdim=True)).double()
    u[0, :5] = float("nan")  # missing truth
    cop = GaussianCopula(3).fit(panel, 6, residuals=u)
    c = cop.correlation()
    same = torch.tensor((np.arange(12)[:, None] % 3) == (np.arange(12)[None, :] % 3)) & ~torch.eye(12, dtype=torch.bool)
    assert float(c[same].mean()) > 0.5 and float(c[~same & ~torch.eye(12, dtype=torch.bool)].abs().mean()) < 0.25
    # not centred: each series' persistent bias (a quarter of its variance) keeps its draws correlated
    # across steps, while the store errors are white
    zs = cop.sample_normal(4000, seed=0)  # [N, S, H]
    lag5 = float(torch.stack([torch.corrcoef(zs[i, :, [0, 5]].T)[0, 1] for i in range(12)]).mean())
    assert lag5 == pytest.approx(0.25, abs=0.1)
    fc = make_forecast(panel, samples=300)
    out = cop.apply(fc.samples, seed=0)
    assert same_marginals(out, fc.samples)
    assert rank_corr(out[0, :, 2], out[3, :, 2]) > 0.4
    assert cop.rank_ >= 1
    # pure noise residuals: no factor is above the Marchenko-Pastur edge, so none is kept
    noise = torch.rand(12, 40, generator=g).double()
    assert GaussianCopula(5).fit(panel, 6, residuals=noise).rank_ == 0
    with pytest.raises(ScenarioError, match="one row per series"):
        GaussianCopula(3).fit(panel, 6, residuals=u[:5])
    bad = u.clone()
    bad[4, 7] = 1.5
    with pytest.raises(ScenarioError, match="PIT values in \\[0, 1\\]; series 'x4'"):
        GaussianCopula(3).fit(panel, 6, residuals=bad)


def test_copula_sees_no_dependence_between_independent_intermittent_series():
    # 90 % zeros: ties broken by position would give every series ranks rising with time, a shared
    # "trend" the copula read as correlation (0.56 before mid-ranks)
    rng = np.random.default_rng(0)
    n, t = 20, 150
    y = np.where(rng.random((n, t)) < 0.9, 0.0, rng.poisson(5, (n, t)) + 1.0)
    ts = pd.date_range("2020-01-01", periods=t, freq="D")
    from forecasting import Panel
    panel = Panel.from_long(pd.DataFrame({"item_id": np.repeat([f"i{k}" for k in range(n)], t),
                                          "timestamp": np.tile(ts, n), "target": y.reshape(-1)}), freq="D")
    cop = GaussianCopula(rank=3, temporal=False).fit(panel, 7)
    off = cop.correlation()[~torch.eye(n, dtype=torch.bool)]
    assert abs(float(off.mean())) < 0.05, float(off.mean())


def test_copula_warns_when_the_rank_is_lowered_to_what_the_history_holds(panel_truth):
    panel, _ = panel_truth  # 12 series
    with pytest.warns(UserWarning, match=r"rank 500 lowered to 12: the correlation of 12 series"):
        cop = GaussianCopula(rank=500).fit(panel, 6)
    assert cop.rank_ == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert GaussianCopula(rank=3).fit(panel, 6).rank_ == 3
