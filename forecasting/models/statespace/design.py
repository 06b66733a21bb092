"""From a Panel to the tensors a structural model reads, built once per fit on the model's device.

Every series is right-aligned on its own forecast origin: step ``t`` of row ``n`` is grid position
``end[n] - L + t`` for ``t in [0, L + H)``, so the last ``H`` steps are the forecast window. The
calendar (seasonal positions, holidays) is computed from each step's real timestamp, so series that
end on different dates still see the right week of the year.

Shapes (``N`` series, ``L`` history steps, ``H`` horizon, ``K`` regressors):

- ``y [N, L]`` the target as the likelihood sees it (standardised for real-valued likelihoods,
  raw counts for count likelihoods), 0 where not observed; ``mask [N, L]`` observed
- ``loc [N]``, ``scale [N]``: real-valued: ``y = (target - loc) / scale``; counts: ``scale`` is the
  series' mean observed count (floored), the offset of the log-rate
- ``seasons``: tuple of ``(name, period, idx [N, L + H] long)`` dummy seasonalities
- ``fourier [N, L + H, F]``: Fourier terms of long seasons (yearly for daily data)
- ``x [N, L + H, K]``: regressors: moving-holiday indicators and standardised known covariates
  (missing -> 0, the training mean)
- ``group [N]`` long in ``[0, G)``: the pooling group of each series
- ``season_groups``: tuple of ``(codes [N] long, size)``: further groupings (e.g. store) whose own
  seasonal profiles add to each member's
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ...data.calendar import _base, calendar_features, holiday_names, seasonal_positions, shift_dates
from ...data.panel import Panel, PanelError, _names
from ..base import floor_rows

__all__ = ["CovariateSpec", "Design", "build_design", "default_history", "fourier_terms", "seasonal_positions"]


def fourier_terms(dates: pd.DatetimeIndex, freq: str, harmonics: int = 6) -> np.ndarray:
    """``[len(dates), F]`` yearly Fourier terms for daily data (too long a season for dummies)."""
    name, _ = _base(freq)
    if name not in ("D", "B") or harmonics < 1:
        return np.zeros((len(dates), 0), dtype=np.float32)
    d = dates.tz_localize(None) if dates.tz is not None else dates
    pos = (d.dayofyear.to_numpy() - 1) / 365.25
    k = np.arange(1, harmonics + 1)[None, :]
    ang = 2 * np.pi * k * pos[:, None]
    return np.concatenate([np.sin(ang), np.cos(ang)], axis=1).astype(np.float32)


def default_history(freq: str) -> int:
    """Steps of history used when none is given: ``max(1000, 8 x the longest season)``.

    Every step holds level-noise latents for every series, so all 52,000 hourly steps of a long
    series would take tens of GB; eight seasons keep the seasonal profiles well estimated."""
    name, n = _base(freq)
    longest = {"W": 52, "D": 365, "B": 261, "H": 168 // max(n, 1), "T": 7 * 24 * 60 // max(n, 1),
               "MIN": 7 * 24 * 60 // max(n, 1)}.get(name, 12)
    return max(1000, 8 * longest)


@dataclass
class CovariateSpec:
    """How known covariates become regressors, frozen at fit: names, log transform, mean and spread."""

    names: tuple[str, ...]
    columns: tuple[int, ...]  # positions in panel.known_names
    log: tuple[bool, ...]
    mean: torch.Tensor  # [K]
    std: torch.Tensor  # [K]


@dataclass(eq=False)  # hashed by identity: the jit-compiled ELBO keys on it
class Design:
    item_ids: pd.Index
    y: torch.Tensor
    mask: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor
    seasons: tuple[tuple[str, int, torch.Tensor], ...]
    fourier: torch.Tensor
    x: torch.Tensor
    x_names: tuple[str, ...]
    group: torch.Tensor
    num_groups: int
    dates: pd.DatetimeIndex  # [L + H + offset] grid the rows are cut from
    pos: torch.Tensor  # [N, L + H] position of each step in `dates`
    horizon: int
    season_groups: tuple[tuple[torch.Tensor, int], ...] = ()
    never_negative: torch.Tensor | None = None  # [N]: no observed value below zero in the whole history

    @property
    def num_series(self) -> int:
        return self.y.shape[0]

    @property
    def history(self) -> int:
        return self.y.shape[1]


def _offset(freq: str) -> pd.DateOffset:
    return pd.tseries.frequencies.to_offset(freq)


def covariate_spec(panel: Panel, covariates, log_covariates) -> CovariateSpec:
    """Choose and standardise known covariates over each series' observed span."""
    known = tuple(panel.known_names) if panel.known is not None else ()
    if covariates is None:
        names: tuple[str, ...] = ()
    elif covariates == "all":
        names = known
    else:
        names = tuple(covariates)
        missing = [c for c in names if c not in known]
        if missing:
            raise ValueError(f"covariates {missing} are not known covariates of the panel (known: {list(known)})")
    log = tuple(c in set(log_covariates or ()) for c in names)
    unknown_log = [c for c in (log_covariates or ()) if c not in names]
    if unknown_log:
        raise ValueError(f"log_covariates {unknown_log} are not among the chosen covariates {list(names)}")
    if not names:
        z = torch.zeros(0)
        return CovariateSpec((), (), (), z, z)
    cols = tuple(known.index(c) for c in names)
    T = panel.num_steps
    x = panel.known[:, :T][..., list(cols)]
    for j, is_log in enumerate(log):
        if is_log:
            bad = x[..., j] <= 0
            if bool(bad.any()):
                rows = bad.any(1).nonzero().squeeze(1).cpu().numpy()
                raise PanelError(f"log_covariates: {names[j]!r} has values <= 0 in series {_names(panel.item_ids[rows])}")
    x = _transform(x, log)
    steps = torch.arange(T, device=x.device)
    inside = (steps[None] >= panel.start[:, None]) & (steps[None] < panel.end[:, None])
    ok = inside[..., None] & ~torch.isnan(x)
    n = ok.sum((0, 1)).clamp_min(1)
    mean = torch.where(ok, x, 0).sum((0, 1)) / n
    std = (torch.where(ok, (x - mean) ** 2, 0).sum((0, 1)) / n).sqrt()
    binary = torch.where(ok, (x == 0) | (x == 1), True).all(0).all(0)
    mean = torch.where(binary, torch.zeros_like(mean), mean)
    std = torch.where(binary | (std < 1e-8), torch.ones_like(std), std)
    return CovariateSpec(names, cols, log, mean.cpu(), std.cpu())


def _transform(x: torch.Tensor, log: tuple[bool, ...]) -> torch.Tensor:
    if any(log):
        lg = torch.tensor(log, device=x.device)
        x = torch.where(lg, torch.log(x.clamp_min(1e-30)), x)
    return x


def build_design(panel: Panel, horizon: int, history: int | None, count: bool, spec: CovariateSpec,
                 holidays: bool, group_codes: torch.Tensor, num_groups: int, yearly_harmonics: int,
                 device: torch.device, seasonal: bool | str = True,
                 season_groups: tuple[tuple[torch.Tensor, int], ...] = (), subdaily_holidays: bool = True) -> Design:
    """The tensors of the module docstring for ``panel`` forecast ``horizon`` steps after each end."""
    panel = panel.to(device)
    N, T = panel.num_series, panel.num_steps
    span = int((panel.end - panel.start).max())
    L = min(span, default_history(panel.freq)) if history is None else min(int(history), span)
    y, mask = panel.history(L)
    if count:
        bad = mask & ((y < 0) | (y != torch.round(y)))
        if bool(bad.any()):
            rows = bad.any(1).nonzero().squeeze(1).cpu().numpy()
            raise PanelError(f"a count likelihood needs non-negative integer targets; series "
                             f"{_names(panel.item_ids[rows])} have negative or fractional values")
    # the scale of a series comes from its window; one with no observed value in the window (its
    # demand stopped, or a short ``history``) takes it from its whole observed history, and its
    # window's level is then the prior's (nothing in the window to fit)
    sy, smask = y, mask
    empty = mask.sum(1) == 0
    if bool(empty.any()):
        ya, ma = panel.history(span)
        never = empty & (ma.sum(1) == 0)
        if bool(never.any()):
            rows = never.nonzero().squeeze(1).cpu().numpy()
            raise PanelError(f"series without any observed value: {_names(panel.item_ids[rows])}")
        sy, smask = torch.cat([y, ya], 1), torch.cat([mask, ma & empty[:, None]], 1)
    n = smask.sum(1).clamp_min(1)
    mean = torch.where(smask, sy, 0).sum(1) / n
    if count:
        loc = torch.zeros(N, device=device)
        scale = mean.clamp_min(0.1)  # rate offset; a series of zeros keeps a small positive rate
    else:
        var = torch.where(smask, (sy - mean[:, None]) ** 2, 0).sum(1) / n
        sd = var.sqrt()
        scale = torch.where(sd > 1e-8 * (1 + mean.abs()), sd, torch.ones_like(sd))
        loc = mean
        y = torch.where(mask, (y - loc[:, None]) / scale[:, None], torch.zeros_like(y))
    # grid of dates covering every row: L steps before the grid start through H after its end
    off = _offset(panel.freq)
    # the first date moves as the grid steps (a day in wall time across a DST change), not L x 24 h
    dates = pd.date_range(shift_dates(panel.index[:1], -L, off)[0], periods=L + T + horizon, freq=off)
    pos = panel.end[:, None] - L + torch.arange(L + horizon, device=device) + L  # [N, L + H] into `dates`
    pos_np = pos.cpu().numpy()
    dummies = seasonal_positions(dates, panel.freq) if seasonal else []
    if seasonal == "crossed" and len(dummies) > 1:  # one profile over every combination, e.g. the
        # 168 hours of the week: weekday and weekend days get their own daily shapes. The first
        # period varies fastest (hour 0..23 of Monday, then of Tuesday, ...)
        period, idx = 1, np.zeros(len(dates), dtype=np.int64)
        for _, p, i in reversed(dummies):
            idx, period = idx * p + i, period * p
        dummies = [("_x_".join(nm for nm, _, _ in dummies), period, idx)]
    seasons = tuple((nm, p, torch.as_tensor(idx[pos_np], device=device, dtype=torch.long))
                    for nm, p, idx in dummies)
    four = torch.as_tensor(fourier_terms(dates, panel.freq, yearly_harmonics if seasonal else 0)[pos_np],
                           device=device)
    parts, names = [], []
    if holidays and holiday_names(panel.freq, subdaily_holidays):
        hol = calendar_features(dates, panel.freq, fourier=False, subdaily_holidays=subdaily_holidays).to(device)
        parts.append(hol[pos])  # [N, L + H, 3 * holidays]
        names += holiday_names(panel.freq, subdaily_holidays)
    if spec.names:
        if panel.known is None or tuple(panel.known_names[c] for c in spec.columns) != spec.names:
            raise ValueError(f"the panel's known covariates {list(panel.known_names)} differ from those at fit "
                             f"{list(spec.names)}")
        kp = pos - L  # grid positions of the known covariates
        inside = (kp >= 0) & (kp < panel.known.shape[1])
        rows = torch.arange(N, device=device)[:, None]
        xk = panel.known[rows, kp.clamp(0, panel.known.shape[1] - 1)][..., list(spec.columns)]
        fut = inside[:, L:, None] & ~torch.isnan(xk[:, L:])
        if not bool(fut.all()):
            bad = (~fut).any(-1).any(-1).nonzero().squeeze(1).cpu().numpy()
            raise PanelError(f"known covariates {list(spec.names)} missing in the forecast window of series "
                             f"{_names(panel.item_ids[bad])}")
        for j in (j for j, is_log in enumerate(spec.log) if is_log):  # the forecast window too, not only the history
            bad = inside & (xk[..., j] <= 0)  # NaN compares False
            if bool(bad.any()):
                i = int(bad.any(1).nonzero()[0, 0])
                k = int(bad[i].nonzero()[0, 0])
                raise PanelError(f"log_covariates: {spec.names[j]!r} has values <= 0 in series "
                                 f"{_names(panel.item_ids[bad.any(1).cpu().numpy()])}: e.g. {float(xk[i, k, j])} at "
                                 f"{dates[int(pos[i, k])]} in series {panel.item_ids[i]!r}")
        xk = _transform(xk, spec.log)
        z = (xk - spec.mean.to(device)) / spec.std.to(device)
        z = torch.where(inside[..., None] & ~torch.isnan(z), z, torch.zeros_like(z))
        parts.append(z)
        names += list(spec.names)
    x = torch.cat(parts, -1) if parts else torch.zeros(N, L + horizon, 0, device=device)
    whole, seen = panel.history(span)
    return Design(panel.item_ids, y, mask, loc, scale, seasons, four, x.float(), tuple(names),
                  group_codes.to(device), num_groups, dates, pos, horizon,
                  tuple((c.to(device), n) for c, n in season_groups), floor_rows(whole, seen, None))
