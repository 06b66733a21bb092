"""Suites: TOML files into plans; names checked before anything runs."""
import textwrap

import pytest

from forecasting.bench.runner import accepted_options, plan_suites
from forecasting.bench.suites import (
    DatasetEntry,
    ModelEntry,
    Suite,
    SuiteError,
    load_suite,
    suite_paths,
)
from forecasting.datasets import get_spec


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_the_shipped_suites_load_and_plan():
    found = suite_paths()
    assert {"retail", "traffic"} <= set(found)
    retail, traffic = load_suite("retail"), load_suite("traffic")
    assert [d.name for d in retail.datasets][:4] == ["walmart", "car_parts", "stallion", "m5_last56"]
    assert {d.name: d.optional for d in retail.datasets}["m5"] is True
    assert [d.name for d in traffic.datasets] == ["traffic_weekly", "metro_traffic", "pedestrian"]
    plan = plan_suites([retail, traffic])
    assert [d.name for d in plan.datasets] == [d.name for d in retail.datasets + traffic.datasets]
    models = {m.name for ms in plan.models.values() for m in ms}
    assert {"seasonal_naive", "gluonts_deepar", "deepar", "autoets", "autoarima"} <= models


def test_a_suite_file_with_options_skips_and_per_dataset_overrides(tmp_path):
    p = _write(tmp_path, """
        name = "mine"
        num_samples = 50
        seeds = [0, 3]
        [[dataset]]
        name = "walmart"
        [[dataset]]
        name = "car_parts"
        windows = 1
        [[model]]
        name = "deepar"
        time_limit = 30
        max_epochs = 2
        skip = ["walmart"]
        why = "too slow"
        [[model]]
        name = "gluonts_deepar"
        time_limit = 100
        [model.per_dataset]
        car_parts = { time_limit = 20 }
    """)
    s = load_suite(p)
    assert s.num_samples == 50 and s.seeds == (0, 3) and s.source == str(p)
    assert s.datasets[1] == DatasetEntry("car_parts", 1, False)
    plan = plan_suites([s], extra_options={"time_limit": 60})
    assert [m.name for m in plan.models["walmart"]] == ["gluonts_deepar"]
    assert plan.models["walmart"][0].options == {"time_limit": 100}
    assert {m.name: m.options for m in plan.models["car_parts"]} == {
        "deepar": {"time_limit": 30, "max_epochs": 2}, "gluonts_deepar": {"time_limit": 20}}
    assert plan.excluded == [{"dataset": "walmart", "model": "deepar", "why": "too slow"}]
    assert plan.seeds == [0, 3] and plan.num_samples == 50


def test_none_in_a_suite_is_none_so_a_step_budget_can_run_without_a_time_limit(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(textwrap.dedent("""
        name = "s"
        [[dataset]]
        name = "car_parts"
        [[dataset]]
        name = "walmart"
        [[model]]
        name = "deepar"
        time_limit = "none"
        max_epochs = 3
        [[model]]
        name = "gluonts_deepar"
        [model.per_dataset]
        walmart = { time_limit = "None" }
    """))
    plan = plan_suites([load_suite(p)], extra_options={"time_limit": 60})
    assert {m.name: m.options for m in plan.models["walmart"]} == {
        "deepar": {"time_limit": None, "max_epochs": 3}, "gluonts_deepar": {"time_limit": None}}
    assert {m.name: m.options for m in plan.models["car_parts"]}["gluonts_deepar"] == {"time_limit": 60}
    # the command line's --time-limit none: no default limit either
    plan = plan_suites([load_suite(p)], extra_options={"time_limit": None})
    assert {m.name: m.options for m in plan.models["car_parts"]}["gluonts_deepar"] == {"time_limit": None}


def test_command_line_overrides_and_time_limit_only_for_models_that_take_it():
    s = Suite("x", (DatasetEntry("traffic_weekly_sample"),), (ModelEntry("naive"), ModelEntry("deepar")), 10, (0,))
    plan = plan_suites([s], num_samples=7, seeds=[1, 2], windows=1, extra_options={"time_limit": 5})
    assert plan.num_samples == 7 and plan.seeds == [1, 2] and plan.datasets[0].windows == 1
    assert {m.name: m.options for m in plan.models["traffic_weekly_sample"]} == {"naive": {},
                                                                                "deepar": {"time_limit": 5}}
    task = get_spec("traffic_weekly_sample").task
    assert accepted_options("gluonts_deepar", task, {"time_limit": 1, "device": "cpu", "seed": 0}) == {
        "time_limit": 1, "device": "cpu", "seed": 0}
    assert accepted_options("autoets", task, {"time_limit": 1, "seed": 0}) == {}


@pytest.mark.parametrize("text, message", [
    ('name = "a"\n[[dataset]]\nname = "walmart"\n', "no models"),
    ('name = "a"\n[[model]]\nname = "naive"\n', "no datasets"),
    ('name = "a"\nseeds = "0"\n[[dataset]]\nname = "walmart"\n[[model]]\nname = "naive"\n', "seeds must be a list"),
    ('name = "a"\n[[dataset]]\nname = "walmart"\n[[dataset]]\nname = "walmart"\n[[model]]\nname = "naive"\n',
     "dataset(s) listed twice: walmart"),
    ('name = "a"\n[[dataset]]\nname = "walmart"\nwindows = 0\n[[model]]\nname = "naive"\n', "windows must be >= 1"),
    ('name = "a"\n[[dataset]]\n[[model]]\nname = "naive"\n', "[[dataset]] number 1 has no name"),
    ('name = "a"\n[[dataset]]\nname = "walmart"\n[[model]]\nname = "naive"\nskip = "walmart"\n', "skip must be a list"),
    ('name = a b', "not valid TOML"),
])
def test_invalid_suites_name_the_file_and_field(tmp_path, text, message):
    p = _write(tmp_path, text)
    with pytest.raises(SuiteError, match=None) as err:
        load_suite(p)
    assert message in str(err.value) and (str(p) in str(err.value) or "suite 'a'" in str(err.value))


def test_unknown_names_fail_before_running():
    s = Suite("x", (DatasetEntry("walmrt"),), (ModelEntry("naive"),))
    with pytest.raises(SuiteError, match=r"unknown dataset\(s\) \['walmrt'\]; known datasets: .*walmart"):
        plan_suites([s])
    s = Suite("x", (DatasetEntry("walmart"),), (ModelEntry("arima"),))
    with pytest.raises(SuiteError, match=r"unknown model\(s\) \['arima'\]; known models: .*autoarima"):
        plan_suites([s])
    with pytest.raises(SuiteError, match="unknown suite 'nope'"):
        load_suite("nope")


def _tiny(name, num_samples=20, seeds=(0,), models=(ModelEntry("naive"),), windows=None):
    return Suite(name, (DatasetEntry("traffic_weekly_sample", windows),), models, num_samples, seeds)


def test_suites_that_disagree_on_samples_or_seeds_are_an_error_unless_the_command_line_sets_them():
    a, b = _tiny("a", 20, (0,)), _tiny("b", 50, (0, 1), (ModelEntry("seasonal_naive"),))
    with pytest.raises(SuiteError, match=r"disagree on num_samples: suite 'a' has 20, suite 'b' has 50"):
        plan_suites([a, b])
    with pytest.raises(SuiteError, match=r"disagree on seeds: suite 'a' has \[0\], suite 'b' has \[0, 1\]"):
        plan_suites([a, b], num_samples=30)
    plan = plan_suites([a, b], num_samples=30, seeds=[4])
    assert plan.num_samples == 30 and plan.seeds == [4]
    assert plan_suites([a, _tiny("c", 20, (0,))]).num_samples == 20  # agreeing suites merge as before


@pytest.mark.parametrize("top, dataset, model, message", [
    ("", 'windows = "2"', "", "dataset 'traffic_weekly_sample': windows must be an integer, got '2' (str)"),
    ("", "windows = 2.5", "", "dataset 'traffic_weekly_sample': windows must be an integer, got 2.5 (float)"),
    ("", "windows = true", "", "dataset 'traffic_weekly_sample': windows must be an integer, got True (bool)"),
    ('num_samples = "abc"', "", "", "num_samples must be an integer, got 'abc' (str)"),
    ("num_samples = 2.7", "", "", "num_samples must be an integer, got 2.7 (float)"),
    ('seeds = [0, "1"]', "", "", "seeds must be an integer, got '1' (str)"),
    ("", 'optional = "false"', "", "dataset 'traffic_weekly_sample': optional must be a boolean (true or false), "
                                   "got 'false' (str)"),
    ("", "", 'skip = "walmart"', "model 'naive': skip must be a list of dataset names (strings), got 'walmart'"),
    ("", "", "only = [1]", "model 'naive': only must be a list of dataset names (strings), got [1]"),
    ("", "", "why = 3", "model 'naive': why must be a string, got 3 (int)"),
])
def test_suite_values_of_the_wrong_type_are_errors_naming_the_file_section_and_field(tmp_path, top, dataset, model,
                                                                                     message):
    p = tmp_path / "t.toml"
    p.write_text(f'name = "t"\n{top}\n[[dataset]]\nname = "traffic_weekly_sample"\n{dataset}\n'
                 f'[[model]]\nname = "naive"\n{model}\n')
    with pytest.raises(SuiteError) as err:
        load_suite(p)
    assert str(err.value) == f"suite file {p}: {message}"


def test_model_options_and_dataset_names_are_checked_before_anything_runs():
    def plan(model):
        return plan_suites([_tiny("t", models=(model,))], extra_options={"time_limit": 60.0})

    with pytest.raises(SuiteError, match=r"model 'seasonal_naive': option\(s\) \['seasn'\] are not parameters of "
                                         r"'seasonal_naive' \(it takes: nonnegative, point, season\)"):
        plan(ModelEntry("seasonal_naive", {"seasn": 12}))
    with pytest.raises(SuiteError, match=r"model 'empirical': option\(s\) \['time_limit'\] are not parameters"):
        plan(ModelEntry("empirical", {"time_limit": 5}))
    with pytest.raises(SuiteError, match=r"option\(s\) \['windw'\]"):  # per_dataset options too
        plan(ModelEntry("empirical", per_dataset={"traffic_weekly_sample": {"windw": 3}}))
    for field, entry in (("skip", ModelEntry("naive", skip=("trafic_weekly_sample",))),
                         ("only", ModelEntry("naive", only=("trafic_weekly_sample",))),
                         ("per_dataset", ModelEntry("naive", per_dataset={"trafic_weekly_sample": {}}))):
        with pytest.raises(SuiteError, match=rf"model 'naive': {field} names \['trafic_weekly_sample'\], not a "
                                             "known dataset name"):
            plan(entry)
    # another suite's dataset is a known name (a model entry may be shared); the runner's --time-limit
    # fills in only the models that take it, so the report does not list it for the others
    p = plan(ModelEntry("seasonal_naive", {"season": 4}, skip=("walmart",)))
    assert p.to_json()["models"]["traffic_weekly_sample"] == [{"name": "seasonal_naive", "options": {"season": 4}}]
    p = plan(ModelEntry("deepar", {"max_epochs": 1}))
    assert p.models["traffic_weekly_sample"][0].options == {"time_limit": 60.0, "max_epochs": 1}


def test_windows_above_the_tasks_number_of_windows_are_an_error():
    total = get_spec("traffic_weekly_sample").task.num_windows
    with pytest.raises(SuiteError, match=rf"--windows {total + 1}: traffic_weekly_sample's task has {total} "
                                         r"rolling window\(s\); a run scores only the last N of them, so N "
                                         rf"must be <= {total}"):
        plan_suites([_tiny("t")], windows=total + 1)
    with pytest.raises(SuiteError, match=rf"suite 't'.*windows = {total + 1}: .* must be <= {total}"):
        plan_suites([_tiny("t", windows=total + 1)])
    assert plan_suites([_tiny("t")], windows=total).datasets[0].windows == total
