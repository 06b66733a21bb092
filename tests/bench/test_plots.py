"""Diagnostics and figures: PIT, coverage, CRPS by step, fan charts."""
import numpy as np
import pandas as pd
import pytest
import torch

import forecasting as fc
from forecasting.data.panel import Window
from forecasting.evaluation import metrics as M
from forecasting.evaluation.plots import (
    NOMINAL_LEVELS,
    diagnostics,
    fan_series,
    pit_values,
    plot_all,
)


def _window_and_forecast(N=300, S=400, H=5, scale=1.0, seed=0):
    """Truth drawn from N(mu, 1) and a forecast drawn from N(mu, scale): calibrated when scale=1."""
    g = torch.Generator().manual_seed(seed)
    T = 12
    mu = torch.linspace(10, 50, N)
    hist = mu[:, None] + torch.randn(N, T, generator=g)
    truth = mu[:, None] + torch.randn(N, H, generator=g)
    rows = [(f"s{i}", pd.Timestamp("2022-01-02") + pd.Timedelta(weeks=t), float(v))
            for i in range(N) for t, v in enumerate(torch.cat([hist[i], truth[i]]))]
    panel = fc.Panel.from_long(pd.DataFrame(rows, columns=["id", "w", "y"]), id_col="id", timestamp_col="w",
                               target="y", freq="W-SUN")
    window = panel.windows(H)[0]
    samples = mu[:, None, None] + scale * torch.randn(N, S, H, generator=g)
    forecast = fc.Forecast(samples, panel.item_ids, window.train.forecast_start(), "W-SUN")
    return window, forecast


def test_calibrated_forecast_has_flat_pit_and_nominal_coverage():
    window, f = _window_and_forecast(scale=1.0)
    d = diagnostics(f, window)
    counts = np.array(d["pit_hist"])
    assert counts.sum() == 300 * 5
    assert np.abs(counts / counts.sum() * 10 - 1).max() < 0.35
    emp = np.array(d["coverage"]["empirical"])
    assert d["coverage"]["nominal"] == list(NOMINAL_LEVELS)
    assert np.abs(emp - np.array(NOMINAL_LEVELS)).max() < 0.06


def test_overconfident_forecast_has_u_shaped_pit_and_low_coverage():
    window, f = _window_and_forecast(scale=0.3)
    d = diagnostics(f, window)
    counts = np.array(d["pit_hist"])
    assert counts[0] + counts[-1] > 0.5 * counts.sum()
    assert d["coverage"]["empirical"][7] < 0.4  # the 80% interval


def test_crps_by_step_sums_to_the_scaled_crps_and_chunks_agree():
    window, f = _window_and_forecast(N=50, S=100, H=4)
    d = diagnostics(f, window, chunk=7)
    per_step = M.crps_ensemble(f.samples, window.target).sum(0) / window.target.abs().sum(0)
    np.testing.assert_allclose(d["crps_by_step"], per_step.double().numpy(), rtol=1e-5)
    assert d == diagnostics(f, window, chunk=1000) or np.allclose(d["crps_by_step"],
                                                                  diagnostics(f, window, chunk=1000)["crps_by_step"])


def test_pit_of_ties_is_randomised_between_the_cdf_steps():
    samples = torch.zeros(1, 10, 1000)  # every sample 0: truth 0 is a tie
    samples[:, :3] = -1.0  # F(0-) = 0.3, F(0) = 1
    u = pit_values(samples, torch.zeros(1, 1000), generator=torch.Generator().manual_seed(0))
    assert u.min() >= 0.3 and u.max() <= 1.0 and abs(float(u.mean()) - 0.65) < 0.03


def test_fans_show_the_same_series_for_every_model_and_skip_missing_truth():
    window, f = _window_and_forecast(N=40, S=50, H=3)
    rows = fan_series(window)
    assert len(rows) == 3 and rows[0] > rows[1] > rows[2]  # high, middle, low volume
    mask = window.mask.clone()
    mask[rows[0], 1] = False
    w2 = Window(window.train, window.target, mask, window.cutoff, 0)
    assert rows[0] not in fan_series(w2)
    d = diagnostics(f, window, fan_rows=rows, history=6)
    fan = d["fan"][0]
    assert fan["item_id"] == str(f.item_ids[rows[0]]) and len(fan["history"]) == 6 and len(fan["truth"]) == 3
    assert set(fan["quantiles"]) == {"0.05", "0.25", "0.5", "0.75", "0.95"}
    assert diagnostics(f, window, fan_rows=[])["fan"] == []


def test_plot_all_writes_four_pngs(tmp_path):
    window, f = _window_and_forecast(N=30, S=50, H=3)
    d = diagnostics(f, window)
    paths = plot_all({"a": d, "b": d}, tmp_path, "demo")
    for kind in ("fan", "pit", "coverage", "crps_by_step"):
        assert paths[kind].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no model has fan data"):
        plot_all({"a": {**d, "fan": []}}, tmp_path, "demo")


def test_mismatched_forecast_is_an_error():
    window, f = _window_and_forecast(N=10, S=20, H=3)
    short = fc.Forecast(f.samples[:, :, :2], f.item_ids, f.start, f.freq)
    with pytest.raises(ValueError, match="does not match the window's truth"):
        diagnostics(short, window)


def test_plot_forecast_draws_the_named_series_on_dates(tmp_path):
    from forecasting.evaluation.plots import plot_forecast
    window, forecast = _window_and_forecast(N=20, S=50)
    fig = plot_forecast(forecast, ["s3", "s7"], window=window, path=tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000 and len(fig.axes) == 2
    ax = fig.axes[0]
    assert ax.get_title() == "s3" and {t.get_text() for t in ax.get_legend().get_texts()} == \
        {"history", "90 %", "50 %", "median", "truth"}
    median = [ln for ln in ax.get_lines() if ln.get_label() == "median"][0].get_ydata()
    np.testing.assert_allclose(median, forecast.median()[3].numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match=r"series \['nope'\] are not in the forecast"):
        plot_forecast(forecast, "nope")
