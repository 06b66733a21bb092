import json

import pandas as pd
import pytest

import forecasting
from forecasting import Forecast
from forecasting.evaluation.backtest import backtest, evaluate, run_benchmark
from forecasting.models import Naive, SeasonalNaive
from forecasting.models.base import Model


class Broken(Model):
    name = "broken"

    def fit(self, panel, horizon):
        raise RuntimeError("deliberate failure")

    def predict(self, panel, num_samples=100, seed=None):
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def sample():
    return forecasting.load("traffic_weekly_sample")


def test_backtest_scores_every_window(sample):
    cells = backtest(sample, lambda task: SeasonalNaive(task.season), num_samples=50, num_windows=3)
    assert [c.window for c in cells] == [0, 1, 2] and all(c.error is None for c in cells)
    c = cells[-1]
    assert c.num_series == 200 and c.horizon == 8 and c.peak_rss_mb > 0 and c.fit_seconds >= 0
    assert set(c.metrics) >= {"wql", "crps", "scaled_crps", "mase", "coverage_50", "coverage_80", "coverage_95",
                              "interval_score_80"}
    assert 0 < c.metrics["wql"] < 1 and c.metrics["observed_points"] == 1600


def test_run_benchmark_records_a_failing_model_and_goes_on(sample, tmp_path):
    results = run_benchmark([sample], {"naive": lambda t: Naive(), "broken": lambda t: Broken()}, tmp_path,
                            num_samples=20, seeds=[0, 1], write_forecasts=True, progress=False, command="test")
    assert len(results) == 4
    broken = results[results.model == "broken"]
    assert broken.error.str.contains("deliberate failure").all()
    ok = results[results.model == "naive"]
    assert ok.error.isna().all() and ok.wql.notna().all()
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["environment"]["torch_threads"] >= 1 and len(payload["results"]) == 4
    assert len(pd.read_csv(tmp_path / "results.csv")) == 4
    board = (tmp_path / "leaderboard.md").read_text()
    assert "## traffic_weekly_sample" in board and "| naive |" in board and "deliberate failure" in board
    assert "±" in board  # two seeds: mean ± sd
    fc = pd.read_parquet(tmp_path / "forecasts" / "traffic_weekly_sample" / "naive_window0_seed1.parquet")
    assert len(fc) == 200 * 8 and {"0.1", "0.9", "mean"} <= set(fc.columns)


def test_evaluate_matches_forecast_rows_to_series_by_name(sample):
    window = sample.windows()[0]
    fc = SeasonalNaive(52).fit(window.train, sample.task.horizon).predict(window.train, 50, seed=0)
    ref = evaluate(fc, window, sample.task)
    perm = list(range(fc.num_series))[::-1]  # the same forecast, rows listed backwards, correctly named
    rev = Forecast(fc.samples[perm], fc.item_ids[perm], fc.start[perm], fc.freq)
    assert evaluate(rev, window, sample.task) == pytest.approx(ref)
    renamed = Forecast(fc.samples, fc.item_ids[:-1].append(pd.Index(["nowhere"])), fc.start, fc.freq)
    with pytest.raises(ValueError, match=r"missing \[.*\], not in the window \['nowhere'\]"):
        evaluate(renamed, window, sample.task)
    late = Forecast(fc.samples, fc.item_ids, fc.start + pd.Timedelta(weeks=1), fc.freq)
    with pytest.raises(ValueError, match="do not start right after their series' cutoff: series"):
        evaluate(late, window, sample.task)
