import copy
import dataclasses

import numpy as np
import pytest
import torch

import forecasting
from forecasting.models import NotFittedError

pytest.importorskip("gluonts.torch")
from forecasting.models.gluonts_deepar import GluonTSDeepAR, _ColumnScaler, _fill_spans  # noqa: E402

H = 8
TINY = dict(max_epochs=2, num_batches_per_epoch=2, batch_size=16, hidden_size=8, num_layers=1, dropout_rate=0.0,
            patience=None)


@pytest.fixture(scope="module")
def traffic():
    return forecasting.load("traffic_weekly_sample").panel.select(range(20)).windows(H)[0]


@pytest.fixture(scope="module")
def fitted(traffic):
    return GluonTSDeepAR(**TINY).fit(traffic.train, H)


@pytest.fixture(scope="module")
def walmart_slice(walmart):
    # stores 1 and 2 plus one store of each other Type: known covariates, NaN markdowns, 3 statics
    p = walmart.panel
    rows = np.r_[0:12, 2900:2936]
    return p.select(rows).windows(walmart.task.horizon)[0]


def test_forecast_has_panel_order_shapes_and_start(traffic, fitted):
    f = fitted.predict(traffic.train, num_samples=30, seed=0)
    assert tuple(f.samples.shape) == (20, 30, H)
    assert list(f.item_ids) == list(traffic.train.item_ids)
    assert (f.start == traffic.train.forecast_start()).all()
    assert bool(torch.isfinite(f.samples).all())
    assert fitted.epochs_ == 2 and len(fitted.history_) == 2 and fitted.stopped_by_ == "max_epochs"
    assert fitted.best_val_loss_ is not None and fitted.fit_seconds_ > fitted.train_seconds_ > 0


def test_same_seed_same_samples_and_global_rng_untouched(traffic, fitted):
    state = torch.get_rng_state()
    a = fitted.predict(traffic.train, 20, seed=3).samples
    b = fitted.predict(traffic.train, 20, seed=3).samples
    c = fitted.predict(traffic.train, 20, seed=4).samples
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(state, torch.get_rng_state())


def test_same_seed_same_fit(traffic, fitted):
    again = GluonTSDeepAR(**TINY).fit(traffic.train, H)
    assert torch.equal(fitted.predict(traffic.train, 10, seed=1).samples,
                       again.predict(traffic.train, 10, seed=1).samples)


def test_paths_are_drawn_in_chunks_of_num_parallel_samples(traffic, fitted):
    m = copy.deepcopy(fitted)
    m.num_parallel_samples = 7
    assert m.predict(traffic.train, 20, seed=0).samples.shape[1] == 20


def test_entries_span_first_observed_step_to_end(traffic, fitted):
    p = traffic.train
    entries = fitted.to_gluonts(p)
    i = 5
    s, e = int(p.start[i]), int(p.end[i])
    assert entries[i]["target"].shape == (e - s,) and entries[i]["start"].to_timestamp(how="end").normalize() == p.index[s]
    assert "feat_dynamic_real" not in entries[i] and "feat_static_cat" not in entries[i]


def test_save_and_load_keep_the_predictor(traffic, fitted, tmp_path):
    path = fitted.save(tmp_path / "deepar.pt")
    back = GluonTSDeepAR.load(path)
    assert torch.equal(back.predict(traffic.train, 10, seed=2).samples,
                       fitted.predict(traffic.train, 10, seed=2).samples)


def test_training_writes_nothing_in_the_working_directory(traffic, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    GluonTSDeepAR(**{**TINY, "max_epochs": 1}).fit(traffic.train, H)
    assert list(tmp_path.iterdir()) == []


def test_time_limit_stops_training(traffic):
    m = GluonTSDeepAR(**{**TINY, "max_epochs": 10_000, "time_limit": 1.5}).fit(traffic.train, H)
    assert m.stopped_by_ == "time_limit" and m.epochs_ < 10_000
    assert m.fit_seconds_ < 20


def test_predict_before_fit_is_a_clear_error(traffic):
    with pytest.raises(NotFittedError, match="fit"):
        GluonTSDeepAR().predict(traffic.train)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="distr"):
        GluonTSDeepAR(distr="poisson")
    with pytest.raises(ValueError, match="covariate_scaling"):
        GluonTSDeepAR(covariate_scaling="minmax")
    with pytest.raises(ValueError, match="batch_size"):
        GluonTSDeepAR(batch_size=0)


def test_non_finite_paths_name_the_series(traffic, fitted):
    broken = copy.deepcopy(fitted)
    net = broken.predictor_.prediction_net
    forward = net.forward

    def nan_first_series(*args, **kwargs):
        paths = forward(*args, **kwargs)  # [B, S, H]
        paths[0, 1, 2] = float("nan")
        return paths

    net.forward = nan_first_series
    with pytest.raises(FloatingPointError, match="non-finite sample paths .*" + str(traffic.train.item_ids[0])):
        broken.predict(traffic.train, 5)


def test_fev_preset_matches_autogluon_settings():
    m = GluonTSDeepAR.fev(39)
    assert (m.context_length, m.num_layers, m.hidden_size, m.distr) == (78, 2, 40, "studentT")
    assert (m.max_epochs, m.num_batches_per_epoch, m.batch_size, m.patience) == (1000, 100, 128, 50)
    assert m.num_parallel_samples == 250 and m.static_cat_as_real == "numeric"
    assert GluonTSDeepAR.fev(39, time_limit=60).time_limit == 60


def test_fill_spans_forward_then_backward_within_each_span():
    x = np.array([[1.0, np.nan, np.nan, 4.0, np.nan, 9.0], [np.nan, np.nan, 2.0, np.nan, np.nan, 7.0]])[..., None]
    out = _fill_spans(x, start=np.array([1, 0]), stop=np.array([5, 4]))[..., 0]
    np.testing.assert_array_equal(out[0, 1:5], [4.0, 4.0, 4.0, 4.0])  # leading gap: the first value in span
    np.testing.assert_array_equal(out[1, 0:4], [2.0, 2.0, 2.0, 2.0])  # 7.0 lies outside the span


def test_column_scaler_passes_binary_and_normalises_skewed():
    rng = np.random.default_rng(0)
    v = np.stack([rng.integers(0, 2, 5000), rng.normal(3, 2, 5000), rng.lognormal(0, 1.5, 5000)], 1).astype(float)
    s = _ColumnScaler(v, "autogluon")
    assert s.kinds == ["pass", "standard", "quantile"]
    z = s(v)
    np.testing.assert_array_equal(z[:, 0], v[:, 0])
    assert abs(z[:, 1].mean()) < 1e-3 and abs(z[:, 1].std() - 1) < 1e-3
    assert abs(np.median(z[:, 2])) < 0.05 and abs(z[:, 2].std() - 1) < 0.1


def test_training_part_sees_the_covariates_of_the_whole_history(walmart_slice, monkeypatch):
    # walmart's markdowns start in Nov 2011, after the validation cut: imputing the truncated
    # training part on its own would feed the network other values than validation and prediction
    from gluonts.torch.model.deepar import DeepAREstimator

    seen = {}

    def capture(self, train, validation_data=None, **kwargs):
        seen.update(train=train, val=validation_data)
        raise InterruptedError

    monkeypatch.setattr(DeepAREstimator, "train_model", capture)
    p, h = walmart_slice.train, walmart_slice.horizon
    m = GluonTSDeepAR.fev(h, **TINY)
    with pytest.raises(InterruptedError):
        m.fit(p, h)
    for tr, va in zip(seen["train"], seen["val"]):
        n = len(tr["target"])
        assert n == len(va["target"]) - h
        np.testing.assert_array_equal(tr["feat_dynamic_real"], va["feat_dynamic_real"][:, :n])
    predicted = m.to_gluonts(p, future=True)
    for va, pr in zip(seen["val"], predicted):
        np.testing.assert_array_equal(va["feat_dynamic_real"], pr["feat_dynamic_real"][:, :-h])


def test_walmart_covariates_and_statics_flow_through(walmart_slice):
    w = walmart_slice
    p, h = w.train, w.horizon
    m = GluonTSDeepAR.fev(h, **TINY).fit(p, h)
    assert m.known_names_ == p.known_names
    assert m.static_real_names_ == ("Size", "Store", "Dept") and m.cardinality_ == [4]  # Type + unseen level
    entries = m.to_gluonts(p, future=True)
    for i in (0, 20):
        n = int(p.end[i] - p.start[i])
        assert entries[i]["feat_dynamic_real"].shape == (len(p.known_names), n + h)
        assert np.isfinite(entries[i]["feat_dynamic_real"]).all()  # NaN markdowns imputed
        assert entries[i]["feat_static_real"].shape == (3,) and entries[i]["feat_static_cat"].shape == (1,)
        assert np.isnan(entries[i]["target"]).sum() == n - int(p.observed[i].sum())
    f = m.predict(p, 16, seed=0)
    assert tuple(f.samples.shape) == (p.num_series, 16, h) and (f.start == p.forecast_start()).all()
    # the forecast window's covariates reach the network: changing them changes the paths
    known = p.known.clone()
    known[:, p.num_steps:] += 5.0
    import dataclasses
    g = m.predict(dataclasses.replace(p, known=known), 16, seed=0)
    assert not torch.equal(f.samples, g.samples)


def test_month_start_panels_map_to_gluonts_period_frequency():
    import numpy as np
    import pandas as pd
    from forecasting import Panel
    from forecasting.models.gluonts_deepar import GluonTSDeepAR, period_freq
    assert period_freq("MS") == "M" and period_freq("W-FRI") == "W-FRI" and period_freq("QS") == "Q"
    ts = pd.date_range("2019-01-01", periods=30, freq="MS")
    df = pd.DataFrame({"item_id": np.repeat(["a", "b"], 30), "timestamp": np.tile(ts, 2),
                       "target": np.arange(60, dtype=float) % 7})
    p = Panel.from_long(df, freq="MS")
    f = GluonTSDeepAR(max_epochs=1, num_batches_per_epoch=2, batch_size=8, validation=False).fit(p, 3).predict(p, 10)
    assert f.samples.shape == (2, 10, 3) and f.start[0] == pd.Timestamp("2021-07-01")


def test_validation_leaves_out_series_no_longer_than_the_horizon_and_too_short_panels_are_named():
    import pandas as pd
    ts = pd.date_range("2024-01-05", periods=12, freq="W-FRI")
    df = pd.concat([pd.DataFrame({"item_id": "long", "timestamp": ts, "target": np.arange(12.0) + 3}),
                    pd.DataFrame({"item_id": "short", "timestamp": ts[:3], "target": [1.0, 2.0, 3.0]})])
    panel = forecasting.Panel.from_long(df, freq="W-FRI")
    opts = dict(context_length=8, max_epochs=1, num_batches_per_epoch=2, hidden_size=8, num_layers=1)
    fc = GluonTSDeepAR(**opts).fit(panel, 4).predict(panel, 5)
    assert fc.samples.shape == (2, 5, 4)
    with pytest.raises(forecasting.PanelError, match="longest training series has 3 values before the 4 held out"):
        GluonTSDeepAR(**opts).fit(panel.select([0]).truncate(torch.tensor([7])), 4)
    with pytest.raises(forecasting.PanelError, match="fitted on 'W-FRI' data, the panel's frequency is 'D'"):
        GluonTSDeepAR(**opts).fit(panel, 4).predict(dataclasses.replace(panel, freq="D"), 5)
