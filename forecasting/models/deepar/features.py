"""Inputs of DeepAR, built once per panel as tensors on the model's device.

- target lags from the frequency (weekly: 1-8, 12, 13, 26, 51-53, 103-105 ...)
- calendar features from the timestamps: Fourier terms of the seasonal positions, and indicators
  of holidays that move between years (Thanksgiving, Christmas, Easter, ...) falling in, just
  before or just after each period
- known covariates standardised with training statistics (0/1 columns kept), missing -> 0 plus
  a missing flag per covariate that has gaps; nothing is invented for the target itself
- past-only covariates (weather, market volume: observed, not known ahead) standardised the same
  way and read one step late (step t reads the value at t - 1) with an availability flag; after
  the forecast start none is available, so the network reads 0 / flag 0 there, and training masks
  them the same way over each window's last ``horizon`` steps (see ``module.step_inputs``)
- static categoricals as codes (an extra code for levels unseen at fit), static reals standardised
- for ``anchor="profile"``: seasonal profiles, the mean of ``y / series mean`` at each seasonal
  position (week of year, hour of week, ...), per group of series (e.g. a department, frozen at
  fit) and per series (from the history the model is given), the series' shrunk toward its group's
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from ...data.calendar import _base, calendar_features, seasonal_position
from ...data.panel import Panel

__all__ = ["lags_for_freq", "calendar_features", "FeatureSpec", "fit_features", "seasonal_profile"]


def lags_for_freq(freq: str) -> list[int]:
    """Lags (in steps) that cover the short memory and the natural seasons of ``freq``."""
    name, n = _base(freq)
    if name == "W":
        lags = [1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 26, 51, 52, 53, 103, 104, 105]
    elif name in ("M", "MS", "ME"):
        lags = list(range(1, 14)) + [23, 24, 25, 35, 36, 37]
    elif name in ("Q", "QS", "QE"):
        lags = [1, 2, 3, 4, 5, 7, 8, 9, 12]
    elif name in ("D", "B"):
        lags = list(range(1, 15)) + [20, 21, 22, 27, 28, 29, 363, 364, 365]
    elif name in ("H",):
        lags = list(range(1, 9)) + [23, 24, 25, 47, 48, 49, 167, 168, 169, 335, 336, 337]
    elif name in ("T", "MIN"):
        per_hour = 60 // n if n < 60 else 1
        day = 24 * per_hour
        lags = list(range(1, 9)) + [per_hour, day - 1, day, day + 1, 2 * day, 7 * day - 1, 7 * day, 7 * day + 1]
    else:
        lags = list(range(1, 9))
    if name in ("D", "B", "H", "T", "MIN") and n > 1:
        lags = sorted({max(1, round(l / n)) for l in lags})
    return sorted(set(lags))


@dataclass
class FeatureSpec:
    """Training statistics that turn a panel's covariates into network inputs (frozen at fit)."""

    known_names: tuple[str, ...]
    known_mean: torch.Tensor  # [K]
    known_std: torch.Tensor  # [K]
    known_flag: torch.Tensor  # [K] bool: covariate has gaps -> a missing flag input
    static_cat_names: tuple[str, ...]
    cardinalities: tuple[int, ...]
    static_real_names: tuple[str, ...]
    static_real_mean: torch.Tensor
    static_real_std: torch.Tensor
    lags: tuple[int, ...]
    freq: str
    profile: torch.Tensor | None = None  # [G + 1, P] seasonal index per group; row G: all series
    profile_group: str | None = None  # static categorical the profile is pooled within (None: all)
    profile_weight: float = 0.5  # observations the group profile counts for in a series' profile
    # the fit panel's levels of each static categorical (codes are matched by level, not position,
    # so a predict panel built with fewer or reordered levels gets the embeddings and profiles it
    # was trained with); None in models saved before they were kept: positional codes
    static_cat_levels: tuple[tuple, ...] | None = None
    profile_levels: tuple | None = None  # levels of ``profile_group`` at fit
    # holiday inputs for hourly and finer data (False in models saved before they were added: their
    # networks were built without those calendar columns)
    subdaily_holidays: bool = False
    # past-only covariates and their training statistics (empty in models saved before they were read)
    past_names: tuple[str, ...] = ()
    past_mean: torch.Tensor | None = None  # [P]
    past_std: torch.Tensor | None = None  # [P]

    @property
    def num_known_inputs(self) -> int:
        return len(self.known_names) + int(self.known_flag.sum())

    @property
    def num_past_inputs(self) -> int:
        """A value and an availability flag per past covariate."""
        return 2 * len(self.past_names)

    def past_values(self, panel: Panel) -> torch.Tensor | None:
        """``[N, T, P]`` standardised past covariates, NaN where missing (None without any)."""
        if not self.past_names:
            return None
        if tuple(panel.past_names) != self.past_names:
            raise ValueError(f"the panel's past covariates {list(panel.past_names)} differ from those at fit "
                             f"{list(self.past_names)}")
        x = panel.past
        return (x - self.past_mean.to(x.device)) / self.past_std.to(x.device)

    def profile_grid(self, panel: Panel, dates) -> torch.Tensor | None:
        """``[N, len(dates)]`` each series' seasonal index at each date (grid positions; ``dates``
        extend the panel's index): the mean of ``y / series mean |y|`` over the series' observed
        history at the same seasonal position, plus its group's profile counted as
        ``profile_weight`` observations. Where the series is observed the step's own value is left
        out (leave-one-out), so an index never contains the value it anchors. None without a profile."""
        if self.profile is None:
            return None
        dev = panel.device
        period, pos = seasonal_position(dates, self.freq)
        pos = torch.as_tensor(pos, device=dev)
        T, N = panel.num_steps, panel.num_series
        steps = torch.arange(T, device=dev)
        obs = panel.observed & (steps[None] < panel.end[:, None])
        y = torch.where(obs, panel.target, torch.zeros_like(panel.target))
        scale = (y.abs().sum(1) / obs.sum(1).clamp_min(1)).clamp_min(1e-12)
        z = y / scale[:, None]
        key = pos[None, :T].expand(N, T)
        sums = torch.zeros(N, period, device=dev).scatter_add_(1, key, z)
        counts = torch.zeros(N, period, device=dev).scatter_add_(1, key, obs.to(z.dtype))
        codes = _group_codes(panel, self.profile_group, self.profile.shape[0] - 1, self.profile_levels)
        group = self.profile.to(dev)[codes]  # [N, P]
        w = self.profile_weight
        idx = pos[None].expand(N, -1)
        num = sums.gather(1, idx) + w * group.gather(1, idx)
        den = counts.gather(1, idx) + w
        own = torch.zeros_like(num)
        own[:, :T] = obs.to(z.dtype)
        zz = torch.zeros_like(num)
        zz[:, :T] = z
        return (num - zz) / (den - own)

    def known_inputs(self, panel: Panel, length: int) -> torch.Tensor:
        """``[N, length, K + flags]`` standardised known covariates over the first ``length`` grid steps."""
        N = panel.num_series
        if not self.known_names:
            return torch.zeros(N, length, 0, device=panel.device)
        if tuple(panel.known_names) != self.known_names:
            raise ValueError(f"the panel's known covariates {list(panel.known_names)} differ from those at fit "
                             f"{list(self.known_names)}")
        x = panel.known[:, :length]
        if x.shape[1] < length:
            x = torch.cat([x, torch.full((N, length - x.shape[1], x.shape[2]), float("nan"), device=x.device)], 1)
        miss = torch.isnan(x)
        z = torch.where(miss, torch.zeros_like(x), (x - self.known_mean.to(x.device)) / self.known_std.to(x.device))
        flags = miss[..., self.known_flag.to(x.device)].to(z.dtype)
        return torch.cat([z, flags], -1)

    def static_inputs(self, panel: Panel) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes ``[N, C]`` (unseen levels -> the extra code) and standardised reals ``[N, R]``."""
        N, dev = panel.num_series, panel.device
        if self.static_cat_names:
            if tuple(panel.static_cat_names) != self.static_cat_names:
                raise ValueError(f"the panel's static categoricals {list(panel.static_cat_names)} differ from "
                                 f"those at fit {list(self.static_cat_names)}")
            card = torch.tensor(self.cardinalities, device=dev)
            if self.static_cat_levels is not None:
                codes = torch.stack([_fit_codes(panel, c, self.static_cat_levels[c], self.cardinalities[c])
                                     for c in range(len(self.cardinalities))], 1)
            else:
                codes = torch.where(panel.static_cat < card, panel.static_cat, card.expand_as(panel.static_cat))
        else:
            codes = torch.zeros(N, 0, dtype=torch.long, device=dev)
        if self.static_real_names:
            if tuple(panel.static_real_names or ()) != self.static_real_names:
                raise ValueError(f"the panel's static reals {list(panel.static_real_names or ())} differ from "
                                 f"those at fit {list(self.static_real_names)}")
            r = panel.static_real
            r = (torch.nan_to_num(r, nan=0.0) - self.static_real_mean.to(dev)) / self.static_real_std.to(dev)
        else:
            r = torch.zeros(N, 0, device=dev)
        return codes, r


def _fit_codes(panel: Panel, c: int, fit_levels, unseen: int) -> torch.Tensor:
    """``[N]`` codes of the panel's static categorical ``c`` in the fit panel's numbering
    (``fit_levels``); levels not seen at fit, and missing ones, -> ``unseen``."""
    codes = panel.static_codes(panel.static_cat_names[c], fit_levels)
    return torch.where(codes >= 0, codes, torch.full_like(codes, unseen))


def _group_codes(panel: Panel, group: str | None, unseen: int, fit_levels=None) -> torch.Tensor:
    """``[N]`` profile row of each series: its level of ``group`` (matched by level to
    ``fit_levels`` when given; levels not seen at fit -> the all-series row ``unseen``), or
    ``unseen`` for every series without a group."""
    N, dev = panel.num_series, panel.device
    if group is None:
        return torch.full((N,), unseen, dtype=torch.long, device=dev)
    names = list(panel.static_cat_names or ())
    if group not in names:
        raise ValueError(f"profile_group={group!r} is not a static categorical of the panel (it has {names})")
    if fit_levels is not None:
        return _fit_codes(panel, names.index(group), fit_levels, unseen)
    codes = panel.static_cat[:, names.index(group)]
    return torch.where(codes < unseen, codes, torch.full_like(codes, unseen))


def seasonal_profile(panel: Panel, group: str | None = None, shrink: float = 5.0) -> torch.Tensor:
    """``[G + 1, P]`` seasonal index: the mean of ``y / (series mean |y|)`` over the observed steps
    (before each series' end) at each of the ``P`` seasonal positions of the frequency, per level of
    the static categorical ``group`` (row ``G``: all series). Each group's mean is shrunk toward
    the all-series profile with the weight of ``shrink`` observations, and that toward 1."""
    period, pos = seasonal_position(panel.index, panel.freq)
    dev = panel.device
    names = list(panel.static_cat_names or ())
    if group is not None and group not in names:
        raise ValueError(f"profile_group={group!r} is not a static categorical of the panel (it has {names})")
    G = len(panel.static_cat_levels[names.index(group)]) if group is not None else 0
    codes = _group_codes(panel, group, G)
    steps = torch.arange(panel.num_steps, device=dev)
    obs = panel.observed & (steps[None] < panel.end[:, None])
    y = torch.where(obs, panel.target, torch.zeros_like(panel.target))
    scale = y.abs().sum(1) / obs.sum(1).clamp_min(1)
    z = (y / scale.clamp_min(1e-12)[:, None])[obs]
    pos_t = torch.as_tensor(pos, device=dev)
    key = (codes[:, None] * period + pos_t[None]).expand_as(obs)[obs]
    sums = torch.zeros((G + 1) * period, device=dev).index_add_(0, key, z).view(G + 1, period)
    counts = torch.zeros((G + 1) * period, device=dev).index_add_(0, key, torch.ones_like(z)).view(G + 1, period)
    total = (sums.sum(0) + shrink) / (counts.sum(0) + shrink)
    prof = (sums + shrink * total) / (counts + shrink)
    prof[G] = total
    return prof.cpu()


def _standardise(x: torch.Tensor, panel: Panel) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and spread ``[K]`` of covariates ``x`` ``[N, >= T, K]`` over the steps inside each
    series' history (0/1 columns: mean 0, spread 1, kept as they are)."""
    T = panel.num_steps
    x = x[:, :T]
    steps = torch.arange(T, device=x.device)
    inside = (steps[None] >= panel.start[:, None]) & (steps[None] < panel.end[:, None])
    vals = torch.where(inside[..., None], x, torch.full_like(x, float("nan")))
    ok = ~torch.isnan(vals)
    n = ok.sum((0, 1)).clamp_min(1)
    mean = torch.where(ok, vals, 0).sum((0, 1)) / n
    var = torch.where(ok, (vals - mean) ** 2, 0).sum((0, 1)) / n
    binary = torch.where(ok, (vals == 0) | (vals == 1), True).all(0).all(0)
    std = var.sqrt().clamp_min(1e-6)
    return torch.where(binary, torch.zeros_like(mean), mean), torch.where(binary, torch.ones_like(std), std)


def fit_features(panel: Panel, use_known: bool, use_static: bool, lags=None, profile: bool = False,
                 profile_group: str | None = None, profile_weight: float = 0.5, use_past: bool = False) -> FeatureSpec:
    """Statistics of the training panel: covariate means and spreads over the observed steps."""
    if use_known and panel.known is not None:
        mean, std = _standardise(panel.known, panel)
        full = panel.known
        steps_all = torch.arange(full.shape[1], device=full.device)
        span = steps_all[None] >= panel.start[:, None]
        flag = (torch.isnan(full) & span[..., None]).any(0).any(0)
        known_names = tuple(panel.known_names)
    else:
        mean = std = torch.zeros(0)
        flag = torch.zeros(0, dtype=torch.bool)
        known_names = ()
    past_names, past_mean, past_std = (), None, None
    if use_past and panel.past is not None and panel.past_names:
        past_mean, past_std = (t.cpu() for t in _standardise(panel.past, panel))
        past_names = tuple(panel.past_names)
    if use_static and panel.static_cat is not None:
        cat_names = tuple(panel.static_cat_names)
        cards = tuple(int(len(lv)) for lv in panel.static_cat_levels)
    else:
        cat_names, cards = (), ()
    if use_static and panel.static_real is not None:
        r = panel.static_real
        rmean = torch.nanmean(r, 0)
        rstd = torch.sqrt(torch.nanmean((r - rmean) ** 2, 0)).clamp_min(1e-6)
        real_names = tuple(panel.static_real_names)
    else:
        rmean = rstd = torch.zeros(0)
        real_names = ()
    prof = seasonal_profile(panel, profile_group) if profile else None
    cat_levels = tuple(tuple(lv) for lv in panel.static_cat_levels) if cat_names else ()
    prof_levels = None
    if profile and profile_group is not None:
        prof_levels = tuple(panel.static_cat_levels[list(panel.static_cat_names).index(profile_group)])
    return FeatureSpec(known_names, mean.cpu(), std.cpu(), flag.cpu(), cat_names, cards, real_names,
                       rmean.cpu(), rstd.cpu(), tuple(lags or lags_for_freq(panel.freq)), panel.freq,
                       prof, profile_group if profile else None, profile_weight, cat_levels, prof_levels,
                       subdaily_holidays=True, past_names=past_names, past_mean=past_mean, past_std=past_std)
