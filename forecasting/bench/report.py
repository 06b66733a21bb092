"""The benchmark report: a markdown leaderboard with published anchors, and its plots.

``render(out_dir)`` reads a run folder (``run.json`` and the cell files), draws four PNGs per
dataset into ``out_dir/plots/<dataset>/`` and writes a markdown page (by default
``out_dir/leaderboard.md``; any path, with the plot links made relative to it). Per dataset: our
models sorted by WQL (mean over windows; mean ± sd over seeds when there are several), fit and
predict seconds per window, peak resident memory, then fev-bench's published rows where the
protocol matches (:mod:`forecasting.bench.anchors`), then the plots. Failed cells, skipped
datasets and model x dataset pairs a suite excluded are listed with their reasons.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..datasets import get_spec
from ..evaluation.plots import NOMINAL_LEVELS, plot_all
from ..forecast import atomic_write
from .anchors import FEV_CITATION, anchors_for
from .runner import code_fingerprint, planned_settings, read_cells, read_run_record, results_frame

__all__ = ["OURS", "aggregate_diagnostics", "render", "summary_table"]

#: this package's own models: picked first for the fan charts
OURS = ("deepar", "statespace")
#: peers shown in the fan charts when present
PEERS = ("gluonts_deepar", "autoarima", "autoets")

COLUMNS = [("wql", "WQL", 4), ("scaled_crps", "CRPS (scaled)", 4), ("mase", "MASE", 3), ("wape", "WAPE", 4),
           ("coverage_80", "cov 80%", 3), ("pit_coverage_80", "PIT cov 80%", 3), ("fit_seconds", "fit s", 1),
           ("predict_seconds", "predict s", 2), ("peak_rss_mb", "peak MB", 0)]


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x model: metrics averaged over windows per seed, then mean (and sd) over seeds;
    times are means per window; peak memory is the maximum. Failed cells are left out."""
    ok = frame[frame["error"].isna()].copy()
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "model", "windows", "seeds"] + [c for c, _, _ in COLUMNS])
    metric_cols = [c for c, _, _ in COLUMNS if c not in ("peak_rss_mb",)]
    per_seed = ok.groupby(["dataset", "model", "seed"], sort=False)[metric_cols].mean()
    g = per_seed.groupby(["dataset", "model"], sort=False)
    table = g.mean()
    sd = g.std()
    for c in ("wql", "scaled_crps", "mase"):
        table[f"{c}_sd"] = sd[c]
    gg = ok.groupby(["dataset", "model"], sort=False)
    table["peak_rss_mb"] = gg["peak_rss_mb"].max()
    table["windows"] = gg["window"].nunique()
    table["seeds"] = gg["seed"].nunique()
    return table.reset_index().sort_values(["dataset", "wql"], kind="stable")


def aggregate_diagnostics(records: list[dict]) -> dict[str, dict[str, dict]]:
    """dataset -> model -> diagnostics over all of its windows and seeds: PIT counts summed,
    coverage weighted by observed points, CRPS by step averaged; fans from the cell that has them."""
    acc: dict[str, dict[str, dict]] = {}
    for r in records:
        d = r.get("diagnostics")
        if r.get("error") or not d:
            continue
        a = acc.setdefault(r["dataset"], {}).setdefault(r["model"], {
            "pit_hist": [0] * len(d["pit_hist"]), "cov_sum": [0.0] * len(NOMINAL_LEVELS), "cov_w": 0.0,
            "steps": [], "fan": []})
        a["pit_hist"] = [x + y for x, y in zip(a["pit_hist"], d["pit_hist"])]
        w = float(r.get("observed_points") or 0)
        emp = d["coverage"]["empirical"]
        if w > 0 and all(e is not None for e in emp):
            a["cov_sum"] = [s + w * e for s, e in zip(a["cov_sum"], emp)]
            a["cov_w"] += w
        a["steps"].append(d["crps_by_step"])
        if d.get("fan"):
            a["fan"] = d["fan"]
    out: dict[str, dict[str, dict]] = {}
    for ds, models in acc.items():
        for m, a in models.items():
            steps = [[math.nan if v is None else v for v in s] for s in a["steps"]]
            H = max(len(s) for s in steps)
            mean_steps = []
            for h in range(H):
                vals = [s[h] for s in steps if h < len(s) and not math.isnan(s[h])]
                mean_steps.append(sum(vals) / len(vals) if vals else None)
            out.setdefault(ds, {})[m] = {
                "pit_hist": a["pit_hist"],
                "coverage": {"nominal": list(NOMINAL_LEVELS),
                             "empirical": [s / a["cov_w"] for s in a["cov_sum"]] if a["cov_w"] else
                             [None] * len(NOMINAL_LEVELS)},
                "crps_by_step": mean_steps,
                "fan": a["fan"],
            }
    return out


def _fan_models(table: pd.DataFrame, available: list[str], count: int = 4, ours: Sequence[str] = OURS) -> list[str]:
    """Columns of the fan chart: our models (then ``ours``: their labelled variants, best first), then
    the GluonTS/statsforecast peers, then the best by WQL, up to ``count``."""
    ranked = [m for m in table["model"] if m in available]
    picks = ([m for m in OURS if m in available] + [m for m in ranked if m in ours and m not in OURS]
             + [m for m in PEERS if m in available])
    picks = picks[:count - 1] + ranked  # keep room for the best model
    seen: list[str] = []
    for m in ([ranked[0]] if ranked else []) + picks:
        if m not in seen:
            seen.append(m)
    return seen[:count]


def _fmt(v, nd: int) -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return ""
    if abs(v) >= 1e6:
        return f"{v:.3g}"
    return f"{v:.{nd}f}"


def _env_line(env: dict) -> str:
    v = env.get("versions", {})
    return (f"{env.get('cpu_model')} ({env.get('logical_cpus')} logical CPUs, {env.get('torch_threads')} torch "
            f"threads, {env.get('memory_gb')} GB), GPU: {env.get('cuda') or 'none'}; "
            + ", ".join(f"{k} {val}" for k, val in v.items()))


def _rel(target: Path, page: Path) -> str:
    return Path(os.path.relpath(target.resolve(), page.resolve().parent)).as_posix()


def _time_limited_load(cells: list[dict], plan: dict, ds: str) -> list[str]:
    """``model load lo-hi, cpu/wall r, e1-e2 epochs (k of n cells stopped by the limit)`` for the
    models of ``ds`` that ran with a ``time_limit`` (cells that recorded their load only; epochs of
    the models that report them, ``epochs_``)."""
    limited = {m["name"] for m in plan["models"].get(ds, []) if m["options"].get("time_limit")}
    out = []
    for name in sorted(limited):
        mine = [r for r in cells if r["dataset"] == ds and r["model"] == name and r.get("load_at_start") is not None]
        if not mine:
            continue
        loads = [float(r["load_at_start"]) for r in mine]
        wall = sum(float(r.get("fit_seconds") or 0) for r in mine)
        cpu = sum(float(r.get("fit_cpu_seconds") or 0) for r in mine)
        stopped = sum(r.get("stopped_by") == "time_limit" for r in mine)
        lo, hi = f"{min(loads):.1f}", f"{max(loads):.1f}"
        span = lo if lo == hi else f"{lo}-{hi}"
        ratio = f"{cpu / wall:.2f}" if wall > 0 else "n/a"
        epochs = [int(r["epochs"]) for r in mine if r.get("epochs") is not None]  # models that say
        ran = "" if not epochs else (f", {min(epochs)} epochs" if min(epochs) == max(epochs)
                                     else f", {min(epochs)}-{max(epochs)} epochs")
        out.append(f"{name} load {span}, CPU/wall {ratio}{ran} ({stopped} of {len(mine)} stopped by the limit)")
    return out


def render(out_dir, report: str | os.PathLike | None = None, plots: bool = True,
           plots_href: str | None = None) -> Path:
    """Write the report of the run in ``out_dir`` to ``report`` (default ``out_dir/leaderboard.md``)
    and, with ``plots``, its PNGs to ``out_dir/plots/<dataset>/``. ``plots_href`` replaces the
    relative link to ``out_dir/plots`` (e.g. for a documentation page that sees the plots
    elsewhere). Returns the report's path."""
    out = Path(out_dir)
    run = read_run_record(out)
    page = Path(report) if report is not None else out / "leaderboard.md"
    plan = run["plan"]
    cells = [r for r in read_cells(out) if _planned(r, plan, run.get("device"))]
    frame = results_frame(cells)
    table = summary_table(frame)
    diags = aggregate_diagnostics(cells)
    href = plots_href.rstrip("/") if plots_href else _rel(out / "plots", page)
    env = run.get("environment", {})
    seeds = plan["seeds"]
    lines = ["# Leaderboard", "",
             ("Written by the `forecasting` benchmark command from the run in "
             f"`{_rel(out, page)}/` (cells, `results.json`, `results.csv`); never edited by hand."), "",
             "Produced by:", "", f"    {run.get('command') or '(command not recorded)'}", "",
             _status_line(run, cells, sum(_planned_cells(plan, d) for d in plan["datasets"])) + f" Machine: {_env_line(env)}.", "",
             f"Suites: {', '.join(s['name'] + (' (' + s['source'] + ')' if s.get('source') else '') for s in plan['suites'])}. "
             f"{plan['num_samples']} sample paths per series; seeds {', '.join(map(str, seeds))}"
             + (" (WQL, CRPS and MASE show mean ± sd over seeds)" if len(seeds) > 1 else "") + ".", "",
             ("Metrics (fev-bench's definitions, our sample paths): **WQL** = mean over q = 0.1..0.9 of "
             "2 Σ pinball / Σ|y|; **CRPS (scaled)** = Σ CRPS / Σ|y| from the samples; **MASE** and **WAPE** of the "
             "sample median (MASE pooled, seasonality as fev); **cov 80%** = share of truth inside the central 80% "
             "interval; **PIT cov 80%** = share of randomised PIT values in [0.1, 0.9], the calibration measure "
             "for counts (an interval of integer paths also covers the ties at its ends, so cov 80% overstates "
             "it there; both are 0.8 when calibrated). Metrics are means over the task's rolling windows; fit and "
             "predict seconds are per window; "
             "peak MB is the process's peak resident memory during fit and predict (statsforecast models fit and "
             "forecast in one call, counted as fit); seconds are wall-clock on the machine named above, other "
             "processes included. Lower is better except coverage (nominal 0.8). "
             "**Bold**: this package's models."), ""]
    if plan.get("validation"):
        lines[0] = "# Leaderboard: validation windows"
        moved = [f"{d['name']} {d['validation_before']} steps" for d in plan["datasets"] if d.get("validation_before")]
        lines[2:2] = [("**Validation windows**: each task's windows moved back so that they end before its "
                       "test windows start (`--validation`"
                       + (f"; moved back by the suite's `validation_before`: {', '.join(moved)}" if moved else "")
                       + "). For choosing settings; the test windows are not scored here."), ""]
    skipped = run.get("skipped") or []
    for ds_entry in plan["datasets"]:
        ds = ds_entry["name"]
        part = table[table["dataset"] == ds]
        # this package's rows, labelled variants included (a label names its model in the plan)
        ours = {m["name"] for m in plan["models"].get(ds, []) if m.get("model", m["name"]) in OURS} | set(OURS)
        skip = [s for s in skipped if s["dataset"] == ds]
        lines += [f"## {ds}", ""]
        if skip:
            lines += [f"Not run: {skip[0]['reason']}", ""]
        if len(part):
            heads = ["model"] + [h for _, h, _ in COLUMNS] + ["windows", "seeds"]
            lines += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
            for _, r in part.iterrows():
                row = [f"**{r['model']}**" if r["model"] in ours else str(r["model"])]
                for c, _, nd in COLUMNS:
                    txt = _fmt(r[c], nd)
                    if len(seeds) > 1 and f"{c}_sd" in part and not pd.isna(r.get(f"{c}_sd")):
                        txt += f" ± {_fmt(r[f'{c}_sd'], nd)}"
                    row.append(txt)
                row += [str(int(r["windows"])), str(int(r["seeds"]))]
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
        anchors = [] if plan.get("validation") else anchors_for(ds)  # published numbers are test-window ones
        if anchors:
            lines += [f"Published on the same protocol (fev-bench, task `{anchors[0].task}`; {FEV_CITATION}), "
                      "beside our run of the same method where we have one (`a / b`: WQL from a, MASE and WAPE "
                      "from b):", "",
                      "| published model | WQL | MASE | WAPE | ours, same method | our WQL | our MASE | our WAPE | "
                      "note | source |", "|---|---|---|---|---|---|---|---|---|---|"]
            scores = {r["model"]: r for _, r in part.iterrows()}
            for a in anchors:
                names = (a.ours or "").split(" / ")
                first, last = scores.get(names[0]), scores.get(names[-1])
                mine = [_fmt(first["wql"], 4) if first is not None else "",
                        _fmt(last["mase"], 3) if last is not None else "",
                        _fmt(last["wape"], 4) if last is not None else ""]
                lines.append(f"| {a.model} | {_fmt(a.wql, 4)} | {_fmt(a.mase, 4)} | {_fmt(a.wape, 4)} | "
                             f"{a.ours or ''} | " + " | ".join(mine) + f" | {a.note} | [{a.source.rsplit('/', 1)[-1]}]({a.source}) |")
            lines.append("")
        elif ds == "m5_last56":
            lines += [("No published anchor: fev-bench's `m5_1D` forecasts the same 28 days from the full "
                      "history; here the models see only 28 days, so the numbers are not comparable."), ""]
        opts = [f"{m['name']}" + (f" ({m['model']})" if m.get("model") else "") + " "
                + ", ".join(f"{k}={v}" for k, v in m["options"].items())
                for m in plan["models"].get(ds, []) if m["options"] or m.get("model")]
        if opts:
            lines += ["Model options: " + "; ".join(opts) + " (time_limit: training seconds per window).", ""]
        timed = _time_limited_load(cells, plan, ds)
        if timed:
            lines += [("Time-limited fits train for fewer steps when other processes share the cores, and for "
                       "a varying number of steps even on an idle machine (the GluonTS peer's walmart cell trained "
                       "20 epochs in one run and 26 in another, same load and CPU seconds). Load average at each "
                       "cell's start (range over windows), fit CPU seconds / fit wall seconds (summed over "
                       "windows; about 1 per torch thread on an idle machine) and the epochs trained, where the "
                       "model reports them: " + "; ".join(timed) + "."), ""]
        excl = [e for e in plan.get("excluded", []) if e["dataset"] == ds]
        if excl:
            lines += ["Not run here by the suite's choice: "
                      + "; ".join(f"{e['model']} ({e['why']})" for e in excl) + ".", ""]
        if not plots and ds in diags and (out / "plots" / ds / "fan.png").exists():
            lines += _plot_links(href, ds)
        if plots and ds in diags:
            avail = [m for m in table[table["dataset"] == ds]["model"] if m in diags[ds]]
            try:
                plot_all({m: diags[ds][m] for m in avail}, out / "plots" / ds, ds,
                         fan_models=_fan_models(part, avail, ours=tuple(ours)))
                lines += _plot_links(href, ds)
            except ValueError as err:
                lines += [f"(no plots: {err})", ""]
    failed = frame[frame["error"].notna()]
    if len(failed):
        lines += ["## Failed cells", "", "| dataset | model | window | seed | error |", "|---|---|---|---|---|"]
        for _, r in failed.iterrows():
            err = str(r["error"])[:300].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r['dataset']} | {r['model']} | {r['window']} | {r['seed']} | {err} |")
        lines.append("")
    have = frame.groupby("dataset").size().to_dict() if len(frame) else {}
    skipped_names = {s["dataset"] for s in skipped}
    missing, not_run = [], []
    for d in plan["datasets"]:
        gap = _planned_cells(plan, d) - have.get(d["name"], 0)
        if gap > 0:
            (not_run if d["name"] in skipped_names else missing).append(f"{d['name']} {gap}")
    if missing or not_run:
        lines += ["## Missing cells", ""]
        if missing:
            lines += [(f"Planned cells without a result yet: {', '.join(missing)}. Rerun the command above to finish "
                      "them (finished cells are kept)."), ""]
        if not_run:
            lines += [f"Cells of datasets that could not be loaded (see their sections): {', '.join(not_run)}.", ""]
    kinds = {(ds, m["name"]): m.get("model", m["name"]) for ds, ms in plan["models"].items() for m in ms}
    stale = Counter(f"{r['dataset']} / {r['model']}" for r in cells  # cells that ran code other than this checkout's
                    if (r["dataset"], r["model"]) in kinds
                    and r.get("code") != (code_fingerprint(kinds[r["dataset"], r["model"]], r["dataset"])
                                          or r.get("code")))  # an unknown current fingerprint flags nothing
    if stale:
        lines += ["## Cells computed by other code", "",
                  ("These cells ran code of their model (or of the package modules it imports, or of the "
                   "metrics) that differs from this checkout's, or were computed before cells recorded their "
                   "code: " + ", ".join(f"{k} ({n})" for k, n in stale.items())
                   + ". Run the command above with `--rerun-stale` to refresh them."), ""]
    others = _other_plans(out, plan)
    if others:
        shown = ", ".join(others[:6]) + (f" and {len(others) - 6} more" if len(others) > 6 else "")
        lines += ["## Cells of other plans", "",
                  (f"`cells/` also holds cells of {len(others)} dataset x model pair(s) that the last command did "
                   f"not plan ({shown}), from earlier commands into this folder: they are not shown here. Rerun "
                   "the full command (e.g. every suite and model) into this folder to show them again; their "
                   "finished cells are reused."), ""]
    text = "\n".join(lines)
    atomic_write(page, lambda tmp: Path(tmp).write_text(text))
    return page


def _planned_cells(plan: dict, d: dict) -> int:
    """Cells the plan holds for dataset entry ``d``: models x windows x seeds."""
    return (len(plan["models"].get(d["name"], [])) * (d.get("windows") or get_spec(d["name"]).task.num_windows)
            * len(plan["seeds"]))


def _status_line(run: dict, cells: list[dict], planned: int) -> str:
    """How many planned cells have results, when they were computed, and whether the last
    invocation finished (a run stopped by Ctrl-C, or still running, has no ``finished`` time)."""
    stamps = sorted(c["finished_at"] for c in cells if c.get("finished_at"))
    when = f"computed between {stamps[0]} and {stamps[-1]}" if stamps else "none computed yet"
    if run.get("finished") is None:
        return (f"Run interrupted (or still running): {len(cells)} of {planned} planned cells have results, {when} "
                f"(the last invocation started {run.get('started')} and did not finish; rerun its command to "
                "resume).")
    return (f"{run.get('completed', len(cells))} of {run.get('cells', planned)} planned cells have results, {when} "
            f"(a run resumes: the last invocation ran {run.get('started')} to {run.get('finished')}).")


def _other_plans(out: Path, plan: dict) -> list[str]:
    """``dataset / model`` folders under ``out/cells`` that this plan does not hold: cells an
    earlier command with a wider plan (e.g. the full suite) left there."""
    planned = {(ds, m["name"]) for ds, ms in plan["models"].items() for m in ms}
    return sorted(f"{p.parent.name} / {p.name}" for p in (out / "cells").glob("*/*")
                  if p.is_dir() and (p.parent.name, p.name) not in planned and any(p.glob("*.json")))


def _plot_links(href: str, ds: str) -> list[str]:
    return [f"![fan charts]({href}/{ds}/fan.png)", "",
            (f"![PIT histograms]({href}/{ds}/pit.png) ![coverage]({href}/{ds}/coverage.png) "
             f"![CRPS by step]({href}/{ds}/crps_by_step.png)"), ""]


def _planned(record: dict, plan: dict, device: str | None = None) -> bool:
    """Whether a cell file belongs to the plan (a folder can hold cells of earlier, wider runs, and
    cells made with earlier settings: those are stale, not this run's results)."""
    ds = record.get("dataset")
    if ds not in plan["models"] or record.get("seed") not in plan["seeds"]:
        return False
    want = planned_settings(plan, ds, record.get("model"), device)
    if want is None or record.get("settings") != want:
        return False
    entry = next(d for d in plan["datasets"] if d["name"] == ds)
    total = get_spec(ds).task.num_windows
    n = entry.get("windows") or total
    return total - n <= int(record.get("window", -10**9)) < total
