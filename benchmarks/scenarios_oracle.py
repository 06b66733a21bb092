"""How much can any Gaussian copula move the ES/VS blocks of the walmart scenario benchmark?

    python benchmarks/scenarios_oracle.py --data-dir ../shared/data --split val   # writes results/scenarios_oracle_val.{json,md}

A diagnosis, not a method: the copula is fitted on the randomised PIT of the **scored window's own
truth** under the forecast being scored (in-sample: the dependence the realised errors actually
had), then applied to that forecast's samples like any other copula, and every block of
``scenarios_walmart.py`` is scored against independent samples. A block that even this oracle
cannot bring below independent cannot show a dependence method's worth on these marginals. Needs
the cached forecast of ``scenarios_walmart.py`` (``--model statespace``; it is fitted if missing).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import forecasting
from forecasting.forecast import atomic_write
from forecasting.scenarios import GaussianCopula, Hierarchy, forecast_pit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenarios_walmart as bench  # (the benchmark's blocks, scales and forecast cache)

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--model", default="statespace")
    p.add_argument("--split", choices=["test", "val"], default="val")
    p.add_argument("--num-scenarios", type=int, default=1000)
    p.add_argument("--ranks", type=int, nargs="+", default=[0, 6], help="copula factors (with one factor per store)")
    p.add_argument("--cache-dir", default="/tmp/scenarios_walmart_forecasts")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.refit = False
    torch.set_num_threads(1)
    ds = forecasting.load("walmart", args.data_dir)
    H = ds.task.horizon
    _, window = bench.split_window(ds, args.split)
    train, y, mask = window.train, window.target, window.mask
    fc, _ = bench.cached_forecast(args, ds, train, H)
    hier = Hierarchy.from_panel(ds.panel, ["Store", "Type"])
    c = mask.all(1)
    scale = bench.scale_of(train.target, train.observed)
    stores = hier.labels("Store")
    store_hist = hier.aggregate_level(torch.where(train.observed, train.target, 0.0), "Store")
    store_scale = bench.scale_of(store_hist, store_hist != 0)
    sub = Hierarchy(hier.item_ids[c.numpy()], {"Store": stores[c.numpy()]})

    def score(values):
        return bench.multivariate_scores(values[c], y[c], scale[c], stores[c.numpy()], sub.aggregate_level(values[c], "Store"),
                                         sub.aggregate_level(y[c], "Store"), store_scale)

    ref = score(fc.samples)
    print("independent", {k: round(v, 4) for k, v in ref.items()}, flush=True)
    u = forecast_pit(fc, torch.where(mask, y, torch.zeros_like(y)), mask)  # the scored truth: in-sample
    rows = {}
    for rank in args.ranks:
        cop = GaussianCopula(rank, groups="Store").fit(train, H, residuals=u)
        m = score(cop.apply(fc.samples, seed=1))
        rows[f"oracle copula, rank {rank} + Store factors (kept {cop.rank_})"] = {k: m[k] / ref[k] for k in ref}
        print(rank, {k: round(m[k] / ref[k], 4) for k in ref}, flush=True)
    report = {"command": "python benchmarks/scenarios_oracle.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "split": args.split, "model": args.model, "independent": ref, "relative": rows}
    out = Path(args.out) if args.out else HERE / "results" / f"scenarios_oracle_{args.split}"
    lines = ["# Oracle copula on walmart's scenario blocks (a diagnosis)", "",
             f"Written by `{report['command']}` ({args.model} forecast, {args.num_scenarios} scenarios, split `{args.split}`).", "",
             ("The copula is fitted on the randomised PIT of the scored window's own truth (in-sample: the dependence the "
              "realised forecast errors had) and scored like the methods of `scenarios.md`. Score / independent "
              "score, below 1 is better:"), "",
             "| copula | " + " | ".join(bench.MV_KEYS) + " |", "|---|" + "---|" * len(bench.MV_KEYS)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for k in bench.MV_KEYS) + " |")
    lines += ["", "A block the oracle cannot bring below 1 cannot show a dependence method's worth on these marginals.", ""]
    atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text("\n".join(lines)))
    print(f"wrote {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
