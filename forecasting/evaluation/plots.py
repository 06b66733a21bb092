"""Forecast diagnostics and their figures: fan charts, PIT histogram, coverage, CRPS by horizon step.

Two halves, so a benchmark can keep the small summaries and draw later (or again):

- :func:`diagnostics` turns one forecast and its window's truth into a small JSON-ready dict
  (PIT histogram counts, empirical coverage of central intervals at several nominal levels, scaled
  CRPS per horizon step, and quantile fans of a few series). The tensor work is done in chunks of
  series, so memory stays bounded on M5-sized forecasts.
- ``plot_*`` draw those dicts for several models of one dataset into PNG files (matplotlib, Agg).

PIT: the randomised probability integral transform of each observed truth under the sample
distribution, u = F(y-) + V (F(y) - F(y-)), V ~ U(0, 1), so ties (count data, many zeros) do not
pile up at one edge. A calibrated forecast gives a flat histogram.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..data.panel import Window
from ..forecast import Forecast, atomic_write
from . import metrics as M
from .metrics import pit_values

__all__ = [
    "FAN_QUANTILES",
    "NOMINAL_LEVELS",
    "diagnostics",
    "fan_series",
    "pit_values",
    "plot_all",
    "plot_coverage",
    "plot_crps_by_step",
    "plot_fan",
    "plot_forecast",
    "plot_pit",
]

#: nominal coverage levels of the central intervals in the coverage plot
NOMINAL_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
#: quantiles kept for the fan charts: 90% and 50% bands and the median
FAN_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PIT_BINS = 10


def fan_series(window: Window, count: int = 3) -> list[int]:
    """Rows of ``count`` series to draw: ranks 95%, 50% and 10% (spread evenly for other counts)
    of total observed truth among series whose whole horizon is observed. Depends only on the
    window, so every model's fan shows the same series."""
    full = window.mask.all(1)
    rows = torch.nonzero(full).squeeze(1) if bool(full.any()) else torch.nonzero(window.mask.any(1)).squeeze(1)
    if rows.numel() == 0:
        return []
    volume = (window.target[rows].abs() * window.mask[rows]).sum(1)
    order = rows[torch.argsort(volume, stable=True)]
    ranks = [0.95, 0.5, 0.1] if count == 3 else list(np.linspace(0.95, 0.05, count))
    picked = []
    for r in ranks:
        i = int(order[min(len(order) - 1, int(r * len(order)))])
        if i not in picked:
            picked.append(i)
    return picked


def diagnostics(forecast: Forecast, window: Window, fan_rows: Sequence[int] | None = None,
                history: int | None = None, seed: int = 0, chunk: int = 2048) -> dict:
    """Small, JSON-ready summaries of one forecast against its window's truth.

    Returns ``pit_hist`` (counts in 10 equal bins), ``coverage`` (``nominal`` levels and the
    ``empirical`` share of observed truth inside each central interval), ``crps_by_step``
    (sum CRPS / sum |y| at each horizon step, NaN-free: None where no truth) and ``fan``: for each
    row of ``fan_rows`` (default :func:`fan_series`), the last ``history`` observed-or-missing
    values before the cutoff (default 3 x horizon), the truth, and :data:`FAN_QUANTILES`."""
    from .backtest import align_forecast
    forecast = align_forecast(forecast, window)
    samples = forecast.samples
    y, mask = window.target.to(samples.device), window.mask.to(samples.device)
    N, _S, H = samples.shape
    if y.shape != (N, H):
        raise ValueError(f"forecast {tuple(samples.shape)} does not match the window's truth {tuple(y.shape)}")
    gen = torch.Generator(device=samples.device).manual_seed(seed)
    levels = torch.tensor(NOMINAL_LEVELS, dtype=torch.float64)
    qs = torch.cat([(1 - levels) / 2, (1 + levels) / 2]).to(samples.device)
    pit_counts = torch.zeros(PIT_BINS, dtype=torch.float64)
    inside = torch.zeros(len(NOMINAL_LEVELS), dtype=torch.float64)
    crps_sum = torch.zeros(H, dtype=torch.float64)
    abs_sum = torch.zeros(H, dtype=torch.float64)
    for a in range(0, N, chunk):  # bounded memory on 30,000-series forecasts
        s, yy, mm = samples[a:a + chunk], y[a:a + chunk], mask[a:a + chunk]
        s = s if s.is_floating_point() else s.float()
        u = pit_values(s, yy, mm, gen).double().cpu()
        pit_counts += torch.histc(u, bins=PIT_BINS, min=0.0, max=1.0)
        q = torch.quantile(s, qs.to(s.dtype), dim=1)  # [2L, n, H]
        lo, hi = q[: len(NOMINAL_LEVELS)], q[len(NOMINAL_LEVELS):]
        ok = (yy >= lo) & (yy <= hi) & mm
        inside += ok.sum((1, 2)).double().cpu()
        crps_sum += (M.crps_ensemble(s, torch.nan_to_num(yy)) * mm).sum(0).double().cpu()
        abs_sum += (torch.nan_to_num(yy).abs() * mm).sum(0).double().cpu()
    observed = float(mask.sum())
    by_step = [float(c / t) if t > 0 else None for c, t in zip(crps_sum, abs_sum)]
    out = {
        "pit_hist": [int(c) for c in pit_counts],
        "coverage": {"nominal": list(NOMINAL_LEVELS),
                     "empirical": [float(v / observed) if observed else None for v in inside]},
        "crps_by_step": by_step,
        "fan": [],
    }
    rows = fan_series(window) if fan_rows is None else list(fan_rows)
    if rows:
        L = min(window.train.num_steps, history or 3 * H)
        hist, ok = window.train.history(L)
        fan_q = forecast.quantile(FAN_QUANTILES)[rows].double().cpu().numpy()
        for k, i in enumerate(rows):
            h = hist[i].double().cpu().numpy()
            out["fan"].append({
                "item_id": str(forecast.item_ids[i]),
                "cutoff": str(forecast.start[i]),
                "history": [float(v) if o else None for v, o in zip(h, ok[i].cpu().numpy())],
                "truth": [float(v) if o else None for v, o in zip(y[i].double().cpu().numpy(), mask[i].cpu().numpy())],
                "quantiles": {str(q): [float(v) for v in fan_q[k, j]] for j, q in enumerate(FAN_QUANTILES)},
            })
    return out


# ------------------------------------------------------------------------------------ figures
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path) -> Path:
    plt = _pyplot()

    def write(tmp):
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


def _style(i: int) -> dict:
    """Distinct colour and dash per line, for up to 40 models on one axes."""
    plt = _pyplot()
    return {"color": plt.get_cmap("tab20")(i % 20), "ls": "-" if i < 20 else "--"}


def _nan(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def plot_fan(diags: Mapping[str, dict], path, title: str = "") -> Path:
    """Fan charts: one row per series, one column per model (90% and 50% bands, median, truth)."""
    plt = _pyplot()
    models = [m for m, d in diags.items() if d.get("fan")]
    if not models:
        raise ValueError("no model has fan data to draw")
    rows = max(len(diags[m]["fan"]) for m in models)
    fig, axes = plt.subplots(rows, len(models), figsize=(3.2 * len(models), 2.2 * rows), squeeze=False,
                             layout="constrained")
    for c, m in enumerate(models):
        for r in range(rows):
            ax = axes[r][c]
            if r >= len(diags[m]["fan"]):
                ax.axis("off")
                continue
            f = diags[m]["fan"][r]
            hist, truth = _nan(f["history"]), _nan(f["truth"])
            q = {k: np.asarray(v) for k, v in f["quantiles"].items()}
            th = np.arange(-len(hist), 0)
            tf = np.arange(len(truth))
            ax.plot(th, hist, color="0.3", lw=0.8)
            ax.fill_between(tf, q["0.05"], q["0.95"], color="tab:blue", alpha=0.2, lw=0)
            ax.fill_between(tf, q["0.25"], q["0.75"], color="tab:blue", alpha=0.35, lw=0)
            ax.plot(tf, q["0.5"], color="tab:blue", lw=1)
            ax.plot(tf, truth, color="black", lw=0.9, marker=".", ms=2)
            ax.axvline(-0.5, color="0.6", lw=0.6, ls=":")
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(m, fontsize=8)
            if c == 0:
                ax.set_ylabel(f["item_id"], fontsize=7)
    fig.suptitle(title or "fan charts (steps from the cutoff; bands 50% and 90%)", fontsize=9)
    return _save(fig, path)


def plot_forecast(forecast: Forecast, item_ids, panel=None, window: Window | None = None, history: int | None = None,
                  path=None, title: str = ""):
    """Fan charts of the named series of one forecast, on dates: 90 % and 50 % bands and the
    median, with the series' history from ``panel`` (or ``window.train``) and the truth from
    ``window`` when given. ``history``: steps of history shown (default 4 horizons). Returns the
    matplotlib Figure; with ``path``, also writes it as a PNG (atomically) and closes it."""
    plt = _pyplot()
    ids = [item_ids] if isinstance(item_ids, str) or np.ndim(item_ids) == 0 else list(item_ids)
    if not ids:
        raise ValueError("item_ids names no series")
    unknown = [i for i in ids if i not in forecast.item_ids]
    if unknown:
        raise ValueError(f"series {unknown[:5]} are not in the forecast ({forecast.num_series} series)")
    panel = window.train if panel is None and window is not None else panel
    H = forecast.horizon
    history = 4 * H if history is None else history
    rows = forecast.item_ids.get_indexer(ids)
    sub = Forecast(forecast.samples[torch.as_tensor(rows, device=forecast.samples.device)], forecast.item_ids[rows],
                   forecast.start[rows], forecast.freq)  # only the drawn series are sorted for quantiles
    q = sub.quantile([0.05, 0.25, 0.5, 0.75, 0.95]).cpu().numpy()  # [n, 5, H]
    stamps = sub.timestamps().to_numpy().reshape(len(ids), H)
    fig, axes = plt.subplots(len(ids), 1, figsize=(8, 2.4 * len(ids)), squeeze=False, layout="constrained")
    for k, (ax, item) in enumerate(zip(axes[:, 0], ids)):
        t = stamps[k]
        if panel is not None and item in panel.item_ids:
            p = panel.item_ids.get_loc(item)
            end = int(panel.end[p])
            lo = max(0, end - history)
            y = panel.target[p, lo:end].cpu().numpy().astype(float)
            y[~panel.observed[p, lo:end].cpu().numpy()] = np.nan
            ax.plot(panel.index[lo:end], y, color="0.3", lw=0.9, label="history")
        ax.fill_between(t, q[k, 0], q[k, 4], color="tab:blue", alpha=0.2, lw=0, label="90 %")
        ax.fill_between(t, q[k, 1], q[k, 3], color="tab:blue", alpha=0.35, lw=0, label="50 %")
        ax.plot(t, q[k, 2], color="tab:blue", lw=1.2, label="median")
        if window is not None and item in window.train.item_ids:
            w = window.train.item_ids.get_loc(item)
            truth = window.target[w].cpu().numpy().astype(float)
            truth[~window.mask[w].cpu().numpy()] = np.nan
            ax.plot(t[: len(truth)], truth[:H], color="black", lw=0.9, marker=".", ms=3, label="truth")
        ax.set_title(str(item), fontsize=9)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7, ncol=5, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    if path is not None:
        _save(fig, path)
    return fig


def _grid(n: int, cols: int = 4):
    plt = _pyplot()
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.9 * rows), squeeze=False, layout="constrained")
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def plot_pit(diags: Mapping[str, dict], path, title: str = "") -> Path:
    """One PIT histogram per model (density; the dashed line is the calibrated ideal, 1)."""
    models = [m for m, d in diags.items() if sum(d.get("pit_hist") or [0]) > 0]
    if not models:
        raise ValueError("no model has PIT values to draw")
    fig, axes = _grid(len(models))
    for ax, m in zip(axes, models):
        counts = np.asarray(diags[m]["pit_hist"], dtype=float)
        dens = counts / counts.sum() * len(counts)
        edges = np.linspace(0, 1, len(counts) + 1)
        ax.bar(edges[:-1], dens, width=np.diff(edges), align="edge", color="tab:blue", alpha=0.7)
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_title(m, fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(title or "PIT histograms", fontsize=9)
    return _save(fig, path)


def plot_coverage(diags: Mapping[str, dict], path, title: str = "") -> Path:
    """Empirical coverage of the central intervals against their nominal level, one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--", label="nominal")
    for i, (m, d) in enumerate(diags.items()):
        cov = d.get("coverage")
        if cov:
            ax.plot(cov["nominal"], _nan(cov["empirical"]), marker="o", ms=2.5, lw=1, label=m, **_style(i))
    ax.set_xlabel("nominal coverage of the central interval")
    ax.set_ylabel("share of truth inside")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title or "interval coverage", fontsize=9)
    return _save(fig, path)


def plot_crps_by_step(diags: Mapping[str, dict], path, title: str = "") -> Path:
    """Scaled CRPS (sum CRPS / sum |y|) at each horizon step, one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, (m, d) in enumerate(diags.items()):
        v = d.get("crps_by_step")
        if v:
            ax.plot(np.arange(1, len(v) + 1), _nan(v), marker="o", ms=2, lw=1, label=m, **_style(i))
    ax.set_xlabel("horizon step")
    ax.set_ylabel("CRPS (scaled)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title or "CRPS by horizon step", fontsize=9)
    return _save(fig, path)


def plot_all(diags: Mapping[str, dict], folder, dataset: str = "", fan_models: Sequence[str] | None = None) -> dict:
    """The four figures of one dataset into ``folder``: ``fan.png``, ``pit.png``, ``coverage.png``,
    ``crps_by_step.png``. ``fan_models`` limits the fan chart's columns. Returns {kind: path}."""
    folder = Path(folder)
    fans = {m: diags[m] for m in (fan_models or diags) if m in diags}
    return {
        "fan": plot_fan(fans, folder / "fan.png", f"{dataset}: fan charts (50% and 90% bands, steps from the cutoff)"),
        "pit": plot_pit(diags, folder / "pit.png", f"{dataset}: PIT histograms (flat = calibrated)"),
        "coverage": plot_coverage(diags, folder / "coverage.png", f"{dataset}: interval coverage against nominal"),
        "crps_by_step": plot_crps_by_step(diags, folder / "crps_by_step.png", f"{dataset}: CRPS by horizon step"),
    }
