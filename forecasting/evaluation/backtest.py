"""Backtests: dataset x model x window -> metrics, fit and predict seconds, peak memory.

``backtest`` runs one model on one dataset's rolling windows; ``run_benchmark`` runs a grid of
them and writes JSON, CSV and a markdown leaderboard (and, if asked, every forecast as parquet).
One model failing is recorded with its error and the run goes on.
"""
from __future__ import annotations

import json
import os
import platform
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd
import psutil
import torch

from ..data.panel import Window
from ..datasets.registry import Dataset, Task
from ..forecast import Forecast, atomic_write
from . import metrics as M

__all__ = ["evaluate", "align_forecast", "backtest", "run_benchmark", "CellResult", "PeakMemory", "leaderboard_markdown",
           "environment"]

INTERVALS = {50: (0.25, 0.75), 80: (0.1, 0.9), 95: (0.025, 0.975)}


def align_forecast(forecast: Forecast, window: Window) -> Forecast:
    """``forecast`` with its rows in the order of ``window``'s series, matched by ``item_ids`` (not by
    position); an error names series missing from the forecast, series the window does not hold,
    and series whose forecast does not start right after their cutoff."""
    ids = window.train.item_ids
    fids = forecast.item_ids
    if not fids.equals(ids):
        pos = fids.get_indexer(ids) if fids.is_unique else None
        if pos is None or (pos < 0).any() or len(fids) != len(ids):
            dup = list(fids[fids.duplicated()].unique()[:5])
            missing = list(ids.difference(fids)[:5])
            extra = list(fids.difference(ids)[:5])
            raise ValueError(f"the forecast's series do not match the window's: missing {missing}, "
                             f"not in the window {extra}, repeated {dup} (first 5 of each)")
        forecast = Forecast(forecast.samples[torch.as_tensor(pos, device=forecast.samples.device)], ids,
                            forecast.start[pos], forecast.freq)
    expected = window.train.forecast_start()
    off = expected != forecast.start
    if off.any():
        i = int(off.nonzero()[0][0])
        raise ValueError(f"{int(off.sum())} forecasts do not start right after their series' cutoff: series "
                         f"{ids[i]!r} starts at {forecast.start[i]}, its truth at {expected[i]}")
    return forecast


def evaluate(forecast: Forecast, window: Window, task: Task) -> dict[str, float]:
    """Every metric of one forecast on one window. Quantiles are computed once from the samples.

    - ``wql``: fev/GluonTS weighted quantile loss over ``task.quantiles``
    - ``crps``: mean CRPS in target units; ``scaled_crps``: sum CRPS / sum |y|
    - ``mase``: fev's pooled MASE of the sample median, scale with ``task.mase_season``
    - ``wape``: sum |y - median| / sum |y| (fev's WAPE of the point forecast)
    - ``coverage_{50,80,95}``: share of truth inside the central intervals; ``interval_score_80``
    - ``pit_coverage_80``: share of randomised PIT values in [0.1, 0.9] (calibration for counts too)
    """
    forecast = align_forecast(forecast, window)
    y, mask = window.target.to(forecast.samples.device), window.mask.to(forecast.samples.device)
    if forecast.samples.shape[0] != y.shape[0] or forecast.horizon != y.shape[1]:
        raise ValueError(f"forecast {tuple(forecast.samples.shape)} does not match the window's truth {tuple(y.shape)}")
    levels = sorted(set(task.quantiles) | {q for pair in INTERVALS.values() for q in pair} | {0.5})
    q = forecast.quantile(levels)
    at = {lv: q[:, i] for i, lv in enumerate(levels)}
    hist, ok = window.train.history(window.train.num_steps)
    scale = M.seasonal_scale(hist, ok, task.mase_season).to(y.device)
    out = {
        "wql": M.wql(torch.stack([at[lv] for lv in task.quantiles], 1), y, task.quantiles, mask),
        "crps": M.crps(forecast.samples, y, mask),
        "scaled_crps": M.scaled_crps(forecast.samples, y, mask),
        "mase": M.mase(at[0.5], y, scale, mask),
        # WAPE of the sample median: sum |y - median| / sum |y| (fev's WAPE), = WQL at q = 0.5 alone
        "wape": M.wql(at[0.5][:, None, :], y, (0.5,), mask),
    }
    for level, (lo, hi) in INTERVALS.items():
        out[f"coverage_{level}"] = M.coverage(at[lo], at[hi], y, mask)
    out["pit_coverage_80"] = M.pit_coverage(forecast.samples, y, 0.8, mask)
    out["interval_score_80"] = M.interval_score(at[0.1], at[0.9], y, 0.2, mask)
    out["observed_points"] = mask.sum()
    return {k: float(v) for k, v in out.items()}


class PeakMemory:
    """Peak resident memory (MB) of this process while the block runs, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _poll(self):
        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, proc.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak_mb = psutil.Process().memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, psutil.Process().memory_info().rss / 2**20)


@dataclass
class CellResult:
    """One dataset x model x window (x seed) of a benchmark."""

    dataset: str
    model: str
    window: int
    seed: int
    num_series: int
    num_samples: int
    horizon: int
    metrics: dict = field(default_factory=dict)
    fit_seconds: float | None = None
    predict_seconds: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None

    def flat(self) -> dict:
        d = asdict(self)
        d.update(d.pop("metrics"))
        return d


ModelFactory = Callable[[Task], "object"]


def backtest(dataset: Dataset, model: ModelFactory, model_name: str | None = None, num_samples: int = 100,
             seed: int = 0, num_windows: int | None = None, on_forecast: Callable | None = None,
             catch: bool = False) -> list[CellResult]:
    """Fit a fresh model per window on ``window.train``, predict, and score.

    ``model`` is a factory ``task -> Model`` (a fresh model per window). ``on_forecast(window,
    forecast)`` is called with each forecast (e.g. to write it). With ``catch=True`` an exception
    is recorded in the result instead of raised."""
    results = []
    for window in dataset.windows(num_windows):
        m = model(dataset.task)
        name = model_name or getattr(m, "name", type(m).__name__)
        cell = CellResult(dataset.name, name, window.index, seed, window.train.num_series, num_samples,
                          window.horizon)
        try:
            torch.manual_seed(seed)
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                m.fit(window.train, window.horizon)
                t1 = time.perf_counter()
                fc = m.predict(window.train, num_samples=num_samples, seed=seed)
                t2 = time.perf_counter()
            cell.fit_seconds, cell.predict_seconds, cell.peak_rss_mb = t1 - t0, t2 - t1, mem.peak_mb
            cell.metrics = evaluate(fc, window, dataset.task)
            if on_forecast is not None:
                on_forecast(window, fc)
        except Exception as err:  # one failing model must not stop a benchmark
            if not catch:
                raise
            cell.error = f"{type(err).__name__}: {err}"
            cell.metrics = {"traceback": traceback.format_exc(limit=5)}
        results.append(cell)
    return results


def environment() -> dict:
    """Versions, hardware and threads, recorded with every benchmark."""
    import numpy
    vers = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "pandas": pd.__version__}
    for mod in ("gluonts", "pyro", "lightning"):
        try:
            vers[mod] = __import__(mod).__version__
        except Exception:
            pass
    from .. import __version__
    vers["forecasting"] = __version__
    return {
        "versions": vers,
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


SHOWN = [("wql", "WQL", 4), ("scaled_crps", "CRPS (scaled)", 4), ("crps", "CRPS", 3), ("mase", "MASE", 3),
         ("coverage_80", "cov 80%", 3), ("fit_seconds", "fit s", 1), ("predict_seconds", "predict s", 2),
         ("peak_rss_mb", "peak MB", 0)]


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean over windows (and seeds) of each dataset x model; failed cells are listed apart."""
    ok = results[results["error"].isna()] if "error" in results else results
    cols = [c for c, _, _ in SHOWN if c in ok]
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "model", *cols])
    g = ok.groupby(["dataset", "model"], sort=False)
    table = g[cols].mean()
    table["windows"] = g["window"].nunique()
    table["seeds"] = g["seed"].nunique()
    if ok["seed"].nunique() > 1:
        table["wql_sd"] = g["wql"].std()
    return table.reset_index().sort_values(["dataset", "wql"], kind="stable")


def leaderboard_markdown(results: pd.DataFrame, env: Mapping, command: str | None = None) -> str:
    """A leaderboard a person can read: one table per dataset, best WQL first."""
    table = summarize(results)
    lines = ["# Leaderboard", ""]
    if command:
        lines += ["Produced by:", "", f"    {command}", ""]
    v = env["versions"]
    lines += [f"Run {env['date']} on {env['cpu_model']} ({env['logical_cpus']} logical CPUs, "
              f"{env['torch_threads']} torch threads, {env['memory_gb']} GB), GPU: {env['cuda'] or 'none'}. "
              + ", ".join(f"{k} {val}" for k, val in v.items()) + ".", "",
              "WQL: mean over q = 0.1..0.9 of 2 sum pinball / sum |y| (fev-bench, GluonTS). "
              "CRPS (scaled): sum CRPS / sum |y|. MASE: fev's pooled definition, sample median. "
              "cov 80%: share of truth inside the central 80% interval. Times per window; "
              "metrics are means over windows and seeds.", ""]
    for ds, part in table.groupby("dataset", sort=False):
        lines += [f"## {ds}", ""]
        heads = ["model"] + [h for c, h, _ in SHOWN if c in part] + ["windows", "seeds"]
        lines.append("| " + " | ".join(heads) + " |")
        lines.append("|" + "---|" * len(heads))
        for _, r in part.iterrows():
            cells = [str(r["model"])]
            for c, _, nd in SHOWN:
                if c in part:
                    val = r[c]
                    txt = "" if pd.isna(val) else f"{val:.{nd}f}"
                    if c == "wql" and "wql_sd" in part and not pd.isna(r.get("wql_sd")):
                        txt += f" ± {r['wql_sd']:.4f}"
                    cells.append(txt)
            cells += [str(int(r["windows"])), str(int(r["seeds"]))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    failed = results[results["error"].notna()] if "error" in results else results.iloc[:0]
    if len(failed):
        lines += ["## Failed cells", "", "| dataset | model | window | error |", "|---|---|---|---|"]
        for _, r in failed.iterrows():
            err = str(r["error"])[:200].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r['dataset']} | {r['model']} | {r['window']} | {err} |")
        lines.append("")
    return "\n".join(lines)


def run_benchmark(datasets: Iterable[Dataset], models: Mapping[str, ModelFactory], out_dir, num_samples: int = 100,
                  seeds: Iterable[int] = (0,), num_windows: int | None = None, write_forecasts: bool = False,
                  progress: bool = True, command: str | None = None) -> pd.DataFrame:
    """Run every dataset x model x window x seed; write ``results.json``, ``results.csv`` and
    ``leaderboard.md`` to ``out_dir`` (and forecasts as parquet under ``out_dir/forecasts``)."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    datasets, seeds = list(datasets), list(seeds)
    cells: list[CellResult] = []
    bar = tqdm(total=len(datasets) * len(models) * len(seeds), disable=not progress, unit="cell")
    for ds in datasets:
        for name, factory in models.items():
            for seed in seeds:
                bar.set_description(f"{ds.name} / {name} / seed {seed}")

                def write(window, fc, ds=ds, name=name, seed=seed):
                    if write_forecasts:
                        fc.to_parquet(out / "forecasts" / ds.name / f"{name}_window{window.index}_seed{seed}.parquet")

                cells += backtest(ds, factory, name, num_samples, seed, num_windows, write, catch=True)
                bar.update(1)
    bar.close()
    results = pd.DataFrame([c.flat() for c in cells])
    env = environment()
    payload = {"environment": env, "command": command, "results": [c.flat() for c in cells]}
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1, default=str)))
    atomic_write(out / "results.csv", lambda tmp: results.drop(columns=["traceback"], errors="ignore").to_csv(tmp, index=False))
    atomic_write(out / "leaderboard.md", lambda tmp: Path(tmp).write_text(leaderboard_markdown(results, env, command)))
    return results
