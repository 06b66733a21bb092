
import numpy as np
import pandas as pd
import pytest
import torch

from forecasting import Panel
from forecasting.evaluation import metrics as M
from forecasting.models import EmpiricalRecent, GaussianNaive, Naive, NotFittedError, SeasonalNaive


def seasonal_panel(n=20, t=60, season=12, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    pattern = rng.normal(0, 3, size=(n, season))
    y = 10 + np.tile(pattern, (1, t // season + 1))[:, :t] + rng.normal(0, noise, size=(n, t))
    ts = pd.date_range("2015-01-01", periods=t, freq="MS")
    df = pd.DataFrame({"item_id": np.repeat(np.arange(n), t), "timestamp": np.tile(ts, n), "target": y.reshape(-1)})
    return Panel.from_long(df, freq="MS")


def test_seasonal_naive_beats_naive_on_a_seasonal_series():
    w = seasonal_panel().windows(horizon=12)[0]
    sn = SeasonalNaive(12).fit(w.train, 12).predict(w.train, 200, seed=0)
    nv = Naive().fit(w.train, 12).predict(w.train, 200, seed=0)
    assert M.crps(sn.samples, w.target).item() < 0.5 * M.crps(nv.samples, w.target).item()


def test_seasonal_bootstrap_adds_observed_seasonal_differences():
    p = seasonal_panel(n=3, t=36)
    f = SeasonalNaive(12).fit(p, 24).predict(p, 50, seed=3)
    y = p.target
    diffs = [set(np.round((y[i, 12:] - y[i, :-12]).numpy(), 4)) for i in range(3)]
    first = (f.samples[:, :, :12] - y[:, None, 24:36]).numpy()
    assert all(set(np.round(first[i].ravel(), 4)) <= diffs[i] for i in range(3))
    # two seasons ahead: the last season plus two draws
    second = (f.samples[:, :, 12:] - f.samples[:, :, :12]).numpy()
    assert all(set(np.round(second[i].ravel(), 4)) <= diffs[i] for i in range(3))
    point = SeasonalNaive(12, point=True).fit(p, 24).predict(p, 4)
    assert torch.equal(point.samples[:, 0, :12], y[:, 24:]) and torch.equal(point.samples[:, 3, 12:], y[:, 24:])


def test_short_series_fall_back_to_naive_and_gaps_are_forward_filled():
    df = pd.DataFrame({"item_id": ["a"] * 5 + ["b"] * 30,
                       "timestamp": list(pd.date_range("2020-01-01", periods=5, freq="MS"))
                       + list(pd.date_range("2017-12-01", periods=30, freq="MS")),
                       "target": [1.0, 2.0, 3.0, np.nan, 4.0] + list(np.arange(30.0))})
    p = Panel.from_long(df, freq="MS")
    f = SeasonalNaive(12, point=True).fit(p, 3).predict(p, 2)
    assert f.samples[0, 0].tolist() == [4.0, 4.0, 4.0]  # 'a' has no full season: last value
    assert f.samples[1, 0].tolist() == [18.0, 19.0, 20.0]
    g = SeasonalNaive(12).fit(p, 3).predict(p, 100, seed=1)
    assert set(np.round((g.samples[0, :, 0] - 4.0).numpy(), 6)) <= {1.0}  # one-step differences of 'a'


def test_gaussian_naive_spread_grows_with_sqrt_h():
    p = seasonal_panel(n=1, t=60, noise=1.0)
    f = GaussianNaive().fit(p, 12).predict(p, 20000, seed=0)
    y = p.target[0]
    sigma = ((y[1:] - y[:-1]) ** 2).mean().sqrt().item()
    sd = f.samples[0].std(0)
    assert sd[0].item() == pytest.approx(sigma, rel=0.03) and sd[8].item() == pytest.approx(3 * sigma, rel=0.03)
    assert f.samples[0].mean(0)[5].item() == pytest.approx(y[-1].item(), abs=0.1 * sigma)


def test_empirical_draws_only_recent_observed_values():
    p = seasonal_panel(n=2, t=40)
    f = EmpiricalRecent(window=6).fit(p, 4).predict(p, 300, seed=0)
    for i in range(2):
        assert set(f.samples[i].reshape(-1).tolist()) == set(p.target[i, -6:].tolist())


def test_same_seed_same_samples_and_unfitted_is_an_error():
    p = seasonal_panel(n=4)
    m = SeasonalNaive(12).fit(p, 6)
    assert torch.equal(m.predict(p, 30, seed=7).samples, m.predict(p, 30, seed=7).samples)
    assert not torch.equal(m.predict(p, 30, seed=7).samples, m.predict(p, 30, seed=8).samples)
    with pytest.raises(NotFittedError, match="call fit"):
        Naive().predict(p)
    with pytest.raises(ValueError, match="season must be >= 1"):
        SeasonalNaive(0)
    for model in (m, GaussianNaive().fit(p, 6), EmpiricalRecent(12).fit(p, 6)):
        with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
            model.predict(p, 0)


def test_save_load_roundtrip(tmp_path):
    p = seasonal_panel(n=2)
    m = SeasonalNaive(12).fit(p, 6)
    m2 = SeasonalNaive.load(m.save(tmp_path / "m.pt"))
    assert torch.equal(m.predict(p, 10, seed=1).samples, m2.predict(p, 10, seed=1).samples)
    with pytest.raises(TypeError, match="not a EmpiricalRecent"):
        EmpiricalRecent.load(tmp_path / "m.pt")


def test_seasonal_bootstrap_floors_only_series_that_never_went_below_zero(tmp_path):
    # 'low' is intermittent: a last value of 0 plus a drawn difference of -3 would be -3.
    # 'neg' has gone below zero (returns), so it keeps its negative draws.
    low = [0.0, 3.0, 0.0, 1.0] * 6
    neg = [2.0, -1.0, 4.0, -2.0] * 6
    ts = pd.date_range("2020-01-01", periods=24, freq="MS")
    p = Panel.from_long(pd.DataFrame({"item_id": ["low"] * 24 + ["neg"] * 24, "timestamp": list(ts) * 2,
                                      "target": low + neg}), freq="MS")
    plain = Naive(nonnegative=False).fit(p, 6).predict(p, 400, seed=0).samples
    auto = Naive().fit(p, 6).predict(p, 400, seed=0).samples
    assert (plain[0] < 0).any() and (plain[1] < 0).any()  # the bootstrap goes below zero on both
    assert torch.equal(auto[0], plain[0].clamp_min(0))  # floored exactly where it did
    assert torch.equal(auto[1], plain[1])  # untouched
    every = SeasonalNaive(2, nonnegative=True).fit(p, 6).predict(p, 400, seed=0).samples
    assert (every >= 0).all()
    point = Naive(point=True, nonnegative=True).fit(p, 6).predict(p, 2).samples  # 'neg' ends at -2
    assert point[1].tolist() == [[0.0] * 6] * 2 and Naive(point=True).fit(p, 6).predict(p, 1).samples[1, 0, 0] == -2
    truth = torch.zeros(6)  # any non-negative truth: the floor can only lower the CRPS
    assert M.crps(auto[0], truth).item() < M.crps(plain[0], truth).item()
    with pytest.raises(ValueError, match="nonnegative must be None, True or False"):
        SeasonalNaive(12, nonnegative="auto")
    # a model saved before the option existed has no attribute: it predicts as before (no floor)
    m = Naive().fit(p, 6)
    del m.nonnegative
    assert torch.equal(Naive.load(m.save(tmp_path / "old.pt")).predict(p, 400, seed=0).samples, plain)


def test_empirical_uses_the_last_observed_values_of_series_that_stop_early():
    df = pd.DataFrame({"item_id": ["a"] * 10 + ["b"] * 4,
                       "timestamp": list(pd.date_range("2020-01-01", periods=10, freq="MS"))
                       + list(pd.date_range("2020-01-01", periods=4, freq="MS")),
                       "target": list(np.arange(10.0)) + [5.0, np.nan, 7.0, 8.0]})
    p = Panel.from_long(df, freq="MS")
    w = p.windows(horizon=2, align="grid")[0]  # 'b' stopped in April: no truth, history up to April
    f = EmpiricalRecent(window=2).fit(w.train, 2).predict(w.train, 200, seed=0)
    assert set(f.samples[0].reshape(-1).tolist()) == {6.0, 7.0}
    assert set(f.samples[1].reshape(-1).tolist()) == {7.0, 8.0}
    assert not w.mask[1].any()
