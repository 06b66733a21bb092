"""Inputs of DeepAR, built once per panel as tensors on the model's device.

- target lags from the frequency (weekly: 1-8, 12, 13, 26, 51-53, 103-105 ...)
- calendar features from the timestamps: Fourier terms of the seasonal positions, and indicators
  of holidays that move between years (Thanksgiving, Christmas, Easter, ...) falling in, just
  before or just after each period
- known covariates standardised with training statistics (0/1 columns kept), missing -> 0 plus
  a missing flag per covariate that has gaps; nothing is invented for the target itself
- static categoricals as codes (an extra code for levels unseen at fit), static reals standardised
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from ...data.calendar import _base, calendar_features
from ...data.panel import Panel

__all__ = ["lags_for_freq", "calendar_features", "FeatureSpec", "fit_features"]


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

    @property
    def num_known_inputs(self) -> int:
        return len(self.known_names) + int(self.known_flag.sum())

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
            codes = torch.where(panel.static_cat < card, panel.static_cat, card.expand_as(panel.static_cat))
        else:
            codes = torch.zeros(N, 0, dtype=torch.long, device=dev)
        if self.static_real_names:
            r = panel.static_real
            r = (torch.nan_to_num(r, nan=0.0) - self.static_real_mean.to(dev)) / self.static_real_std.to(dev)
        else:
            r = torch.zeros(N, 0, device=dev)
        return codes, r


def fit_features(panel: Panel, use_known: bool, use_static: bool, lags=None) -> FeatureSpec:
    """Statistics of the training panel: covariate means and spreads over the observed steps."""
    T = panel.num_steps
    if use_known and panel.known is not None:
        x = panel.known[:, :T]
        steps = torch.arange(T, device=x.device)
        inside = (steps[None] >= panel.start[:, None]) & (steps[None] < panel.end[:, None])
        vals = torch.where(inside[..., None], x, torch.full_like(x, float("nan")))
        ok = ~torch.isnan(vals)
        n = ok.sum((0, 1)).clamp_min(1)
        mean = torch.where(ok, vals, 0).sum((0, 1)) / n
        var = torch.where(ok, (vals - mean) ** 2, 0).sum((0, 1)) / n
        binary = torch.where(ok, (vals == 0) | (vals == 1), True).all(0).all(0)
        std = var.sqrt().clamp_min(1e-6)
        mean = torch.where(binary, torch.zeros_like(mean), mean)
        std = torch.where(binary, torch.ones_like(std), std)
        full = panel.known
        steps_all = torch.arange(full.shape[1], device=x.device)
        span = steps_all[None] >= panel.start[:, None]
        flag = (torch.isnan(full) & span[..., None]).any(0).any(0)
        known_names = tuple(panel.known_names)
    else:
        mean = std = torch.zeros(0)
        flag = torch.zeros(0, dtype=torch.bool)
        known_names = ()
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
    return FeatureSpec(known_names, mean.cpu(), std.cpu(), flag.cpu(), cat_names, cards, real_names,
                       rmean.cpu(), rstd.cpu(), tuple(lags or lags_for_freq(panel.freq)), panel.freq)
