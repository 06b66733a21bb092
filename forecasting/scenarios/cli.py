"""``forecasting scenarios``: turn a saved forecast into joint, coherent scenario files.

:func:`add_parser` adds the subcommand to a parent parser (``forecasting/cli.py``), :func:`run`
runs it; :data:`DESCRIPTION` is what ``--help`` shows.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

FORMATS = ("parquet", "npy", "pt")

DESCRIPTION = """Turn a forecast saved with Forecast.save into joint, coherent scenario files.

The forecast holds independent samples of some of the dataset's series. The dataset supplies their
history before each series' first forecast step, from which the dependence across series and steps
is learned (--method), and the static columns a hierarchy of sums is built from (--hierarchy).
Writes scenarios.parquet (or .npy with its .index.json / .pt, --format) and summary.json to --out.
A rerun into the same --out removes the scenario files of the earlier run (as its summary.json
lists them) that this run does not write again, and says so, so the folder holds one run's files.

example:
  forecasting scenarios forecast.pt --dataset walmart --data-dir ../shared/data \\
      --method schaake --hierarchy Store --hierarchy Type --reduce 50 --format parquet --out scenarios/
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``scenarios`` subcommand to an argparse ``subparsers`` object; returns its parser."""
    p = subparsers.add_parser("scenarios", help="turn a saved forecast into joint scenario files",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("forecast", help="a forecast saved with Forecast.save (torch file)")
    p.add_argument("--dataset", required=True, help="registered dataset holding the forecast's series and history")
    p.add_argument("--data-dir", default=None, help="data directory (default: $FORECASTING_DATA, then the cache)")
    p.add_argument("--method", choices=("schaake", "copula", "independent"), default="schaake",
                   help="dependence across series and steps (default: %(default)s)")
    p.add_argument("--transform", choices=("diff", "level", "seasonal_diff"), default="level",
                   help="history transform the dependence is learned from (default: %(default)s)")
    p.add_argument("--season", type=int, default=None, help="lag of 'seasonal_diff' (default: the dataset's season)")
    p.add_argument("--rank", type=int, default=10, help="copula: number of factors (default: %(default)s)")
    p.add_argument("--groups", default=None,
                   help="copula: static column whose groups get one more factor each (e.g. Store)")
    p.add_argument("--past-forecast", default=None,
                   help="copula: a saved forecast of an earlier window whose truth lies in the history; the "
                        "copula is fitted on the PIT of that truth (forecast-error dependence) instead of "
                        "the transformed history")
    p.add_argument("--paths", action="store_true",
                   help="keep each series' sample paths whole; only pair them across series")
    p.add_argument("--hierarchy", action="append", default=[],
                   help="static column of an aggregation level, finest first, repeatable (e.g. Store then Type); "
                        "each level must group whole groups of the one before unless --crossed")
    p.add_argument("--crossed", action="store_true",
                   help="allow --hierarchy levels that cross instead of nesting (e.g. Store and Dept)")
    p.add_argument("--no-total", action="store_true", help="no grand-total level")
    p.add_argument("--reduce", type=int, default=None, help="reduce to this many weighted scenarios")
    p.add_argument("--reduction", choices=("forward", "kmedoids"), default="forward",
                   help="reduction method (default: %(default)s)")
    p.add_argument("--format", action="append", choices=FORMATS, help="output format, repeatable (default: parquet)")
    p.add_argument("--out", required=True,
                   help="output folder (a rerun replaces the earlier run's scenario files there)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenario draws (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)
    return p


def _history(panel, forecast):
    """The dataset panel cut to the forecast's series and, for each, to the steps before its first
    forecast step."""
    from .core import ScenarioError
    pos = panel.item_ids.get_indexer(forecast.item_ids)
    if (pos < 0).any():
        as_str = panel.item_ids.astype(str).get_indexer(forecast.item_ids.astype(str))
        pos = np.where(pos < 0, as_str, pos)
    if (pos < 0).any():
        raise ScenarioError(f"the forecast has series the dataset does not: {forecast.item_ids[pos < 0][:5].tolist()}")
    sub = panel.select(pos)
    cut = sub.index.get_indexer(forecast.start)
    after_end = np.asarray(forecast.start == sub.index[-1] + pd.tseries.frequencies.to_offset(sub.freq))
    cut = np.where((cut < 0) & after_end, sub.num_steps, cut)
    if (cut < 1).any():
        bad = forecast.item_ids[cut < 1]
        raise ScenarioError(f"the forecast of series {bad[:5].tolist()} starts outside the dataset's history "
                            f"({sub.index[0]}..{sub.index[-1]})")
    # named as the forecast names them (the ids may have matched as strings only), so the dependence
    # and the hierarchy fitted on this history accept the forecast's series
    return dataclasses.replace(sub.truncate(torch.as_tensor(cut, dtype=torch.long)), item_ids=forecast.item_ids)


def _past_residuals(history, past, seed: int) -> torch.Tensor:
    """``[N, H']`` PIT of the truth of an earlier forecast ``past`` under its samples, rows in
    ``history``'s series order. The truth is read from ``history``, which ends before the new
    forecast starts: values at or after a series' cutoff are masked (NaN), never used."""
    from .core import ScenarioError
    from .dependence import forecast_pit
    hpos = history.item_ids.get_indexer(past.item_ids)
    if (hpos < 0).all():
        raise ScenarioError("the past forecast shares no series with the forecast")
    rows = np.nonzero(hpos >= 0)[0]
    hpos = hpos[rows]
    starts = pd.DatetimeIndex(past.start)[rows]
    start = history.index.get_indexer(starts)
    start = np.where((start < 0) & np.asarray(starts > history.index[-1]), history.num_steps, start)  # no truth yet
    if (start < 0).any():
        bad = past.item_ids[rows[start < 0]]
        raise ScenarioError(f"the past forecast of series {bad[:5].tolist()} starts outside the dataset's history "
                            f"({history.index[0]}..{history.index[-1]}) or off its {history.freq!r} grid")
    idx = torch.as_tensor(start)[:, None] + torch.arange(past.horizon)[None, :]
    inside = idx < history.num_steps
    idx = idx.clamp_max(history.num_steps - 1)
    hp = torch.as_tensor(hpos)
    y = history.target[hp].cpu().gather(1, idx)
    ok = history.observed[hp].cpu().gather(1, idx) & inside
    if not bool(ok.any()):
        raise ScenarioError("no value of the past forecast's window lies in the history before the forecast "
                            "starts: nothing to compute residuals from")
    sub = type(past)(past.samples[torch.as_tensor(rows)], past.item_ids[rows], past.start[rows], past.freq)
    return forecast_pit(sub, torch.where(ok, y, torch.zeros_like(y)), ok, seed=seed, item_ids=history.item_ids)


#: the scenario files a run may write into --out (summary.json lists those it wrote)
OUTPUT_NAMES = ("scenarios.parquet", "scenarios.npy", "scenarios.index.json", "scenarios.pt")


def _earlier_files(out: Path) -> set[str]:
    """Names of the scenario files an earlier run wrote into ``out`` (from its summary.json) that
    are still there; empty without a readable summary.json."""
    try:
        files = json.loads((out / "summary.json").read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    names = {Path(str(f)).name for f in files}
    names |= {Path(n).with_suffix(".index.json").name for n in names if n.endswith(".npy")}
    return {n for n in names if n in OUTPUT_NAMES and (out / n).is_file()}


def run(args) -> int:
    """Run the ``scenarios`` subcommand; 0 on success, 2 on bad input (message on stderr)."""
    from ..datasets import DatasetError, load
    from ..forecast import Forecast, atomic_write
    from .core import ScenarioError, ScenarioSet
    from .dependence import make_dependence
    from .export import write_numpy, write_parquet, write_torch
    from .hierarchy import CROSSED_HINT, Hierarchy
    from .reduction import reduce_scenarios

    try:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ScenarioError(f"--out {out} is a file, not a folder: give a folder for the scenario files")
        if args.season is not None and args.season < 1:
            raise ScenarioError(f"--season must be >= 1 (a lag in steps), got {args.season}")
        forecast = Forecast.load(args.forecast)
        ds = load(args.dataset, args.data_dir)
        history = _history(ds.panel, forecast)
        options = {}
        if args.method != "independent":
            options = {"transform": args.transform, "season": ds.task.season if args.season is None else args.season}
        if args.method == "copula":
            options["rank"] = args.rank
            if args.groups:
                options["groups"] = args.groups
        elif args.groups:
            raise ScenarioError("--groups is an option of --method copula")
        if args.paths:
            if args.method == "independent":
                raise ScenarioError("--paths is an option of --method schaake or copula")
            options["paths"] = True
        fit_options = {}
        if args.past_forecast:
            if args.method != "copula":
                raise ScenarioError("--past-forecast is an option of --method copula")
            fit_options["residuals"] = _past_residuals(history, Forecast.load(args.past_forecast), args.seed)
        dep = make_dependence(args.method, **options).fit(history, forecast.horizon, **fit_options)
        scen = ScenarioSet.from_forecast(forecast, dep.apply(forecast.samples, seed=args.seed,
                                                             item_ids=forecast.item_ids), method=dep.name)
        # series / scenarios: what the files hold (set below); input_*: the forecast's
        summary = {"forecast": str(args.forecast), "dataset": args.dataset, "method": dep.name,
                   "series": scen.num_series, "scenarios": scen.num_scenarios, "horizon": scen.horizon,
                   "input_series": forecast.num_series, "input_scenarios": forecast.num_samples}
        if args.past_forecast:
            u = fit_options["residuals"]
            summary["past_forecast"] = {"path": str(args.past_forecast),
                                        "series_with_residuals": int((~torch.isnan(u)).any(1).sum()),
                                        "independent_series": len(dep.independent_series_)}
        if args.reduce is not None:
            scen, red = reduce_scenarios(scen, args.reduce, method=args.reduction, progress=not args.no_progress)
            summary["reduction"] = {"method": red.method, "kept": scen.num_scenarios,
                                    "transport_distance": red.transport, "energy_distance": red.energy}
        if args.hierarchy:
            try:
                hier = Hierarchy.from_panel(history, args.hierarchy, total=not args.no_total, nested=not args.crossed)
            except ScenarioError as err:  # say it in the command line's terms
                raise ScenarioError(str(err).replace(CROSSED_HINT, "pass --crossed for crossed groupings")) from None
            scen = hier.aggregate_scenarios(scen, include_bottom=True)
            summary["hierarchy"] = {lv: len(hier.groups(lv)) for lv in hier.levels}
        summary["series"], summary["scenarios"] = scen.num_series, scen.num_scenarios
        earlier = _earlier_files(out)
        written = []
        for fmt in args.format or ["parquet"]:
            if fmt == "parquet":
                written.append(write_parquet(out / "scenarios.parquet", scen, progress=not args.no_progress))
            elif fmt == "npy":
                written.append(write_numpy(out / "scenarios.npy", scen, progress=not args.no_progress))
            else:
                written.append(write_torch(out / "scenarios.pt", scen))
        summary["files"] = [str(p) for p in written]
        stale = sorted(earlier - {p.name for p in written} - {p.with_suffix(".index.json").name for p in written
                                                              if p.suffix == ".npy"})
        if stale:
            summary["removed_from_earlier_run"] = stale
        atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
        for name in stale:
            (out / name).unlink(missing_ok=True)
        if stale:
            print(f"removed the earlier run's {', '.join(stale)} from {out} (this run wrote "
                  f"{', '.join(p.name for p in written)})", file=sys.stderr)
    except (ScenarioError, DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a missing forecast file, an --out that cannot be written
        print(f"error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


def main(argv=None) -> int:
    """Run the subcommand alone: ``python -m forecasting.scenarios.cli scenarios ...``."""
    parser = argparse.ArgumentParser(prog="forecasting")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
