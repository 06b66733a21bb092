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
