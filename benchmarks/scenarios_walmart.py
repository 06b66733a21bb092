"""Scenario generator on walmart's test window: dependence, coherence, decisions, reduction, speed.

    python benchmarks/scenarios_walmart.py --data-dir ../shared/data            # writes results/scenarios.md
    python benchmarks/scenarios_walmart.py --model statespace                   # another forecast source
    python benchmarks/scenarios_walmart.py --split val --stream-scenarios 0     # train-only validation window

The window is walmart's last 39 weeks cut at one date for every series (``align="grid"``: 2,899 of
the 2,936 series end on the last week, so this is fev's test window for them; the 37 that stop
earlier have no truth after their end). The dependence is learned from the training panel of the
window only. Multivariate scores use each series divided by the mean abs(y) of its training history.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import scoringrules as sr
import torch

import forecasting
from forecasting.evaluation.metrics import energy_score
from forecasting.forecast import Forecast, atomic_write
from forecasting.models.registry import make_model
from forecasting.scenarios import (
    GaussianCopula,
    Hierarchy,
    Independent,
    InventorySimulator,
    ScenarioStream,
    SchaakeShuffle,
    base_stock_levels,
    joint_scenarios,
    kpi_features,
    level_metrics,
    point_base_stock,
    reduce_scenarios,
    run_policy,
    write_parquet,
)

HERE = Path(__file__).resolve().parent


class Timer:
    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> dict:
        return {"wall_s": round(time.perf_counter() - self.wall, 2), "cpu_s": round(time.process_time() - self.cpu, 2)}


def methods(args) -> dict:
    season = 52
    out = {"independent": Independent()}
    if "schaake" in args.methods:
        out["schaake"] = SchaakeShuffle(args.transform, season=season)
    if "copula" in args.methods:
        out["copula"] = GaussianCopula(args.rank, args.transform, season=season)
    return out


def scale_of(y: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """``[N]`` mean abs(y) over observed history (the multivariate scores' unit)."""
    return ((y.abs() * ok).sum(1) / ok.sum(1).clamp_min(1)).clamp_min(1e-6)


def multivariate_scores(values, y, scale, stores, store_values, store_y, store_scale, members: int) -> dict:
    """ES and VS (scoringrules, numba backend) on blocks; ES over every dimension with the package's
    chunked energy_score (exact, all scenarios). ``values`` ``[N, S, H]`` of series with complete truth."""
    v = (values / scale[:, None, None]).double()
    t = (y / scale[:, None]).double()
    m = v[:, :members].numpy()  # scenarios are exchangeable: the first `members` are a random subset
    out = {}
    # (A) each series' path over the horizon: temporal dependence
    out["es_series_paths"] = float(sr.es_ensemble(t.numpy(), m, backend="numba").mean())
    out["vs_series_paths"] = float(sr.vs_ensemble(t.numpy(), m, backend="numba").mean())
    # (B) each store's departments at each step: dependence across series
    es, vs, n = 0.0, 0.0, 0
    for g in np.unique(stores):  # 45 stores of different sizes: one batched call each
        rows = np.nonzero(stores == g)[0]
        if len(rows) < 2:
            continue
        f = np.ascontiguousarray(m[rows].transpose(2, 1, 0))  # [H, M, D]
        o = np.ascontiguousarray(t.numpy()[rows].T)  # [H, D]
        es += float(sr.es_ensemble(o, f, backend="numba").sum())
        vs += float(sr.vs_ensemble(o, f, backend="numba").sum())
        n += f.shape[0]
    out["es_store_cross_section"], out["vs_store_cross_section"] = es / n, vs / n
    # (C) store totals x steps, one joint vector
    sv = (store_values / store_scale[:, None, None]).double()
    st = (store_y / store_scale[:, None]).double()
    flat = sv[:, :members].permute(1, 0, 2).reshape(1, members, -1).numpy()
    out["es_store_totals"] = float(sr.es_ensemble(st.reshape(1, -1).numpy(), flat, backend="numba")[0])
    out["vs_store_totals"] = float(sr.vs_ensemble(st.reshape(1, -1).numpy(), flat, backend="numba")[0])
    # (D) every series x step (package's energy_score: chunked cdist, O(M^2 N H))
    k = min(v.shape[1], 4 * members)
    out["es_all_series"] = float(energy_score(v[:, :k].permute(1, 0, 2).reshape(1, k, -1).float(),
                                              t.reshape(1, -1).float())[0])
    return out


def _fmt(x, digits=4):
    return f"{x:,.{digits}f}" if isinstance(x, float) else str(x)


def _choice_lines(r: dict) -> list[str]:
    if "transform_choice" not in r:
        return []
    c = r["transform_choice"]
    lines = ["## History transform, chosen on the validation window", "",
             (f"Rule: {c['rule']}. Chosen: `{c['chosen']}` (from `{c['file']}`, {next(iter(c['transforms'].values()))['model']} "
              "forecast); the test window was scored once, with it."), "",
             "| transform | mean score / independent | blocks below independent | Store 80 % coverage | Store CRPS |",
             "|---|---|---|---|---|"]
    for t, v in c["transforms"].items():
        below = ", ".join(f"{n} {k}/7" for n, k in v["blocks_below_independent"].items())
        cov = ", ".join(f"{n} {100 * x:.1f} %" for n, x in v["store_coverage_80"].items() if n != "independent")
        crps = ", ".join(f"{n} {x:,.0f}" for n, x in v["store_crps"].items())
        lines.append(f"| {t} | {v['mean_relative_score']:.4f} | {below} | {cov} | {crps} |")
    if "note" in c:
        lines += ["", c["note"] + "."]
    return [*lines, ""]


def markdown(r: dict) -> str:
    """The results page, written from the run's JSON (never by hand)."""
    m = r["methods"]
    names = list(m)
    joint = [n for n in names if n != "independent"]
    lines = [
        "# Scenario generator on walmart (issue #5)", "",
        (f"Written by `{r['command']}` ({r['model']} forecast, {r['num_scenarios']} scenarios, split `{r['split']}`, "
        f"history transform `{r['transform']}`, copula rank {r['rank']})."), "",
        (f"Machine: {r['machine']}; load average {r['load_average_at_start'][0]:.1f} at the start and "
        f"{r['load_average_at_end'][0]:.1f} at the end (the 2 cores were shared with other jobs, so wall "
        "times are inflated; CPU seconds are what the work costs)."), "",
        (f"Window: the last 39 weeks cut at one date for every series (`align='grid'`); {r['series']['all']} series, "
        f"{r['series']['complete_truth']} with truth at every step. Dependence is learned from the window's training "
        "panel only. Hierarchy: dept-in-store series -> Store (45) -> Type (3) -> total."), "",
        *_choice_lines(r),
        "## Done-when criteria", "",
        "| criterion | result | pass |", "|---|---|---|",
    ]
    ind = m["independent"]
    mv_keys = [k for k in ind if k.startswith(("es_", "vs_"))]
    for n in joint:
        better = [k for k in mv_keys if m[n][k] < ind[k]]
        lines.append(f"| {n}: lower ES and VS than independent samples (all {len(mv_keys)} blocks) | "
                     f"lower on {len(better)}/{len(mv_keys)} | {'yes' if len(better) == len(mv_keys) else 'no'} |")
    lv = {n: {row["level"]: row for row in m[n]["levels"]} for n in names}
    for n in joint:
        for level in ("Store", "total"):
            a, b = lv[n][level]["crps"], lv["independent"][level]["crps"]
            lines.append(f"| {n}: CRPS of {level} aggregates below independent | {_fmt(a, 0)} vs {_fmt(b, 0)} | "
                         f"{'yes' if a < b else 'no'} |")
        cov = lv[n]["Store"]["coverage_80"]
        lines.append(f"| {n}: 80 % coverage at store level in 75-85 % | {100 * cov:.1f} % | "
                     f"{'yes' if 0.75 <= cov <= 0.85 else 'no'} |")
    d = r["decisions"]
    pt = min(d["point:mean"]["total_cost"], d["point:median"]["total_cost"])
    for n in joint:
        c = d[f"scenarios:{n}"]["total_cost"]
        lines.append(f"| {n}: base stock from scenarios costs less than from the point forecast (realised demand) | "
                     f"{_fmt(c, 0)} vs {_fmt(pt, 0)} (best point) | {'yes' if c < pt else 'no'} |")
    red = r["reduction"]
    for how in red["variants"]:
        worst = max(abs(v) for v in red[how]["relative_difference"].values())
        lines.append(f"| reduction {r['num_scenarios']} -> {red[how]['k']} ({how}): KPI means within 2 % | "
                     f"largest difference {100 * worst:.2f} % | {'yes' if worst <= 0.02 else 'no'} |")
    for n in joint:
        t = m[n]["time_fit_join_aggregate"]
        lines.append(f"| {n}: {r['num_scenarios']} joint coherent scenarios, all series, <= 10 s | "
                     f"{t['wall_s']} s wall, {t['cpu_s']} s CPU | {'yes' if t['cpu_s'] <= 10 else 'no'} (CPU) |")
    if "stream" in r:
        st = r["stream"]
        lines.append(f"| {st['scenarios']:,} scenarios x {st['series_including_aggregates']:,} series and aggregates x 39 "
                     f"steps streamed to parquet, peak RSS <= 2 GB | {st['peak_rss_mb']:,} MB | "
                     f"{'yes' if st['peak_rss_mb'] <= 2048 else 'no'} |")
    lines += ["", "## Multivariate scores (lower is better)", "",
              ("Series scaled by the mean abs(y) of their training history. ES/VS from `scoringrules` (numba "
              f"backend, the first {r.get('members', 100)} scenarios: the scenarios are exchangeable); the last row "
              f"is the package's chunked `energy_score` over every series and step with the first {4 * r.get('members', 100)}."), "",
              "| block | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    labels = {"es_series_paths": "ES, each series' 39-step path", "vs_series_paths": "VS (p=0.5), each series' path",
              "es_store_cross_section": "ES, a store's departments at one step",
              "vs_store_cross_section": "VS, a store's departments at one step",
              "es_store_totals": "ES, 45 store totals x 39 steps", "vs_store_totals": "VS, 45 store totals x 39 steps",
              "es_all_series": "ES, all series x steps (package)"}
    for k in mv_keys:
        lines.append(f"| {labels.get(k, k)} | " + " | ".join(_fmt(m[n][k]) for n in names) + " |")
    lines += ["", "## Univariate scores by level", "", "| level | metric | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(names)]
    for level in lv["independent"]:
        for metric, digits in (("crps", 1), ("scaled_crps", 4), ("wql", 4), ("coverage_50", 3), ("coverage_80", 3),
                               ("coverage_95", 3)):
            lines.append(f"| {level} | {metric} | " + " | ".join(_fmt(lv[n][level][metric], digits) for n in names) + " |")
    lines += ["", "Levels are sums over the series with truth at every step ("
              + ", ".join(f"{k} {v['nodes']:,} nodes" for k, v in lv["independent"].items()) + ").", "",
              "## Decisions: base-stock levels on the realised demand", "",
              (f"Periodic review every week, lead time {r.get('lead_time', 2)} weeks, lost sales, holding 1 and shortage 9 "
              "per unit (critical ratio 0.9), returns back on the shelf; series with complete truth. Levels: the 0.9 "
              "quantile of demand over the protection interval from the scenarios, or the point forecast's sum "
              "over it."), "",
              "| levels from | total cost | holding | shortage | fill rate |", "|---|---|---|---|---|"]
    for k, v in d.items():
        lines.append(f"| {k} | {_fmt(v['total_cost'], 0)} | {_fmt(v['holding_cost'], 0)} | {_fmt(v['shortage_cost'], 0)} | "
                     f"{v['fill_rate']:.4f} |")
    lines += ["", (f"## Reduction {r['num_scenarios']} -> {r.get('reduce_to', 50)} "
              f"({red['method_scenarios']} scenarios)"), "",
              "Inventory simulator KPI means (base stock from the full set) on the full and the reduced sets.", "",
              ("Distances on `values`: every series and step of a scenario (the default); on `store_kpis`: each "
               "store's simulated holding and shortage cost in that scenario, each column divided by its standard "
               "deviation across scenarios (`kpi_features`; scenarios only, never the realised demand)."), "",
              "| KPI | full | " + " | ".join(red["variants"]) + " |", "|---|---|" + "---|" * len(red["variants"])]
    for k in red["full"]:
        lines.append(f"| {k} | {_fmt(red['full'][k], 2)} | " + " | ".join(
            f"{_fmt(red[v]['mean'][k], 2)} ({100 * red[v]['relative_difference'][k]:+.2f} %)" for v in red["variants"]) + " |")
    for how in red["variants"]:
        x = red[how]
        extra = (f" (+ {x['feature_time']['cpu_s']} s CPU to simulate the {x['dims']} features)"
                 if "feature_time" in x else "")
        lines.append(f"\n{how}: transport distance {x['transport']:,.2f}, energy distance {x['energy']:,.2f}, "
                     f"weights sum {x['weights_sum']:.12f}, {x['time']['cpu_s']} s CPU{extra}.")
    lines += ["", "## Speed and memory", "",
              (f"Forecast ({r['model']}, {r['num_scenarios']} samples for every series): {r['forecast_time']['wall_s']} s wall, "
              f"{r['forecast_time']['cpu_s']} s CPU (the model's cost, not the scenario generator's"
              + ("; fitted once, then read back from the cache" if "cached" in r["forecast_time"] else "") + ")."), ""]
    for n in names:
        t = m[n]["time_fit_join_aggregate"]
        lines.append(f"- {n}: fit on the history + join + every aggregate ({m[n]['nodes']:,} nodes): "
                     f"{t['wall_s']} s wall, {t['cpu_s']} s CPU")
    if "stream" in r:
        st = r["stream"]
        lines += ["", (f"Streaming: {st['scenarios']:,} Schaake scenarios generated {st['chunk']} at a time (model sampling "
                  f"included) and written with every aggregate: {st['rows']:,} rows, {st['file_gb']} GB parquet (zstd), "
                  f"peak RSS {st['peak_rss_mb']:,} MB of the writing process, {st['wall_s']} s wall, {st['cpu_s']} s CPU"
                  + (f" (`{st['command']}`)." if "command" in st else "."))]
    return "\n".join(lines) + "\n"


def cached_forecast(args, ds, train, H):
    """Fit ``args.model`` on ``train`` and sample ``args.num_scenarios`` paths (seed 0), or read them back
    from ``args.cache_dir`` (the statespace model takes minutes to fit). The key holds the model, split,
    sample count and the training panel's shape and end, so a different window never reuses a file."""
    key = (f"walmart_{args.model}_{args.split}_{args.num_scenarios}_s{train.num_series}_t{train.num_steps}"
           f"_end{int(train.end.max())}.pt")
    path = Path(args.cache_dir) / key if args.cache_dir else None
    if path is not None and path.exists() and not args.refit:
        meta = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() else {}
        fc = Forecast.load(path)
        if fc.num_series != train.num_series or fc.horizon != H or fc.num_samples != args.num_scenarios:
            raise ValueError(f"cached forecast {path} has shape {tuple(fc.samples.shape)}; "
                             f"expected {(train.num_series, args.num_scenarios, H)} (rerun with --refit)")
        print(f"read the {args.model} forecast from {path}", flush=True)
        return fc, {**meta.get("forecast_time", {}), "cached": str(path)}
    timer = Timer()
    model = make_model(args.model, ds.task).fit(train, H)
    fc = model.predict(train, args.num_scenarios, seed=0)
    t = timer.stop()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fc.save(path)
        path.with_suffix(".json").write_text(json.dumps({"forecast_time": t}))
    return fc, t


MV_KEYS = ("es_series_paths", "vs_series_paths", "es_store_cross_section", "vs_store_cross_section",
           "es_store_totals", "vs_store_totals", "es_all_series")


def choose_transform(paths: list[str]) -> dict:
    """The history transform from validation runs (one JSON per transform, ``--split val``).

    Rule, fixed before any run: the lowest mean, over the joint methods and the 7 ES/VS blocks, of
    the score relative to independent samples (the dependence is what the transform decides)."""
    runs = [json.loads(Path(q).read_text()) for q in paths]
    if any(r["split"] != "val" for r in runs):
        raise ValueError("choose the transform on validation runs only (--split val)")
    table = {}
    for r in runs:
        m = r["methods"]
        ratios = {n: {k: m[n][k] / m["independent"][k] for k in MV_KEYS} for n in m if n != "independent"}
        store = {n: next(x for x in m[n]["levels"] if x["level"] == "Store") for n in m}
        table[r["transform"]] = {
            "mean_relative_score": float(np.mean([v for d in ratios.values() for v in d.values()])),
            "blocks_below_independent": {n: sum(v < 1 for v in d.values()) for n, d in ratios.items()},
            "relative_scores": ratios,
            "store_crps": {n: store[n]["crps"] for n in m}, "store_coverage_80": {n: store[n]["coverage_80"] for n in m},
            "model": r["model"], "command": r["command"]}
    chosen = min(table, key=lambda t: table[t]["mean_relative_score"])
    out = {"rule": ("lowest mean over joint methods and ES/VS blocks of score / independent score, "
                    "on the validation window (39 weeks before the test window)"),
           "chosen": chosen, "transforms": table}
    if "seasonal_diff" not in table:
        out["note"] = ("seasonal_diff (season 52) is no candidate: the validation window's history is 65 weeks, "
                       "13 seasonal differences, fewer than one 39-week window for the Schaake shuffle")
    return out


def _stream_result(args) -> dict:
    """The JSON line of a separate ``--stream-child`` run (its command: the one below with ``--stream-child``)."""
    return {**json.loads(Path(args.stream_json).read_text().strip().splitlines()[-1]),
            "scenarios": args.stream_scenarios, "chunk": args.stream_chunk}


def stream_child(args) -> int:
    """Generate and write the streamed scenarios (run in a fresh process to measure its peak RSS)."""
    torch.set_num_threads(1)
    ds = forecasting.load("walmart", args.data_dir)
    window = ds.panel.windows(ds.task.horizon, 1, align="grid")[0]
    train = window.train
    model = make_model(args.model, ds.task).fit(train, ds.task.horizon)
    dep = SchaakeShuffle(args.transform, season=52).fit(train, ds.task.horizon)
    hier = Hierarchy.from_panel(ds.panel, ["Store", "Type"])
    stream = ScenarioStream.generate(lambda n, s: model.predict(train, n, s), dep, args.stream_scenarios,
                                     chunk_size=args.stream_chunk, seed=0, hierarchy=hier, progress=False)
    timer = Timer()
    path = write_parquet(args.stream_path, stream, chunk_size=args.stream_chunk)
    t = timer.stop()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": stream.num_scenarios * stream.num_series * stream.horizon,
                      "series_including_aggregates": stream.num_series, "file_gb": round(path.stat().st_size / 1e9, 2),
                      "peak_rss_mb": round(peak_mb), **t}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--model", default="seasonal_naive", help="forecast source from the model registry")
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="val: the 39 weeks before the test window, history before them only")
    p.add_argument("--num-scenarios", type=int, default=1000)
    p.add_argument("--methods", nargs="+", default=["schaake", "copula"])
    p.add_argument("--transform", default="level", choices=["diff", "level", "seasonal_diff"])
    p.add_argument("--rank", type=int, default=10, help="copula factors")
    p.add_argument("--members", type=int, default=100,
                   help="scenarios scored by scoringrules (ES is O(M^2)); the all-series ES uses 4x as many")
    p.add_argument("--reduce-to", type=int, default=50)
    p.add_argument("--lead-time", type=int, default=2)
    p.add_argument("--stream-scenarios", type=int, default=10_000, help="0 skips the streaming run")
    p.add_argument("--stream-chunk", type=int, default=100)
    p.add_argument("--stream-path", default="/tmp/walmart_scenarios.parquet")
    p.add_argument("--keep-stream", action="store_true", help="keep the streamed parquet file")
    p.add_argument("--out", default=str(HERE / "results" / "scenarios"))
    p.add_argument("--stream-json", default=None,
                   help="use the JSON line a previous `--stream-child` run printed instead of streaming again")
    p.add_argument("--markdown-only", default=None, help="rewrite the .md from this JSON and stop")
    p.add_argument("--cache-dir", default="/tmp/scenarios_walmart_forecasts",
                   help="where fitted forecasts are kept so re-runs do not refit ('' disables)")
    p.add_argument("--refit", action="store_true", help="fit the model even when a cached forecast exists")
    p.add_argument("--forecast-only", action="store_true", help="fit (or read) the forecast, cache it and stop")
    p.add_argument("--choose-transform", nargs="+", default=None, metavar="VAL_JSON",
                   help="pick the history transform from these --split val runs, write <out>.json and stop")
    p.add_argument("--val-choice", default=None,
                   help="JSON written by --choose-transform: use its transform and report the choice")
    p.add_argument("--stream-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.stream_child:
        return stream_child(args)
    out = Path(args.out)
    if args.choose_transform:
        choice = choose_transform(args.choose_transform)
        atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(choice, indent=1)))
        print(json.dumps({t: v["mean_relative_score"] for t, v in choice["transforms"].items()}), "->", choice["chosen"])
        return 0
    val_choice = None
    if args.val_choice:
        val_choice = json.loads(Path(args.val_choice).read_text())
        if args.split != "test":
            raise ValueError("--val-choice is for the test run")
        args.transform = val_choice["chosen"]
    if args.markdown_only:  # rewrite the page from a run's JSON, adding a separate streaming run if given
        report = json.loads(Path(args.markdown_only).read_text())
        if args.stream_json:
            report["stream"] = _stream_result(args)
            report["command"] = report["command"].split(" && ")[0] + " && python " + " ".join(
                sys.argv if argv is None else [sys.argv[0], *argv])
            atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
        atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text(markdown(report)))
        return 0
    torch.set_num_threads(1)
    report: dict = {"command": "python benchmarks/scenarios_walmart.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    "model": args.model, "split": args.split, "num_scenarios": args.num_scenarios,
                    "transform": args.transform, "rank": args.rank, "members": args.members,
                    "lead_time": args.lead_time, "reduce_to": args.reduce_to, "machine": f"{platform.processor() or platform.machine()}, "
                    f"{psutil.cpu_count()} cores, torch threads 1", "load_average_at_start": os.getloadavg()}

    if val_choice is not None:
        report["transform_choice"] = {**val_choice, "file": args.val_choice}
    ds = forecasting.load("walmart", args.data_dir)
    H = ds.task.horizon
    panel = ds.panel if args.split == "test" else ds.panel.truncate(torch.full_like(ds.panel.end, ds.panel.num_steps - H))
    window = panel.windows(H, 1, align="grid")[0]
    train, y, mask = window.train, window.target, window.mask
    fc, report["forecast_time"] = cached_forecast(args, ds, train, H)
    print("forecast", report["forecast_time"], flush=True)
    if args.forecast_only:
        return 0
    hier = Hierarchy.from_panel(ds.panel, ["Store", "Type"])
    complete = mask.all(1)
    report["series"] = {"all": int(panel.num_series), "complete_truth": int(complete.sum())}
    scale = scale_of(train.target, train.observed)
    stores = hier.labels("Store")
    store_hist = hier.aggregate_level(torch.where(train.observed, train.target, 0.0), "Store")
    store_scale = scale_of(store_hist, store_hist != 0)
    # store totals of complete series only, so the truth is exact at every step
    sub_hier = Hierarchy(hier.item_ids[complete.numpy()], {"Store": stores[complete.numpy()]})
    complete_hier = Hierarchy.from_panel(ds.panel.select(complete), ["Store", "Type"])

    results, scen = {}, {}
    for name, dep in methods(args).items():
        timer = Timer()
        dep.fit(train, H)
        sc = joint_scenarios(fc, dep, seed=1)
        coherent = hier.aggregate_scenarios(sc, include_bottom=True)
        t = timer.stop()
        scen[name] = sc
        c = complete
        # aggregates of the series with truth at every step, so every aggregate's truth is exact
        sub = sc.replace(values=sc.values[c], item_ids=sc.item_ids[c.numpy()], start=sc.start[c.numpy()])
        lm = level_metrics(sub, complete_hier, y[c], mask[c])
        mv = multivariate_scores(sc.values[c], y[c], scale[c], stores[c.numpy()],
                                 sub_hier.aggregate_level(sc.values[c], "Store"), sub_hier.aggregate_level(y[c], "Store"),
                                 store_scale, args.members)
        results[name] = {"time_fit_join_aggregate": t, "nodes": coherent.num_series,
                         "levels": lm.reset_index().to_dict("records"), **mv}
        print(name, t, {k: round(v, 4) for k, v in mv.items()}, flush=True)
        print(lm.round(4).to_string(), flush=True)
        del coherent
    report["methods"] = results

    # decisions: base-stock levels from scenarios vs from the point forecast, run on the truth
    sim = InventorySimulator(lead_time=args.lead_time, holding_cost=1.0, shortage_cost=9.0, lost_sales=True,
                             negative_demand="return")
    c = complete
    truth = y[c][:, None, :]
    decisions = {}
    for name, sc in scen.items():
        sub = sc.replace(values=sc.values[c], item_ids=sc.item_ids[c.numpy()], start=sc.start[c.numpy()])
        levels = base_stock_levels(sub, args.lead_time, 1, sim.critical_ratio)
        decisions[f"scenarios:{name}"] = {k: float(v[0]) for k, v in sim.simulate(truth, levels).items()}
    for label, point in (("point:mean", fc.mean()), ("point:median", fc.median())):
        levels = point_base_stock(point[c], args.lead_time, 1)
        decisions[label] = {k: float(v[0]) for k, v in sim.simulate(truth, levels).items()}
    report["decisions"] = decisions
    print(pd.DataFrame(decisions).T.round(4).to_string(), flush=True)

    # reduction 1000 -> K: KPI means of the simulator over the full and reduced sets
    best = "copula" if "copula" in scen else list(scen)[-1]
    full = scen[best]
    full = full.replace(values=full.values[c], item_ids=full.item_ids[c.numpy()], start=full.start[c.numpy()])
    levels = base_stock_levels(full, args.lead_time, 1, sim.critical_ratio)
    kpi_full = run_policy(sim, full, levels)
    reduction = {"method_scenarios": best, "full": kpi_full.summary["mean"].to_dict(), "variants": []}
    # distances on (a) every series and step (the default), (b) each store's simulated holding and
    # shortage cost per scenario (levels from the full set; scenarios only, never the truth)
    timer = Timer()
    store_kpis = kpi_features(sim, full, levels, stores[c.numpy()])
    feature_time = timer.stop()
    for feats, label in ((None, "values"), (store_kpis, "store_kpis")):
        for how in ("forward", "kmedoids"):
            timer = Timer()
            small, red = reduce_scenarios(full, args.reduce_to, method=how, features=feats)
            t = timer.stop()
            kpi = run_policy(sim, small, levels)
            rel = {k: float(kpi.summary.loc[k, "mean"] / kpi_full.summary.loc[k, "mean"] - 1) for k in sim.kpis}
            name = f"{how}:{label}"
            reduction["variants"].append(name)
            reduction[name] = {"k": int(red.indices.shape[0]), "transport": red.transport, "energy": red.energy,
                               "features": label, "mean": kpi.summary["mean"].to_dict(), "relative_difference": rel,
                               "time": t, "weights_sum": float(red.weights.sum()),
                               **({"feature_time": feature_time, "dims": int(feats.shape[1])} if feats is not None else {})}
            print(name, t, {k: round(v, 5) for k, v in rel.items()}, flush=True)
    report["reduction"] = reduction

    if args.stream_json:
        report["stream"] = _stream_result(args)
    elif args.stream_scenarios > 0:
        cmd = [sys.executable, __file__, "--stream-child", "--data-dir", args.data_dir, "--model", args.model,
               "--transform", args.transform, "--stream-scenarios", str(args.stream_scenarios),
               "--stream-chunk", str(args.stream_chunk), "--stream-path", args.stream_path]
        timer = Timer()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"streaming run failed:\n{proc.stderr[-3000:]}")
        report["stream"] = {**json.loads(proc.stdout.strip().splitlines()[-1]), "total": timer.stop(),
                            "scenarios": args.stream_scenarios, "chunk": args.stream_chunk}
        if not args.keep_stream:
            Path(args.stream_path).unlink(missing_ok=True)
        print(report["stream"], flush=True)

    report["load_average_at_end"] = os.getloadavg()
    atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1, default=float)))
    atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text(markdown(report)))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
