"""Scenarios for simulators: joint, coherent, reduced and stressed sample paths, and the files and
simulators they feed.

    Forecast (independent samples [N, S, H]) + history (Panel)
        -> dependence.py   Schaake shuffle / Gaussian copula: joint scenarios, marginals kept
        -> hierarchy.py    sums at every level (store, type, total): coherent by construction
        -> reduction.py    S -> K weighted scenarios (fast forward selection, k-medoids)
        -> whatif.py       re-forecast with changed covariates, shocks, stress selection
        -> export.py       chunked streams; parquet / numpy / torch files
        -> simulation.py   Simulator protocol, run_policy (KPI distributions), inventory simulator
"""
from .core import ScenarioError, ScenarioSet, weighted_quantile
from .dependence import (
                         DEPENDENCE,
                         GaussianCopula,
                         Independent,
                         SchaakeShuffle,
                         forecast_pit,
                         historical_windows,
                         history_transform,
                         joint_scenarios,
                         make_dependence,
                         pair_paths,
                         reorder,
)
from .export import (
                         ScenarioChunk,
                         ScenarioStream,
                         read_numpy,
                         read_torch,
                         write_numpy,
                         write_parquet,
                         write_torch,
)
from .hierarchy import TOTAL, Hierarchy, aggregate_truth, level_metrics, weighted_crps
from .reduction import (
                         Reduction,
                         energy_distance,
                         match_weights,
                         reduce_scenarios,
                         scenario_distances,
                         transport_distance,
)
from .simulation import (
                         InventorySimulator,
                         KPIReport,
                         Simulator,
                         base_stock_levels,
                         cvar,
                         kpi_features,
                         newsvendor_features,
                         point_base_stock,
                         protection_demand,
                         run_policy,
)
from .whatif import (
                         CovariateOverride,
                         apply_shock,
                         override_covariates,
                         reforecast,
                         series_mask,
                         step_mask,
                         stress_scenarios,
)

__all__ = [
                         "DEPENDENCE",
                         "TOTAL",
                         "CovariateOverride",
                         "GaussianCopula",
                         "Hierarchy",
                         "Independent",
                         "InventorySimulator",
                         "KPIReport",
                         "Reduction",
                         "ScenarioChunk",
                         "ScenarioError",
                         "ScenarioSet",
                         "ScenarioStream",
                         "SchaakeShuffle",
                         "Simulator",
                         "aggregate_truth",
                         "apply_shock",
                         "base_stock_levels",
                         "cvar",
                         "energy_distance",
                         "forecast_pit",
                         "historical_windows",
                         "history_transform",
                         "joint_scenarios",
                         "kpi_features",
                         "level_metrics",
                         "make_dependence",
                         "match_weights",
                         "newsvendor_features",
                         "override_covariates",
                         "pair_paths",
                         "point_base_stock",
                         "protection_demand",
                         "read_numpy",
                         "read_torch",
                         "reduce_scenarios",
                         "reforecast",
                         "reorder",
                         "run_policy",
                         "scenario_distances",
                         "series_mask",
                         "step_mask",
                         "stress_scenarios",
                         "transport_distance",
                         "weighted_crps",
                         "weighted_quantile",
                         "write_numpy",
                         "write_parquet",
                         "write_torch",
]
