"""Published numbers shown beside ours where the protocol matches: fev-bench's results tables.

fev-bench (Shchur et al., "fev-bench: A Realistic Benchmark for Time Series Forecasting", 2025;
https://github.com/autogluon/fev) publishes one CSV per model under
``benchmarks/fev_bench/results/``; each row is a task with its SQL, MASE, WAPE and WQL. The rows
below are copied from those files at the commits named in ``source`` (never typed from memory).

Where the protocol matches:

- ``walmart``: fev's task (2,936 store x dept series, h = 39, one window counted from each series'
  end, WQL over q = 0.1..0.9, MASE with seasonality 1). Our Panel reproduces fev's point Naive
  exactly (MASE 1.5241, WAPE 0.1967; ``tests/evaluation/test_protocol.py``), so these rows sit
  beside ours as equals.
- ``m5``: fev's ``m5_1D`` (30,490 series, h = 28, one window, seasonality 7) needs the full Kaggle
  history; it is shown beside our ``m5`` dataset only. ``m5_last56`` holds 28 days of context, so
  its numbers are not comparable with ``m5_1D`` and no anchor is shown there.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ANCHORS", "FEV_CITATION", "Anchor", "anchors_for"]

FEV_CITATION = ("O. Shchur et al., fev-bench: A Realistic Benchmark for Time Series Forecasting (2025), "
                "results tables in https://github.com/autogluon/fev/tree/main/benchmarks/fev_bench/results")

_FEV = "https://github.com/autogluon/fev/blob/{commit}/benchmarks/fev_bench/results/{file}"
_C_020F = "020f839badf89611b8276f3a4bdb1889b59fa2ab"
_C_14C3 = "14c3e011fa6b9fe8066247b9946fce446086d818"
_C_1663 = "1663ea4d5a2b7b10303248b7366b58383fc4bf1f"


@dataclass(frozen=True)
class Anchor:
    """One published row: the model as the source names it, its scores, where it comes from, and
    which of our models (if any) is the same method."""

    model: str
    wql: float
    mase: float
    wape: float
    source: str
    task: str
    ours: str | None = None
    note: str = ""


def _fev(model, task, wql, mase, wape, commit, file, ours=None, note=""):
    return Anchor(model, wql, mase, wape, _FEV.format(commit=commit, file=file), task, ours, note)


#: our dataset name -> published rows on the same protocol
ANCHORS: dict[str, tuple[Anchor, ...]] = {
    "walmart": (
        _fev("Seasonal Naive (fev, seasonality 1)", "walmart", 0.3075011099, 1.5240930953, 0.1967352033,
             _C_020F, "seasonal_naive.csv", "gaussian_naive / naive_point",
             "season 1 makes it a naive forecast: its WQL comes from Gaussian sigma*sqrt(h) quantiles (our "
             "gaussian_naive), its MASE and WAPE from the point forecast (our naive_point); our seasonal_naive "
             "(season 52, bootstrapped) is another method"),
        _fev("AutoETS (statsforecast)", "walmart", 119300400139.46916, 1.7226801126, 0.2950883508,
             _C_020F, "autoets.csv", "autoets", "WQL diverged in fev's run (a few series blow up)"),
        _fev("AutoARIMA (statsforecast)", "walmart", 0.1319843981, 1.2473824838, 0.1595972031,
             _C_14C3, "autoarima.csv", "autoarima"),
        _fev("DeepAR (GluonTS via AutoGluon)", "walmart", 0.1430611264, 1.418479122, 0.1819852642,
             _C_1663, "deepar.csv", "gluonts_deepar"),
        _fev("Chronos-Bolt (zero-shot)", "walmart", 0.0950021434, 0.9670980075, 0.1172761619,
             _C_020F, "chronos-bolt.csv"),
        _fev("Chronos-2 (zero-shot)", "walmart", 0.0739271753, 0.8167399684, 0.0933870797,
             _C_1663, "chronos-2.csv"),
    ),
    "m5": (
        _fev("Seasonal Naive (fev, seasonality 7)", "m5_1D", 0.8588793502, 1.2236286692, 0.9158941507,
             _C_020F, "seasonal_naive.csv", "seasonal_naive_point"),
        _fev("AutoETS (statsforecast)", "m5_1D", 0.6156373922, 1.0632996272, 0.7714367509,
             _C_020F, "autoets.csv", "autoets"),
        _fev("AutoARIMA (statsforecast)", "m5_1D", 0.611489809, 1.0630838856, 0.7716780305,
             _C_14C3, "autoarima.csv", "autoarima"),
        _fev("DeepAR (GluonTS via AutoGluon)", "m5_1D", 0.6137512997, 0.8913904459, 0.7256180708,
             _C_1663, "deepar.csv", "gluonts_deepar"),
    ),
}


def anchors_for(dataset: str) -> tuple[Anchor, ...]:
    """Published rows for ``dataset`` (empty where no published table uses the same protocol)."""
    return ANCHORS.get(dataset, ())
