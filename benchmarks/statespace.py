"""The Pyro state-space model on a dataset: tune on a validation window, score the test window once.

    # a configuration on the validation window (the window of the same horizon just before the test one)
    python benchmarks/statespace.py --dataset walmart --stage val --set trend=False --threads 1
    # the chosen configuration on the test window (fev's protocol), once
    python benchmarks/statespace.py --dataset walmart --stage test --set ... --threads 1
    # baselines on the same window, for the table
    python benchmarks/statespace.py --dataset car_parts --stage val --baseline empirical

Each run appends one JSON line (configuration, WQL, CRPS, MASE, coverage, fit and predict seconds,
peak RSS, threads) to ``benchmarks/results/statespace_runs/<dataset>_<stage>.jsonl``.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import time
from pathlib import Path

import torch

import forecasting
from forecasting.evaluation.backtest import PeakMemory, evaluate
from forecasting.models.registry import make_model

OUT = Path(__file__).parent / "results" / "statespace_runs"


def parse_settings(items: list[str]) -> dict:
    config = {}
    for item in items:
        k, v = item.split("=", 1)
        try:
            config[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            config[k] = v
    return config


def window_for(ds, stage: str):
    t = ds.task
    if stage == "test":
        return ds.windows()[-1]
    # validation: the window of the same horizon just before the (last) test window
    n = t.num_windows + 1
    return ds.panel.windows(t.horizon, n, step=t.step, align=t.align)[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="walmart")
    ap.add_argument("--stage", choices=["val", "test"], required=True)
    ap.add_argument("--set", action="append", default=[], help="StateSpace argument, e.g. trend=False")
    ap.add_argument("--baseline", default=None, help="run this registry model instead (e.g. seasonal_naive)")
    ap.add_argument("--data-dir", default=os.environ.get("FORECASTING_DATA", "../shared/data"))
    ap.add_argument("--num-samples", type=int, default=200)
    ap.add_argument("--also-samples", type=int, nargs="*", default=[],
                    help="also score these numbers of paths drawn from the same fit (one row each)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="")
    ap.add_argument("--save-forecast", default=None, help="write the forecast here (parquet of quantiles)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = parse_settings(args.set)
    ds = forecasting.load(args.dataset, args.data_dir)
    h = ds.task.horizon
    window = window_for(ds, args.stage)
    name = args.baseline or "statespace"
    model = make_model(name, ds.task, **config)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        model.fit(window.train, h)
        t1 = time.perf_counter()
        fc = model.predict(window.train, num_samples=args.num_samples, seed=0)
        t2 = time.perf_counter()
    scores = evaluate(fc, window, ds.task)
    row = {"dataset": args.dataset, "stage": args.stage, "model": name, "tag": args.tag, "config": config,
           **{k: round(v, 5) for k, v in scores.items()},
           "fit_seconds": round(t1 - t0, 1), "predict_seconds": round(t2 - t1, 2), "peak_rss_mb": round(mem.peak_mb),
           "threads": torch.get_num_threads(), "num_samples": args.num_samples,
           "final_loss": round(model.losses_[-1], 5) if hasattr(model, "losses_") else None}
    if getattr(model, "covariates_", None) is not None and model.covariates_.names:
        coef = model.coefficients()
        coef = coef[coef.regressor.isin(model.covariates_.names)]
        # share of series whose coefficient is negative / positive, and whose 90 % interval excludes 0
        row["coefficients"] = {
            name: {"negative": round(float((g["mean"] < 0).mean()), 3), "positive": round(float((g["mean"] > 0).mean()), 3),
                   "negative_90": round(float((g["q95"] < 0).mean()), 3), "positive_90": round(float((g["q05"] > 0).mean()), 3),
                   "median": round(float(g["mean"].median()), 3)}
            for name, g in coef.groupby("regressor")}
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{args.dataset}_{args.stage}.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    if args.save_forecast:
        torch.save({"samples": fc.samples, "target": window.target, "mask": window.mask}, args.save_forecast)
    print(json.dumps(row))
    for n in args.also_samples:  # the same fitted model, more (or fewer) paths
        t0 = time.perf_counter()
        fc = model.predict(window.train, num_samples=n, seed=0)
        extra = {**row, **{k: round(v, 5) for k, v in evaluate(fc, window, ds.task).items()},
                 "predict_seconds": round(time.perf_counter() - t0, 2), "num_samples": n}
        extra.pop("coefficients", None)
        with open(OUT / f"{args.dataset}_{args.stage}.jsonl", "a") as f:
            f.write(json.dumps(extra) + "\n")
        print(json.dumps(extra))


if __name__ == "__main__":
    main()
