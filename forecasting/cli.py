"""The benchmark command (``forecasting`` or ``forecasting-bench``).

Backtest probabilistic forecasters on public retail and traffic data, write a leaderboard
(JSON, CSV, markdown with published fev-bench numbers beside ours) and plots.

First steps:

    forecasting list                          # datasets, models and suites
    forecasting run                           # every available model on the dataset inside the
                                              # package (200 PeMS sensors, weekly): a few minutes
    forecasting run --suite retail --data-dir ../shared/data --threads 1 --out results/retail
    forecasting run --dataset walmart --model seasonal_naive --model autoets --seed 0 --seed 1
    forecasting report --out results/retail   # redraw the report and plots of a run

A run is resumable: every dataset x model x window x seed is a file under --out/cells, and a
rerun of the same command skips the finished ones. A model that fails is recorded with its error
and the run goes on. Data files are looked up in --data-dir, then $FORECASTING_DATA, then
~/.cache/forecasting (public files are downloaded there when missing).
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from pathlib import Path

DEFAULT_DATASET = "traffic_weekly_sample"
#: the README's main job: baselines, both DeepARs and (when statsforecast is installed) its peers
DEFAULT_MODELS = ("naive", "seasonal_naive", "empirical", "gluonts_deepar", "deepar")
OPTIONAL_DEFAULT_MODELS = ("autoets", "statespace")  # where installed / registered (AutoARIMA: +2 min)
DEFAULT_TIME_LIMIT = 60.0
PLUGINS_ENV = "FORECASTING_PLUGINS"


def _seconds_or_none(text: str):
    """``--time-limit``: seconds, or ``"none"`` (no limit)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'none', got {text!r}") from None


def _scenarios_module():
    """``forecasting.scenarios.cli`` (the scenario generator's subcommand) where it exists; an
    import error there is reported and leaves the benchmark commands working."""
    import importlib.util
    try:
        if importlib.util.find_spec("forecasting.scenarios.cli") is None:
            return None
        return importlib.import_module("forecasting.scenarios.cli")
    except Exception as err:  # noqa: BLE001 - pragma: no cover - a broken scenarios module must not break `run`
        print(f"warning: the scenarios subcommand is unavailable: {type(err).__name__}: {err}", file=sys.stderr)
        return None


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless its help already says it (or there is none to show)."""

    def _get_help_string(self, action):
        if action.default in (None, [], False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="forecasting", description=__doc__, formatter_class=_Formatter)
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help=f"import MODULE first (it may add models or datasets to the registries); "
                        f"also read from ${PLUGINS_ENV} (comma-separated)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ls = sub.add_parser("list", help="list the registered datasets, models and suites", formatter_class=_Formatter,
                        description="List what can be run: datasets (with their evaluation task), models, suites.")
    ls.add_argument("what", nargs="?", choices=("all", "datasets", "models", "suites"), default="all")

    r = sub.add_parser("run", help="backtest models on datasets and write a leaderboard and plots",
                       formatter_class=_Formatter, description=_RUN_HELP)
    w = r.add_argument_group("what to run")
    w.add_argument("--suite", action="append", metavar="NAME|FILE",
                   help="a suite by name (benchmarks/suites/NAME.toml) or a .toml file; repeatable")
    w.add_argument("--dataset", action="append", metavar="NAME",
                   help=f"dataset, repeatable (default without --suite: {DEFAULT_DATASET}; with --suite: "
                        "only these of the suite's datasets)")
    w.add_argument("--model", action="append", metavar="NAME",
                   help="model, repeatable (default without --suite: every available model; with --suite: only "
                        "these of the suite's models, by name or label)")
    w.add_argument("--windows", type=int, default=None, metavar="N",
                   help="evaluate only the last N rolling windows of each task (default: the task's)")
    w.add_argument("--validation", action="store_true",
                   help="score the validation windows instead: the task's windows moved back so that they "
                        "end before its test windows start (choose settings there; use another --out)")
    w.add_argument("--num-samples", type=int, default=None, metavar="S",
                   help="sample paths per series (default: the suite's, else 100)")
    w.add_argument("--seed", type=int, action="append", metavar="SEED",
                   help="random seed, repeatable: the report shows mean ± sd over seeds (default: 0)")
    h = r.add_argument_group("how to run it")
    h.add_argument("--time-limit", type=_seconds_or_none, default=None, metavar="SECONDS",
                   help=f"training seconds per window for trained models (DeepAR, the GluonTS peer) that the "
                        f"suite does not limit itself (default {DEFAULT_TIME_LIMIT:g}); 'none': no limit, they "
                        "train for their step budget (max_epochs x batches), which reproduces where a time limit "
                        "depends on the machine's speed")
    h.add_argument("--device", default=None, metavar="DEVICE",
                   help="cpu, cuda or auto, for models that take a device (default: each model's own)")
    h.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (recorded in the report; 1 when the machine is shared)")
    h.add_argument("--data-dir", default=None, metavar="DIR",
                   help="data directory (default: $FORECASTING_DATA, then ~/.cache/forecasting)")
    h.add_argument("--retry-failed", action="store_true", help="rerun cells that recorded an error")
    h.add_argument("--rerun-stale", action="store_true",
                   help="rerun cells computed by other code of their model than this checkout's (the report "
                        "lists them)")
    h.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    o = r.add_argument_group("where the results go")
    o.add_argument("--out", default="forecasting_results", metavar="DIR",
                   help="folder for cells, results.json/csv, plots and forecasts (reruns resume here)")
    o.add_argument("--report", default=None, metavar="FILE",
                   help="write the markdown leaderboard here (default: OUT/leaderboard.md)")
    o.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    o.add_argument("--no-forecasts", action="store_true", help="do not write each forecast as parquet")

    rp = sub.add_parser("report", help="rewrite the leaderboard and plots of a run", formatter_class=_Formatter,
                        description="Rewrite the markdown leaderboard and the PNG plots from a run folder "
                                    "(e.g. after stopping a run, or to put the page somewhere else).")
    rp.add_argument("--out", default="forecasting_results", metavar="DIR", help="the run's folder")
    rp.add_argument("--report", default=None, metavar="FILE", help="default: OUT/leaderboard.md")
    rp.add_argument("--plots-href", default=None, metavar="URL",
                    help="link the plots through this path instead of the relative path to OUT/plots")
    rp.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")

    scen = _scenarios_module()
    if scen is not None and hasattr(scen, "add_parser"):
        scen.add_parser(sub)
    return p


_RUN_HELP = """Backtest models on datasets: every rolling window of each task, every seed.

Examples:
  forecasting run                                      # the embedded dataset, every available model
  forecasting run --suite retail --suite traffic --data-dir ../shared/data --threads 1 --out runs/all
  forecasting run --dataset car_parts --model croston_optimized --model seasonal_naive --num-samples 200
  forecasting run --dataset walmart --model autoets --seed 0 --seed 1 --seed 2 --out runs/walmart
  forecasting run --suite traffic --validation --out runs/traffic_val   # choose settings before the test

Writes to --out: cells/ (one JSON per dataset x model x window x seed), results.json, results.csv,
leaderboard.md (or --report), plots/<dataset>/*.png and forecasts/ (parquet). Rerunning the same
command skips finished cells; change --num-samples or a model option and those cells run again."""


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _load_plugins(modules) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - any import error is the plugin's
            raise SystemExit(_err(f"plugin {name!r} could not be imported: {type(err).__name__}: {err}"))


def _available_defaults() -> list[str]:
    from .models.registry import MODELS
    out = list(DEFAULT_MODELS)
    for name in OPTIONAL_DEFAULT_MODELS:
        if name in MODELS and (name != "autoets" or _has("statsforecast")):
            out.append(name)
    return out


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _list(what: str) -> int:
    from .bench.suites import load_suite, suite_paths
    from .datasets import get_spec, list_datasets
    from .models.registry import MODELS
    if what in ("all", "datasets"):
        print("datasets:")
        for name in list_datasets():
            spec = get_spec(name)
            t = spec.task
            print(f"  {name:24s} freq {t.freq:6s} h={t.horizon:<3d} windows={t.num_windows}  {spec.description}")
    if what in ("all", "models"):
        print("models:")
        for name, (_, desc) in MODELS.items():
            print(f"  {name:24s} {desc}")
    if what in ("all", "suites"):
        print("suites:")
        for name, path in suite_paths().items():
            try:
                s = load_suite(path)
                print(f"  {name:24s} {', '.join(d.name for d in s.datasets)}: {s.description}  ({path})")
            except Exception as err:  # noqa: BLE001 - a broken suite file is shown, not fatal for `list`
                print(f"  {name:24s} INVALID: {err}")
    return 0


def _build_suites(args):
    from .bench.suites import DatasetEntry, ModelEntry, Suite, load_suite
    if args.suite:
        suites = [load_suite(s) for s in args.suite]
        if args.dataset or args.model:
            keep_d, keep_m = set(args.dataset or []), set(args.model or [])
            named = ({d.name for s in suites for d in s.datasets} | {m.name for s in suites for m in s.models}
                     | {m.key for s in suites for m in s.models})
            missing = sorted((keep_d | keep_m) - named)
            if missing:
                raise ValueError(f"--dataset/--model {missing} are not in the suite(s) {', '.join(args.suite)}")
            filtered = []
            for s in suites:
                ds = tuple(d for d in s.datasets if not keep_d or d.name in keep_d)
                ms = tuple(m for m in s.models if not keep_m or m.name in keep_m or m.key in keep_m)
                if ds and ms:
                    filtered.append(Suite(s.name, ds, ms, s.num_samples, s.seeds, s.description, s.source))
            suites = filtered
        return suites
    datasets = tuple(DatasetEntry(d) for d in (args.dataset or [DEFAULT_DATASET]))
    models = tuple(ModelEntry(m) for m in (args.model or _available_defaults()))
    return [Suite("ad hoc", datasets, models, args.num_samples or 100, tuple(args.seed or [0]))]


def _check_device(device: str | None) -> str | None:
    if device is None:
        return None
    import torch
    try:
        dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                           "cpu" if device == "auto" else device)
    except RuntimeError as err:
        raise ValueError(f"--device {device!r} is not a device torch knows: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: torch sees no CUDA device; use --device cpu or auto")
    return str(dev)


def _run(args, argv) -> int:
    from .bench.report import render
    from .bench.runner import plan_suites, run_plan
    from .bench.suites import SuiteError

    for flag, value, low in (("--num-samples", args.num_samples, 1), ("--windows", args.windows, 1),
                             ("--threads", args.threads, 1)):
        if value is not None and value < low:
            return _err(f"{flag} must be >= {low}, got {value}")
    if isinstance(args.time_limit, float) and args.time_limit <= 0:
        return _err(f"--time-limit must be > 0 seconds or 'none', got {args.time_limit:g}")
    try:
        device = _check_device(args.device)
        suites = _build_suites(args)
        if not suites:
            return _err("nothing to run: the --dataset/--model filters leave no dataset with a model")
        plan = plan_suites(suites, num_samples=args.num_samples, seeds=args.seed, windows=args.windows,
                           extra_options={"time_limit": None if args.time_limit == "none"
                                          else args.time_limit or DEFAULT_TIME_LIMIT},
                           validation=args.validation)
    except (SuiteError, ValueError) as err:
        return _err(str(err))
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    command = "forecasting " + " ".join(shlex.quote(a) for a in argv)
    out = Path(args.out)
    try:
        record = run_plan(plan, out, data_dir=args.data_dir, device=device, progress=not args.no_progress,
                          write_forecasts=not args.no_forecasts, retry_failed=args.retry_failed,
                          rerun_stale=args.rerun_stale, command=command,
                          log=lambda msg: print(msg, file=sys.stderr))
        page = render(out, args.report, plots=not args.no_plots)
    except KeyboardInterrupt:
        done = len(list((out / "cells").glob("*/*/*.json")))
        print(f"\ninterrupted: the finished cells are kept ({done} cell file(s) in {(out / 'cells').resolve()}); "
              f"rerun the same command to resume, or `forecasting report --out {shlex.quote(str(out))}` for the "
              "report of what has finished", file=sys.stderr)
        return 130
    except ValueError as err:  # e.g. a validation run into a test run's folder, a damaged run.json
        return _err(str(err))
    except OSError as err:  # e.g. --out not writable
        return _err(f"cannot write the run to --out {out}: {err}")
    print(page.read_text())
    print(f"report: {page.resolve()}")
    if not args.no_plots:
        print(f"plots: {(out / 'plots').resolve()}")
    print(f"results: {(out / 'results.json').resolve()}, {(out / 'results.csv').resolve()}")
    if not args.no_forecasts and (out / "forecasts").is_dir():
        print(f"forecasts: {(out / 'forecasts').resolve()}")
    import json
    done = json.loads((out / "results.json").read_text())["results"]
    failed = [f"{r['dataset']} / {r['model']}" for r in done if r.get("error")]
    lost = [s["dataset"] for s in record["skipped"] if not s.get("optional")]
    if failed:  # a CI job must see it: the page lists them under "Failed cells"
        print(f"{len(failed)} cell(s) failed ({', '.join(sorted(set(failed)))}); see 'Failed cells' in the report, "
              "and rerun with --retry-failed once fixed", file=sys.stderr)
    if lost:
        print(f"dataset(s) that could not be run: {', '.join(lost)} (see the log above)", file=sys.stderr)
    return 1 if failed or lost else 0


def _report(args) -> int:
    from .bench.report import render
    try:
        page = render(args.out, args.report, plots=not args.no_plots, plots_href=args.plots_href)
    except (FileNotFoundError, ValueError) as err:  # no run there, or a run.json that is not a run record
        return _err(str(err))
    print(f"report: {page.resolve()}")
    if not args.no_plots:
        print(f"plots: {(Path(args.out) / 'plots').resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _load_plugins([m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()])
    args = _parser().parse_args(argv)
    _load_plugins(args.plugin)
    if args.command == "list":
        return _list(args.what)
    if args.command == "report":
        return _report(args)
    if args.command == "run":
        return _run(args, argv)
    scen = _scenarios_module()
    if scen is not None and hasattr(scen, "run"):
        return scen.run(args)
    return _err(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
