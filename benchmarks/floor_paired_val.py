"""Paired check of the floor at zero (``nonnegative``) on a dataset's validation windows.

One fit per window with the given registry model and options, then two forecasts from that same
fit and seed: ``nonnegative=False`` and ``nonnegative=None``. Prints the mean WQL of each and the
share of draws below zero, as one JSON line::

    python benchmarks/floor_paired_val.py stallion deepar '{"time_limit": 60}'
    python benchmarks/floor_paired_val.py traffic_weekly statespace
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

import forecasting
from forecasting.evaluation.backtest import evaluate
from forecasting.models.registry import make_model


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit(__doc__)
    name, model_name = argv[0], argv[1]
    options = json.loads(argv[2]) if len(argv) > 2 else {}
    torch.set_num_threads(1)
    ds = forecasting.load(name, os.environ.get("FORECASTING_DATA"))
    rows = []
    for w in ds.windows(validation=True):
        model = make_model(model_name, ds.task, **options).fit(w.train, ds.task.horizon)
        row = {}
        for floor in (False, None):
            model.nonnegative = floor
            fc = model.predict(w.train, num_samples=100, seed=0)
            row[str(floor)] = float(evaluate(fc, w, ds.task)["wql"])
            row["neg_" + str(floor)] = float((fc.samples < 0).float().mean())
        rows.append(row)
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    print(json.dumps({"dataset": name, "model": model_name, "options": options, "windows": len(rows), **out}))


if __name__ == "__main__":
    main()
