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
    forecast_pit,
    joint_scenarios,
    kpi_features,
    level_metrics,
    newsvendor_features,
    point_base_stock,
    reduce_scenarios,
    run_policy,
    scenario_distances,
    write_parquet,
)

HERE = Path(__file__).resolve().parent


class Timer:
    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> dict:
        return {"wall_s": round(time.perf_counter() - self.wall, 2), "cpu_s": round(time.process_time() - self.cpu, 2)}


#: the ES/VS blocks (see multivariate_scores)
MV_KEYS = ("es_series_paths", "vs_series_paths", "es_store_cross_section", "vs_store_cross_section",
           "es_store_totals", "vs_store_totals", "es_all_series")


#: candidate dependence methods: name -> (family, constructor(transform, rank)); a family's variant
#: and history transform are chosen on the validation window (``--choose``). Transform
#: ``"forecast_pit"``: the copula is fitted on the PIT of the previous window's forecast (same model,
#: origin H steps earlier) instead of a transform of the history (`previous_window_pit`); the
#: Schaake shuffle has no such mode (one past window is one template member).
SPECS = {
    "schaake": ("schaake", lambda t, r: SchaakeShuffle(t, season=52)),
    "schaake_paths": ("schaake", lambda t, r: SchaakeShuffle(t, season=52, paths=True)),
    "copula": ("copula", lambda t, r: GaussianCopula(r, _hist(t), season=52)),
    "copula_groups": ("copula", lambda t, r: GaussianCopula(r, _hist(t), season=52, groups="Store")),
    "copula_paths": ("copula", lambda t, r: GaussianCopula(r, _hist(t), season=52, paths=True)),
}
RESIDUAL_SPECS = ("copula", "copula_groups", "copula_paths")


def _hist(transform: str) -> str:
    return "level" if transform == "forecast_pit" else transform  # unused when fitted on residuals


def methods(args, choice: dict | None = None) -> dict:
    """``{name: (dependence, spec, transform)}``: independent samples, then either every spec in
    ``args.methods`` with ``args.transform`` or, with a validation ``choice``, each family's chosen
    spec and transform (named after the family)."""
    out = {"independent": (Independent(), "independent", None)}
    if choice is not None:
        for family, c in choice["chosen"].items():
            out[family] = (SPECS[c["spec"]][1](c["transform"], args.rank), c["spec"], c["transform"])
        return out
    for name in args.methods:
        if args.transform == "forecast_pit" and name not in RESIDUAL_SPECS:
            print(f"{name}: no forecast_pit mode, skipped", flush=True)
            continue
        out[name] = (SPECS[name][1](args.transform, args.rank), name, args.transform)
    return out


def split_window(ds, split: str):
    """The panel seen at ``split`` (``"test"``: all of it; ``"val"``: without the last H weeks) and its
    window: the last H weeks cut at one date for every series (``align="grid"``)."""
    H = ds.task.horizon
    panel = ds.panel if split == "test" else ds.panel.truncate(torch.full_like(ds.panel.end, ds.panel.num_steps - H))
    return panel, panel.windows(H, 1, align="grid")[0]


def previous_window_pit(args, ds, panel, train, H) -> tuple[torch.Tensor, dict]:
    """``[N, H]`` PIT of the window before ``train``'s forecast window (its last H steps) under the same
    model's forecast from H steps earlier, rows in ``train``'s series order (NaN where a series has no
    truth or too little history for that earlier forecast): the forecast errors the ``forecast_pit``
    copula learns its dependence from. Everything lies before ``train``'s cutoff."""
    T = panel.num_steps
    prev = panel.truncate(torch.full_like(panel.end, T - H))
    seen = prev.observed[:, : T - 2 * H].sum(1) >= 2  # series with history before the earlier origin
    if not bool(seen.all()):
        prev = prev.select(seen)
    label = {"test": "val", "val": "preval"}[args.split]
    w = prev.windows(H, 1, align="grid")[0]
    fc, t = cached_forecast(args, ds, w.train, H, label=label)
    timer = Timer()
    u = forecast_pit(fc, w.target, w.mask, seed=0, item_ids=train.item_ids)
    info = {"forecast_time": t, "pit_time": timer.stop(), "series_with_residuals": int((~torch.isnan(u)).any(1).sum()),
            "origin_step": T - 2 * H, "pit_mean": float(torch.nanmean(u)),
            "pit_coverage_80": float(((u > 0.1) & (u < 0.9)).sum() / (~torch.isnan(u)).sum())}
    return u, info


def scale_of(y: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """``[N]`` mean abs(y) over observed history (the multivariate scores' unit)."""
    return ((y.abs() * ok).sum(1) / ok.sum(1).clamp_min(1)).clamp_min(1e-6)


def energy_scores(x: torch.Tensor, y: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """``x`` ``[B, M, D]`` ensembles, ``y`` ``[B, D]`` -> ``[B]`` energy scores, the V-statistic of
    ``scoringrules.es_ensemble`` (estimator ``"nrg"``): mean ||x_m - y|| - sum ||x_m - x_k|| / (2 M^2).
    Batched matrix products instead of scoringrules' pair loop (~10x faster at M = 1000): each
    entry is centred in float64, pair distances come from a float32 Gram matrix, sums are float64."""
    out = torch.empty(x.shape[0], dtype=torch.float64)
    M = x.shape[1]
    for i in range(0, x.shape[0], chunk):  # chunks bound the [chunk, M, M] distance matrices
        xb, yb = x[i:i + chunk].double(), y[i:i + chunk].double()
        mu = xb.mean(1, keepdim=True)
        xc = xb - mu
        t1 = (xc - (yb[:, None, :] - mu)).norm(dim=-1).mean(1)
        xf = xc.float()
        sq = (xf * xf).sum(-1)
        d2 = torch.baddbmm(sq[:, :, None] + sq[:, None, :], xf, xf.transpose(1, 2), alpha=-2)
        out[i:i + chunk] = t1 - d2.clamp_min_(0).sqrt_().sum(2, dtype=torch.float64).sum(1) / (2 * M * M)
    return out


def variogram_scores(x: torch.Tensor, y: torch.Tensor, p: float = 0.5, max_elements: int = 1 << 25) -> torch.Tensor:
    """``x`` ``[B, M, D]``, ``y`` ``[B, D]`` -> ``[B]`` variogram scores of order ``p``, as
    ``scoringrules.vs_ensemble`` (``"nrg"``, unit weights, every ordered pair of dimensions).
    Batch entries and members run in chunks of at most ``max_elements`` pair differences."""
    B, M, D = x.shape
    out = torch.empty(B, dtype=torch.float64)
    b = max(1, max_elements // (M * D * D))
    m = max(1, min(M, max_elements // (D * D)))
    for i in range(0, B, b):
        yb = y[i:i + b].double()
        f = torch.zeros(yb.shape[0], D, D, dtype=torch.float64)
        for j in range(0, M, m):  # member chunks bound the [b, m, D, D] differences
            xb = x[i:i + b, j:j + m].float()
            f += (xb[:, :, :, None] - xb[:, :, None, :]).abs_().pow_(p).sum(1, dtype=torch.float64)
        o = (yb[:, :, None] - yb[:, None, :]).abs().pow(p)
        out[i:i + b] = ((o - f / M) ** 2).sum((1, 2))
    return out


def check_against_scoringrules(x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest relative difference between :func:`energy_scores` / :func:`variogram_scores` and
    scoringrules (its numpy backend; numba is not a dependency) on ``x`` ``[B, M, D]``, ``y``
    ``[B, D]``; raises above 1e-4 (float32 distances: ~1e-6 on walmart blocks, 100x below the
    differences between methods)."""
    xs, ys = x.double().numpy(), y.double().numpy()
    ref = np.concatenate([sr.es_ensemble(ys, xs, backend="numpy"), sr.vs_ensemble(ys, xs, backend="numpy")])
    ours = torch.cat([energy_scores(x, y), variogram_scores(x, y)]).numpy()
    err = float(np.max(np.abs(ours - ref) / np.abs(ref)))
    if err > 1e-4:
        raise AssertionError(f"batched ES/VS differ from scoringrules by {err:.2e}")
    return err


def multivariate_scores(values, y, scale, stores, store_values, store_y, store_scale, members: int = 0) -> dict:
    """ES and VS on blocks, over the first ``members`` scenarios (0: all of them; the scores of the
    whole set, so a method that keeps each series' paths scores exactly as the independent samples on
    the per-series block). ``values`` ``[N, S, H]`` of series with complete truth."""
    v = (values / scale[:, None, None]).double()
    t = (y / scale[:, None]).double()
    if members:
        v = v[:, :members]  # scenarios are exchangeable: the first `members` are a random subset
    out = {}
    # (A) each series' path over the horizon: temporal dependence
    out["es_series_paths"] = float(energy_scores(v, t).mean())
    out["vs_series_paths"] = float(variogram_scores(v, t).mean())
    # (B) each store's departments at each step: dependence across series
    es, vs, n = 0.0, 0.0, 0
    for g in np.unique(stores):  # 45 stores of different sizes: one batched call each
        rows = torch.as_tensor(np.nonzero(stores == g)[0])
        if len(rows) < 2:
            continue
        f = v[rows].permute(2, 1, 0)  # [H, M, D]
        o = t[rows].T  # [H, D]
        es += float(energy_scores(f, o).sum())
        vs += float(variogram_scores(f, o).sum())
        n += f.shape[0]
    out["es_store_cross_section"], out["vs_store_cross_section"] = es / n, vs / n
    # (C) store totals x steps, one joint vector
    sv = (store_values / store_scale[:, None, None]).double()
    if members:
        sv = sv[:, :members]
    st = (store_y / store_scale[:, None]).double()
    flat = sv.permute(1, 0, 2).reshape(1, sv.shape[1], -1)
    out["es_store_totals"] = float(energy_scores(flat, st.reshape(1, -1))[0])
    out["vs_store_totals"] = float(variogram_scores(flat, st.reshape(1, -1))[0])
    # (D) every series x step: distances from a Gram matrix accumulated over blocks of dimensions
    S = v.shape[1]
    d = scenario_distances(torch.cat([v.permute(1, 0, 2).reshape(S, -1), t.reshape(1, -1)]))
    out["es_all_series"] = float(d[:S, S].mean() - d[:S, :S].sum() / (2 * S * S))
    return out


def _fmt(x, digits=4):
    return f"{x:,.{digits}f}" if isinstance(x, float) else str(x)


#: relative tolerance under which two scores count as equal (the same paths in another order give
#: the same ES up to float32 rounding of the pair distances)
TIE = 1e-6


def _vs_independent(a: float, b: float) -> int:
    """-1 when score ``a`` is below ``b``, 0 when equal (to ``TIE``), 1 when above."""
    return 0 if abs(a - b) <= TIE * abs(b) else (-1 if a < b else 1)


def _label(r: dict, name: str) -> str:
    x = r["methods"][name]
    if name == "independent" or "spec" not in x:
        return name
    return f"{name} (`{x['spec']}`, {x['transform']})" if x["spec"] != name or r["split"] == "test" else name


def _previous_window_lines(r: dict) -> list[str]:
    pw = r.get("previous_window")
    if not pw:
        return []
    t = pw["forecast_time"].get("wall_s")
    return [(f"`forecast_pit`: the copula is fitted on forecast errors instead of the history: the randomised PIT of "
             f"the 39 weeks before this window's origin under the same model's forecast made 39 weeks earlier (origin "
             f"step {pw['origin_step']}; {pw['series_with_residuals']:,} series with residuals, the others stay "
             f"independent; PIT mean {pw['pit_mean']:.3f}, {100 * pw['pit_coverage_80']:.1f} % of PIT values in the "
             "central 80 %)" + (f"; that forecast took {t:,.0f} s (the model's cost, not the generator's)" if t else "")
             + f"; the PIT itself {pw['pit_time']['cpu_s']:.1f} s CPU."), ""]


def _choice_lines(r: dict) -> list[str]:
    if "choice" not in r:
        if r["split"] == "test":
            return [("**Not the benchmark's result:** these methods were not chosen by the validation rule (see "
                     "`scenarios.md` for the chosen ones); they are scored on the test window for information only."), ""]
        return []
    c = r["choice"]
    chosen = ", ".join(f"{f}: `{v['spec']}` with `{v['transform']}`" for f, v in c["chosen"].items())
    lines = ["## Methods and options, chosen on the validation window", "",
             (f"Rule: {c['rule']}. Chosen: {chosen}"
              + (f"; reduction: `{c['reduction']['chosen']}`" if "reduction" in c else "")
              + f" (from `{c['file']}`, {next(iter(c['candidates'].values()))['model']} forecast). The test window "
              "was scored once, with these."), "",
             "| candidate (spec: transform) | mean score / independent | blocks below / equal | Store 80 % coverage | Store CRPS |",
             "|---|---|---|---|---|"]
    for k, v in c["candidates"].items():
        lines.append(f"| {k} | {v['mean_relative_score']:.5f} | {v['blocks_below_independent']}/7 below, "
                     f"{v.get('blocks_equal_independent', 0)}/7 equal | {100 * v['store_coverage_80']:.1f} % | "
                     f"{v['store_crps']:,.0f} |")
    lines += ["", "Score / independent on validation, per block:", "",
              "| candidate | " + " | ".join(MV_KEYS) + " |", "|---|" + "---|" * len(MV_KEYS)]
    for k, v in c["candidates"].items():
        lines.append(f"| {k} | " + " | ".join(f"{v['relative_scores'][b]:.4f}" for b in MV_KEYS) + " |")
    if "reduction" in c:
        lines += ["", "Reduction on validation, largest |KPI mean difference|: " + ", ".join(
            f"`{v}` {100 * x:.2f} %" for v, x in c["reduction"]["largest_difference"].items()) + "."]
    if "note" in c:
        lines += ["", c["note"] + "."]
    return [*lines, ""]


def markdown(r: dict) -> str:
    """The results page, written from the run's JSON (never by hand)."""
    m = r["methods"]
    names = list(m)
    joint = [n for n in names if n != "independent"]
    label = {n: _label(r, n) for n in names}
    transform = r["transform"] if isinstance(r["transform"], str) else ", ".join(f"{f} `{t}`" for f, t in r["transform"].items())
    lines = [
        "# Scenario generator on walmart (issue #5)", "",
        (f"Written by `{r['command']}` ({r['model']} forecast, {r['num_scenarios']} scenarios, split `{r['split']}`, "
        f"history transform {transform}, copula rank {r['rank']})."), "",
        (f"Machine: {r['machine']}; load average {r['load_average_at_start'][0]:.1f} at the start and "
        f"{r['load_average_at_end'][0]:.1f} at the end (the 2 cores were shared with other jobs, so wall "
        "times are inflated; CPU seconds are what the work costs)."), "",
        (f"Window: the last 39 weeks cut at one date for every series (`align='grid'`); {r['series']['all']} series, "
        f"{r['series']['complete_truth']} with truth at every step. Dependence is learned from the window's training "
        "panel only. Hierarchy: dept-in-store series -> Store (45) -> Type (3) -> total."), "",
        *_previous_window_lines(r),
        *_choice_lines(r),
        "## Done-when criteria", "",
        "| criterion | result | pass |", "|---|---|---|",
    ]
    ind = m["independent"]
    mv_keys = [k for k in MV_KEYS if k in ind]
    for n in joint:
        cmp = [_vs_independent(m[n][k], ind[k]) for k in mv_keys]
        below, equal = cmp.count(-1), cmp.count(0)
        lines.append(f"| {label[n]}: lower ES and VS than independent samples (all {len(mv_keys)} blocks) | "
                     f"lower on {below}/{len(mv_keys)}" + (f", equal on {equal}" if equal else "")
                     + f", higher on {cmp.count(1)} | {'yes' if below == len(mv_keys) else 'no'} |")
    lv = {n: {row["level"]: row for row in m[n]["levels"]} for n in names}
    for n in joint:
        for level in ("Store", "total"):
            a, b = lv[n][level]["crps"], lv["independent"][level]["crps"]
            lines.append(f"| {label[n]}: CRPS of {level} aggregates below independent | {_fmt(a, 0)} vs {_fmt(b, 0)} | "
                         f"{'yes' if a < b else 'no'} |")
        cov = lv[n]["Store"]["coverage_80"]
        lines.append(f"| {label[n]}: 80 % coverage at store level in 75-85 % | {100 * cov:.1f} % | "
                     f"{'yes' if 0.75 <= cov <= 0.85 else 'no'} |")
    d = r["decisions"]
    pt = min(d["point:mean"]["total_cost"], d["point:median"]["total_cost"])
    for n in joint:
        c = d[f"scenarios:{n}"]["total_cost"]
        lines.append(f"| {label[n]}: base stock from scenarios costs less than from the point forecast (realised demand) | "
                     f"{_fmt(c, 0)} vs {_fmt(pt, 0)} (best point) | {'yes' if c < pt else 'no'} |")
    red = r["reduction"]
    for how in red["variants"]:
        if "chosen" in red and how != red["chosen"]:
            continue
        worst = max(abs(v) for v in red[how]["relative_difference"].values())
        tag = " (chosen on validation)" if red.get("chosen") == how else ""
        lines.append(f"| reduction {r['num_scenarios']} -> {red[how]['k']} (`{how}`{tag}): KPI means within 2 % | "
                     f"largest difference {100 * worst:.2f} % | {'yes' if worst <= 0.02 else 'no'} |")
    if "reduction_seeds" in r:  # scenarios_reduction.py: the variant chosen on several validation sets
        rs = r["reduction_seeds"]
        ch = rs["chosen"]
        lines.append(f"| reduction {r['num_scenarios']} -> {rs['reduce_to']} (`forward:{ch}`, chosen on {len(rs['seeds'])} "
                     f"validation scenario sets by `scenarios_reduction.py`): KPI means within 2 % on each of "
                     f"{len(rs['seeds'])} test sets | largest difference {100 * rs['summary'][ch]['max_worst']:.2f} % "
                     f"(mean {100 * rs['summary'][ch]['mean_worst']:.2f} %) | "
                     f"{'yes' if rs['summary'][ch]['max_worst'] <= 0.02 else 'no'} |")
    for n in joint:
        t = m[n]["time_fit_join_aggregate"]
        lines.append(f"| {label[n]}: {r['num_scenarios']} joint coherent scenarios, all series, <= 10 s | "
                     f"{t['wall_s']} s wall, {t['cpu_s']} s CPU | {'yes' if t['cpu_s'] <= 10 else 'no'} (CPU) |")
    if "stream" in r:
        st = r["stream"]
        lines.append(f"| {st['scenarios']:,} scenarios x {st['series_including_aggregates']:,} series and aggregates x 39 "
                     f"steps streamed to parquet, peak RSS <= 2 GB | {st['peak_rss_mb']:,} MB | "
                     f"{'yes' if st['peak_rss_mb'] <= 2048 else 'no'} |")
    members = r.get("members", 0) or r["num_scenarios"]
    check = r.get("scoringrules_check")
    lines += ["", "## Multivariate scores (lower is better)", "",
              ("Series scaled by the mean abs(y) of their training history. ES and VS (p = 0.5) of "
               f"{'all ' if members == r['num_scenarios'] else 'the first '}{members:,} scenarios: the estimators of "
               "`scoringrules.es_ensemble` / `vs_ensemble` (`nrg`), computed with batched matrix products"
               + (f" and checked against scoringrules at each run (largest relative difference {check['largest_relative_difference']:.1e} "
                  f"on {check['series']} series x {check['members']} scenarios)" if check else "")
               + ". Scoring the whole set matters: ES on a 100-scenario subset moves by a few 1e-3 "
               "between subsets, as much as the differences between methods, and a method that keeps each series' "
               "paths scores exactly as the independent samples on the per-series blocks."), "",
              "| block | " + " | ".join(label[n] for n in names) + " |", "|---|" + "---|" * len(names)]
    labels = {"es_series_paths": "ES, each series' 39-step path", "vs_series_paths": "VS, each series' path",
              "es_store_cross_section": "ES, a store's departments at one step",
              "vs_store_cross_section": "VS, a store's departments at one step",
              "es_store_totals": "ES, 45 store totals x 39 steps", "vs_store_totals": "VS, 45 store totals x 39 steps",
              "es_all_series": "ES, all series x steps"}
    for k in mv_keys:
        lines.append(f"| {labels.get(k, k)} | " + " | ".join(_fmt(m[n][k]) for n in names) + " |")
    lines += ["", "## Univariate scores by level", "", "| level | metric | " + " | ".join(label[n] for n in names) + " |",
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
    kpis = list(red["full"])
    mf = red.get("match_features")
    lines += ["", (f"## Reduction {r['num_scenarios']} -> {r.get('reduce_to', 50)} "
              f"({label.get(red['method_scenarios'], red['method_scenarios'])} scenarios)"), "",
              ("Inventory simulator KPI means (base stock from the full set) on the reduced sets, as differences from "
               "the full set's: " + ", ".join(f"{k} {_fmt(v, 2)}" for k, v in red["full"].items()) + "."), "",
              ("Selection distances on `values`: every series and step of a scenario; on `store_kpis`: each store's "
               "simulated holding and shortage cost in that scenario, each column divided by its standard deviation "
               "across scenarios (`kpi_features`). `+match`: the selected scenarios' weights re-optimised "
               "(`match_weights`: the smallest Kullback-Leibler change of the transport weights) so that the means of "
               + (f"{mf['dims']} features ({mf['what']}; `newsvendor_features`)" if mf else "the match features")
               + " equal the full set's. Every feature comes from the scenarios alone, never from the realised demand. "
               "Transport: the Kantorovich distance to the full set on the selection features (for `+match`, by "
               "linear programming with the final weights); energy: the energy distance, same features."), "",
              "| variant | " + " | ".join(kpis) + " | transport | energy | weights min / max | matched means: error before -> after (sd) |",
              "|---|" + "---|" * (len(kpis) + 4)]
    for v in red["variants"]:
        x = red[v]
        me = x.get("match_error")
        tag = " (chosen)" if red.get("chosen") == v else ""
        lines.append(f"| `{v}`{tag} | " + " | ".join(f"{100 * x['relative_difference'][k]:+.2f} %" for k in kpis)
                     + f" | {x['transport']:,.2f} | {x['energy']:,.3f} | "
                     + (f"{x['weights_min']:.4f} / {x['weights_max']:.4f}" if "weights_min" in x else "")
                     + " | " + (f"{me['error_before']:.3f} -> {me['error_after']:.1e}" if me else "") + " |")
    times = "; ".join(f"`{v}` {red[v]['time']['cpu_s']} s" for v in red["variants"])
    extra = next((red[v] for v in red["variants"] if "feature_time" in red[v]), None)
    lines += ["", f"CPU time of each reduction: {times}"
              + (f" (+ {extra['feature_time']['cpu_s']} s to simulate the {extra['dims']} `store_kpis` features)" if extra else "")
              + "."]
    lines += ["", "## Speed and memory", "",
              (f"Forecast ({r['model']}, {r['num_scenarios']} samples for every series): {r['forecast_time']['wall_s']} s wall, "
              f"{r['forecast_time']['cpu_s']} s CPU (the model's cost, not the scenario generator's"
              + ("; fitted once, then read back from the cache" if "cached" in r["forecast_time"] else "") + ")."), ""]
    for n in names:
        t = m[n]["time_fit_join_aggregate"]
        lines.append(f"- {label[n]}: fit on the history + join + every aggregate ({m[n]['nodes']:,} nodes): "
                     f"{t['wall_s']} s wall, {t['cpu_s']} s CPU")
    if "stream" in r:
        st = r["stream"]
        lines += ["", (f"Streaming: {st['scenarios']:,} Schaake scenarios generated {st['chunk']} at a time (model sampling "
                  f"included) and written with every aggregate: {st['rows']:,} rows, {st['file_gb']} GB parquet (zstd), "
                  f"peak RSS {st['peak_rss_mb']:,} MB of the writing process, {st['wall_s']} s wall, {st['cpu_s']} s CPU"
                  + (f" (`{st['command']}`)." if "command" in st else "."))]
    return "\n".join(lines) + "\n"


def cached_forecast(args, ds, train, H, label: str | None = None):
    """Fit ``args.model`` on ``train`` and sample ``args.num_scenarios`` paths (seed 0), or read them back
    from ``args.cache_dir`` (the statespace model takes minutes to fit). The key holds the model, split,
    sample count and the training panel's shape and end, so a different window never reuses a file."""
    key = (f"walmart_{args.model}_{label or args.split}_{args.num_scenarios}_s{train.num_series}_t{train.num_steps}"
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


def choose(paths: list[str]) -> dict:
    """Each family's dependence variant and history transform, and the reduction variant, from
    validation runs (``--split val``, one JSON per transform, every spec in each).

    Rules, fixed before the runs: for each family (``SPECS``), the (spec, transform) with the lowest
    mean over the 7 ES/VS blocks of score / independent score (the dependence is what they decide);
    for the reduction, the variant with the smallest largest |KPI mean difference| in the run of the
    chosen copula transform."""
    runs = [json.loads(Path(q).read_text()) for q in paths]
    if any(r["split"] != "val" for r in runs):
        raise ValueError("choose on validation runs only (--split val)")
    table = {}
    for r in runs:
        m = r["methods"]
        for name, res in m.items():
            if name == "independent":
                continue
            ratios = {k: res[k] / m["independent"][k] for k in MV_KEYS}
            cmp = [_vs_independent(res[k], m["independent"][k]) for k in MV_KEYS]
            store = next(x for x in res["levels"] if x["level"] == "Store")
            table[f"{name}:{r['transform']}"] = {
                "spec": name, "family": SPECS[name][0], "transform": r["transform"],
                "mean_relative_score": float(np.mean(list(ratios.values()))),
                "blocks_below_independent": cmp.count(-1), "blocks_equal_independent": cmp.count(0),
                "relative_scores": ratios, "store_crps": store["crps"], "store_coverage_80": store["coverage_80"],
                "model": r["model"], "command": r["command"]}
    chosen = {}
    for family in dict.fromkeys(v["family"] for v in table.values()):
        best = min((k for k, v in table.items() if v["family"] == family), key=lambda k: table[k]["mean_relative_score"])
        chosen[family] = {"spec": table[best]["spec"], "transform": table[best]["transform"]}
    out = {"rule": ("per family, the lowest mean over the 7 ES/VS blocks of score / independent score; reduction: "
                    "the smallest largest |KPI mean difference|; on the validation window (39 weeks before the "
                    "test window)"),
           "chosen": chosen, "candidates": table,
           "independent": {r["transform"]: {k: r["methods"]["independent"][k] for k in MV_KEYS} for r in runs}}
    if "copula" in chosen:
        red = next(r for r in runs if r["transform"] == chosen["copula"]["transform"])["reduction"]
        worst = {v: max(abs(x) for x in red[v]["relative_difference"].values()) for v in red["variants"]}
        out["reduction"] = {"chosen": min(worst, key=worst.get), "largest_difference": worst}
    if not any(r["transform"] == "seasonal_diff" for r in runs):
        out["note"] = ("seasonal_diff (season 52) is no candidate: the validation window's history is 65 weeks, "
                       "13 seasonal differences, fewer than one 39-week window for the Schaake shuffle")
    return out


def _stream_result(args) -> dict:
    """The JSON line of a separate ``--stream-child`` run (its command: the one below with ``--stream-child``)."""
    return {**json.loads(Path(args.stream_json).read_text().strip().splitlines()[-1]),
            "scenarios": args.stream_scenarios, "chunk": args.stream_chunk}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB. Linux: VmHWM of its own address space, because
    ``ru_maxrss`` of a process started by ``subprocess`` (vfork + exec) also holds the peak of the
    parent's address space at the exec (measured: 6.1 GB reported for a 1.6 GB streaming child of
    a 6 GB parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    peak_mb = peak_rss_mb()
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
    p.add_argument("--methods", nargs="+", default=None, choices=list(SPECS),
                   help="dependence specs to score (default: every spec on val, schaake and copula on test)")
    p.add_argument("--transform", default="level", choices=["diff", "level", "seasonal_diff", "forecast_pit"],
                   help="what the dependence is learned from: a transform of the history, or (copulas only) "
                        "forecast_pit: the PIT of the previous window's forecast")
    p.add_argument("--rank", type=int, default=10, help="copula factors")
    p.add_argument("--members", type=int, default=0,
                   help="scenarios the ES/VS blocks score (0: all; ES is O(M^2))")
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
    p.add_argument("--reduction-json", default=None,
                   help="with --markdown-only: add the test run of scenarios_reduction.py (reduction chosen on several "
                        "validation scenario sets)")
    p.add_argument("--cache-dir", default="/tmp/scenarios_walmart_forecasts",
                   help="where fitted forecasts are kept so re-runs do not refit ('' disables)")
    p.add_argument("--refit", action="store_true", help="fit the model even when a cached forecast exists")
    p.add_argument("--forecast-only", action="store_true", help="fit (or read) the forecast, cache it and stop")
    p.add_argument("--choose", "--choose-transform", nargs="+", default=None, metavar="VAL_JSON",
                   help="pick each family's spec and transform and the reduction variant from these --split val "
                        "runs, write <out>.json and stop")
    p.add_argument("--val-choice", default=None,
                   help="JSON written by --choose: score its choices and report them")
    p.add_argument("--stream-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.stream_child:
        return stream_child(args)
    out = Path(args.out)
    if args.choose:
        choice = choose(args.choose)
        atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(choice, indent=1)))
        print(json.dumps({t: round(v["mean_relative_score"], 4) for t, v in choice["candidates"].items()}), "->",
              choice["chosen"], choice.get("reduction", {}).get("chosen"))
        return 0
    val_choice = None
    if args.val_choice:
        val_choice = json.loads(Path(args.val_choice).read_text())
        if args.split != "test":
            raise ValueError("--val-choice is for the test run")
    if args.methods is None:
        args.methods = list(SPECS) if args.split == "val" else ["schaake", "copula"]
    if args.markdown_only:  # rewrite the page from a run's JSON, adding a separate streaming run if given
        report = json.loads(Path(args.markdown_only).read_text())
        if args.reduction_json:
            report["reduction_seeds"] = json.loads(Path(args.reduction_json).read_text())
        if args.stream_json:
            report["stream"] = _stream_result(args)
            report["command"] = report["command"].split(" && ")[0] + " && python " + " ".join(
                sys.argv if argv is None else [sys.argv[0], *argv])
            atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
        if args.reduction_json:
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
        report["choice"] = {**val_choice, "file": args.val_choice}
        report["transform"] = {f: c["transform"] for f, c in val_choice["chosen"].items()}
    ds = forecasting.load("walmart", args.data_dir)
    H = ds.task.horizon
    panel, window = split_window(ds, args.split)
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
    check = None
    resid = None
    for name, (dep, spec, transform) in methods(args, val_choice).items():
        if transform == "forecast_pit" and resid is None:  # the earlier forecast is the model's cost, not ours
            resid, report["previous_window"] = previous_window_pit(args, ds, panel, train, H)
            print("previous window", report["previous_window"], flush=True)
        timer = Timer()
        dep.fit(train, H, **({"residuals": resid} if transform == "forecast_pit" else {}))
        sc = joint_scenarios(fc, dep, seed=1)
        coherent = hier.aggregate_scenarios(sc, include_bottom=True)
        t = timer.stop()
        scen[name] = sc
        c = complete
        # aggregates of the series with truth at every step, so every aggregate's truth is exact
        sub = sc.replace(values=sc.values[c], item_ids=sc.item_ids[c.numpy()], start=sc.start[c.numpy()])
        lm = level_metrics(sub, complete_hier, y[c], mask[c])
        if check is None:  # the batched ES/VS against scoringrules, on a slice of real scenarios
            sl = (sc.values[c][:50, :100] / scale[c][:50, None, None]).double()
            check = check_against_scoringrules(sl, (y[c][:50] / scale[c][:50, None]).double())
            report["scoringrules_check"] = {"largest_relative_difference": check, "series": 50, "members": 100}
        mv = multivariate_scores(sc.values[c], y[c], scale[c], stores[c.numpy()],
                                 sub_hier.aggregate_level(sc.values[c], "Store"), sub_hier.aggregate_level(y[c], "Store"),
                                 store_scale, args.members)
        results[name] = {"spec": spec, "transform": transform, "time_fit_join_aggregate": t,
                         "nodes": coherent.num_series, "levels": lm.reset_index().to_dict("records"), **mv}
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
    # `+match`: weights re-optimised to keep the means of total demand and of its shortfall and
    # leftover against the base-stock levels (scenario values and the policy only: no simulation, no truth)
    timer = Timer()
    demand = newsvendor_features(full, levels, args.lead_time + 1)
    reduction["match_features"] = {"dims": int(demand.shape[1]), "time": timer.stop(),
                                   "what": ("total demand, total shortfall and total leftover of the protection-interval "
                                            "demand against the base-stock levels")}
    # `+match_type`: the same three totals for each store type (A, B, C: 9 features), so that the
    # shortfall of the small stores is not traded against the large ones'
    demand_type = newsvendor_features(full, levels, args.lead_time + 1, groups=hier.labels("Type")[c.numpy()])
    for feats, label in ((None, "values"), (store_kpis, "store_kpis")):
        for how in ("forward", "kmedoids"):
            for match, tag in ((None, ""), (demand, "+match"), (demand_type, "+match_type")):
                timer = Timer()
                small, red = reduce_scenarios(full, args.reduce_to, method=how, features=feats, match=match)
                t = timer.stop()
                kpi = run_policy(sim, small, levels)
                rel = {k: float(kpi.summary.loc[k, "mean"] / kpi_full.summary.loc[k, "mean"] - 1) for k in sim.kpis}
                name = f"{how}:{label}{tag}"
                reduction["variants"].append(name)
                reduction[name] = {"k": int(red.indices.shape[0]), "transport": red.transport, "energy": red.energy,
                                   "features": label, "mean": kpi.summary["mean"].to_dict(), "relative_difference": rel,
                                   "time": t, "weights_sum": float(red.weights.sum()),
                                   "weights_min": float(red.weights.min()), "weights_max": float(red.weights.max()),
                                   **({"match_error": red.match_error} if match is not None else {}),
                                   **({"feature_time": feature_time, "dims": int(feats.shape[1])} if feats is not None else {})}
                print(name, t, {k: round(v, 5) for k, v in rel.items()}, red.match_error, flush=True)
    if val_choice is not None and "reduction" in val_choice:
        reduction["chosen"] = val_choice["reduction"]["chosen"]
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
