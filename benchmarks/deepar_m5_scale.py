"""DeepAR at M5 scale: fit and sampling time and memory on a synthetic M5-shaped panel.

    python benchmarks/deepar_m5_scale.py                       # full: 30,490 series x 1,941 days
    python benchmarks/deepar_m5_scale.py --series 3049 --threads 1 --no-write   # a slice, to iterate

The panel has M5's shape and hierarchy (3,049 items x 10 stores in 3 states; 3 categories, 7
departments; 1,941 days from 2011-01-29) and its character: negative-binomial daily counts with a
weekly and a yearly cycle, mostly low-volume intermittent items, a share of items released late,
closed stores on Christmas. Levels are calibrated on the real M5 evaluation month (in
``shared/data/m5``: 55% zeros, mean 1.44 a day, series means 0.25 / 0.61 / 1.43 at the quartiles,
13.3 at the 99th percentile, 123 at most); the synthetic panel's own figures are in the result. The fit
is a fixed number of gradient steps (``--steps``: speed and memory, not accuracy); sampling draws
``--samples`` paths x 28 days for every series, timed at each ``--threads`` setting.

Also measured: the bound, a bare ``torch.nn.LSTM`` unroll of the same rows (series x samples),
width, hidden size and layers, on a slice of the rows and extrapolated linearly (the unroll is
chunked, so its time is linear in rows); and an ESTIMATE of the time for 1,000 paths on one H100
from FLOP and byte counts. Writes ``benchmarks/results/deepar_m5_scale.{json,md}``.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from forecasting import Panel
from forecasting.evaluation.backtest import environment
from forecasting.forecast import atomic_write
from forecasting.models.deepar import DeepAR
from forecasting.models.deepar.sampling import default_max_rows, sample_paths

RESULTS = Path(__file__).parent / "results"
M5_DEPTS = {"HOBBIES": (416, 149), "HOUSEHOLD": (532, 515), "FOODS": (216, 398, 823)}  # items per dept
M5_STORES = {"CA": 4, "TX": 3, "WI": 3}


def m5_panel(num_series: int = 30_490, num_days: int = 1_941, seed: int = 0) -> Panel:
    """A synthetic M5-shaped panel of negative-binomial counts (see the module docstring).

    Series are item x store in M5's order (all stores of item 0, then item 1 ...), so a prefix
    ``num_series < 30_490`` is a slice with the same mix. Static categoricals: ``state_id``,
    ``store_id``, ``cat_id``, ``dept_id``."""
    rng = np.random.default_rng(seed)
    depts = [(c, f"{c}_{k + 1}", n) for c, sizes in M5_DEPTS.items() for k, n in enumerate(sizes)]
    stores = [(s, f"{s}_{k + 1}") for s, n in M5_STORES.items() for k in range(n)]
    item_cat = np.concatenate([[c] * n for c, _, n in depts])
    item_dept = np.concatenate([[d] * n for _, d, n in depts])
    n_items, n_stores = len(item_cat), len(stores)
    item = np.repeat(np.arange(n_items), n_stores)[:num_series]
    store = np.tile(np.arange(n_stores), n_items)[:num_series]
    N, T = len(item), num_days
    index = pd.date_range("2011-01-29", periods=T, freq="D")

    # levels: item popularity (log-normal, heavy right tail) x store size; foods sell most
    cat_lift = {"HOBBIES": 0.6, "HOUSEHOLD": 0.8, "FOODS": 1.6}
    item_level = rng.lognormal(-0.85, 1.35, n_items) * np.array([cat_lift[c] for c in item_cat])
    store_level = rng.lognormal(0.0, 0.35, n_stores)
    level = (item_level[item] * store_level[store])[:, None]
    # weekly cycle (weekends sell more, by store) and a yearly cycle (phase by department)
    dow = index.dayofweek.to_numpy()
    weekend = rng.uniform(0.15, 0.45, n_stores)[store][:, None]
    weekly = 1 + weekend * np.isin(dow, [5, 6])[None] - 0.1 * (dow == 2)[None]
    dept_codes = pd.Categorical(item_dept).codes
    phase = rng.uniform(0, 2 * np.pi, 7)[dept_codes][item][:, None]
    amp = rng.uniform(0.05, 0.35, n_items)[item][:, None]
    doy = index.dayofyear.to_numpy()[None]
    yearly = np.exp(amp * np.sin(2 * np.pi * doy / 365.25 + phase))
    trend = np.exp(rng.normal(0, 0.15, N)[:, None] * np.linspace(-1, 1, T)[None])
    mean = level * weekly * yearly * trend
    mean[:, (index.month == 12) & (index.day == 25)] = 1e-9  # stores close on Christmas
    shape = rng.uniform(0.5, 3.5, N)[:, None]  # dispersion: smaller -> more zeros and spikes
    y = rng.negative_binomial(shape, shape / (shape + mean)).astype(np.float32)
    del mean, weekly, yearly, trend
    # ~40% of items launch during the sample, as in M5 (leading days are unobserved)
    late = rng.random(n_items) < 0.4
    launch = np.where(late, rng.integers(1, T - 200, n_items), 0)[item]
    observed = np.arange(T)[None] >= launch[:, None]
    y[~observed] = 0.0

    ids = pd.Index([f"{item_dept[i]}_{i:04d}_{stores[s][1]}" for i, s in zip(item, store)], name="item_id")
    cats = {"state_id": [stores[s][0] for s in store], "store_id": [stores[s][1] for s in store],
            "cat_id": list(item_cat[item]), "dept_id": list(item_dept[item])}
    codes, levels = [], []
    for name, values in cats.items():
        c = pd.Categorical(values)
        codes.append(c.codes.astype(np.int64))
        levels.append(pd.Index(c.categories, name=name))
    return Panel(item_ids=ids, index=index, freq="D", target=torch.from_numpy(y),
                 observed=torch.from_numpy(observed), start=torch.from_numpy(launch.astype(np.int64)),
                 end=torch.full((N,), T, dtype=torch.int64), static_cat=torch.from_numpy(np.stack(codes, 1)),
                 static_cat_names=tuple(cats), static_cat_levels=tuple(levels))


def _level_stats(y: torch.Tensor, o: torch.Tensor) -> dict:
    m = (y * o).sum(1) / o.sum(1).clamp_min(1)
    q = torch.quantile(m, torch.tensor([0.25, 0.5, 0.75, 0.99]))
    return {"zero_share": round(float(((y == 0) & o).sum() / o.sum()), 3), "mean": round(float(y[o].mean()), 3),
            "series_mean_q25_q50_q75_q99": [round(float(x), 2) for x in q], "series_mean_max": round(float(m.max()), 1)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_gb() -> float:
    """Peak resident memory (GB) since the last ``reset_peak_rss`` (Linux: VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def reset_peak_rss() -> None:
    """Start a new peak-memory window (Linux ``clear_refs``), so each phase reports its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def flops_per_row_step(net, horizon: int) -> dict:
    """Multiply-add FLOPs of one series-sample-step, averaged over the horizon: ours (the lag
    values that vary per sample, ``W_hh``, the upper layers, the head) and a bare LSTM reading
    the full input width. Elementwise work is counted apart (about 10 flops per hidden unit and
    layer; transcendental functions counted as one)."""
    rnn = net.rnn
    Hd, L, G = rnn.hidden_size, rnn.num_layers, 4 * rnn.hidden_size
    width = net.num_dynamic + net.num_static
    lags = net.lags.tolist()
    drawn = sum(sum(1 for l in lags if l <= t) for t in range(horizon)) / horizon  # per-sample lag values
    ours = 2 * G * (drawn + Hd) + (L - 1) * 2 * G * 2 * Hd + 2 * Hd * net.likelihood.num_params
    bare = 2 * G * (width + Hd) + (L - 1) * 2 * G * 2 * Hd
    return {"ours_matmul": ours, "bare_lstm_matmul": bare, "elementwise": 10 * Hd * L,
            "mean_drawn_lags_per_step": round(drawn, 2), "input_width": width, "hidden_size": Hd, "layers": L}


def gpu_estimate(net, series: int, paths: int, horizon: int) -> dict:
    """ESTIMATE (not a measurement) of sampling ``paths`` paths on one H100 SXM from FLOP and byte
    counts. Assumptions, stated in the output: dense peaks 989 TFLOP/s bf16 (tensor cores) and
    67 TFLOP/s fp32 (CUDA cores), 3.35 TB/s HBM3; skinny matmuls (K = 40..80) reach 30% of the
    bf16 peak; memory-bound passes reach 70% of HBM bandwidth. Bytes per row-step: a fused cell
    (torch.compile / Triton: each layer's gates written once in bf16 and read once, h and c read
    and written in fp32) versus an unfused eager cell (this CPU code's ~10 passes per layer)."""
    f = flops_per_row_step(net, horizon)
    Hd, L, G = f["hidden_size"], f["layers"], 4 * f["hidden_size"]
    row_steps = series * paths * horizon
    flops = row_steps * (f["ours_matmul"] + f["elementwise"])
    bf16_peak, fp32_peak, hbm = 989e12, 67e12, 3.35e12
    mm_eff, bw_eff = 0.30, 0.70
    fused_bytes = L * (2 * G * 2 + 4 * Hd * 4) + 4 + 2 * 4  # gates bf16 w+r, h/c fp32 r+w; draw; params
    eager_bytes = L * (2 * G * 2 + 2 * G * 4 + 20 * Hd * 4) + 64
    compute_s = flops / (bf16_peak * mm_eff)
    fused_s = row_steps * fused_bytes / (hbm * bw_eff)
    eager_s = row_steps * eager_bytes / (hbm * bw_eff)
    return {
        "label": "ESTIMATE from FLOP and byte counts, not a measurement",
        "series": series, "paths": paths, "horizon": horizon, "row_steps": row_steps,
        "flops": flops, "tflops": round(flops / 1e12, 2),
        "assumptions": {"bf16_dense_peak_tflops": 989, "fp32_peak_tflops": 67, "hbm_tb_s": 3.35,
                        "matmul_fraction_of_peak": mm_eff, "bandwidth_fraction": bw_eff,
                        "bytes_per_row_step_fused": fused_bytes, "bytes_per_row_step_eager": eager_bytes},
        "compute_seconds_bf16": round(compute_s, 3),
        "compute_seconds_fp32_cuda_cores": round(flops / (fp32_peak * 0.5), 3),
        "memory_seconds_fused_cell": round(fused_s, 3),
        "memory_seconds_eager_cell": round(eager_s, 3),
        "estimate_seconds_fused": round(max(compute_s, fused_s), 3),
        "estimate_seconds_eager": round(max(compute_s, eager_s), 3),
        "output_gb": round(series * paths * horizon * 4 / 1e9, 2),
    }


def bare_lstm_seconds(width: int, hidden: int, layers: int, rows: int, horizon: int, block: int = 16_384,
                      repeats: int = 2) -> float:
    """Seconds for a bare ``nn.LSTM`` to unroll ``rows`` rows for ``horizon`` single steps, in
    blocks of ``block`` rows (as ``deepar_sampling_bound.py``); best of ``repeats``."""
    lstm = torch.nn.LSTM(width, hidden, layers, batch_first=True).eval()
    x = torch.randn(block, 1, width)

    @torch.no_grad()
    def run(rows=rows, horizon=horizon):
        for i in range(0, rows, block):
            xi = x[:min(block, rows - i)]
            state = None
            for _ in range(horizon):
                _, state = lstm(xi, state)

    run(block, 2)  # warm-up
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


def compare_samples(a: torch.Tensor, b: torch.Tensor) -> dict:
    """How far two sample sets ``[N, S, H]`` are apart: per-series-and-step means and 10/50/90%
    quantiles, as mean absolute differences relative to the mean level."""
    level = float(a.mean().clamp_min(1e-9))
    out = {"mean_level": round(level, 4),
           "mean_abs_diff_of_means": round(float((a.mean(1) - b.mean(1)).abs().mean()) / level, 5),
           "bias_of_means": round(float((b.mean(1) - a.mean(1)).mean()) / level, 5)}
    for q in (0.1, 0.5, 0.9):
        qa = torch.quantile(a[:2000], q, dim=1)
        qb = torch.quantile(b[:2000], q, dim=1)
        out[f"mean_abs_diff_q{int(q * 100)}"] = round(float((qa - qb).abs().mean()) / level, 5)
    return out


def time_one(args) -> None:
    """Child process: sample every series once at ``--time-one threads,dtype`` with the saved
    model, print one JSON line (seconds, peak RSS of this process while sampling, load)."""
    th, dt = args.time_one.split(",")
    torch.set_num_threads(int(th))
    panel = m5_panel(args.series, args.days)
    model = DeepAR.load(args.model)
    gc.collect()
    reset_peak_rss()
    rss0 = peak_rss_gb()
    load0 = load_average()
    t = time.perf_counter()
    if dt == "float32":  # the user's road: predict() -> Forecast
        samples = model.predict(panel, num_samples=args.samples, seed=int(th)).samples
    else:  # DeepAR has no dtype argument (yet): the sampler itself, on the tensors predict builds
        pt = model._tensors(panel, args.horizon)
        torch.manual_seed(int(th))
        samples = sample_paths(model.net_, pt, model.context_, args.horizon, args.samples, model.max_rows, dtype=dt)
    secs = time.perf_counter() - t
    print(json.dumps({"threads": int(th), "dtype": dt, "seconds": round(secs, 2),
                      "peak_rss_gb": round(peak_rss_gb(), 2), "rss_before_gb": round(rss0, 2),
                      "load_before": load0, "load_after": load_average(),
                      "finite": bool(torch.isfinite(samples).all())}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=30_490)
    ap.add_argument("--days", type=int, default=1_941)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--horizon", type=int, default=28)
    ap.add_argument("--steps", type=int, default=200, help="gradient steps of the fit (batches of --batch-size)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--hidden-size", type=int, default=40)
    ap.add_argument("--num-layers", type=int, default=2)
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to time sampling at")
    ap.add_argument("--fit-threads", type=int, default=1,
                    help="torch threads for the fit (small batches: a second thread mostly waits)")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="sampling matmul dtypes to time")
    ap.add_argument("--max-rows", type=int, default=None, help="series x samples per chunk (None: DeepAR's)")
    ap.add_argument("--bound-series", type=int, default=1_000, help="series of the bare-LSTM slice")
    ap.add_argument("--accuracy-series", type=int, default=3_049,
                    help="series on which bfloat16 samples are compared with float32 ones (and float32 with itself)")
    ap.add_argument("--gpu-paths", type=int, default=1_000)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--report", action="store_true", help="only rewrite the .md from the .json")
    ap.add_argument("--time-one", default=None, help=argparse.SUPPRESS)  # child: "threads,dtype"
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.time_one:
        return time_one(args)
    if args.report:
        r = json.loads((RESULTS / "deepar_m5_scale.json").read_text())
        return atomic_write(RESULTS / "deepar_m5_scale.md", lambda tmp: Path(tmp).write_text(report(r)))
    threads = [int(t) for t in args.threads.split(",")]
    dtypes = args.dtypes.split(",")
    torch.set_num_threads(args.fit_threads)
    load_before = load_average()

    t = time.perf_counter()
    panel = m5_panel(args.series, args.days)
    gen_s = time.perf_counter() - t
    obs = panel.observed
    stats = {"series": panel.num_series, "days": panel.num_steps,
             "zero_share": round(float(((panel.target == 0) & obs).sum() / obs.sum()), 3),
             "mean": round(float(panel.target[obs].mean()), 3),
             "median_series_mean": round(float(((panel.target * obs).sum(1) / obs.sum(1)).median()), 3),
             "late_start_share": round(float((panel.start > 0).float().mean()), 3),
             "last_28_days": _level_stats(panel.target[:, -28:], obs[:, -28:]),
             "generate_seconds": round(gen_s, 1)}
    print("panel", stats, flush=True)

    gc.collect()
    reset_peak_rss()
    model = DeepAR(likelihood="negbin", hidden_size=args.hidden_size, num_layers=args.num_layers,
                   batch_size=args.batch_size, batches_per_epoch=args.steps, max_epochs=1, validation=False,
                   device="cpu", seed=0, **({"max_rows": args.max_rows} if args.max_rows else {}))
    t = time.perf_counter()
    model.fit(panel, args.horizon)
    fit = {"seconds": round(time.perf_counter() - t, 2), "steps": args.steps, "batch_size": args.batch_size,
           "train_seconds": round(model.train_["train"]["seconds"], 2),
           "seconds_per_step": round(model.train_["train"]["seconds"] / args.steps, 4),
           "threads": torch.get_num_threads(), "peak_rss_gb": round(peak_rss_gb(), 2)}
    print("fit", fit, flush=True)

    net, H, S = model.net_, args.horizon, args.samples
    rows = panel.num_series * S
    row_steps = rows * H
    sampling = []
    with tempfile.TemporaryDirectory() as tmp:  # each timing in a fresh process: its own peak memory
        path = model.save(Path(tmp) / "deepar_m5.pt")
        for th in threads:
            for dt in dtypes:
                cmd = [sys.executable, __file__, "--time-one", f"{th},{dt}", "--model", str(path),
                       "--series", str(args.series), "--days", str(args.days), "--samples", str(S),
                       "--horizon", str(H)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                entry = json.loads(done.stdout.strip().splitlines()[-1])
                entry["row_steps_per_second"] = round(row_steps / entry["seconds"])
                sampling.append(entry)
                print("sample", entry, flush=True)

    # bare nn.LSTM on a slice of the rows, extrapolated linearly (the unroll is chunked)
    width = net.num_dynamic + net.num_static
    bound_rows = min(rows, args.bound_series * S)
    bound = []
    for th in threads:
        torch.set_num_threads(th)
        secs = bare_lstm_seconds(width, args.hidden_size, args.num_layers, bound_rows, H,
                                 block=model.max_rows or default_max_rows("cpu"), repeats=1 if th > 1 else 2)
        full = secs * rows / bound_rows
        bound.append({"threads": th, "slice_rows": bound_rows, "slice_seconds": round(secs, 2),
                      "extrapolated_seconds": round(full, 1), "row_steps_per_second": round(row_steps / full)})
        print("bound", bound[-1], flush=True)
    for e in sampling:
        b = next(x for x in bound if x["threads"] == e["threads"])
        e["fraction_of_bound"] = round(b["extrapolated_seconds"] / e["seconds"], 2)

    # accuracy of the bfloat16 matmuls on a slice: against float32 with the same seed (the same
    # random numbers) and with another seed; float32 against itself with another seed is the noise
    torch.set_num_threads(threads[0])
    sub = panel.select(range(min(args.accuracy_series, panel.num_series)))
    pt = model._tensors(sub, H)

    def draws(dt, seed):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return sample_paths(net, pt, model.context_, H, S, model.max_rows, dtype=dt)

    ref = draws("float32", 0)
    accuracy = {"series": sub.num_series, "float32_vs_float32_other_seed": compare_samples(ref, draws("float32", 1))}
    if "bfloat16" in dtypes:
        accuracy["bfloat16_vs_float32_same_seed"] = compare_samples(ref, draws("bfloat16", 0))
        accuracy["bfloat16_vs_float32_other_seed"] = compare_samples(ref, draws("bfloat16", 1))
    print("accuracy", accuracy, flush=True)

    result = {
        "panel": stats, "model": {"likelihood": "negbin", "hidden_size": args.hidden_size,
                                  "num_layers": args.num_layers, "context": model.context_,
                                  "lags": net.lags.tolist(), "input_width": width,
                                  "max_rows": model.max_rows or default_max_rows("cpu")},
        "fit": fit, "samples": S, "horizon": H, "rows": rows, "row_steps": row_steps,
        "sampling": sampling, "bare_lstm_bound": bound,
        "bound_note": "bare torch.nn.LSTM (same input width, hidden size, layers), single-step calls on "
                      f"{model.max_rows or default_max_rows('cpu'):,}-row blocks (ours' chunk), timed on a slice "
                      "of the rows and extrapolated linearly",
        "accuracy": accuracy,
        "flops_per_row_step": flops_per_row_step(net, H),
        "gpu_estimate": gpu_estimate(net, panel.num_series, args.gpu_paths, H),
        "target_seconds": 40, "load_before": load_before, "load_after": load_average(),
        "environment": environment(),
    }
    print(json.dumps({k: result[k] for k in ("flops_per_row_step", "gpu_estimate", "accuracy")}, indent=1))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        atomic_write(RESULTS / "deepar_m5_scale.json", lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
        atomic_write(RESULTS / "deepar_m5_scale.md", lambda tmp: Path(tmp).write_text(report(result)))


def report(r: dict) -> str:
    """The short markdown summary of a result."""
    p, f, g = r["panel"], r["fit"], r["gpu_estimate"]
    lines = [
        "# DeepAR at M5 scale (synthetic)", "",
        f"Written by `benchmarks/deepar_m5_scale.py` on {r['environment'].get('date', '')}; "
        f"{r['environment'].get('logical_cpus')} logical CPUs ({r['environment'].get('cpu_model')}), "
        f"load average {r['load_before']} before and {r['load_after']} after (the machine may be shared).", "",
        f"Panel: {p['series']:,} negative-binomial series x {p['days']:,} days (weekly + yearly cycle), "
        f"{p['zero_share']:.0%} zeros, mean {p['mean']}, median series mean {p['median_series_mean']}, "
        f"{p['late_start_share']:.0%} of series launched late.", "",
        f"Model: LSTM {r['model']['num_layers']} x {r['model']['hidden_size']}, {len(r['model']['lags'])} lags, "
        f"input width {r['model']['input_width']}, negbin; chunks of {r['model']['max_rows']:,} rows.", "",
        f"Fit: {f['steps']} gradient steps of {f['batch_size']} windows in {f['train_seconds']} s "
        f"({f['seconds_per_step'] * 1000:.0f} ms a step, {f['threads']} threads), {f['seconds']} s with "
        f"feature preparation; peak RSS {f['peak_rss_gb']} GB.", "",
        f"Sampling {r['samples']} paths x {r['horizon']} days for every series ({r['row_steps']:,} row-steps):", "",
        "| threads | matmuls | seconds | row-steps/s | bare LSTM (s, extrapolated) | fraction of bound | peak RSS GB | load before/after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in r["sampling"]:
        b = next(x for x in r["bare_lstm_bound"] if x["threads"] == e["threads"])
        lines.append(f"| {e['threads']} | {e['dtype']} | {e['seconds']} | {e['row_steps_per_second']:,} | "
                     f"{b['extrapolated_seconds']} | {e['fraction_of_bound']} | {e['peak_rss_gb']} | "
                     f"{e['load_before'][0]} / {e['load_after'][0]} |")
    best = min(r["sampling"], key=lambda e: e["seconds"])
    need = r["row_steps"] / r["target_seconds"]
    b1 = next(x for x in r["bare_lstm_bound"] if x["threads"] == best["threads"])
    lines += ["", f"Fastest: {best['seconds']} s ({best['threads']} threads, {best['dtype']}), "
              f"{best['seconds'] / r['target_seconds']:.1f}x the {r['target_seconds']} s target, which needs "
              f"{need:,.0f} row-steps/s: {need / b1['row_steps_per_second']:.1f}x the bare-LSTM bound measured "
              f"beside it ({b1['row_steps_per_second']:,} row-steps/s at {b1['threads']} threads).", ""]
    lines += [f"Target: <= {r['target_seconds']} s for the sampling. Bound: {r['bound_note']} "
              f"(slice of {r['bare_lstm_bound'][0]['slice_rows']:,} rows). Fraction of bound = bare-LSTM "
              "seconds / our seconds (above 1: faster than the bare unroll, which reads the full input "
              "width at every step and runs the first step per sample).", ""]
    if r["accuracy"]:
        lines += [f"Accuracy of the samples on the first {r['accuracy']['series']:,} series (mean absolute "
                  "differences of per-series-and-day statistics, relative to the mean level; the "
                  "float32-vs-float32 row is the Monte Carlo noise between two seeds):", "",
                  "| comparison | means | q10 | q50 | q90 | bias of means |", "|---|---|---|---|---|---|"]
        for name, a in r["accuracy"].items():
            if not isinstance(a, dict):
                continue
            lines.append(f"| {name} | {a['mean_abs_diff_of_means']} | {a['mean_abs_diff_q10']} | "
                         f"{a['mean_abs_diff_q50']} | {a['mean_abs_diff_q90']} | {a['bias_of_means']} |")
        lines.append("")
    fl = r["flops_per_row_step"]
    lines += [f"FLOPs per row-step: ours {fl['ours_matmul']:,.0f} in matmuls (a mean of "
              f"{fl['mean_drawn_lags_per_step']} drawn lag values per step) + ~{fl['elementwise']} elementwise; "
              f"the bare LSTM {fl['bare_lstm_matmul']:,.0f}.", "",
              f"**GPU ESTIMATE (not measured)** for {g['paths']:,} paths x {g['horizon']} steps x {g['series']:,} series "
              f"({g['tflops']} TFLOP) on one H100 SXM: compute {g['compute_seconds_bf16']} s (bf16 at "
              f"{g['assumptions']['matmul_fraction_of_peak']:.0%} of 989 TFLOP/s), memory "
              f"{g['memory_seconds_fused_cell']} s with a fused cell ({g['assumptions']['bytes_per_row_step_fused']} "
              f"B/row-step at {g['assumptions']['bandwidth_fraction']:.0%} of 3.35 TB/s) or "
              f"{g['memory_seconds_eager_cell']} s with unfused eager kernels "
              f"({g['assumptions']['bytes_per_row_step_eager']} B/row-step): about "
              f"**{g['estimate_seconds_fused']} s fused, {g['estimate_seconds_eager']} s eager**; "
              f"the samples alone are {g['output_gb']} GB.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
