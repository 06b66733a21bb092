"""The resumable runner, in process: cells, settings, skipped datasets."""
import json

from forecasting.bench.report import render, summary_table
from forecasting.bench.runner import plan_suites, read_cells, results_frame, run_plan
from forecasting.bench.suites import DatasetEntry, ModelEntry, Suite


def _plan(num_samples=10, optional_missing=False):
    datasets = [DatasetEntry("traffic_weekly_sample")]
    if optional_missing:
        datasets.append(DatasetEntry("m5", optional=True))
    s = Suite("t", tuple(datasets), (ModelEntry("naive"), ModelEntry("empirical")), num_samples, (0,))
    return plan_suites([s])


def test_cells_are_reused_only_with_the_same_settings(tmp_path):
    quiet = {"progress": False, "write_forecasts": False, "log": lambda msg: None}
    rec = run_plan(_plan(), tmp_path, **quiet)
    assert rec["cells"] == rec["completed"] == 2
    cell = json.loads((tmp_path / "cells/traffic_weekly_sample/naive/window0_seed0.json").read_text())
    assert cell["settings"] == {"num_samples": 10, "options": {}} and cell["num_samples"] == 10
    assert len(cell["diagnostics"]["crps_by_step"]) == 8 and len(cell["diagnostics"]["fan"]) == 3
    stamp = cell["finished_at"]
    messages = []
    run_plan(_plan(), tmp_path, progress=False, write_forecasts=False, log=messages.append)
    assert "2 already finished" in messages[0]
    assert json.loads((tmp_path / "cells/traffic_weekly_sample/naive/window0_seed0.json").read_text())[
        "finished_at"] == stamp
    messages.clear()
    run_plan(_plan(num_samples=12), tmp_path, progress=False, write_forecasts=False, log=messages.append)
    assert "0 already finished" in messages[0] and "2 to run" in messages[0]
    assert [c["num_samples"] for c in read_cells(tmp_path)] == [12, 12]


def test_an_optional_dataset_without_files_is_skipped_with_its_reason(tmp_path):
    rec = run_plan(_plan(optional_missing=True), tmp_path, data_dir=tmp_path / "no_data", progress=False,
                   write_forecasts=False, log=lambda msg: None)
    assert [s["dataset"] for s in rec["skipped"]] == ["m5"] and "m5" in rec["skipped"][0]["reason"]
    assert rec["completed"] == 2 and rec["cells"] == 4
    page = render(tmp_path, plots=False).read_text()
    assert "## m5" in page and f"Not run: {rec['skipped'][0]['reason']}" in page
    assert "## Missing cells" in page and "Cells of datasets that could not be loaded (see their sections): m5 2." in page
    assert "without a result yet" not in page


def test_summary_is_mean_over_windows_then_mean_and_sd_over_seeds():
    rows = []
    for seed, wqls in ((0, (0.1, 0.3)), (1, (0.3, 0.5))):
        for w, v in enumerate(wqls):
            rows.append({"dataset": "d", "model": "m", "window": w, "seed": seed, "wql": v, "scaled_crps": v,
                         "mase": 1.0, "wape": v, "coverage_80": 0.8, "fit_seconds": 1.0, "predict_seconds": 2.0,
                         "peak_rss_mb": 100.0 + seed, "error": None})
    rows.append({"dataset": "d", "model": "bad", "window": 0, "seed": 0, "error": "RuntimeError: x"})
    t = summary_table(results_frame(rows))
    assert list(t["model"]) == ["m"]
    r = t.iloc[0]
    assert abs(r["wql"] - 0.3) < 1e-12 and abs(r["wql_sd"] - 0.1414213562) < 1e-9
    assert r["windows"] == 2 and r["seeds"] == 2 and r["peak_rss_mb"] == 101.0


def test_validation_windows_end_before_the_test_windows_and_keep_their_own_folder(tmp_path):
    import forecasting
    import pytest
    ds = forecasting.load("traffic_weekly_sample")
    t = ds.task
    test, val = ds.windows(), ds.windows(validation=True)
    assert len(val) == len(test) == t.num_windows
    span = t.horizon + (t.num_windows - 1) * (t.step or t.horizon)
    for v, w in zip(val, test):
        assert (v.cutoff == w.cutoff - span).all()
    assert bool((val[-1].cutoff + t.horizon <= test[0].cutoff).all())  # validation truth ends before the test
    quiet = {"progress": False, "write_forecasts": False, "log": lambda msg: None}
    s = Suite("t", (DatasetEntry("traffic_weekly_sample"),), (ModelEntry("naive"),), 10, (0,))
    run_plan(plan_suites([s], validation=True), tmp_path / "val", **quiet)
    run_plan(plan_suites([s]), tmp_path / "test", **quiet)
    v, w = read_cells(tmp_path / "val")[0], read_cells(tmp_path / "test")[0]
    assert v["wql"] != w["wql"] and v["window"] == w["window"]
    page = render(tmp_path / "val", plots=False).read_text()
    assert page.startswith("# Leaderboard: validation windows") and "`--validation`" in page
    with pytest.raises(ValueError, match="holds a test-window run"):
        run_plan(plan_suites([s], validation=True), tmp_path / "test", **quiet)


def test_labels_run_one_model_under_several_settings(tmp_path):
    quiet = {"progress": False, "write_forecasts": False, "log": lambda msg: None}
    models = (ModelEntry("seasonal_naive"), ModelEntry("seasonal_naive", {"season": 1}, label="sn_season1"))
    s = Suite("t", (DatasetEntry("traffic_weekly_sample"),), models, 10, (0,))
    run_plan(plan_suites([s]), tmp_path, **quiet)
    cells = {c["model"]: c for c in read_cells(tmp_path)}
    assert set(cells) == {"seasonal_naive", "sn_season1"}
    assert cells["sn_season1"]["settings"] == {"num_samples": 10, "options": {"season": 1}, "model": "seasonal_naive"}
    assert cells["sn_season1"]["wql"] != cells["seasonal_naive"]["wql"]
    page = render(tmp_path, plots=False).read_text()
    assert "sn_season1 (seasonal_naive) season=1" in page


def test_cells_of_earlier_settings_are_not_reported_as_this_runs_results(tmp_path, monkeypatch):
    import pytest

    import forecasting.bench.runner as runner
    from forecasting.datasets import DatasetError
    quiet = {"progress": False, "write_forecasts": False, "log": lambda msg: None}
    run_plan(_plan(num_samples=10), tmp_path, **quiet)

    def unreachable(name, data_dir=None):
        raise DatasetError(f"{name}: files unreachable")
    monkeypatch.setattr(runner, "load", unreachable)
    rec = run_plan(_plan(num_samples=20), tmp_path, **quiet)  # the dataset cannot load this time
    assert rec["completed"] == 0
    assert json.loads((tmp_path / "results.json").read_text())["results"] == []
    page = render(tmp_path, plots=False).read_text()
    assert "| naive |" not in page and "Not run: traffic_weekly_sample: files unreachable" in page
    # the device is part of a cell's settings for models that take one (another --device reruns
    # them); baselines take none, so their cells are reused
    monkeypatch.undo()
    messages = []
    run_plan(_plan(num_samples=10), tmp_path, device="cpu", progress=False, write_forecasts=False, log=messages.append)
    assert "2 already finished" in messages[0]
    from forecasting.bench.runner import planned_settings
    plan = plan_suites([Suite("t", (DatasetEntry("traffic_weekly_sample"),), (ModelEntry("deepar"),), 10, (0,))]).to_json()
    assert planned_settings(plan, "traffic_weekly_sample", "deepar", "cuda")["device"] == "cuda"
    assert "device" not in planned_settings(plan, "traffic_weekly_sample", "deepar")
    with pytest.raises(Exception, match="`seed` is not a model option"):
        Suite("t", (DatasetEntry("traffic_weekly_sample"),), (ModelEntry("deepar", {"seed": 3}),), 10, (0, 1))


def test_an_interrupted_validation_run_never_passes_for_a_test_run_and_labels_cannot_borrow_names(tmp_path):
    import pytest

    from forecasting.bench.suites import SuiteError
    quiet = {"progress": False, "write_forecasts": False, "log": lambda msg: None}
    s = Suite("t", (DatasetEntry("traffic_weekly_sample"),), (ModelEntry("naive"),), 10, (0,))
    run_plan(plan_suites([s], validation=True), tmp_path, **quiet)
    (tmp_path / "run.json").unlink()  # as if killed before the end (run.json is also written first)
    messages = []
    run_plan(plan_suites([s]), tmp_path, progress=False, write_forecasts=False, log=messages.append)
    assert "0 already finished" in messages[0]  # validation cells carry their stage in their settings
    clash = Suite("a", (DatasetEntry("traffic_weekly_sample"),), (ModelEntry("deepar", label="naive"),), 10, (0,))
    with pytest.raises(SuiteError, match=r"label\(s\) \['naive'\] name other registered models"):
        plan_suites([clash])


def test_validation_windows_can_sit_a_chosen_number_of_steps_before_the_test(tmp_path):
    import pytest

    import forecasting
    from forecasting.bench.suites import SuiteError, load_suite
    ds = forecasting.load("traffic_weekly_sample")
    test, year = ds.windows(), ds.windows(validation=True, before=52)
    assert all(bool((v.cutoff == w.cutoff - 52).all()) for v, w in zip(year, test))
    with pytest.raises(ValueError, match="would overlap them"):
        ds.windows(validation=True, before=3)
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\n[[dataset]]\nname = "traffic_weekly_sample"\nvalidation_before = 52\n'
                     '[[model]]\nname = "naive"\n')
    quiet = {"progress": False, "write_forecasts": False, "log": lambda msg: None}
    run_plan(plan_suites([load_suite(suite)], validation=True), tmp_path / "out", **quiet)
    cell = read_cells(tmp_path / "out")[0]
    assert cell["settings"]["validation"] == 52
    assert "`validation_before`: traffic_weekly_sample 52 steps" in render(tmp_path / "out", plots=False).read_text()
    suite.write_text('name = "s"\n[[dataset]]\nname = "traffic_weekly_sample"\nvalidation_before = 0\n'
                     '[[model]]\nname = "naive"\n')
    with pytest.raises(SuiteError, match="validation_before must be a number of steps >= 1"):
        load_suite(suite)


def test_code_fingerprint_follows_the_package_modules_a_model_imports():
    from pathlib import Path

    import forecasting
    from forecasting.bench.runner import _package_imports
    pkg = Path(forecasting.__file__).resolve().parent
    names = lambda files: {f.relative_to(pkg).as_posix() for f in files}  # noqa: E731
    assert {"models/base.py", "data/panel.py", "forecast.py"} <= names(_package_imports(pkg / "models/baselines.py", pkg))
    assert "data/calendar.py" in names(_package_imports(pkg / "forecast.py", pkg))
    deepar = set().union(*(names(_package_imports(f, pkg)) for f in (pkg / "models/deepar").glob("*.py")))
    assert "models/base.py" in deepar and "models/baselines.py" not in deepar  # not through models/__init__.py


def test_cells_record_their_models_code_and_stale_ones_are_listed_and_rerun(tmp_path):
    from forecasting.bench.runner import code_fingerprint
    quiet = {"progress": False, "write_forecasts": False, "log": lambda msg: None}
    run_plan(_plan(), tmp_path, **quiet)
    path = tmp_path / "cells/traffic_weekly_sample/naive/window0_seed0.json"
    cell = json.loads(path.read_text())
    assert cell["code"] == code_fingerprint("naive", "traffic_weekly_sample") and len(cell["code"]) == 12
    cell_code = cell["code"]
    assert code_fingerprint("deepar", "traffic_weekly_sample") != cell["code"]  # its own package's files
    path.write_text(json.dumps({**cell, "code": "0123456789ab"}))  # as if computed by older code
    page = render(tmp_path, plots=False).read_text()
    assert "## Cells computed by other code" in page and "traffic_weekly_sample / naive (1)" in page
    messages = []
    run_plan(_plan(), tmp_path, progress=False, write_forecasts=False, log=messages.append)
    assert "2 already finished" in messages[0]  # kept unless asked
    messages.clear()
    run_plan(_plan(), tmp_path, progress=False, write_forecasts=False, rerun_stale=True, log=messages.append)
    assert "1 already finished" in messages[0] and "1 to run" in messages[0]
    assert "other code" not in render(tmp_path, plots=False).read_text()
    cell = json.loads(path.read_text())
    del cell["code"]  # as if computed before cells recorded their code
    path.write_text(json.dumps(cell))
    assert "traffic_weekly_sample / naive (1)" in render(tmp_path, plots=False).read_text()
    messages.clear()
    run_plan(_plan(), tmp_path, progress=False, write_forecasts=False, rerun_stale=True, log=messages.append)
    assert "1 to run" in messages[0] and json.loads(path.read_text())["code"] == cell_code


def test_time_limited_cells_record_the_load_and_the_report_shows_it(tmp_path):
    quiet = {"progress": False, "write_forecasts": False, "log": lambda msg: None}
    models = (ModelEntry("naive"),
              ModelEntry("deepar", {"time_limit": 30, "max_epochs": 2, "batches_per_epoch": 2, "hidden_size": 8}))
    run_plan(plan_suites([Suite("t", (DatasetEntry("traffic_weekly_sample"),), models, 10, (0,))]), tmp_path, **quiet)
    cells = {c["model"]: c for c in read_cells(tmp_path)}
    deepar = cells["deepar"]
    assert deepar["error"] is None and deepar["stopped_by"] in ("max_epochs", "early_stopping")
    assert 1 <= deepar["epochs"] <= 4  # validation and refit phases, at most 2 epochs each
    assert deepar["load_at_start"] >= 0 and 0 < deepar["fit_cpu_seconds"]
    page = render(tmp_path, plots=False).read_text()
    line = next(x for x in page.splitlines() if x.startswith("Time-limited fits"))
    assert "deepar load " in line and "(0 of 1 stopped by the limit)" in line and "naive load" not in line



def test_the_report_shows_the_epochs_of_time_limited_models_that_report_them():
    from forecasting.bench.report import _time_limited_load
    plan = {"models": {"d": [{"name": "peer", "options": {"time_limit": 20}},
                             {"name": "ours", "options": {"time_limit": 20}}]}}
    cell = {"dataset": "d", "load_at_start": 1.0, "fit_seconds": 20.0, "fit_cpu_seconds": 20.0,
            "stopped_by": "time_limit"}
    cells = [{**cell, "model": "peer", "epochs": 20}, {**cell, "model": "peer", "epochs": 26, "load_at_start": 0.99},
             {**cell, "model": "ours"}]
    assert _time_limited_load(cells, plan, "d") == [
        "ours load 1.0, CPU/wall 1.00 (1 of 1 stopped by the limit)",
        "peer load 1.0, CPU/wall 1.00, 20-26 epochs (2 of 2 stopped by the limit)"]


def _device_naive():
    """A baseline that takes the runner's device (as DeepAR does), for the interrupted-run test."""
    from forecasting.models.baselines import Naive

    class DeviceNaive(Naive):
        def __init__(self, device: str = "cpu", seed: int = 0, progress: bool = False):
            super().__init__()
            self.device = device

    return DeviceNaive


def test_a_first_run_stopped_by_ctrl_c_reports_its_finished_cells(tmp_path, monkeypatch):
    import pytest

    from forecasting.bench import runner
    from forecasting.models.registry import MODELS
    cls = _device_naive()
    monkeypatch.setitem(MODELS, "device_naive", (lambda task, **o: cls(**o), "test aid: takes a device"))
    calls = []
    real = runner._run_cell

    def stop_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_run_cell", stop_at_third)
    plan = plan_suites([Suite("t", (DatasetEntry("traffic_weekly_sample"),),
                              (ModelEntry("device_naive"), ModelEntry("naive")), 10, (0, 1))])
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, tmp_path, device="cpu", progress=False, write_forecasts=False, log=lambda msg: None)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["device"] == "cpu" and run["cells"] == 4 and run["completed"] == 0 and run["finished"] is None
    assert run["environment"]["logical_cpus"] >= 1
    page = render(tmp_path, plots=False).read_text()
    assert "Run interrupted (or still running): 2 of 4 planned cells have results, computed between" in page
    assert "None" not in page.split("Machine:")[1].splitlines()[0]
    assert "| device_naive |" in page  # its cells carry the run's device and belong to the plan


def test_the_report_of_a_run_without_cells_says_none_were_computed(tmp_path):
    from forecasting.bench.report import _status_line
    line = _status_line({"started": "2026-01-01 00:00:00 UTC", "finished": None}, [], 4)
    assert line.startswith("Run interrupted (or still running): 0 of 4 planned cells have results, none computed yet")


def test_a_damaged_run_json_is_a_clear_error(tmp_path):
    import pytest
    for text, message in (("{bad", "is not a readable run record (JSONDecodeError"),
                          ("{}", "is not a run record of `forecasting run` (no plan"),
                          ("[1]", "is not a run record of `forecasting run` (no plan")):
        (tmp_path / "run.json").write_text(text)
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            render(tmp_path, plots=False)
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):  # never overwritten by a run
            run_plan(_plan(), tmp_path, progress=False, write_forecasts=False, log=lambda msg: None)
        assert (tmp_path / "run.json").read_text() == text
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        run_plan(_plan(), afile, progress=False, write_forecasts=False, log=lambda msg: None)


def test_rerunning_one_model_says_the_other_models_cells_are_not_shown(tmp_path):
    quiet = {"progress": False, "write_forecasts": False, "log": lambda msg: None}
    run_plan(_plan(), tmp_path, **quiet)
    page = render(tmp_path, plots=False).read_text()
    assert "Cells of other plans" not in page
    one = plan_suites([Suite("t", (DatasetEntry("traffic_weekly_sample"),), (ModelEntry("naive"),), 10, (0,))])
    run_plan(one, tmp_path, **quiet)
    page = render(tmp_path, plots=False).read_text()
    assert "| empirical |" not in page
    assert ("`cells/` also holds cells of 1 dataset x model pair(s) that the last command did not plan "
            "(traffic_weekly_sample / empirical)") in page and "Rerun the full command" in page
