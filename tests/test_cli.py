"""The benchmark command driven as a user drives it: a subprocess on tiny suites."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: a plugin that adds a deliberately failing model (a test aid, never in the public catalog)
PLUGIN = '''
from forecasting.models.baselines import Naive
from forecasting.models.registry import MODELS


class AlwaysFails(Naive):
    name = "always_fails"

    def fit(self, panel, horizon):
        raise RuntimeError("deliberate failure for the test")


MODELS["always_fails"] = (lambda task, **o: AlwaysFails(**o), "test aid: raises in fit")
'''


def run(*args, cwd=None, env=None):
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "forecasting.cli", *args], check=False, capture_output=True,
                          text=True, cwd=cwd, timeout=300, env=full_env)


TINY = """
name = "tiny"
description = "two baselines on the embedded sample"
num_samples = 20
seeds = [0, 1]

[[dataset]]
name = "traffic_weekly_sample"

[[model]]
name = "naive"

[[model]]
name = "seasonal_naive"
"""


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The tiny suite (two baselines x two seeds = 4 cells) run once as a user would."""
    root = tmp_path_factory.mktemp("cli")
    suite = root / "tiny.toml"
    suite.write_text(TINY)
    out = root / "out"
    r = run("run", "--suite", str(suite), "--out", str(out), "--no-progress")
    return suite, out, r


def _cells(out):
    return sorted(p.relative_to(out).as_posix() for p in (out / "cells").rglob("*.json"))


def main(*args):
    """The command in this process (fast) for argument errors, help and listings."""
    from forecasting.cli import main as cli_main
    return cli_main(list(args))


def test_a_run_prints_the_leaderboard_and_ends_with_where_the_report_and_plots_are(first_run):
    _suite, out, r = first_run
    assert r.returncode == 0, r.stderr
    assert "4 cells planned (1 datasets); 0 already finished" in r.stderr
    assert "## traffic_weekly_sample" in r.stdout and "| seasonal_naive |" in r.stdout
    assert "± " in r.stdout  # two seeds: mean ± sd
    lines = r.stdout.strip().splitlines()
    assert lines[-4] == f"report: {(out / 'leaderboard.md').resolve()}"
    assert lines[-3] == f"plots: {(out / 'plots').resolve()}"
    assert _cells(out) == [f"cells/traffic_weekly_sample/{m}/window0_seed{s}.json"
                           for m in ("naive", "seasonal_naive") for s in (0, 1)]
    assert (out / "forecasts" / "traffic_weekly_sample" / "naive_window0_seed1.parquet").exists()
    report = (out / "leaderboard.md").read_text()
    for kind in ("fan", "pit", "coverage", "crps_by_step"):
        png = out / "plots" / "traffic_weekly_sample" / f"{kind}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](plots/traffic_weekly_sample/{kind}.png)" in report
    results = json.loads((out / "results.json").read_text())
    assert results["environment"]["torch_threads"] >= 1 and "torch" in results["environment"]["versions"]
    assert {(c["model"], c["seed"]) for c in results["results"]} == {(m, s) for m in ("naive", "seasonal_naive")
                                                                      for s in (0, 1)}
    assert all(0 < c["wql"] < 1 and c["fit_seconds"] >= 0 and c["peak_rss_mb"] > 0 for c in results["results"])


def test_a_rerun_skips_finished_cells_and_runs_only_missing_ones(first_run):
    suite, out, _ = first_run
    before = {p: (out / p).read_text() for p in _cells(out)}
    r = run("run", "--suite", str(suite), "--out", str(out), "--no-progress", "--no-plots", "--no-forecasts")
    assert r.returncode == 0, r.stderr
    assert "4 already finished" in r.stderr and "0 to run" in r.stderr
    assert {p: (out / p).read_text() for p in _cells(out)} == before  # nothing was rewritten

    (out / "cells/traffic_weekly_sample/seasonal_naive/window0_seed1.json").unlink()
    r = run("run", "--suite", str(suite), "--out", str(out), "--no-progress", "--no-plots", "--no-forecasts")
    assert r.returncode == 0, r.stderr
    assert "3 already finished" in r.stderr and "1 to run" in r.stderr
    after = {p: (out / p).read_text() for p in _cells(out)}
    assert set(after) == set(before)
    for p, text in before.items():
        if not p.endswith("seasonal_naive/window0_seed1.json"):
            assert after[p] == text
    assert len(json.loads((out / "results.json").read_text())["results"]) == 4


def test_report_redraws_a_run_for_a_page_elsewhere(first_run, tmp_path):
    _, out, _ = first_run
    page = tmp_path / "pages" / "board.md"
    assert main("report", "--out", str(out), "--report", str(page), "--no-plots") == 0
    text = page.read_text()
    assert "## traffic_weekly_sample" in text and "/out/plots/traffic_weekly_sample/fan.png)" in text


def test_a_failing_model_is_recorded_and_the_run_goes_on(tmp_path):
    (tmp_path / "failing_plugin.py").write_text(PLUGIN)
    out = tmp_path / "out"
    env = {"FORECASTING_PLUGINS": "failing_plugin", "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    args = ("run", "--model", "always_fails", "--model", "naive", "--out", str(out), "--no-progress",
            "--no-forecasts", "--no-plots")
    r = run(*args, env=env)
    assert r.returncode == 1, r.stderr  # the run goes on, but a CI job sees the failure
    assert "1 cell(s) failed (traffic_weekly_sample / always_fails); see 'Failed cells'" in r.stderr
    assert "cell traffic_weekly_sample / always_fails / window 0 / seed 0 failed: RuntimeError: deliberate" in r.stderr
    cell = json.loads((out / "cells/traffic_weekly_sample/always_fails/window0_seed0.json").read_text())
    assert cell["error"] == "RuntimeError: deliberate failure for the test"
    assert "Traceback" in cell["traceback"] and "wql" not in cell
    good = json.loads((out / "cells/traffic_weekly_sample/naive/window0_seed0.json").read_text())
    assert good["error"] is None and 0 < good["wql"] < 1
    report = (out / "leaderboard.md").read_text()
    assert "## Failed cells" in report and "| traffic_weekly_sample | always_fails | 0 | 0 | RuntimeError" in report
    assert "| naive |" in report
    csv = (out / "results.csv").read_text().splitlines()
    assert len(csv) == 3 and "deliberate failure" in csv[1] + csv[2]

    # a failure counts as finished; --retry-failed runs it again
    r = run(*args, "--retry-failed", env=env)
    assert r.returncode == 1 and "1 already finished" in r.stderr and "1 to run" in r.stderr and "failed: RuntimeError" in r.stderr


def test_unknown_dataset_model_and_suite_are_clear_errors(tmp_path, capsys):
    assert main("run", "--dataset", "nope", "--model", "naive", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown dataset(s) ['nope']" in err and "walmart" in err
    assert main("run", "--model", "prophet", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown model(s) ['prophet']" in err and "seasonal_naive" in err
    assert main("run", "--suite", "no_such_suite", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown suite 'no_such_suite'" in err and "retail" in err
    assert main("run", "--suite", "retail", "--model", "prophet", "--out", str(tmp_path)) == 2
    assert "['prophet'] are not in the suite(s) retail" in capsys.readouterr().err
    assert not (tmp_path / "cells").exists()  # nothing ran


@pytest.mark.parametrize("args, message", [
    (("--num-samples", "0"), "--num-samples must be >= 1, got 0"),
    (("--windows", "-1"), "--windows must be >= 1, got -1"),
    (("--time-limit", "0"), "--time-limit must be > 0 seconds"),
    (("--threads", "0"), "--threads must be >= 1, got 0"),
    (("--device", "tpu", "--model", "naive"), "--device 'tpu'"),
])
def test_bad_values_are_clear_errors(tmp_path, capsys, args, message):
    assert main("run", *args, "--out", str(tmp_path)) == 2
    assert message in capsys.readouterr().err


def test_time_limit_takes_seconds_or_none(tmp_path, capsys):
    from forecasting.cli import _seconds_or_none
    assert _seconds_or_none("30") == 30.0 and _seconds_or_none(" None ") == "none"
    with pytest.raises(SystemExit) as stop:
        main("run", "--time-limit", "soon", "--out", str(tmp_path))
    assert stop.value.code == 2 and "expected seconds or 'none', got 'soon'" in capsys.readouterr().err


def test_bad_suite_files_and_bad_syntax_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nnum_samples = 10\n[[dataset]]\nname = "traffic_weekly_sample"\nwindow = 2\n')
    assert main("run", "--suite", str(bad), "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['window']" in err and str(bad) in err
    for argv, message in ((("run", "--seed", "one"), "invalid int value: 'one'"),
                          (("frobnicate",), "invalid choice: 'frobnicate'")):
        with pytest.raises(SystemExit) as exit_:
            main(*argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert main("report", "--out", str(tmp_path / "empty")) == 2
    assert "holds no benchmark run" in capsys.readouterr().err


def test_help_names_every_subcommand_and_run_option(capsys):
    with pytest.raises(SystemExit):
        main("--help")
    text = capsys.readouterr().out
    for word in ("list", "run", "report", "resumable", "--data-dir"):
        assert word in text
    with pytest.raises(SystemExit):
        main("run", "--help")
    text = capsys.readouterr().out
    for flag in ("--suite", "--dataset", "--model", "--windows", "--num-samples", "--seed", "--device",
                 "--time-limit", "--out", "--threads", "--retry-failed", "--report"):
        assert flag in text


def test_list_names_datasets_models_and_suites(capsys):
    assert main("list") == 0
    out = capsys.readouterr().out
    assert "walmart" in out and "seasonal_naive" in out and "autoarima" in out
    assert "retail" in out and "traffic" in out
    assert main("list", "suites") == 0
    out = capsys.readouterr().out
    assert out.startswith("suites:") and "retail" in out and "datasets:" not in out


def test_ctrl_c_says_where_the_finished_cells_are_and_exits_130(tmp_path, capsys, monkeypatch):
    from forecasting.models.baselines import Naive
    from forecasting.models.registry import MODELS

    class Interrupted(Naive):
        def fit(self, panel, horizon):
            raise KeyboardInterrupt

    monkeypatch.setitem(MODELS, "interrupted", (lambda task, **o: Interrupted(**o), "test aid: Ctrl-C in fit"))
    out = tmp_path / "out"
    assert main("run", "--dataset", "traffic_weekly_sample", "--model", "naive", "--model", "interrupted",
                "--num-samples", "5", "--out", str(out), "--no-progress", "--no-plots") == 130
    err = capsys.readouterr().err
    assert f"interrupted: the finished cells are kept (1 cell file(s) in {(out / 'cells').resolve()})" in err
    assert "rerun the same command to resume" in err and f"forecasting report --out {out}" in err
    assert "Traceback" not in err


def test_out_naming_a_file_and_too_many_windows_are_clear_errors(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main("run", "--dataset", "traffic_weekly_sample", "--model", "naive", "--out", str(afile)) == 2
    assert f"--out {afile} is a file, not a folder" in capsys.readouterr().err
    assert main("run", "--dataset", "walmart", "--model", "naive", "--windows", "2", "--out", str(tmp_path)) == 2
    assert "--windows 2: walmart's task has 1 rolling window(s)" in capsys.readouterr().err
    (tmp_path / "run.json").write_text("{bad")
    assert main("report", "--out", str(tmp_path)) == 2
    assert "run.json is not a readable run record (JSONDecodeError" in capsys.readouterr().err


def test_no_forecasts_prints_no_forecasts_folder(tmp_path, capsys):
    assert main("run", "--dataset", "traffic_weekly_sample", "--model", "naive", "--num-samples", "5",
                "--out", str(tmp_path), "--no-progress", "--no-plots", "--no-forecasts") == 0
    out = capsys.readouterr().out
    assert "results: " in out and "forecasts:" not in out and not (tmp_path / "forecasts").exists()
