"""The benchmark runner behind the ``forecasting`` command.

- :mod:`~forecasting.bench.suites`: suites as TOML files (datasets, models with options, seeds)
- :mod:`~forecasting.bench.runner`: resumable runs, one JSON file per dataset x model x window x seed
- :mod:`~forecasting.bench.report`: the markdown leaderboard and its plots
- :mod:`~forecasting.bench.anchors`: published fev-bench numbers shown beside ours
"""
from .anchors import ANCHORS, Anchor, anchors_for
from .report import render
from .runner import Plan, plan_suites, read_cells, run_plan
from .suites import Suite, SuiteError, load_suite

__all__ = [
           "ANCHORS",
           "Anchor",
           "Plan",
           "Suite",
           "SuiteError",
           "anchors_for",
           "load_suite",
           "plan_suites",
           "read_cells",
           "render",
           "run_plan",
]
