import argparse
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from forecasting.models import SeasonalNaive
from forecasting.scenarios import read_torch
from forecasting.scenarios.cli import add_parser, run


def parse(*argv):
    parser = argparse.ArgumentParser(prog="forecasting")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["scenarios", *argv])


@pytest.fixture(scope="module")
def saved_forecast(walmart, tmp_path_factory):
    panel = walmart.panel
    codes = panel.static_cat[:, list(panel.static_cat_names).index("Store")].numpy()
    rows = np.nonzero(np.isin(codes, [0, 1]))[0]  # stores 1 and 2
    train = panel.select(rows).windows(39, 1, align="grid")[0].train
    fc = SeasonalNaive(52).fit(train, 39).predict(train, 40, seed=0)
    return fc, fc.save(tmp_path_factory.mktemp("fc") / "forecast.pt")


def test_saved_forecast_to_coherent_reduced_scenario_files(saved_forecast, data_dir, tmp_path, capsys):
    fc, path = saved_forecast
    args = parse(str(path), "--dataset", "walmart", "--data-dir", str(data_dir), "--method", "schaake",
                 "--hierarchy", "Store", "--hierarchy", "Type", "--reduce", "10", "--format", "parquet",
                 "--format", "pt", "--out", str(tmp_path), "--no-progress")
    assert run(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["input_series"] == fc.num_series and summary["reduction"]["kept"] == 10
    assert summary["series"] == fc.num_series + 2 + 1 + 1 and summary["scenarios"] == 10  # what the files hold
    assert summary["hierarchy"] == {"Store": 2, "Type": 1, "total": 1}
    sc = read_torch(tmp_path / "scenarios.pt")
    n = fc.num_series
    assert sc.num_series == n + 2 + 1 + 1 and sc.num_scenarios == 10
    assert float(sc.weights.sum()) == pytest.approx(1.0)
    assert torch.allclose(sc.values[-1], sc.values[:n].sum(0), rtol=1e-5)
    # every kept scenario is one of the forecast's samples at each (series, step)
    assert bool((sc.values[:n, :, :, None] == fc.samples.permute(0, 2, 1)[:, None]).any(-1).all())
    table = pq.read_table(tmp_path / "scenarios.parquet")
    assert table.num_rows == sc.num_series * 10 * 39


def test_bad_input_is_a_clear_error(saved_forecast, data_dir, tmp_path, capsys):
    _, path = saved_forecast
    assert run(parse(str(path), "--dataset", "no_such_data", "--out", str(tmp_path))) == 2
    assert "unknown dataset 'no_such_data'" in capsys.readouterr().err
    assert run(parse(str(tmp_path / "missing.pt"), "--dataset", "walmart", "--out", str(tmp_path))) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert run(parse(str(path), "--dataset", "walmart", "--data-dir", str(data_dir), "--method", "schaake",
                     "--groups", "Store", "--out", str(tmp_path), "--no-progress")) == 2
    assert "--groups is an option of --method copula" in capsys.readouterr().err


def test_grouped_copula_with_whole_paths(saved_forecast, data_dir, tmp_path):
    fc, path = saved_forecast
    args = parse(str(path), "--dataset", "walmart", "--data-dir", str(data_dir), "--method", "copula", "--rank", "2",
                 "--groups", "Store", "--paths", "--reduce", "10", "--format", "pt", "--out", str(tmp_path),
                 "--no-progress")
    assert run(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["method"] == "copula_paths" and summary["reduction"]["method"] == "forward"
    sc = read_torch(tmp_path / "scenarios.pt")
    assert sc.num_scenarios == 10 and float(sc.weights.sum()) == pytest.approx(1.0)
    # whole paths: every kept scenario of a series is one of its sample paths
    assert bool((sc.values[:, :, None, :] == fc.samples[:, None, :, :]).all(-1).any(-1).all())


def test_copula_fitted_on_a_past_forecasts_errors(walmart, saved_forecast, data_dir, tmp_path, capsys):
    fc, path = saved_forecast
    panel = walmart.panel
    codes = panel.static_cat[:, list(panel.static_cat_names).index("Store")].numpy()
    rows = np.nonzero(np.isin(codes, [0, 1]))[0]
    # the window before the forecast's: its truth lies in the history the CLI reads
    earlier = panel.select(rows).truncate(torch.full((len(rows),), panel.num_steps - 39)).windows(39, 1, align="grid")[0]
    past = SeasonalNaive(52).fit(earlier.train, 39).predict(earlier.train, 40, seed=1)
    past_path = past.save(tmp_path / "past.pt")
    args = parse(str(path), "--dataset", "walmart", "--data-dir", str(data_dir), "--method", "copula", "--rank", "3",
                 "--groups", "Store", "--past-forecast", str(past_path), "--format", "pt", "--out", str(tmp_path / "o"),
                 "--no-progress")
    assert run(args) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["past_forecast"]["series_with_residuals"] == fc.num_series
    sc = read_torch(tmp_path / "o" / "scenarios.pt")
    assert torch.equal(sc.values.sort(1).values, fc.samples.sort(1).values)  # marginals kept
    # a past forecast of only some of the series: the others get no residuals and stay independent
    part = type(past)(past.samples[:10], past.item_ids[:10], past.start[:10], past.freq)
    part_path = part.save(tmp_path / "part.pt")
    args = parse(str(path), "--dataset", "walmart", "--data-dir", str(data_dir), "--method", "copula", "--rank", "3",
                 "--past-forecast", str(part_path), "--format", "pt", "--out", str(tmp_path / "p"), "--no-progress")
    assert run(args) == 0
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())["past_forecast"]
    assert summary["series_with_residuals"] == 10 and summary["independent_series"] == fc.num_series - 10
    # a past forecast whose window is the forecast's own has no truth in the history: an error, not a leak
    assert run(parse(str(path), "--dataset", "walmart", "--data-dir", str(data_dir), "--method", "copula",
                     "--past-forecast", str(path), "--out", str(tmp_path / "x"), "--no-progress")) == 2
    assert "no value of the past forecast's window lies in the history" in capsys.readouterr().err
    assert run(parse(str(path), "--dataset", "walmart", "--data-dir", str(data_dir), "--method", "schaake",
                     "--past-forecast", str(past_path), "--out", str(tmp_path / "x"), "--no-progress")) == 2
    assert "--past-forecast is an option of --method copula" in capsys.readouterr().err


def test_history_names_series_as_the_forecast_does_when_ids_match_only_as_strings():
    import pandas as pd

    from forecasting import Forecast, Panel
    from forecasting.scenarios import make_dependence
    from forecasting.scenarios.cli import _history
    rng = np.random.default_rng(0)
    ts = pd.date_range("2020-01-01", periods=40, freq="D")
    df = pd.concat([pd.DataFrame({"item_id": i, "timestamp": ts, "target": rng.random(40)}) for i in (1, 2, 3)])
    panel = Panel.from_long(df, freq="D")  # integer ids, as walmart's
    start = pd.DatetimeIndex([ts[-1] + pd.Timedelta(days=1)] * 3)
    fc = Forecast(torch.rand(3, 20, 4), pd.Index(["1", "2", "3"], name="item_id"), start, "D")  # saved as strings
    hist = _history(panel, fc)
    assert hist.item_ids.tolist() == ["1", "2", "3"]
    out = make_dependence("schaake").fit(hist, fc.horizon).apply(fc.samples, seed=0, item_ids=fc.item_ids)
    assert out.shape == fc.samples.shape


def test_help_is_for_users_and_shows_defaults():
    parser = argparse.ArgumentParser(prog="forecasting")
    sub = parser.add_subparsers(dest="command", required=True)
    text = add_parser(sub).format_help()
    assert "Forecast.save" in text and "example:" in text
    assert ":func:" not in text and "add_parser" not in text
    for default in ("(default: schaake)", "(default: level)", "(default: 10)", "(default: forward)", "(default: 0)"):
        assert default in " ".join(text.split()), default


def test_crossed_levels_need_the_crossed_flag(saved_forecast, data_dir, tmp_path, capsys):
    _, path = saved_forecast
    argv = [str(path), "--dataset", "walmart", "--data-dir", str(data_dir), "--method", "independent",
            "--hierarchy", "Store", "--hierarchy", "Dept", "--format", "pt", "--out", str(tmp_path), "--no-progress"]
    assert run(parse(*argv)) == 2
    err = capsys.readouterr().err
    assert "is not nested in 'Dept'" in err and "pass --crossed" in err and "nested=False" not in err
    assert run(parse(*argv, "--crossed")) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["hierarchy"]["Store"] == 2 and summary["hierarchy"]["Dept"] > 2


def test_season_zero_and_an_out_file_are_errors(saved_forecast, data_dir, tmp_path, capsys):
    _, path = saved_forecast
    common = (str(path), "--dataset", "walmart", "--data-dir", str(data_dir), "--no-progress")
    assert run(parse(*common, "--transform", "seasonal_diff", "--season", "0", "--out", str(tmp_path / "s"))) == 2
    assert "--season must be >= 1 (a lag in steps), got 0" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert run(parse(*common, "--out", str(afile))) == 2
    assert f"--out {afile} is a file, not a folder" in capsys.readouterr().err
    assert afile.read_text() == "x"


def test_a_rerun_replaces_the_earlier_runs_files_and_the_summary_counts_what_was_written(saved_forecast, data_dir,
                                                                                          tmp_path, capsys):
    fc, path = saved_forecast
    common = (str(path), "--dataset", "walmart", "--data-dir", str(data_dir), "--no-progress", "--method",
              "independent", "--out", str(tmp_path))
    assert run(parse(*common, "--reduce", "5", "--format", "npy", "--format", "pt")) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"scenarios.npy", "scenarios.index.json", "scenarios.pt",
                                                    "summary.json"}
    capsys.readouterr()
    assert run(parse(*common, "--hierarchy", "Store", "--reduce", "10")) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"scenarios.parquet", "summary.json"}
    assert "removed the earlier run's scenarios.index.json, scenarios.npy, scenarios.pt" in capsys.readouterr().err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["series"] == fc.num_series + 2 + 1 and summary["scenarios"] == 10  # stores 1, 2 and the total
    assert summary["input_series"] == fc.num_series and summary["input_scenarios"] == fc.num_samples
    assert summary["removed_from_earlier_run"] == ["scenarios.index.json", "scenarios.npy", "scenarios.pt"]
    table = pq.read_table(tmp_path / "scenarios.parquet").to_pandas()
    assert table["item_id"].nunique() == summary["series"] and table["scenario"].nunique() == 10
