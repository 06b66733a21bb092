"""statsforecast's local models as sample-path models."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("statsforecast")

import forecasting as fc
from forecasting.models.registry import make_model
from forecasting.models.statsforecast_models import (
    METHODS,
    StatsForecastModel,
    _ffill_bfill,
)


def _panel(n=6, T=30, seed=0, missing=True):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        level = 10 + 5 * i
        y = level + rng.normal(0, 1 + i, T)
        if missing and i == 2:
            y[5:8] = np.nan  # a gap inside
        start = 4 if i == 3 else 0  # one series starts late
        for t in range(start, T):
            rows.append((f"s{i}", pd.Timestamp("2020-01-05") + pd.Timedelta(weeks=t), y[t]))
    df = pd.DataFrame(rows, columns=["id", "week", "y"])
    return fc.Panel.from_long(df, id_col="id", timestamp_col="week", target="y", freq="W-SUN")


def test_forward_then_backward_fill_of_each_row():
    y = np.array([[np.nan, 1.0, np.nan, 3.0], [np.nan, np.nan, 2.0, np.nan]])
    ok = ~np.isnan(y)
    np.testing.assert_array_equal(_ffill_bfill(np.nan_to_num(y), ok), [[1, 1, 1, 3], [2, 2, 2, 2]])


def test_autoets_paths_have_the_models_mean_and_interval():
    panel = _panel()
    m = StatsForecastModel("autoets", season_length=1).fit(panel, horizon=4)
    f = m.predict(panel, num_samples=4000, seed=3)
    assert f.samples.shape == (6, 4000, 4) and torch.isfinite(f.samples).all()
    assert list(f.item_ids) == list(panel.item_ids)
    assert (f.start == panel.forecast_start()).all()
    # Gaussian paths: sample mean and 10%/90% quantiles match statsforecast's mean and 80% interval
    np.testing.assert_allclose(f.samples.mean(1).double().numpy(), m.mean_, atol=4 * m.sd_.max() / np.sqrt(4000))
    q = f.quantile([0.1, 0.9]).double().numpy()
    np.testing.assert_allclose(q[:, 1] - q[:, 0], 2 * 1.2815515655 * m.sd_, rtol=0.08)
    # the gap-filled series and the late starter are forecast from their own levels
    assert abs(m.mean_[3].mean() - 25) < 4 and abs(m.mean_[5].mean() - 35) < 8


def test_same_seed_same_paths_and_refit_on_another_panel():
    panel = _panel()
    m = StatsForecastModel("autotheta").fit(panel, horizon=3)
    a, b = m.predict(panel, 50, seed=1), m.predict(panel, 50, seed=1)
    assert torch.equal(a.samples, b.samples)
    other = panel.select([0, 1])
    g = m.predict(other, 50, seed=1)
    assert g.samples.shape == (2, 50, 3) and list(g.item_ids) == ["s0", "s1"]
    # the same series and ends with revised values: forecast again, not the fitted forecast reused
    import dataclasses
    revised = dataclasses.replace(panel, target=panel.target * 1000)
    again = m.predict(revised, 50, seed=1).mean()
    fresh = StatsForecastModel("autotheta").fit(revised, horizon=3).predict(revised, 50, seed=1).mean()
    assert torch.allclose(again, fresh) and not torch.allclose(again, a.mean())
    m._fitted_on = m._fitted_on[:2]  # a model saved before the fingerprint: forecast again, no error
    assert torch.allclose(m.predict(revised, 50, seed=1).mean(), fresh)


def test_intermittent_methods_are_nonnegative_with_conformal_spread():
    rng = np.random.default_rng(1)
    T = 40
    rows = [(f"p{i}", pd.Timestamp("2020-01-01") + pd.DateOffset(months=t), float(rng.poisson(0.4) * (i + 1)))
            for i in range(5) for t in range(T)]
    panel = fc.Panel.from_long(pd.DataFrame(rows, columns=["id", "m", "y"]), id_col="id", timestamp_col="m",
                               target="y", freq="MS")
    ds_task = fc.datasets.get_spec("car_parts").task
    for name in ("croston_optimized", "tsb", "adida"):
        model = make_model(name, ds_task).fit(panel, horizon=6)
        f = model.predict(panel, num_samples=200, seed=0)
        assert f.samples.shape == (5, 200, 6)
        assert float(f.samples.min()) >= 0.0
        assert (model.sd_ > 0).any()  # conformal intervals give a spread


def test_short_and_constant_series_fall_back_without_nan():
    rows = [("one", pd.Timestamp("2021-01-03"), 5.0)]
    rows += [("flat", pd.Timestamp("2021-01-03") + pd.Timedelta(weeks=t), 2.0) for t in range(12)]
    panel = fc.Panel.from_long(pd.DataFrame(rows, columns=["id", "w", "y"]), id_col="id", timestamp_col="w",
                               target="y", freq="W-SUN")
    f = StatsForecastModel("autoarima", season_length=1).fit(panel, 3).predict(panel, 10, seed=0)
    assert torch.isfinite(f.samples).all()
    i = list(f.item_ids).index("one")
    assert torch.allclose(f.samples[i], torch.tensor(5.0))


def test_bad_settings_name_the_argument():
    with pytest.raises(ValueError, match="unknown statsforecast method 'prophet'"):
        StatsForecastModel("prophet")
    with pytest.raises(ValueError, match="season_length must be >= 1, got 0"):
        StatsForecastModel("autoets", season_length=0)
    with pytest.raises(ValueError, match="n_jobs"):
        StatsForecastModel("autoets", n_jobs=0)
    assert set(METHODS) >= {"autoets", "autoarima", "autotheta", "croston_optimized", "tsb", "adida"}


def test_registry_uses_the_tasks_fev_seasonality():
    task = fc.datasets.get_spec("car_parts").task
    m = make_model("autoets", task)
    assert m.season_length == task.mase_season == 12 and not m.nonnegative
    assert make_model("autoarima", task).options == {"approximation": True, "allowmean": True}
    assert make_model("tsb", task).nonnegative


def test_intermittent_method_refuses_a_panel_too_short_for_its_conformal_spread():
    rows = [(f"p{i}", pd.Timestamp("2020-01-01") + pd.DateOffset(months=t), float(t % 3)) for i in range(3)
            for t in range(10)]
    panel = fc.Panel.from_long(pd.DataFrame(rows, columns=["id", "m", "y"]), id_col="id", timestamp_col="m",
                               target="y", freq="MS")
    with pytest.raises(ValueError, match=r"'tsb' takes its spread from conformal intervals, which need at least 13 "
                                         r"observations per series \(2 x horizon 6 \+ 1\); the longest series here "
                                         r"has 10"):
        StatsForecastModel("tsb", alpha_d=0.2, alpha_p=0.2).fit(panel, horizon=6)
    m = StatsForecastModel("croston_sba").fit(panel, horizon=4)  # 9 points needed: all fit
    assert m.fallback_series_ == 0


def test_nonnegative_none_floors_the_series_that_never_went_below_zero():
    panel = _panel(n=3, T=30, missing=False)
    target = panel.target.clone()
    target[0] -= 40  # series s0 goes below zero; s1 and s2 (levels 15, 20, sd 2-3) never do
    panel = dataclasses.replace(panel, target=target * panel.observed)
    wide = StatsForecastModel("autotheta", season_length=1, nonnegative=None).fit(panel, 4)
    s = wide.predict(panel, 2000, seed=0).samples
    assert bool((s[0] < 0).any()) and float(s[1:].min()) >= 0
    with pytest.raises(ValueError, match="nonnegative must be None, True or False"):
        StatsForecastModel("autotheta", nonnegative="yes")
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        make_model("empirical", fc.datasets.get_spec("car_parts").task, window=0)
    assert make_model("empirical", fc.datasets.get_spec("car_parts").task, window=None).window == 24
