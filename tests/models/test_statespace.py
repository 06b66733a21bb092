"""The Pyro state-space family: parameter recovery, counts, errors, device, save/load."""
import numpy as np
import pandas as pd
import pytest
import torch

from forecasting import Panel, PanelError
from forecasting.evaluation import metrics as M
from forecasting.models import SeasonalNaive
from forecasting.models.statespace import StateSpace

SEASON = np.array([0.0, 0.5, 1.2, 2.0, 1.2, 0.4, -0.3, -1.0, -1.6, -1.2, -0.8, -0.4])
SEASON = SEASON - SEASON.mean()


def gaussian_panel(n=30, t=96, h=12, noise=0.5, coef=2.0, level_sd=0.05, seed=0):
    """Monthly series: level random walk + a shared seasonal profile (scaled) + coef * promo + noise."""
    rng = np.random.default_rng(seed)
    T = t + h
    level = 20 + rng.normal(0, 2, (n, 1)) + np.cumsum(rng.normal(0, level_sd, (n, T)), 1)
    amp = rng.uniform(1.5, 2.5, (n, 1))
    promo = (rng.random((n, T)) < 0.25).astype(float)
    ts = pd.date_range("2010-01-01", periods=T, freq="MS")
    season = SEASON[ts.month.to_numpy() - 1][None, :]
    y = level + amp * season + coef * promo + rng.normal(0, noise, (n, T))
    df = pd.DataFrame({"item_id": np.repeat([f"s{i}" for i in range(n)], T), "timestamp": np.tile(ts, n),
                       "target": y.reshape(-1), "promo": promo.reshape(-1),
                       "family": np.repeat([f"f{i % 3}" for i in range(n)], T)})
    hist, future = df[df.timestamp < ts[t]], df[df.timestamp >= ts[t]]
    panel = Panel.from_long(hist, freq="MS", known_covariates=["promo"], static_categorical=["family"],
                            future=future[["item_id", "timestamp", "promo"]])
    return panel, torch.tensor(y[:, t:], dtype=torch.float32), amp[:, 0]


@pytest.fixture(scope="module")
def fitted():
    panel, truth, amp = gaussian_panel()
    model = StateSpace(likelihood="normal", trend=False, covariates=["promo"], group="family", num_steps=500,
                       lr=0.05, device="cpu").fit(panel, 12)
    return model, panel, truth, amp


def test_recovers_noise_scale_seasonal_pattern_and_coefficient(fitted):
    model, panel, truth, amp = fitted
    coef = model.coefficients()
    promo = coef[coef.regressor == "promo"]
    assert len(promo) == 30 and set(promo.columns) >= {"item_id", "mean", "q05", "q95", "group"}
    assert promo["mean"].median() == pytest.approx(2.0, rel=0.15)
    comp = model.components()
    hist = comp[comp.part == "history"]
    # seasonal profile of each series, per calendar month, against the simulated amp * SEASON
    month = pd.DatetimeIndex(hist.timestamp).month.to_numpy() - 1
    prof = hist.assign(month=month).groupby(["item_id", "month"])["seasonal"].mean().unstack()
    prof = prof.sub(prof.mean(1), axis=0)
    truth_prof = np.outer(amp[[int(i[1:]) for i in prof.index]], SEASON)
    corr = np.corrcoef(prof.to_numpy().reshape(-1), truth_prof.reshape(-1))[0, 1]
    assert corr > 0.97
    # residual noise: observed minus fitted on the history ~ N(0, 0.5)
    d = model.design_
    y = d.loc[:, None] + d.scale[:, None] * d.y
    fitted_mean = torch.tensor(hist.pivot(index="item_id", columns="timestamp", values="fitted")
                               .loc[list(d.item_ids)].to_numpy(), dtype=torch.float32)
    resid = (y - fitted_mean)[d.mask]
    assert resid.std().item() == pytest.approx(0.5, rel=0.25)
    noise = (torch.exp(model.guide_.median(d, model.structure)["log_obs_scale_loc"]).mean() * d.scale.median()).item()
    assert noise == pytest.approx(0.5, rel=0.3)


def test_forecast_beats_seasonal_naive_and_is_calibrated(fitted):
    model, panel, truth, _ = fitted
    f = model.predict(panel, num_samples=200, seed=0)
    assert f.samples.shape == (30, 200, 12) and torch.isfinite(f.samples).all()
    sn = SeasonalNaive(12).fit(panel, 12).predict(panel, 200, seed=0)
    ours, base = M.crps(f.samples, truth).item(), M.crps(sn.samples, truth).item()
    assert ours < 0.8 * base, (ours, base)
    q = f.quantile([0.1, 0.9])
    cov = M.coverage(q[:, 0], q[:, 1], truth).item()
    assert 0.65 < cov < 0.95


def test_changed_covariates_move_the_forecast(fitted):
    """What-if: the same model, a promotion switched on everywhere in the forecast window."""
    import dataclasses
    model, panel, _, _ = fitted
    known = panel.known.clone()
    T = panel.num_steps
    known[:, T:, 0] = 1.0
    known_off = panel.known.clone()
    known_off[:, T:, 0] = 0.0
    on = model.predict(dataclasses.replace(panel, known=known), 200, seed=1).mean()
    off = model.predict(dataclasses.replace(panel, known=known_off), 200, seed=1).mean()
    assert (on - off).mean().item() == pytest.approx(2.0, rel=0.2)
    assert model.used_known_covariates() == {"promo"}  # what a what-if may change
    plain = StateSpace(likelihood="normal", trend=False, seasonal=False, num_steps=2).fit(panel, 12)
    assert plain.used_known_covariates() == frozenset()  # covariates=None: none, whatever the panel holds


def test_same_seed_same_samples_and_save_load_roundtrip(fitted, tmp_path):
    model, panel, _, _ = fitted
    a = model.predict(panel, 20, seed=3).samples
    assert torch.equal(a, model.predict(panel, 20, seed=3).samples)
    assert not torch.equal(a, model.predict(panel, 20, seed=4).samples)
    again = StateSpace.load(model.save(tmp_path / "ss.pt"))
    assert torch.equal(a, again.predict(panel, 20, seed=3).samples)


def test_components_frame_and_plot(fitted):
    model, panel, _, _ = fitted
    comp = model.components(num_samples=20)
    assert {"item_id", "timestamp", "part", "level", "seasonal", "regression", "fitted", "observed"} <= set(comp.columns)
    assert np.allclose(comp.fitted, comp.level + comp.seasonal + comp.regression)
    assert (comp.part == "forecast").sum() == 30 * 12
    fig = model.plot_components("s3", num_samples=20)
    assert len(fig.axes) == 4
    with pytest.raises(KeyError, match="nope"):
        model.plot_components("nope")


def intermittent_panel(n=40, t=48, seed=0):
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.05, 1.5, (n, 1))
    demand = rng.random((n, t)) < 0.3
    y = np.where(demand, rng.poisson(rate * 3 + 1, (n, t)), 0).astype(float)
    y[0] = 0.0  # a series of zeros only
    ts = pd.date_range("2000-01-01", periods=t, freq="MS")
    df = pd.DataFrame({"item_id": np.repeat([f"p{i}" for i in range(n)], t), "timestamp": np.tile(ts, n),
                       "target": y.reshape(-1)})
    return Panel.from_long(df, freq="MS")


@pytest.mark.parametrize("likelihood", ["zinb", "negbin", "poisson"])
def test_intermittent_counts_give_finite_nonnegative_integer_paths(likelihood):
    panel = intermittent_panel()
    model = StateSpace(likelihood=likelihood, num_steps=300, lr=0.05, device="cpu").fit(panel, 6)
    assert all(np.isfinite(model.losses_))
    s = model.predict(panel, 100, seed=0).samples
    assert s.shape == (40, 100, 6)
    assert torch.isfinite(s).all() and (s >= 0).all() and torch.equal(s, s.round())
    assert s.max().item() < 200  # nothing explodes (the data never exceed ~15)
    assert s[0].float().mean().item() < 0.5  # the all-zero series stays near zero


def test_count_likelihood_rejects_negative_or_fractional_targets():
    panel = intermittent_panel()
    target = panel.target.clone()
    target[5, 10] = -1.0
    import dataclasses
    bad = dataclasses.replace(panel, target=target)
    with pytest.raises(PanelError, match="p5"):
        StateSpace(likelihood="negbin", num_steps=2).fit(bad, 6)


def test_bad_arguments_and_mismatched_panels_error_clearly(fitted):
    model, panel, _, _ = fitted
    with pytest.raises(ValueError, match="likelihood"):
        StateSpace(likelihood="gamma")
    with pytest.raises(ValueError, match="num_steps"):
        StateSpace(num_steps=0)
    with pytest.raises(ValueError, match="price"):
        StateSpace(covariates=["price"], num_steps=2).fit(panel, 12)
    with pytest.raises(ValueError, match="store"):
        StateSpace(group="store", num_steps=2).fit(panel, 12)
    with pytest.raises(PanelError, match="differ"):
        model.predict(panel.select(slice(0, 5)), 10)
    with pytest.raises(PanelError, match="end at other steps"):
        model.predict(panel.truncate(panel.end - 1), 10)
    from forecasting.models.base import NotFittedError
    with pytest.raises(NotFittedError):
        StateSpace().predict(panel, 10)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        model.predict(panel, 0)


def test_cuda_path_on_cpu():
    """The device argument: 'cpu' runs here; 'cuda' without a GPU is a clear error, not a fallback."""
    panel = intermittent_panel(n=8, t=30)
    m = StateSpace(likelihood="negbin", num_steps=20, device="cpu").fit(panel, 3)
    assert m.design_.y.device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            StateSpace(device="cuda", num_steps=2).fit(panel, 3)
    else:  # pragma: no cover - on a GPU machine the same model runs there
        g = StateSpace(likelihood="negbin", num_steps=20, device="cuda").fit(panel, 3)
        assert g.predict(panel, 10, seed=0).samples.shape == (8, 10, 3)


def test_crossed_seasonal_groups_and_their_errors():
    panel, _, _ = gaussian_panel(n=12, t=48)
    m = StateSpace(likelihood="normal", season_groups=("family",), num_steps=30, device="cpu").fit(panel, 12)
    assert "month_by0" in m.guide_.median(m.design_, m.structure)
    assert torch.isfinite(m.predict(panel, 10, seed=0).samples).all()
    with pytest.raises(ValueError, match="season_groups"):
        StateSpace(season_groups=("store",), num_steps=2).fit(panel, 12)


def test_default_history_is_capped_for_long_high_frequency_series():
    from forecasting.models.statespace.design import default_history
    assert default_history("W-FRI") == 1000 and default_history("MS") == 1000
    assert default_history("h") == 8 * 168 and default_history("30min") == 8 * 336
    assert default_history("D") == 8 * 365


def test_student_t_level_and_smooth_season_options():
    """``level_df`` (Student-t level innovations) and ``season_smooth`` (a random-walk prior across
    neighbouring seasonal positions) fit and forecast finitely; the smoothness prior makes the
    fitted profile smoother; bad values error clearly."""
    from forecasting.models.statespace.model import _roughness
    s = torch.tensor([[0.0, 1.0, 3.0, 0.0]])
    # circular differences 0-0, 1-0, 3-1, 0-3 -> squares 0, 1, 4, 9 = 14; / (2 * 0.5^2)
    assert _roughness(s, 0.5).item() == pytest.approx(-14 / 0.5)
    panel, _, _ = gaussian_panel(n=12, t=48)

    def roughness(m):
        prof = m.guide_.median(m.design_, m.structure)["month_group"]  # [groups, 12]
        return float((prof - prof.roll(1, -1)).pow(2).sum())

    kw = dict(likelihood="normal", trend=False, group="family", num_steps=150, lr=0.05, device="cpu")
    plain = StateSpace(**kw).fit(panel, 12)
    smooth = StateSpace(season_smooth=0.05, **kw).fit(panel, 12)
    assert roughness(smooth) < 0.5 * roughness(plain)
    heavy = StateSpace(level_df=3.0, **kw).fit(panel, 12)
    assert heavy.structure.level_df == 3.0
    assert torch.isfinite(heavy.predict(panel, 20, seed=0).samples).all()
    with pytest.raises(ValueError, match="level_df"):
        StateSpace(level_df=0)
    with pytest.raises(ValueError, match="season_smooth"):
        StateSpace(season_smooth=-1.0)


def test_series_without_values_in_a_short_history_window_take_their_scale_from_earlier():
    """``history=12`` on series whose last values are missing: a series with nothing observed in the
    window forecasts from its older scale (finite paths); one with nothing observed at all errors."""
    rng = np.random.default_rng(1)
    n, t = 10, 54
    y = rng.poisson(4.0, (n, t)).astype(float)
    y[3, -26:] = np.nan  # observed only before the 12-step window of the training panel
    ts = pd.date_range("2000-01-01", periods=t, freq="MS")
    df = pd.DataFrame({"item_id": np.repeat([f"p{i}" for i in range(n)], t), "timestamp": np.tile(ts, n),
                       "target": y.reshape(-1)})

    def train(frame):  # a window cut at one date for every series, as the benchmark protocol does
        return Panel.from_long(frame, freq="MS").windows(6, 1, step=6, align="grid")[0].train

    panel = train(df)
    m = StateSpace(likelihood="negbin", history=12, num_steps=100, lr=0.05, device="cpu").fit(panel, 6)
    assert float(m.design_.scale[3]) == pytest.approx(float(np.nanmean(y[3])), rel=1e-5)
    assert not bool(m.design_.mask[3].any())
    paths = m.predict(panel, 50, seed=0).samples
    assert torch.isfinite(paths).all() and (paths >= 0).all()
    df.loc[df.item_id == "p5", "target"] = np.nan
    df = df[~((df.item_id == "p5") & (df.timestamp > ts[0]))]  # p5: one row, never observed
    with pytest.raises(PanelError, match="p5"):
        StateSpace(likelihood="negbin", history=12, num_steps=2, device="cpu").fit(train(df), 6)


def test_a_log_covariate_at_or_below_zero_in_the_forecast_window_is_an_error():
    rng = np.random.default_rng(0)
    T, H = 40, 4
    ts = pd.date_range("2021-01-01", periods=T + H, freq="MS")

    def panel(future_price):
        hist = pd.DataFrame({"item_id": "s0", "timestamp": ts[:T], "target": 100 + rng.normal(size=T),
                             "price": np.exp(rng.normal(size=T) * 0.2) * 10})
        fut = pd.DataFrame({"item_id": "s0", "timestamp": ts[T:], "price": future_price})
        return Panel.from_long(hist, freq="MS", known_covariates=["price"], future=fut)

    kw = dict(likelihood="normal", covariates="all", log_covariates=["price"], holidays=False, seasonal=False,
              num_steps=5, device="cpu")
    with pytest.raises(PanelError, match=r"'price' has values <= 0 .* e.g. 0.0 at 2024-08-01 00:00:00 in series 's0'"):
        StateSpace(**kw).fit(panel([10.0, 10.0, 10.0, 0.0]), H)  # log(0) was clamped to -69 silently


def test_nonnegative_floors_the_samples_of_series_that_never_went_below_zero():
    panel = intermittent_panel(n=10, t=48)
    long = panel.to_long()
    first = long.item_id == panel.item_ids[0]
    long.loc[long.index[first][3], "target"] = -1.0  # the first series once went below zero
    panel = Panel.from_long(long, freq=panel.freq)
    model = StateSpace(likelihood="normal", num_steps=30, device="cpu", nonnegative=False).fit(panel, 6)
    plain = model.predict(num_samples=200, seed=0).samples
    assert (plain[1:] < 0).any() and (plain[0] < 0).any()
    model.nonnegative = None  # the default
    auto = model.predict(num_samples=200, seed=0).samples
    assert torch.equal(auto[1:], plain[1:].clamp_min(0)) and torch.equal(auto[0], plain[0])
    model.nonnegative = True
    assert torch.equal(model.predict(panel, num_samples=200, seed=0).samples, plain.clamp_min(0))
    with pytest.raises(ValueError, match="nonnegative must be None, True or False"):
        StateSpace(nonnegative=1.5)


def test_crossed_seasonality_gives_weekend_days_their_own_daily_shape():
    # hourly counts: weekdays peak at 8h and 17h, weekends have one flat midday bump. Additive
    # slot-of-day + day-of-week profiles cannot tell the shapes apart; the crossed profile can.
    rng = np.random.default_rng(0)
    weeks, n = 6, 4
    ts = pd.date_range("2021-01-04", periods=weeks * 168, freq="h")  # a Monday
    hour, weekend = ts.hour.to_numpy(), ts.dayofweek.to_numpy() >= 5
    weekday_shape = 1 + 3 * np.exp(-0.5 * ((hour - 8) / 1.5) ** 2) + 3 * np.exp(-0.5 * ((hour - 17) / 1.5) ** 2)
    weekend_shape = 1 + 1.5 * np.exp(-0.5 * ((hour - 13) / 3) ** 2)
    rate = 20 * np.where(weekend, weekend_shape, weekday_shape)
    y = rng.poisson(np.tile(rate, (n, 1))).astype(float)
    df = pd.DataFrame({"item_id": np.repeat([f"c{i}" for i in range(n)], len(ts)), "timestamp": np.tile(ts, n),
                       "target": y.reshape(-1)})
    h = 48  # Saturday and Sunday of the last week
    w = Panel.from_long(df, freq="h").windows(horizon=h)[0]
    kw = dict(likelihood="poisson", holidays=False, num_steps=300, lr=0.05, device="cpu")
    crossed = StateSpace(seasonal="crossed", **kw).fit(w.train, h)
    (name, period, idx), = crossed.design_.seasons
    assert (name, period) == ("slot_of_day_x_day_of_week", 168)
    # positions: hour of the day fastest, then the day of the week (Monday 0h = 0, Tuesday 0h = 24)
    first = crossed.design_.dates[crossed.design_.pos[0, 0].item()]
    assert idx[0, 0].item() == first.dayofweek * 24 + first.hour
    additive = StateSpace(**kw).fit(w.train, h)
    assert [s[:2] for s in additive.design_.seasons] == [("slot_of_day", 24), ("day_of_week", 7)]
    score = {m: M.crps(model.predict(num_samples=200, seed=0).samples, w.target).item()
             for m, model in (("crossed", crossed), ("additive", additive))}
    assert score["crossed"] < 0.7 * score["additive"]
    with pytest.raises(ValueError, match="seasonal must be True, False or 'crossed'"):
        StateSpace(seasonal="multiplicative")


def _grouped_frame(order):
    rng = np.random.default_rng(1)
    ts = pd.date_range("2020-01-05", periods=40, freq="W-SUN")
    rows = []
    for i, g in enumerate(["g0", "g1", "g0", "g1"]):
        rows.append(pd.DataFrame({"item_id": f"s{i}", "timestamp": ts, "target": 10 + 20 * (g == "g1") + rng.normal(0, 1, 40),
                                  "store": g}))
    df = pd.concat(rows, ignore_index=True)
    df["store"] = pd.Categorical(df["store"], categories=order)
    return df


def test_groups_are_matched_by_name_and_unseen_levels_or_revised_values_are_errors():
    fitted_on = Panel.from_long(_grouped_frame(["g0", "g1"]), freq="W-SUN", static_categorical=["store"])
    model = StateSpace(likelihood="normal", group="store", num_steps=30, device="cpu", jit=False).fit(fitted_on, 4)
    flipped = Panel.from_long(_grouped_frame(["g1", "g0"]), freq="W-SUN", static_categorical=["store"])
    assert torch.equal(model.predict(flipped, 20, seed=3).samples, model.predict(fitted_on, 20, seed=3).samples)
    df = _grouped_frame(["g0", "g1", "g_new"])
    df.loc[df.item_id == "s3", "store"] = "g_new"
    with pytest.raises(PanelError, match=r"series 's3' have store level\(s\) \['g_new'\] not seen at fit"):
        model.predict(Panel.from_long(df, freq="W-SUN", static_categorical=["store"]), 10)
    df = _grouped_frame(["g0", "g1"])
    df.loc[(df.item_id == "s1") & (df.timestamp == df.timestamp.max()), "target"] = 500.0
    with pytest.raises(PanelError, match="series 's1' hold other target values than at fit"):
        model.predict(Panel.from_long(df, freq="W-SUN", static_categorical=["store"]), 10)
    daily = Panel.from_long(_grouped_frame(["g0", "g1"]).assign(timestamp=lambda d: d.timestamp - pd.Timedelta(days=0)),
                            freq="W-SUN", static_categorical=["store"])
    object.__setattr__(daily, "freq", "D")
    with pytest.raises(PanelError, match="fitted on 'W-SUN' data, the panel's frequency is 'D'"):
        model.predict(daily, 10)


def test_forecast_dates_of_daily_data_in_a_time_zone_with_daylight_saving():
    ts = pd.date_range("2024-01-01", "2024-06-30", freq="D", tz="Europe/Berlin")
    df = pd.DataFrame({"item_id": "berlin", "timestamp": ts, "target": 10 + np.sin(np.arange(len(ts)))})
    panel = Panel.from_long(df, freq="D")
    f = StateSpace(likelihood="normal", num_steps=5, history=200, device="cpu", jit=False).fit(panel, 3).predict(panel, 5)
    assert list(f.start) == list(panel.forecast_start()) == [pd.Timestamp("2024-07-01", tz="Europe/Berlin")]
