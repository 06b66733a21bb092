"""DeepAR on walmart (fev protocol, h=39): tune on a validation window, score the test window once.

    # a configuration on the validation window (cutoff 78 weeks before each series' end)
    python benchmarks/deepar_walmart.py --stage val --set hidden_size=40 --set time_limit=240
    # the chosen configuration on the test window (the last 39 weeks), once
    python benchmarks/deepar_walmart.py --stage test --set ...

Each run appends one JSON line (configuration, WQL, CRPS, MASE, coverage, fit and predict
seconds, threads) to ``benchmarks/results/deepar_walmart_<stage>.jsonl``.
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
from forecasting.models.deepar import DeepAR


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=["val", "test"], required=True)
    ap.add_argument("--set", action="append", default=[], help="DeepAR argument, e.g. hidden_size=64")
    ap.add_argument("--data-dir", default=os.environ.get("FORECASTING_DATA"))
    ap.add_argument("--num-samples", type=int, default=250)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = {}
    for item in args.set:
        k, v = item.split("=", 1)
        try:
            config[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            config[k] = v
    ds = forecasting.load("walmart", args.data_dir)
    h = ds.task.horizon
    # validation: the window before the test window; test: the fev window (last h of each series)
    window = ds.panel.windows(h, 2)[0] if args.stage == "val" else ds.windows()[0]
    model = DeepAR(**config)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        model.fit(window.train, h)
        t1 = time.perf_counter()
        fc = model.predict(window.train, num_samples=args.num_samples, seed=0)
        t2 = time.perf_counter()
    scores = evaluate(fc, window, ds.task)
    infos = model.train_.get("members", [model.train_])
    steps = sum(part.get("epochs", 0) * model.batches_per_epoch
                for info in infos for part in info.values() if isinstance(part, dict))
    row = {"stage": args.stage, "tag": args.tag, "config": config, **{k: round(v, 5) for k, v in scores.items()},
           "fit_seconds": round(t1 - t0, 1), "predict_seconds": round(t2 - t1, 2), "peak_rss_mb": round(mem.peak_mb),
           "threads": torch.get_num_threads(), "gradient_steps": steps, "num_samples": args.num_samples,
           "train": [{k: {kk: vv for kk, vv in v.items() if kk != "history"} if isinstance(v, dict) else v
                      for k, v in info.items()} for info in infos]}
    out = Path(__file__).parent / "results" / f"deepar_walmart_{args.stage}.jsonl"
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
