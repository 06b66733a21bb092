import numpy as np
import pandas as pd
import pytest
import torch

from forecasting import Forecast


def make(n=2, s=5, h=3, freq="MS"):
    samples = torch.arange(n * s * h, dtype=torch.float32).view(n, s, h)
    return Forecast(samples, pd.Index(["a", "b"][:n], name="item_id"),
                    pd.DatetimeIndex(["2021-01-01", "2021-03-01"][:n]), freq)


def test_quantiles_mean_and_median_follow_numpy():
    f = make()
    q = f.quantile([0.1, 0.5, 0.9])
    ref = np.quantile(f.samples.numpy(), [0.1, 0.5, 0.9], axis=1).transpose(1, 0, 2)
    np.testing.assert_allclose(q.numpy(), ref, rtol=1e-6)
    assert f.mean().shape == (2, 3) and torch.equal(f.median(), q[:, 1])


def test_to_pandas_is_a_long_frame_with_quantile_columns():
    df = make().to_pandas([0.1, 0.9])
    assert list(df.columns) == ["item_id", "timestamp", "mean", "0.1", "0.9"]
    assert len(df) == 6
    assert list(df.timestamp[:3]) == list(pd.to_datetime(["2021-01-01", "2021-02-01", "2021-03-01"]))
    assert df.timestamp.iloc[3] == pd.Timestamp("2021-03-01") and df["mean"].iloc[0] == 6.0


def test_parquet_and_save_roundtrip(tmp_path):
    f = make()
    back = pd.read_parquet(f.to_parquet(tmp_path / "f.parquet"))
    assert len(back) == 6 and back["0.5"].iloc[0] == 6.0
    paths = pd.read_parquet(f.to_parquet(tmp_path / "s.parquet", samples=True))
    assert len(paths) == 30 and paths.value.iloc[-1] == 29.0 and paths["sample"].max() == 4
    g = Forecast.load(f.save(tmp_path / "f.pt"))
    assert torch.equal(g.samples, f.samples) and list(g.item_ids) == ["a", "b"] and g.freq == "MS"
    assert list(g.start) == list(f.start)
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporary files


def test_bad_shapes_and_non_finite_paths_are_rejected():
    with pytest.raises(ValueError, match=r"\[series, samples, horizon\]"):
        Forecast(torch.zeros(2, 3), pd.Index(["a", "b"]), pd.DatetimeIndex(["2021-01-01"] * 2), "D")
    with pytest.raises(ValueError, match="item_ids has 1"):
        Forecast(torch.zeros(2, 3, 4), pd.Index(["a"]), pd.DatetimeIndex(["2021-01-01"] * 2), "D")
    bad = torch.zeros(2, 3, 4)
    bad[1, 0, 2] = float("inf")
    with pytest.raises(ValueError, match=r"non-finite sample paths for series \['b'\]"):
        Forecast(bad, pd.Index(["a", "b"]), pd.DatetimeIndex(["2021-01-01"] * 2), "D")


def test_integer_paths_get_interpolated_quantiles_and_levels_are_checked_first():
    f = Forecast(torch.arange(10).view(1, 10, 1), pd.Index(["a"]), pd.DatetimeIndex(["2021-01-01"]), "D")
    np.testing.assert_allclose(f.quantile([0.1, 0.5, 0.9])[0, :, 0].numpy(), [0.9, 4.5, 8.1], rtol=1e-6)
    assert f.median().item() == 4.5
    with pytest.raises(ValueError, match=r"levels must lie in \[0, 1\], got \[1.5\]"):
        f.quantile([1.5])  # 1.5 would have become 1 in an integer cast


def test_timezone_aware_forecasts_keep_their_zone_in_frames_and_files(tmp_path):
    start = pd.DatetimeIndex([pd.Timestamp("2016-12-31 00:00", tz="Australia/Melbourne")] * 2)
    f = Forecast(torch.arange(12.0).view(2, 2, 3), pd.Index(["a", "b"], name="item_id"), start, "h")
    expected = list(pd.date_range(start[0], periods=3, freq="h"))
    assert list(f.timestamps()[:3]) == expected and f.to_pandas().timestamp.iloc[0] == start[0]
    q = pd.read_parquet(f.to_parquet(tmp_path / "q.parquet"))
    assert list(q.timestamp[:3]) == expected
    s = pd.read_parquet(f.to_parquet(tmp_path / "s.parquet", samples=True))
    assert list(s.timestamp[:3]) == expected and list(s.timestamp[3:6]) == expected  # sample 1 of series a


def test_daily_timezone_aware_steps_stay_at_local_midnight_across_dst():
    start = pd.DatetimeIndex([pd.Timestamp("2024-03-29", tz="Europe/Berlin"), pd.Timestamp("2024-10-25", tz="Europe/Berlin")])
    f = Forecast(torch.zeros(2, 1, 4), pd.Index(["a", "b"]), start, "D")
    ts = f.timestamps()
    assert list(ts[:4]) == list(pd.date_range(start[0], periods=4, freq="D"))  # as the panel's grid
    assert list(ts[4:]) == list(pd.date_range(start[1], periods=4, freq="D"))
    assert all(t.hour == 0 for t in ts) and ts[4:].normalize().is_unique


def test_files_follow_the_umask_and_the_wrong_kind_of_file_is_named(tmp_path):
    import os

    from forecasting.models import SeasonalNaive
    from forecasting.models.base import Model
    f = make()
    old = os.umask(0o022)
    try:
        assert (f.save(tmp_path / "f.pt").stat().st_mode & 0o777) == 0o644  # not mkstemp's private 0600
        os.chmod(tmp_path / "f.pt", 0o640)
        assert (f.save(tmp_path / "f.pt").stat().st_mode & 0o777) == 0o640  # an existing file keeps its mode
        os.umask(0o077)
        assert (f.to_parquet(tmp_path / "q.parquet").stat().st_mode & 0o777) == 0o600
    finally:
        os.umask(old)
    with pytest.raises(ValueError, match=r"q.parquet is a parquet file \(e.g. from Forecast.to_parquet\), not a "
                                         r"file written by Forecast.save"):
        Forecast.load(tmp_path / "q.parquet")
    (tmp_path / "t.pt").write_text("not a torch file")
    with pytest.raises(ValueError, match=r"t.pt is not a file written by Model.save \(UnpicklingError"):
        Model.load(tmp_path / "t.pt")
    with pytest.raises(TypeError, match=r"f.pt holds a forecast \(load it with Forecast.load\), not a Model"):
        Model.load(tmp_path / "f.pt")
    model_file = SeasonalNaive(12).save(tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"m.pt holds a SeasonalNaive \(a model: load it with Model.load"):
        Forecast.load(model_file)


def test_start_dates_in_other_units_than_nanoseconds_keep_their_dates(tmp_path):
    start = pd.DatetimeIndex(["2024-01-15", "2024-02-01"]).as_unit("s")
    f = Forecast(torch.rand(2, 10, 3), pd.Index(["a", "b"]), start, "D")
    assert list(f.timestamps()[:2]) == [pd.Timestamp("2024-01-15"), pd.Timestamp("2024-01-16")]
    assert f.to_pandas()["timestamp"].iloc[0] == pd.Timestamp("2024-01-15")
    assert list(Forecast.load(f.save(tmp_path / "f.pt")).start) == list(pd.DatetimeIndex(["2024-01-15", "2024-02-01"]))


def test_mean_and_frame_of_integer_count_paths():
    f = Forecast(torch.tensor([[[1, 2], [3, 4]]]), pd.Index(["a"]), pd.DatetimeIndex(["2024-01-01"]), "D")
    assert f.mean().tolist() == [[2.0, 3.0]]
    assert f.to_pandas()["mean"].tolist() == [2.0, 3.0]
