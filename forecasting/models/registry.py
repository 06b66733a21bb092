"""Models by name, built for a dataset's Task: what the benchmark runner and the CLI use."""
from __future__ import annotations

from typing import Callable

from ..datasets.registry import Task
from .base import Model
from .baselines import EmpiricalRecent, GaussianNaive, Naive, SeasonalNaive

__all__ = ["MODELS", "make_model", "list_models"]


def _empirical_window(task: Task) -> int:
    # two seasons where the season is short (24 months, 14 days), else one full natural season
    return 2 * task.season if task.season <= 12 else task.season


def _gluonts_deepar(task: Task, **options) -> Model:
    from .gluonts_deepar import GluonTSDeepAR  # gluonts and lightning load only when asked for
    return GluonTSDeepAR.fev(task.horizon, **options)


def _deepar(task: Task, **options) -> Model:
    from .deepar import DeepAR
    options.setdefault("likelihood", "negbin" if task.count_data else "studentT")
    return DeepAR(**options)


def _statespace(task: Task, **options) -> Model:
    from ..data.calendar import _base
    from .statespace import StateSpace  # pyro loads only when asked for
    # chosen on validation windows before the test cutoffs (benchmarks/results/statespace.md)
    options.setdefault("likelihood", "negbin" if task.count_data else "normal")
    options.setdefault("group", task.group)
    if not task.count_data:  # a smooth level (tight prior on its noise scale) forecast walmart's validation window best
        options.setdefault("level_prior", -4.5)
        options.setdefault("level_prior_scale", 0.2)
    if _base(task.freq)[0] == "H":  # validated on hourly data only (minute data: 10,080 positions a week)
        # one profile over the hours of the week, not hour + weekday added: validation WQL (week
        # before the test / a year earlier) metro_traffic 0.1326 / 0.1351 -> 0.0586 / 0.0619,
        # pedestrian 0.2498 / 0.4152 -> 0.1795 / 0.4218 (benchmarks/results/statespace.md)
        options.setdefault("seasonal", "crossed")
    return StateSpace(**options)


#: name -> (factory(task, **options) -> Model, one-line description)
MODELS: dict[str, tuple[Callable[..., Model], str]] = {
    "naive": (lambda task, **o: Naive(**o), "last value + bootstrapped one-step differences (random walk)"),
    "naive_point": (lambda task, **o: Naive(point=True, **o), "last observed value, no spread (fev's point Naive)"),
    "gaussian_naive": (lambda task, **o: GaussianNaive(**o), "last value, Gaussian sigma*sqrt(h) (AutoGluon's Naive)"),
    # the task's season and window are defaults a suite may override (season = 1, window = 12, ...)
    "seasonal_naive": (lambda task, **o: SeasonalNaive(o.pop("season", task.season), **o),
                       "last season + bootstrapped seasonal differences (natural season)"),
    "seasonal_naive_point": (lambda task, **o: SeasonalNaive(o.pop("season", task.season), point=True, **o),
                             "last season's values, no spread"),
    "empirical": (lambda task, window=None, **o: EmpiricalRecent(_empirical_window(task) if window is None else window,
                                                                 **o),
                  "draws from the recent observed values (intermittent-demand baseline)"),
    "gluonts_deepar": (_gluonts_deepar, "GluonTS torch DeepAR (the peer) as fev-bench ran it through AutoGluon"),
    "deepar": (_deepar, "this package's DeepAR (negative binomial for count data, else Student-t)"),
    "statespace": (_statespace, "Bayesian structural model in Pyro: level, seasonality, holidays, pooled by group"),
}


# -- statsforecast peers (pip install 'forecasting[stats]'): local models fitted per series, with
# fev-bench's seasonality (task.mase_season), Gaussian paths from their intervals
def _statsforecast(method: str, task: Task, **options) -> Model:
    # statsforecast loads only when asked for
    from .statsforecast_models import StatsForecastModel
    options.setdefault("season_length", task.mase_season)
    # the intermittent-demand methods forecast demand, which is never negative
    options.setdefault("nonnegative", method in ("croston_optimized", "tsb", "adida"))
    # two of AutoGluon's AutoARIMA defaults (fev-bench ran AutoGluon); statsforecast's own defaults
    # otherwise, e.g. allowdrift=True and, for AutoETS, damped trends tried (AutoGluon: both off)
    if method == "autoarima":
        options.setdefault("approximation", True)
        options.setdefault("allowmean", True)
    return StatsForecastModel(method, **options)


MODELS.update({
    "autoets": (lambda task, **o: _statsforecast("autoets", task, **o),
                "statsforecast AutoETS (a fev-bench baseline), Gaussian paths from its intervals"),
    "autoarima": (lambda task, **o: _statsforecast("autoarima", task, **o),
                  "statsforecast AutoARIMA (a fev-bench baseline), Gaussian paths from its intervals"),
    "autotheta": (lambda task, **o: _statsforecast("autotheta", task, **o),
                  "statsforecast AutoTheta (a fev-bench baseline), Gaussian paths from its intervals"),
    "croston_optimized": (lambda task, **o: _statsforecast("croston_optimized", task, **o),
                          "statsforecast CrostonOptimized (intermittent), conformal spread, clipped at 0"),
    "tsb": (lambda task, **o: _statsforecast("tsb", task, **o),
            "statsforecast TSB (intermittent, alpha_d = alpha_p = 0.2), conformal spread, clipped at 0"),
    "adida": (lambda task, **o: _statsforecast("adida", task, **o),
              "statsforecast ADIDA (intermittent), conformal spread, clipped at 0"),
})
# -- end of the statsforecast peers


def list_models() -> list[str]:
    return list(MODELS)


def make_model(name: str, task: Task, **options) -> Model:
    """A fresh model ``name`` configured for ``task``; ``options`` go to its constructor."""
    try:
        factory, _ = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
    return factory(task, **options)
