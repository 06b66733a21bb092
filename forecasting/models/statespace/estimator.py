"""``StateSpace``: fit the structural model of ``model.py`` to every series by SVI, sample paths."""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pyro
import torch
from pyro.infer import SVI, JitTrace_ELBO, Predictive, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.infer.autoguide.initialization import init_to_median, init_to_value
from pyro.optim import ClippedAdam

from ...data.panel import Panel, PanelError, _names
from ...forecast import Forecast
from ..base import Model, check_nonnegative, check_same_freq, resolve_device
from .design import Design, build_design, covariate_spec
from .model import LIKELIHOODS, Structure, coefficient_model, dct_model, structural_model

__all__ = ["StateSpace"]

_NOISE_SITES = ("level_noise", "slope_noise")


def _coefficient_sites(d: Design, cfg: Structure):
    """Only the regression coefficients of the model (the guide supplies their latents)."""
    return coefficient_model(d, cfg)


def _codes_by_name(panel: Panel, col: str, fitted: pd.Index | None) -> tuple[torch.Tensor, int, pd.Index]:
    """``[N]`` codes of the static categorical ``col``, its number of levels and the levels. With
    ``fitted`` (the levels at fit), codes follow the fitted numbering by name, whatever order the
    panel's categories come in; a level not seen at fit is an error naming the series."""
    j = panel.static_cat_names.index(col)
    levels = panel.static_cat_levels[j]
    if fitted is None:
        return panel.static_cat[:, j].cpu().long(), len(levels), levels
    codes = panel.static_cat[:, j].cpu()
    mapped = panel.static_codes(col, fitted).cpu()
    unseen = (mapped < 0) & (codes >= 0)  # a missing level (-1) stays -1
    if bool(unseen.any()):
        rows = unseen.nonzero().squeeze(1).numpy()
        raise PanelError(f"series {_names(panel.item_ids[rows])} have {col} level(s) "
                         f"{sorted({str(levels[int(codes[i])]) for i in rows})} not seen at fit "
                         f"(fitted levels: {[str(v) for v in fitted][:10]}); fit again with them")
    return mapped, len(fitted), pd.Index(fitted)


class StateSpace(Model):
    """Bayesian structural time-series model for all series of a Panel at once (Pyro, SVI).

    Components: local level, damped local linear trend (``trend``), dummy seasonalities (``seasonal``) from the
    frequency (week of year, day of week, month, slot of day ...; ``seasonal=True`` adds one profile
    per period, ``"crossed"`` fits one profile over their combinations, e.g. the 168 hours of the
    week, so weekend days get their own daily shape; False: none), yearly Fourier terms for daily
    data, moving-holiday indicators (``holidays``) and known covariates (``covariates``: None,
    ``"all"`` or a list of names; ``log_covariates``: those to log-transform, e.g. price, so the
    coefficient is an elasticity). Noise scales, level scales, seasonal profiles and coefficients
    are pooled within the groups of the static categorical ``group`` (e.g. ``"Dept"``; None: one
    group); ``season_groups``: further static categoricals (e.g. ``("Store",)``) whose own seasonal
    profiles add to their members' (crossed effects: department and store patterns).

    ``likelihood``: ``"studentT"`` or ``"normal"`` on standardised values; ``"negbin"``,
    ``"poisson"`` or ``"zinb"`` (zero-inflated NB, for intermittent demand) on a latent log-rate.
    Count likelihoods need non-negative integer targets (anything else is an error naming the
    series).

    Inference: ``num_steps`` of SVI with a mean-field ``AutoNormal`` guide, ``lr`` decaying to
    ``lr * lr_decay``; ``history``: steps of each series used (None: all, capped at
    ``max(1000, 8 x the longest season)`` so long hourly series fit in memory). Forecasts carry
    parameter and state uncertainty: each path draws every latent from the guide, then the future
    level/slope noise and the observation noise from the model. ``device``: ``"auto"``, ``"cpu"``
    or ``"cuda"``. ``max_elements`` bounds samples x series x steps per sampling chunk.
    ``nonnegative`` (real-valued likelihoods; count draws are never negative): ``None`` (default)
    floors at zero the samples of every series whose observed history never went below zero
    (demand for a simulator), ``True`` those of every series, ``False`` leaves them as drawn
    (models saved before the option: no floor).

    Learned state: ``guide_`` (its parameters), ``design_`` (data tensors), ``horizon_``,
    ``losses_`` (ELBO per observation and step), ``fit_seconds_``.
    """

    name = "statespace"

    def __init__(self, likelihood: str = "studentT", trend: bool = False, seasonal: bool | str = True, holidays: bool = True,
                 covariates=None, log_covariates=(), group: str | None = None, season_groups=(),
                 history: int | None = None,
                 yearly_harmonics: int = 6, num_steps: int = 1000, lr: float = 0.03, lr_decay: float = 0.1,
                 clip_norm: float = 10.0, init_scale: float = 0.02, level_prior: float = -3.0,
                 level_prior_scale: float = 1.0,
                 noise_prior: float = -1.0, season_spread: float = 0.5, coef_scale: float = 0.5,
                 coef_spread: float = 0.2, device: str = "auto", seed: int = 0, max_elements: int = 2 ** 25,
                 time_reparam: str | None = None, jit: bool = True, progress: bool = False,
                 level_df: float | None = None, season_smooth: float | None = None,
                 nonnegative: bool | None = None):
        if seasonal not in (True, False, "crossed"):
            raise ValueError(f"seasonal must be True, False or 'crossed', got {seasonal!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
        for arg, value in (("num_steps", num_steps), ("max_elements", max_elements)):
            if int(value) < 1:
                raise ValueError(f"{arg} must be >= 1, got {value!r}")
        if history is not None and int(history) < 2:
            raise ValueError(f"history must be >= 2 steps or None, got {history!r}")
        if not (lr > 0 and 0 < lr_decay <= 1):
            raise ValueError(f"need lr > 0 and 0 < lr_decay <= 1, got lr={lr!r}, lr_decay={lr_decay!r}")
        if covariates not in (None, "all") and isinstance(covariates, str):
            covariates = [covariates]
        self.likelihood, self.trend, self.seasonal, self.holidays = likelihood, trend, seasonal, holidays
        self.covariates = covariates if covariates in (None, "all") else tuple(covariates)
        self.log_covariates = tuple(log_covariates or ())
        self.group, self.history, self.yearly_harmonics = group, history, yearly_harmonics
        self.season_groups = (season_groups,) if isinstance(season_groups, str) else tuple(season_groups or ())
        self.num_steps, self.lr, self.lr_decay, self.clip_norm, self.init_scale = num_steps, lr, lr_decay, clip_norm, init_scale
        self.level_prior, self.noise_prior, self.season_spread = level_prior, noise_prior, season_spread
        self.level_prior_scale = level_prior_scale
        self.coef_scale, self.coef_spread = coef_scale, coef_spread
        self.device, self.seed, self.max_elements, self.progress = device, seed, max_elements, progress
        self.jit = jit
        if time_reparam not in (None, "dct"):
            raise ValueError(f"time_reparam must be None or 'dct', got {time_reparam!r}")
        self.time_reparam = time_reparam
        if level_df is not None and not float(level_df) > 0:
            raise ValueError(f"level_df must be > 0 degrees of freedom or None, got {level_df!r}")
        self.level_df = None if level_df is None else float(level_df)
        if season_smooth is not None and not float(season_smooth) > 0:
            raise ValueError(f"season_smooth must be > 0 or None, got {season_smooth!r}")
        self.season_smooth = None if season_smooth is None else float(season_smooth)
        self.nonnegative = check_nonnegative(nonnegative)

    # ------------------------------------------------------------------ helpers
    @property
    def _model(self):
        return dct_model if getattr(self, "time_reparam", None) == "dct" else structural_model

    @property
    def structure(self) -> Structure:
        return Structure(self.likelihood, self.trend, self.level_prior, getattr(self, "level_prior_scale", 1.0),
                         self.noise_prior, self.season_spread, self.coef_scale, self.coef_spread,
                         getattr(self, "level_df", None), getattr(self, "season_smooth", None))

    def _groups(self, panel: Panel) -> tuple[torch.Tensor, int, pd.Index]:
        if self.group is None:
            return torch.zeros(panel.num_series, dtype=torch.long), 1, pd.Index(["all"])
        if self.group not in panel.static_cat_names:
            raise ValueError(f"group {self.group!r} is not a static categorical of the panel "
                             f"(static categoricals: {list(panel.static_cat_names)})")
        return _codes_by_name(panel, self.group, getattr(self, "group_levels_", None))

    def _design(self, panel: Panel, horizon: int) -> Design:
        codes, G, _ = self._groups(panel)
        extra = []
        fitted = getattr(self, "season_levels_", None)
        for k, col in enumerate(getattr(self, "season_groups", ())):
            if col not in panel.static_cat_names:
                raise ValueError(f"season_groups: {col!r} is not a static categorical of the panel "
                                 f"(static categoricals: {list(panel.static_cat_names)})")
            c, n, _ = _codes_by_name(panel, col, None if fitted is None else fitted[k])
            extra.append((c, n))
        return build_design(panel, horizon, self.history, self.structure.count, self.covariates_, self.holidays,
                            codes, G, self.yearly_harmonics, self.device_, seasonal=getattr(self, "seasonal", True),
                            season_groups=tuple(extra),
                            # a model saved before hourly holiday regressors were added predicts without them
                            subdaily_holidays=getattr(self, "subdaily_holidays_", False))

    # ------------------------------------------------------------------ fit
    def fit(self, panel: Panel, horizon: int) -> "StateSpace":
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.device_ = resolve_device(self.device)
        self.group_levels_ = self.season_levels_ = None  # a refit numbers the levels afresh
        self.subdaily_holidays_ = True
        self.covariates_ = covariate_spec(panel, self.covariates, self.log_covariates)
        d = self._design(panel, horizon)
        if d.history < 3:
            short = panel.item_ids[:5].tolist()
            raise PanelError(f"need at least 3 steps of history, the panel has {d.history} (series {short} ...)")
        cfg = self.structure
        pyro.clear_param_store()
        pyro.set_rng_seed(self.seed)
        zeros = {s: torch.zeros(d.num_series, d.history - 1, device=self.device_) for s in _NOISE_SITES}
        zeros.update({f"{k}_dct": v for k, v in zeros.items()})
        guide = AutoNormal(self._model, init_loc_fn=init_to_value(values=zeros, fallback=init_to_median),
                           init_scale=self.init_scale)
        optim = ClippedAdam({"lr": self.lr, "lrd": self.lr_decay ** (1 / self.num_steps), "clip_norm": self.clip_norm,
                             "betas": (0.9, 0.99)})
        elbo = (JitTrace_ELBO(max_plate_nesting=2, ignore_jit_warnings=True) if self.jit
                else Trace_ELBO(max_plate_nesting=2))
        svi = SVI(self._model, guide, optim, elbo)
        nobs = float(d.mask.sum())
        losses = []
        from tqdm.auto import tqdm
        t0 = time.perf_counter()
        bar = tqdm(range(self.num_steps), desc="statespace SVI", disable=not self.progress, leave=False)
        for _ in bar:  # SVI steps are sequential by nature; each step is batched over all series
            with pyro.validation_enabled(False):  # shapes are checked in the model; support checks cost ~15 %
                loss = svi.step(d=d, cfg=cfg) / nobs
            if not math.isfinite(loss):
                raise FloatingPointError(f"the ELBO became {loss} at step {len(losses)}; try a smaller lr "
                                         f"(now {self.lr}) or another likelihood")
            losses.append(loss)
            if len(losses) % 50 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
        self.fit_seconds_ = time.perf_counter() - t0
        self.guide_ = guide
        self.losses_ = losses
        self.horizon_ = horizon
        self.design_ = d
        self.group_levels_ = self._groups(panel)[2]
        self.season_levels_ = tuple(panel.static_cat_levels[panel.static_cat_names.index(c)]
                                    for c in self.season_groups)
        self.item_ids_ = panel.item_ids
        self.freq_ = panel.freq
        self.end_ = panel.end.cpu().clone()
        return self

    # ------------------------------------------------------------------ predict
    def _design_for(self, panel: Panel | None) -> Design:
        self._check_fitted()
        if panel is None:
            return self.design_
        check_same_freq(self, getattr(self, "freq_", None), panel)  # models saved before it: no check
        if len(panel.item_ids) != len(self.item_ids_) or not (panel.item_ids == self.item_ids_).all():
            raise PanelError("a state-space model forecasts the series it was fitted on: the panel's series "
                             f"differ ({len(panel.item_ids)} given, {len(self.item_ids_)} fitted)")
        moved = panel.end.cpu() != self.end_
        if bool(moved.any()):
            raise PanelError(f"series {_names(panel.item_ids[moved.numpy()])} end at other steps than at fit; "
                             "fit again on the new history")
        d = self._design(panel, self.horizon_)
        fit = self.design_
        if d.y.shape == fit.y.shape:  # the fitted state belongs to the fitted values: revised ones need a refit
            y, y0 = d.y.to(fit.y.device), fit.y
            changed = (d.mask.to(fit.mask.device) != fit.mask).any(1) | \
                ((y - y0).abs() > 1e-5 * (1 + y0.abs())).any(1)
        else:
            changed = torch.ones(d.num_series, dtype=torch.bool)
        if bool(changed.any()):
            raise PanelError(f"series {_names(panel.item_ids[changed.cpu().numpy()])} hold other target values than "
                             "at fit (only the known covariates of the forecast window may differ); fit again on "
                             "the revised history")
        return d

    def _predictive(self, d: Design, num_samples: int, sites: tuple[str, ...]) -> dict[str, torch.Tensor]:
        per_sample = d.num_series * (d.history + d.horizon) * 8
        chunk = max(1, min(num_samples, self.max_elements // per_sample))
        out: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
        done = 0
        with torch.no_grad():
            while done < num_samples:  # chunks of samples bound memory on large panels
                k = min(chunk, num_samples - done)
                pred = Predictive(self._model, guide=self.guide_, num_samples=k, parallel=True,
                                  return_sites=list(sites))(d, self.structure, forecast=True)
                for s in sites:
                    out[s].append(pred[s].reshape(k, d.num_series, -1))
                done += k
        return {s: torch.cat(v, 0) for s, v in out.items()}

    def used_known_covariates(self) -> frozenset[str]:
        """The covariates chosen by ``covariates`` (none by default; holidays come from the calendar)."""
        self._check_fitted()
        return frozenset(self.covariates_.names)

    def predict(self, panel: Panel | None = None, num_samples: int = 100, seed: int | None = None) -> Forecast:
        """Sample paths ``[N, num_samples, horizon]`` after each series' end.

        ``panel`` must hold the fitted series with the same ends; its known covariates may differ
        from those at fit in the forecast window (what-if scenarios). None: the fitted panel."""
        self._check_fitted(num_samples)
        d = self._design_for(panel)
        pyro.set_rng_seed(self.seed if seed is None else seed)
        y = self._predictive(d, num_samples, ("y_future",))["y_future"]  # [S, N, H]
        if not self.structure.count:
            y = d.loc[None, :, None] + d.scale[None, :, None] * y
            floor = getattr(self, "nonnegative", False)  # models saved before the option: no floor
            if floor is not False:
                rows = d.never_negative if floor is None else torch.ones_like(d.loc, dtype=torch.bool)
                if rows is None:
                    raise ValueError("nonnegative=None needs the history's signs, which a model saved before the "
                                     "option does not keep: pass the panel to predict, or refit")
                y = torch.where(rows[None, :, None], y.clamp_min(0), y)
        samples = y.permute(1, 0, 2).contiguous().float()
        start = pd.DatetimeIndex(d.dates[d.pos[:, d.history].cpu().numpy()])  # first forecast step per series
        return Forecast(samples.cpu(), d.item_ids, start, d.dates.freqstr)

    # ------------------------------------------------------------------ components
    def components(self, panel: Panel | None = None, num_samples: int = 100, seed: int = 0) -> pd.DataFrame:
        """Posterior-mean components per series and step (history and forecast window) as a long frame.

        Columns: ``item_id``, ``timestamp``, ``part`` (``"history"``/``"forecast"``), ``level``
        (with trend), ``seasonal`` (dummies + Fourier), ``regression`` (holidays + covariates) and
        ``fitted`` (their sum). Real-valued likelihoods: in the target's units (``level`` carries
        the series mean); counts: on the log-rate scale relative to the series' mean count."""
        d = self._design_for(panel)
        pyro.set_rng_seed(seed)
        parts = self._predictive(d, num_samples, ("level", "seasonal", "regression"))
        mean = {k: v.mean(0) for k, v in parts.items()}  # [N, L + H]
        if not self.structure.count:
            sc, lc = d.scale[:, None], d.loc[:, None]
            mean = {"level": lc + sc * mean["level"], "seasonal": sc * mean["seasonal"],
                    "regression": sc * mean["regression"]}
        N, TT = mean["level"].shape
        frame = pd.DataFrame({
            "item_id": np.repeat(np.asarray(d.item_ids), TT),
            "timestamp": d.dates[d.pos.cpu().numpy().reshape(-1)],
            "part": np.tile(np.where(np.arange(TT) < d.history, "history", "forecast"), N),
            **{k: v.cpu().numpy().reshape(-1) for k, v in mean.items()},
        })
        frame["fitted"] = frame["level"] + frame["seasonal"] + frame["regression"]
        observed = torch.cat([d.mask, torch.zeros(N, d.horizon, dtype=torch.bool, device=d.mask.device)], 1)
        frame["observed"] = observed.cpu().numpy().reshape(-1)
        return frame.reset_index(drop=True)

    def coefficients(self, num_samples: int = 200, seed: int = 0) -> pd.DataFrame:
        """Regression coefficients per series and regressor (holidays, covariates) as a long frame:
        ``item_id``, ``regressor``, ``mean``, ``q05``, ``q95``, ``group``.

        Real-valued likelihoods: change of the target (its units) per unit of the regressor as the
        model sees it (a 0/1 flag, a standardised covariate, or a log-covariate divided by its
        spread: see ``covariates_``); counts: change of the log-rate (for a log-price covariate,
        the elasticity times the covariate's spread)."""
        d = self._design_for(None)
        if not d.x.shape[-1]:
            return pd.DataFrame(columns=["item_id", "regressor", "mean", "q05", "q95", "group"])
        pyro.set_rng_seed(seed)
        with torch.no_grad():
            draws = Predictive(_coefficient_sites, guide=self.guide_, num_samples=num_samples, parallel=True,
                               return_sites=["beta"])(d, self.structure)["beta"].reshape(num_samples, d.num_series, -1)
        if not self.structure.count:
            draws = draws * d.scale[None, :, None]
        q = torch.quantile(draws, torch.tensor([0.05, 0.95], device=draws.device), dim=0)
        N, K = draws.shape[1:]
        codes = d.group.cpu().numpy()
        levels = self.group_levels_
        return pd.DataFrame({
            "item_id": np.repeat(np.asarray(d.item_ids), K), "regressor": np.tile(np.asarray(d.x_names), N),
            "mean": draws.mean(0).cpu().numpy().reshape(-1), "q05": q[0].cpu().numpy().reshape(-1),
            "q95": q[1].cpu().numpy().reshape(-1), "group": np.repeat(np.asarray(levels)[codes], K)})

    def plot_components(self, item_id, panel: Panel | None = None, ax=None, num_samples: int = 100):
        """A figure of the level, seasonal and regression parts of series ``item_id`` and the data."""
        import matplotlib.pyplot as plt
        d = self._design_for(panel)
        if item_id not in set(d.item_ids):
            raise KeyError(f"series {item_id!r} is not among the fitted series")
        comp = self.components(panel, num_samples)
        c = comp[comp["item_id"] == item_id]
        n = int(np.flatnonzero(np.asarray(d.item_ids) == item_id)[0])
        fig, axes = plt.subplots(4, 1, figsize=(10, 8), sharex=True) if ax is None else (ax[0].figure, ax)
        y = d.y[n].cpu().numpy()
        if not self.structure.count:
            y = float(d.loc[n]) + float(d.scale[n]) * y
        hist_dates = d.dates[d.pos[n, :d.history].cpu().numpy()]
        obs = d.mask[n].cpu().numpy()
        axes[0].plot(hist_dates[obs], y[obs], ".", color="k", ms=3, label="observed")
        axes[0].plot(c["timestamp"], c["fitted"], label="fitted / forecast mean")
        for a, col in zip(axes[1:], ("level", "seasonal", "regression")):
            a.plot(c["timestamp"], c[col])
            a.set_ylabel(col)
        axes[0].legend(loc="upper left")
        axes[0].set_title(f"{item_id}: components ({self.likelihood})")
        for a in axes:
            a.axvline(c.loc[c["part"] == "forecast", "timestamp"].min(), color="grey", ls=":")
        fig.tight_layout()
        return fig
