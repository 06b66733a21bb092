import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from forecasting import Panel, PanelError


def long_frame(n=3, t=10, freq="W-FRI", start="2020-01-03"):
    ts = pd.date_range(start, periods=t, freq=freq)
    return pd.DataFrame({
        "item_id": np.repeat([f"s{i}" for i in range(n)], t),
        "timestamp": np.tile(ts, n),
        "target": np.arange(n * t, dtype=float),
        "price": np.arange(n * t, dtype=float) / 10,
        "temp": 1.0,
        "store": np.repeat(["a", "b", "a"][:n], t),
        "size": np.repeat([10.0, 20.0, 10.0][:n], t),
    })


def test_from_long_builds_padded_tensors_with_masks():
    df = long_frame()
    df = df.drop(index=[3, 25])  # a gap in s0 and one in s2
    df = df[~((df.item_id == "s1") & (df.timestamp < "2020-01-17"))]  # s1 starts late
    p = Panel.from_long(df, known_covariates=["price"], past_covariates=["temp"],
                        static_categorical=["store"], static_real=["size"], freq="W-FRI")
    assert p.target.shape == (3, 10) and p.known.shape == (3, 10, 1) and p.past.shape == (3, 10, 1)
    assert list(p.item_ids) == ["s0", "s1", "s2"]
    assert p.observed[0, 3].item() is False and p.target[0, 3].item() == 0.0
    assert p.observed.sum().item() == 30 - 2 - 2
    assert p.start.tolist() == [0, 2, 0] and p.end.tolist() == [10, 10, 10]
    assert torch.isnan(p.known[0, 3, 0])  # missing covariate stays missing, not filled
    assert p.static_cat[:, 0].tolist() == [0, 1, 0] and list(p.static_cat_levels[0]) == ["a", "b"]
    assert p.static_real[:, 0].tolist() == [10.0, 20.0, 10.0]
    assert p.target[2, 9].item() == 29.0


def test_static_codes_follow_another_numbering_by_level():
    p = Panel.from_long(long_frame(), static_categorical=["store"], freq="W-FRI")  # levels a, b
    assert p.static_codes("store").tolist() == [0, 1, 0]
    assert p.static_codes("store", ["b", "a"]).tolist() == [1, 0, 1]
    assert p.static_codes("store", ["b", "c"]).tolist() == [-1, 0, -1]  # "a" unknown there
    missing = dataclasses.replace(p, static_cat=torch.tensor([[0], [-1], [1]]))
    assert missing.static_codes("store", ["b", "a"]).tolist() == [1, -1, 0]  # a missing level stays -1
    with pytest.raises(PanelError, match="'shop' is not a static categorical of the panel"):
        p.static_codes("shop")


def test_future_known_covariates_extend_the_grid():
    df = long_frame(n=2, t=8)
    future = pd.DataFrame({"item_id": ["s0", "s0", "s1", "s1"],
                           "timestamp": pd.to_datetime(["2020-02-28", "2020-03-06"] * 2),
                           "price": [100.0, 101.0, 200.0, 201.0]})
    p = Panel.from_long(df, known_covariates=["price"], future=future, freq="W-FRI")
    assert p.num_steps == 8 and p.known.shape == (2, 10, 1)
    fk = p.future_known(2)
    assert fk[:, :, 0].tolist() == [[100.0, 101.0], [200.0, 201.0]]
    with pytest.raises(PanelError, match=r"known covariates missing in the forecast window of series 's0'"):
        p.future_known(3)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: pd.concat([d, d.iloc[[4]]]), r"duplicate timestamps in series 's0'.*2020-01-31"),
    (lambda d: d.assign(timestamp=d.timestamp.where(d.index != 12, pd.Timestamp("2020-01-15"))),
     r"timestamps off the declared frequency 'W-FRI' in series 's1'"),
    (lambda d: d.assign(target=d.target.astype(object).where(d.index != 21, "n/a")),
     r"non-numeric target 'target' in series 's2'.*'n/a'"),
    (lambda d: d.assign(target=d.target.where(d.item_id != "s1")), r"no observed target value: 's1'"),
    (lambda d: d.assign(target=d.target.where(d.index != 21, -np.inf)), r"infinite target values in series 's2'.*-inf at 2020-01-10"),
    (lambda d: d.assign(store=d.store.where(d.index != 5, "z")), r"static column 'store' changes over time in series 's0'"),
    (lambda d: d.assign(price=d.price.astype(object).where(d.index != 7, "cheap")), r"non-numeric values in column 'price'.*'s0'"),
])
def test_bad_input_errors_name_the_series(mutate, message):
    df = mutate(long_frame())
    with pytest.raises(PanelError, match=message):
        Panel.from_long(df, known_covariates=["price"], static_categorical=["store"], freq="W-FRI")


def test_missing_static_values_and_early_future_rows_are_errors():
    df = long_frame()
    # a missing category would become code -1 and read as the last level
    no_store = df.assign(store=df.store.where(df.item_id != "s1"))
    with pytest.raises(PanelError, match=r"static categorical column 'store' has no value for series 's1'"):
        Panel.from_long(no_store, static_categorical=["store"], freq="W-FRI")
    no_size = df.assign(size=df["size"].where(df.item_id != "s2"))
    with pytest.raises(PanelError, match=r"static real column 'size' has no value for series 's2'"):
        Panel.from_long(no_size, static_real=["size"], freq="W-FRI")
    early = pd.DataFrame({"item_id": ["s0"], "timestamp": [pd.Timestamp("2019-12-27")], "price": [1.0]})
    with pytest.raises(PanelError, match=r"`future` rows dated before the history starts.*'s0'"):
        Panel.from_long(df, known_covariates=["price"], future=early, freq="W-FRI")


def test_infinite_targets_are_refused_however_the_panel_is_built():
    p = Panel.from_long(long_frame(), freq="W-FRI")
    y = p.target.clone()
    y[1, 5] = float("inf")
    with pytest.raises(PanelError, match=r"infinite target values in series 's1': e.g. inf at 2020-02-07"):
        dataclasses.replace(p, target=y)
    y[1, 5] = 0.0
    o = p.observed.clone()
    y[2, 3], o[2, 3] = float("inf"), False  # a masked (missing) step may hold anything
    assert dataclasses.replace(p, target=y, observed=o).num_series == p.num_series


def test_unknown_columns_and_frequency_are_clear_errors():
    with pytest.raises(PanelError, match=r"unknown column\(s\) \['promo'\]"):
        Panel.from_long(long_frame(), known_covariates=["promo"])
    with pytest.raises(PanelError, match="unknown frequency 'weekly'"):
        Panel.from_long(long_frame(), freq="weekly")


def test_frequency_is_inferred_and_hourly_grid_floors():
    df = long_frame(freq="h", start="2021-03-01 05:00")
    p = Panel.from_long(df)
    assert p.freq == "h" and p.index[0] == pd.Timestamp("2021-03-01 05:00")
    bad = df.assign(timestamp=df.timestamp.where(df.index != 4, pd.Timestamp("2021-03-01 09:30")))
    with pytest.raises(PanelError, match="off the declared frequency 'h' in series 's0'"):
        Panel.from_long(bad, freq="h")


def test_windows_follow_fev_cutoffs_counted_from_each_series_end():
    df = long_frame(n=2, t=12)
    df = df[~((df.item_id == "s1") & (df.timestamp > "2020-02-28"))]  # s1 ends 3 steps early
    p = Panel.from_long(df, freq="W-FRI")
    assert p.end.tolist() == [12, 9]
    ws = p.windows(horizon=2, num_windows=3, step=1)
    assert [w.cutoff.tolist() for w in ws] == [[8, 5], [9, 6], [10, 7]]
    last = ws[-1]
    assert last.target.tolist() == [[10.0, 11.0], [19.0, 20.0]]
    assert last.train.end.tolist() == [10, 7] and last.train.num_steps == 10
    assert not last.train.observed[1, 7:].any()  # s1's truth is not visible in training
    assert list(last.train.forecast_start()) == list(pd.to_datetime(["2020-03-13", "2020-02-21"]))
    grid = p.windows(horizon=2, align="grid")[0]
    assert grid.cutoff.tolist() == [10, 10] and grid.mask[1].tolist() == [False, False]


def test_windows_reject_series_shorter_than_required():
    df = long_frame(n=2, t=12)
    df = df[~((df.item_id == "s1") & (df.timestamp < "2020-03-06"))]  # s1 has 3 values
    p = Panel.from_long(df, freq="W-FRI")
    with pytest.raises(PanelError, match=r"series shorter than required.*'s1'; series 's1' has 1"):
        p.windows(horizon=2, min_history=2)


def test_history_is_right_aligned_and_masks_before_start():
    df = long_frame(n=2, t=5)
    df = df[~((df.item_id == "s1") & (df.timestamp < "2020-01-17"))]
    p = Panel.from_long(df, freq="W-FRI")
    y, ok = p.history(4)
    assert y.tolist() == [[1, 2, 3, 4], [0, 7, 8, 9]] and ok[1].tolist() == [False, True, True, True]


def test_from_gluonts_dataset():
    from gluonts.dataset.common import ListDataset
    ds = ListDataset([
        {"start": pd.Period("2020-01", freq="M"), "target": [1.0, 2.0, np.nan, 4.0], "item_id": "a",
         "feat_dynamic_real": [[0, 1, 0, 1, 1, 0]], "feat_static_cat": [3]},
        {"start": pd.Period("2020-02", freq="M"), "target": [5.0, 6.0, 7.0], "item_id": "b",
         "feat_dynamic_real": [[1, 1, 1, 0, 0]], "feat_static_cat": [4]},
    ], freq="M")
    p = Panel.from_gluonts(ds)
    assert p.freq == "MS" and p.target.shape == (2, 4) and p.known.shape == (2, 6, 1)
    assert p.observed.tolist() == [[True, True, False, True], [False, True, True, True]]
    assert p.future_known(2)[:, :, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert p.static_cat.tolist() == [[0], [1]]
    short = ListDataset([{"start": pd.Period("2020-01", freq="M"), "target": [1.0, 2.0, 3.0], "item_id": "c",
                          "feat_dynamic_real": [[0, 1]]}], freq="M")
    with pytest.raises(PanelError, match=r"series 'c': feat_dynamic_real must be \[features, >= 3 steps\]"):
        Panel.from_gluonts(short)


def test_to_device_select_and_roundtrip_to_long():
    p = Panel.from_long(long_frame(), known_covariates=["price"], freq="W-FRI")
    q = p.select([2, 0]).to("cpu")
    assert list(q.item_ids) == ["s2", "s0"] and q.target[0, 0].item() == 20.0
    back = p.to_long()
    assert len(back) == 30 and back.loc[29, "target"] == 29.0 and back.loc[29, "price"] == pytest.approx(2.9)


def test_walmart_panel_matches_fev_selection(walmart):
    p = walmart.panel
    assert p.num_series == 2936 and p.num_steps == 143 and p.freq == "W-FRI"
    assert int(p.lengths.min()) == 79
    assert p.known.shape == (2936, 182, 10)  # covariates run to 2013-07-26 (the Kaggle test period)
    w = walmart.windows()[0]
    assert w.horizon == 39 and int(w.mask.sum()) == 2936 * 39 - int((~w.mask).sum())
    i = list(p.item_ids).index("1_1")
    assert w.target[i, 0].item() == pytest.approx(23510.49, abs=0.01)  # Store 1 Dept 1, 2012-02-03
    assert p.index[int(w.cutoff[i])] == pd.Timestamp("2012-02-03")


def test_duplicate_future_rows_nat_timestamps_and_min_history_are_errors():
    df = long_frame(n=2, t=8)
    future = pd.DataFrame({"item_id": ["s0", "s0"], "timestamp": pd.to_datetime(["2020-02-28"] * 2),
                           "price": [100.0, 200.0]})
    with pytest.raises(PanelError, match=r"duplicate timestamps in `future` for series 's0'"):
        Panel.from_long(df, known_covariates=["price"], future=future, freq="W-FRI")
    with pytest.raises(PanelError, match=r"missing timestamps \(NaT\).*'s1'"):
        Panel.from_long(df.assign(timestamp=df.timestamp.where(df.index != 9)), freq="W-FRI")
    with pytest.raises(PanelError, match="min_history must be >= 1"):
        Panel.from_long(df, freq="W-FRI").windows(2, min_history=0)


def test_one_step_series_gets_a_flat_naive_forecast():
    from forecasting.models import Naive
    df = pd.DataFrame({"item_id": ["a"], "timestamp": [pd.Timestamp("2020-01-03")], "target": [4.0]})
    p = Panel.from_long(df, freq="W-FRI")
    assert Naive().fit(p, 2).predict(p, 3).samples.tolist() == [[[4.0, 4.0]] * 3]


def test_infinite_covariates_are_refused_naming_series_and_column():
    df = long_frame()
    df.loc[13, "price"] = np.inf  # series s1
    with pytest.raises(PanelError, match=r"infinite values in known covariate 'price' of series 's1': e.g. inf at "
                                         r"2020-01-24.*NaN"):
        Panel.from_long(df, known_covariates=["price"], freq="W-FRI")
    with pytest.raises(PanelError, match=r"infinite values in past covariate 'price' of series 's1'"):
        Panel.from_long(df, past_covariates=["price"], freq="W-FRI")
    df = long_frame()
    df["size"] = np.where(df.item_id == "s2", -np.inf, df["size"])
    with pytest.raises(PanelError, match=r"infinite values in static real 'size' of series 's2'"):
        Panel.from_long(df, static_real=["size"], freq="W-FRI")


def test_a_declared_frequency_finer_than_the_data_is_an_error():
    weekly = long_frame(t=12)  # W-FRI data declared daily: 6 of 7 steps would be missing
    with pytest.raises(PanelError, match=r"7 steps of freq 'D' apart.*'s0'.*6/7 missing.*looks like 'W-FRI'"):
        Panel.from_long(weekly, freq="D")
    daily = long_frame(freq="D", t=20)
    daily = daily[~daily.timestamp.isin(pd.to_datetime(["2020-01-05", "2020-01-06", "2020-01-09"]))]
    assert Panel.from_long(daily, freq="D").num_steps == 20  # days missing irregularly: a daily panel


def test_mixed_time_zones_name_the_series():
    df = long_frame(n=2, freq="h", start="2021-03-01")
    stamps = list(df.timestamp)
    stamps[:10] = [t.tz_localize("UTC") for t in stamps[:10]]
    df["timestamp"] = pd.Series(stamps, dtype=object)
    with pytest.raises(PanelError, match=r"time-zone-aware and naive timestamps mixed.*aware in series 's0', "
                                         r"naive in series 's1'"):
        Panel.from_long(df, freq="h")


def test_from_gluonts_keeps_weekly_dates_and_refuses_repeated_ids():
    from gluonts.dataset.common import ListDataset
    ds = ListDataset([{"start": "2024-01-05", "target": np.arange(10.0), "item_id": "x",
                       "feat_dynamic_real": [np.arange(12.0)]}], freq="W-FRI")
    p = Panel.from_gluonts(ds)
    assert p.freq == "W-FRI" and p.index[0] == pd.Timestamp("2024-01-05")  # the Friday given, not the Saturday before
    assert p.known_index[-1] == pd.Timestamp("2024-03-22") and p.future_known(2)[0, :, 0].tolist() == [10.0, 11.0]
    twice = ListDataset([{"start": "2024-01-05", "target": np.arange(5.0), "item_id": "x"}] * 2, freq="W-FRI")
    with pytest.raises(PanelError, match=r"item_id 'x' names more than one entry"):
        Panel.from_gluonts(twice)


def test_window_select_keeps_truth_mask_and_cutoffs_of_the_chosen_series():
    df = long_frame(n=3, t=12)
    w = Panel.from_long(df, freq="W-FRI").windows(horizon=2)[0]
    sub = w.select(w.train.item_ids.isin(["s2", "s0"]))
    assert list(sub.train.item_ids) == ["s0", "s2"] and sub.target.tolist() == [[10.0, 11.0], [34.0, 35.0]]
    assert sub.cutoff.tolist() == [10, 10] and sub.mask.all() and sub.index == w.index
    with pytest.raises(PanelError, match="holds no series"):
        w.select(w.train.item_ids.isin(["zz"]))


def test_future_frame_values_are_checked_and_a_step_without_any_covariate_is_named():
    dates = pd.date_range("2024-01-05", periods=6, freq="W-FRI")
    df = pd.DataFrame({"item_id": ["a"] * 6 + ["b"] * 6, "timestamp": list(dates) * 2, "target": np.arange(12.0),
                       "price": 1.0})
    fdates = pd.date_range(dates[-1], periods=3, freq="W-FRI")[1:]
    fut = pd.DataFrame({"item_id": ["a", "a", "b", "b"], "timestamp": list(fdates) * 2,
                        "price": [1.0, 1.0, "n/a", 1.0]})
    with pytest.raises(PanelError, match="non-numeric values in column 'price' of `future` for series 'b'"):
        Panel.from_long(df, freq="W-FRI", known_covariates=["price"], future=fut)
    fut["price"] = [1.0, np.nan, 1.0, 1.0]
    panel = Panel.from_long(df, freq="W-FRI", known_covariates=["price"], future=fut)
    with pytest.raises(PanelError, match="series 'a' has no value of any of them at forecast step 2"):
        panel.future_known(2)
    with pytest.raises(PanelError, match="grid reaches"):
        panel.future_known(3)


def test_targets_beyond_float32_integer_precision_warn():
    df = pd.DataFrame({"item_id": "big", "timestamp": pd.date_range("2024-01-05", periods=4, freq="W-FRI"),
                       "target": 1e9 + np.arange(4) * 10})
    with pytest.warns(UserWarning, match="above 2\\^24 .* series 'big' .* steps of up to 64"):
        Panel.from_long(df, freq="W-FRI")
