"""DeepAR against the GluonTS DeepAR peer on walmart's test window, side by side in one process.

    python benchmarks/deepar_vs_peer_walmart.py --data-dir ../shared/data --threads 1

Runs, one after the other in this process on the same window, threads and num_samples:

1. ``peer``: GluonTS DeepAR with fev-bench's settings (``GluonTSDeepAR.fev``: context 78,
   2 x 40 LSTM, Student-t, early stopping on the last 39 training weeks, patience 50) inside a
   ``--time-limit`` budget (fev/AutoGluon ran it under a time limit too);
2. ``ours-same-budget``: ours with the same model size and batch, capped at the gradient steps the
   peer took (rounded up to whole epochs of 100 batches), with the same kind of early stopping on
   the last 39 training weeks (``validation=True, refit=False, val_metric="crps"``);
3. ``ours-best``: ours with the configuration chosen on the validation window
   (``benchmarks/results/deepar.md``). Its test score is not a new choice: the same configuration
   was scored on test by ``deepar_walmart.py``; it runs here only for the wall-time ratio.

Each is fitted, timed and scored by the package's ``backtest`` (fev's WQL/MASE). Writes
``benchmarks/results/deepar_vs_peer_walmart.{json,md}`` atomically (``--out`` for the stem).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

import forecasting
from forecasting.evaluation.backtest import backtest
from forecasting.forecast import atomic_write
from forecasting.models.deepar import DeepAR
from forecasting.models.gluonts_deepar import GluonTSDeepAR

REGULARISED = dict(anchor="profile", profile_group="Dept", dropout=0.5, weight_decay=1e-3, use_static=False)
BEST = dict(REGULARISED, validation=False, max_epochs=10, batches_per_epoch=50, ensemble=3, anchor_penalty=30.0)


def _run(name, model, ds, num_samples, seed):
    """Fit, predict and score ``model`` on walmart's test window (the package's ``backtest``)."""
    print(f"[{time.strftime('%H:%M:%S')}] {name}: fitting", flush=True)
    (cell,) = backtest(ds, lambda task: model, model_name=name, num_samples=num_samples, seed=seed)
    scores = {k: round(float(v), 5) for k, v in cell.metrics.items()}
    row = {"model": name, **scores, "fit_seconds": round(cell.fit_seconds, 1),
           "predict_seconds": round(cell.predict_seconds, 1),
           "total_seconds": round(cell.fit_seconds + cell.predict_seconds, 1), "peak_rss_mb": round(cell.peak_rss_mb)}
    print(f"[{time.strftime('%H:%M:%S')}] {name}: WQL {row['wql']:.4f}, fit {row['fit_seconds']} s, "
          f"predict {row['predict_seconds']} s", flush=True)
    return row


def _steps(model: DeepAR) -> int:
    infos = model.train_.get("members", [model.train_])
    return sum(part.get("epochs", 0) * model.batches_per_epoch
               for info in infos for part in info.values() if isinstance(part, dict))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("FORECASTING_DATA"))
    ap.add_argument("--time-limit", type=float, default=600.0, help="the peer's fit budget in seconds")
    ap.add_argument("--num-samples", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-best", action="store_true", help="leave out run 3 (ours-best)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "deepar_vs_peer_walmart"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = forecasting.load("walmart", args.data_dir)  # one window: fev's test window (the last 39 weeks)
    rows, configs = [], {}

    peer = GluonTSDeepAR.fev(ds.task.horizon, time_limit=args.time_limit, seed=args.seed)
    rows.append(_run("gluonts-deepar-fev", peer, ds, args.num_samples, args.seed))
    peer_steps = int(peer.global_steps_)
    rows[-1].update(gradient_steps=peer_steps, batch_size=128, stopped_by=peer.stopped_by_, epochs=peer.epochs_)

    same = dict(REGULARISED, max_epochs=math.ceil(peer_steps / 100), batches_per_epoch=100, batch_size=128,
                hidden_size=40, num_layers=2, validation=True, refit=False, val_metric="crps", seed=args.seed)
    configs["ours-same-budget"] = same
    model = DeepAR(**same)
    rows.append(_run("ours-same-budget", model, ds, args.num_samples, args.seed))
    stopped = [part["stopped_by"] for part in model.train_.values() if isinstance(part, dict) and "stopped_by" in part]
    rows[-1].update(gradient_steps=_steps(model), batch_size=128, stopped_by=stopped)

    if not args.skip_best:
        configs["ours-best"] = dict(BEST, seed=args.seed)
        model = DeepAR(**configs["ours-best"])
        rows.append(_run("ours-best", model, ds, args.num_samples, args.seed))
        rows[-1].update(gradient_steps=_steps(model), batch_size=128)

    p = rows[0]
    for r in rows[1:]:
        r["wall_time_ratio_vs_peer"] = round(r["total_seconds"] / p["total_seconds"], 3)
    result = {"dataset": "walmart", "window": "test (fev: last 39 weeks)", "num_samples": args.num_samples,
              "seed": args.seed, "peer_time_limit": args.time_limit, "rows": rows, "configs": configs,
              "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "machine": platform.platform(),
              "processor": platform.processor(), "torch": torch.__version__,
              "load_after": os.getloadavg(), "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    lines = ["# DeepAR vs the GluonTS DeepAR peer on walmart (test window), one process", "",
             f"`python benchmarks/deepar_vs_peer_walmart.py --threads {torch.get_num_threads()}` "
             f"({result['finished']}; torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
             f"{os.cpu_count()} CPUs; load average after: {', '.join(f'{x:.1f}' for x in result['load_after'])}). "
             f"{args.num_samples} paths per series; the peer's fit budget {args.time_limit:.0f} s.", "",
             "| model | WQL | MASE | WAPE | 80% cov. | gradient steps x 128 | fit s | predict s | total s | wall time vs peer |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['wql']:.4f} | {r['mase']:.3f} | {r['wape']:.4f} | {r['coverage_80']:.3f} | "
                     f"{r['gradient_steps']:,} | {r['fit_seconds']} | {r['predict_seconds']} | {r['total_seconds']} | "
                     f"{r.get('wall_time_ratio_vs_peer', 1.0):.2f}x |")
    lines += ["", "Configurations: " + "; ".join(f"`{k}`: {v}" for k, v in configs.items()), ""]
    stem = Path(args.out)
    text = json.dumps(result, indent=2, default=str)
    atomic_write(stem.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
    atomic_write(stem.with_suffix(".md"), lambda tmp: Path(tmp).write_text("\n".join(lines)))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
