"""statsforecast's local models (AutoETS, AutoARIMA, AutoTheta, Croston, TSB, ADIDA, IMAPA) as sample-path models.

    Panel ──► long frame (unique_id = row, ds = grid step, y) ──► StatsForecast(...).forecast(h, level=[80])
          ──► mean and 80% interval per (series, step) ──► Gaussian sample paths ``[N, S, H]``

Install with ``pip install 'forecasting[stats]'``. statsforecast fits one model per series (its own
loop, numba inside); ``n_jobs`` sets its worker processes (1 by default: one core).

Input preparation, as AutoGluon does for these models (so fev-bench's numbers are comparable):

- each series runs from its first observed step to its end, cut to the last ``max_length`` steps
  (AutoGluon's default 2,500);
- missing values inside are forward filled, then backward filled (statsforecast needs complete
  series);
- ``season_length`` is the seasonality of the *task* (fev-bench's: 1 weekly, 12 monthly, 7 daily,
  24 hourly) unless given;
- a series on which the model fails (too short, degenerate) gets statsforecast's fallback, a
  :class:`statsforecast.models.Naive`;
- the statsforecast model's own defaults otherwise (the registry adds AutoGluon's
  ``approximation=True, allowmean=True`` for AutoARIMA; AutoGluon also turns off drift and
  damped trends, which statsforecast tries by default).

Sample paths: statsforecast returns a point forecast and a central interval per step. For AutoETS,
AutoARIMA and AutoTheta the interval is Gaussian, so the sd is (hi80 - lo80) / (2 z_0.9) and the
paths are ``mean + sd * z`` with ``z ~ N(0, 1)``: each step's marginal is exactly the model's
predictive distribution. The intermittent-demand methods (Croston, TSB, ADIDA, IMAPA) give point
forecasts only; their interval comes from statsforecast's conformal intervals
(``ConformalIntervals(h, n_windows=2)``: absolute errors of the series' own last two h-step
back-forecasts) and is turned into a Gaussian sd the same way; a series shorter than 2h + 1
gets the Naive fallback (``fallback_series_`` counts them), and a panel where every series is that
short is an error. The draws are independent across
steps (the models' step-to-step dependence is not reproduced): use these paths for per-step
metrics, not for sums over the horizon. ``nonnegative=True`` clips paths at 0 (count data).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from ..data.panel import Panel
from ..forecast import Forecast
from .base import Model, check_nonnegative, floor_rows

__all__ = ["METHODS", "StatsForecastModel"]

_Z90 = 1.2815515655446004  # standard normal 0.9 quantile: the 80% interval is mean +- z90 * sd


def _ets(season, options):
    from statsforecast.models import AutoETS
    return AutoETS(season_length=season, **options)


def _arima(season, options):
    from statsforecast.models import AutoARIMA
    return AutoARIMA(season_length=season, **options)


def _theta(season, options):
    from statsforecast.models import AutoTheta
    return AutoTheta(season_length=season, **options)


def _intermittent(cls_name, **defaults):
    def make(season, options):
        import statsforecast.models as sm
        return getattr(sm, cls_name)(**{**defaults, **options})
    return make


#: method name -> (constructor(season, options), has its own (Gaussian) prediction intervals)
METHODS = {
    "autoets": (_ets, True),
    "autoarima": (_arima, True),
    "autotheta": (_theta, True),
    "croston_optimized": (_intermittent("CrostonOptimized"), False),
    "croston_sba": (_intermittent("CrostonSBA"), False),
    "tsb": (_intermittent("TSB", alpha_d=0.2, alpha_p=0.2), False),
    "adida": (_intermittent("ADIDA"), False),
    "imapa": (_intermittent("IMAPA"), False),
}


def _ffill_bfill(y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Forward- then backward-fill unobserved entries of each row of ``y`` ``[N, L]``."""
    L = y.shape[1]
    t = np.arange(L)
    last = np.maximum.accumulate(np.where(ok, t, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(ok, t, L)[:, ::-1], axis=1)[:, ::-1]
    src = np.where(last >= 0, last, nxt).clip(0, L - 1)
    return np.take_along_axis(y, src, axis=1)


class StatsForecastModel(Model):
    """One of statsforecast's local models, fitted per series, returning Gaussian sample paths.

    - ``method``: a key of :data:`METHODS` (``"autoets"``, ``"autoarima"``, ``"autotheta"``,
      ``"croston_optimized"``, ``"croston_sba"``, ``"tsb"``, ``"adida"``, ``"imapa"``)
    - ``season_length``: the seasonal period the model may use (1 = none)
    - ``max_length``: keep only the last ``max_length`` steps of each series
    - ``n_jobs``: statsforecast's worker processes; ``nonnegative``: clip paths at 0 (True: every series;
      None: the series never below zero in their history; False: none)
    - ``options``: passed to the statsforecast model's constructor (e.g. ``model="ZZN"``)

    statsforecast fits and forecasts in one call: ``fit`` runs it and keeps the predictive mean and
    sd, ``mean_`` and ``sd_`` ``[N, H]``; ``predict`` draws from them when given the panel that was
    fitted (same series and ends) and refits on any other panel (local models learn per series).
    """

    def __init__(self, method: str = "autoets", season_length: int = 1, max_length: int | None = 2500,
                 n_jobs: int = 1, nonnegative: bool = False, **options):
        if method not in METHODS:
            raise ValueError(f"unknown statsforecast method {method!r}; known: {', '.join(METHODS)}")
        if int(season_length) < 1:
            raise ValueError(f"season_length must be >= 1, got {season_length!r}")
        if max_length is not None and int(max_length) < 2:
            raise ValueError(f"max_length must be >= 2 or None, got {max_length!r}")
        if int(n_jobs) == 0 or int(n_jobs) < -1:
            raise ValueError(f"n_jobs must be >= 1 or -1 (all cores), got {n_jobs!r}")
        self.method = method
        self.season_length = int(season_length)
        self.max_length = max_length
        self.n_jobs = int(n_jobs)
        self.nonnegative = check_nonnegative(nonnegative)
        self.options = options
        self.name = method

    def fit(self, panel: Panel, horizon: int) -> StatsForecastModel:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        try:
            import statsforecast  # noqa: F401
        except ImportError as err:
            raise ImportError(f"model {self.method!r} needs statsforecast: pip install 'forecasting[stats]'") from err
        self.mean_, self.sd_ = self._forecast(panel, horizon)
        self.horizon_ = horizon
        self._fitted_on = (panel.item_ids, panel.end.cpu().clone(), _fingerprint(panel))
        return self

    def _frame(self, panel: Panel) -> pd.DataFrame:
        """The long frame statsforecast reads: ``unique_id`` (row), ``ds`` (grid step), ``y``."""
        y = panel.target.detach().cpu().numpy().astype(np.float64)
        ok = panel.observed.detach().cpu().numpy()
        end = panel.end.cpu().numpy()
        T = y.shape[1]
        t = np.arange(T)
        first_obs = np.where(ok.any(1), ok.argmax(1), end - 1)
        first = first_obs if self.max_length is None else np.maximum(first_obs, end - int(self.max_length))
        keep = (t[None, :] >= first[:, None]) & (t[None, :] < end[:, None])
        filled = _ffill_bfill(np.where(ok, y, np.nan), ok)
        rows, cols = np.nonzero(keep)  # row-major: sorted by series, then time
        return pd.DataFrame({"unique_id": rows, "ds": cols, "y": filled[rows, cols]})

    def _forecast(self, panel: Panel, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """statsforecast's predictive mean and Gaussian sd ``[N, H]`` for every series of ``panel``."""
        from statsforecast import StatsForecast
        from statsforecast.models import Naive

        make, native = METHODS[self.method]
        options = dict(self.options)
        if not native:
            from statsforecast.utils import ConformalIntervals
            options.setdefault("prediction_intervals", ConformalIntervals(h=horizon, n_windows=2))
        model = make(self.season_length, options)
        df = self._frame(panel)
        N = panel.num_series
        if not native:
            # conformal intervals need n_windows * h back-forecasts plus one point to fit on; shorter
            # series get the Naive fallback, so a panel where every series is short would silently be
            # Naive everywhere: refuse that instead
            need = options["prediction_intervals"].n_windows * horizon + 1
            lengths = df.groupby("unique_id", sort=True).size().to_numpy()
            self.fallback_series_ = int((lengths < need).sum())
            if self.fallback_series_ == N:
                raise ValueError(f"{self.method!r} takes its spread from conformal intervals, which need at least "
                                 f"{need} observations per series (2 x horizon {horizon} + 1); the longest series "
                                 f"here has {int(lengths.max())}")
        sf = StatsForecast(models=[model], freq=1, n_jobs=self.n_jobs, fallback_model=Naive())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate series warn inside statsforecast's fits
            out = sf.forecast(df=df, h=horizon, level=[80])
        alias = repr(model) if repr(model) in out.columns else out.columns[2]
        out = out.sort_values(["unique_id", "ds"], kind="stable")
        if len(out) != N * horizon:
            raise RuntimeError(f"statsforecast returned {len(out)} rows for {N} series x {horizon} steps")
        mean = out[alias].to_numpy(np.float64).reshape(N, horizon)
        lo = out[f"{alias}-lo-80"].to_numpy(np.float64).reshape(N, horizon)
        hi = out[f"{alias}-hi-80"].to_numpy(np.float64).reshape(N, horizon)
        sd = (hi - lo) / (2 * _Z90)
        # a fallback on a one-point series can return NaN spread: no spread there, never NaN paths
        last = df.groupby("unique_id", sort=True)["y"].last().reindex(range(N)).to_numpy(np.float64)
        mean = np.where(np.isfinite(mean), mean, np.nan_to_num(last)[:, None])
        sd = np.where(np.isfinite(sd) & (sd > 0), sd, 0.0)
        return mean, sd

    def used_known_covariates(self) -> frozenset[str]:
        """None: the statsforecast models are fitted on the target only."""
        return frozenset()

    def predict(self, panel: Panel, num_samples: int = 100, seed: int | None = None) -> Forecast:
        """``[N, num_samples, horizon]`` Gaussian paths around the fitted mean (refit if ``panel``
        is not the fitted one)."""
        horizon = self._check_fitted(num_samples)
        ids, ends, *digest = self._fitted_on  # models saved before the fingerprint hold (ids, ends)
        # the fitted forecast is reused only for the very same data (ids, ends and values): a panel
        # with revised values and the same ends is forecast again
        same = panel.item_ids.equals(ids) and torch.equal(panel.end.cpu(), ends) and digest == [_fingerprint(panel)]
        mean, sd = (self.mean_, self.sd_) if same else self._forecast(panel, horizon)
        N = panel.num_series
        gen = torch.Generator().manual_seed(0 if seed is None else seed)
        z = torch.randn(N, num_samples, horizon, generator=gen, dtype=torch.float64)
        samples = torch.from_numpy(mean)[:, None, :] + torch.from_numpy(sd)[:, None, :] * z
        rows = floor_rows(*panel.history(panel.num_steps), self.nonnegative)
        if rows is not None:
            samples[rows.cpu()] = samples[rows.cpu()].clamp_min(0)
        dtype = panel.target.dtype if panel.target.is_floating_point() else torch.float32
        return Forecast(samples.to(dtype), panel.item_ids, panel.forecast_start(), panel.freq)


def _fingerprint(panel: Panel) -> str:
    """sha256 of the observed targets (and where they are observed): what a statsforecast fit saw."""
    import hashlib
    obs = panel.observed.cpu()
    h = hashlib.sha256(obs.numpy().tobytes())
    h.update(torch.where(obs, panel.target.cpu(), torch.zeros((), dtype=panel.target.dtype)).numpy().tobytes())
    return h.hexdigest()
