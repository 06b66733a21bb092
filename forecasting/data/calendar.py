"""Calendar features shared by the models: seasonal Fourier terms and moving-holiday indicators."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from pandas.tseries import offsets
from pandas.tseries.holiday import (AbstractHolidayCalendar, Holiday, USLaborDay, USMemorialDay, USThanksgivingDay)

__all__ = ["calendar_features", "holiday_names", "seasonal_positions", "seasonal_position"]


def _base(freq: str) -> tuple[str, int]:
    off = pd.tseries.frequencies.to_offset(freq)
    name = off.name.split("-")[0].upper()
    return name, int(getattr(off, "n", 1))


class _MovingHolidays(AbstractHolidayCalendar):
    rules = [
        USThanksgivingDay,
        Holiday("Christmas", month=12, day=25),
        Holiday("NewYear", month=1, day=1),
        Holiday("Easter", month=1, day=1, offset=[offsets.Easter()]),
        USMemorialDay,
        Holiday("July4", month=7, day=4),
        USLaborDay,
        Holiday("SuperBowl", month=2, day=1, offset=pd.DateOffset(weekday=6)),  # first Sunday of February
    ]


def shift_dates(dates: pd.DatetimeIndex, k: int, offset: pd.DateOffset) -> pd.DatetimeIndex:
    """``dates`` moved ``k`` steps of ``offset``, as a panel's grid (``pd.date_range``) steps: on
    timezone-aware dates a day or longer moves in wall time (local midnight stays midnight across a
    DST change; pandas adds a ``Day`` as 24 absolute hours), shorter steps in absolute time."""
    if dates.tz is None or not (isinstance(offset, pd.offsets.Tick) and offset.nanos >= 86_400 * 10**9):
        return dates + k * offset
    wall = dates.tz_localize(None) + k * offset
    return wall.tz_localize(dates.tz, ambiguous=np.ones(len(wall), dtype=bool), nonexistent="shift_forward")


def forecast_dates(start: pd.DatetimeIndex, horizon: int, offset: pd.DateOffset) -> pd.DatetimeIndex:
    """``[N * horizon]`` dates of every (series, step) after the ``[N]`` first forecast dates
    ``start``, series-major, stepped as :func:`shift_dates` (timezone kept)."""
    steps = [shift_dates(start, k, offset) for k in range(horizon)]  # H shifted indexes, vectorised over N
    stamps = pd.DatetimeIndex(np.stack([s.as_unit("ns").asi8 for s in steps], axis=1).reshape(-1))  # UTC instants
    return stamps.tz_localize("UTC").tz_convert(start.tz) if start.tz is not None else stamps


def calendar_features(index: pd.DatetimeIndex, freq: str, fourier: bool = True,
                      subdaily_holidays: bool = True) -> torch.Tensor:
    """``[T, C]`` float32 features of each timestamp: Fourier terms of its seasonal positions (unless
    ``fourier=False``) and whether each holiday falls in the period, the previous or the next (3
    columns per holiday, see ``holiday_names``): for weekly and daily data, and for hourly and finer
    data on the timestamp's day, the day before and the day after (``subdaily_holidays=False``: none
    for sub-daily data, as models saved before they were added saw them)."""
    name, _ = _base(freq)
    idx = index.tz_localize(None) if index.tz is not None else index
    cols = []

    def add_fourier(pos, period, harmonics):
        for k in range(1, harmonics + 1):
            cols.append(np.sin(2 * np.pi * k * pos / period))
            cols.append(np.cos(2 * np.pi * k * pos / period))

    doy = idx.dayofyear.to_numpy() - 1
    if not fourier:
        pass
    elif name == "W":
        add_fourier(doy, 365.25, 4)
    elif name in ("M", "MS", "ME", "Q", "QS", "QE"):
        add_fourier(idx.month.to_numpy() - 1, 12, 3)
    elif name in ("D", "B"):
        add_fourier(idx.dayofweek.to_numpy(), 7, 3)
        add_fourier(doy, 365.25, 3)
        add_fourier(idx.day.to_numpy() - 1, 31, 1)
    elif name in ("H", "T", "MIN"):
        add_fourier(idx.hour.to_numpy() + idx.minute.to_numpy() / 60, 24, 3)
        add_fourier(idx.dayofweek.to_numpy() + idx.hour.to_numpy() / 24, 7, 2)
        add_fourier(doy, 365.25, 1)
    if holiday_names(freq, subdaily_holidays):
        span = pd.Timedelta(days=7 if name == "W" else 1)
        # a weekly timestamp labels the week ending on it (W-FRI: Saturday..Friday); a day labels itself;
        # an hour (or minute) belongs to its day, in the data's local time
        period_end = idx.normalize() + (pd.Timedelta(0) if name == "W" else span - pd.Timedelta(days=1))
        cal = _MovingHolidays()
        days = cal.holidays(idx.min() - pd.Timedelta(days=400), idx.max() + pd.Timedelta(days=400), return_name=True)
        for hname in [r.name for r in cal.rules]:
            when = days[days == hname].index.to_numpy(dtype="datetime64[ns]")
            for shift in (-1, 0, 1):  # previous, this, next period
                lo = (period_end - span * (1 - shift) + pd.Timedelta(days=1)).to_numpy(dtype="datetime64[ns]")
                hi = (period_end + span * shift).to_numpy(dtype="datetime64[ns]")
                j = np.searchsorted(when, lo)
                hit = (j < len(when)) & (when[np.minimum(j, len(when) - 1)] <= hi)
                cols.append(hit.astype(float))
    if not cols:
        return torch.zeros(len(index), 0)
    return torch.tensor(np.stack(cols, axis=1), dtype=torch.float32)


def holiday_names(freq: str, subdaily: bool = True) -> list[str]:
    """Names of the holiday columns ``calendar_features(..., fourier=False)`` returns for ``freq``
    (``subdaily=False``: none for hourly and finer data)."""
    name, _ = _base(freq)
    if name not in ("W", "D", "B") and not (subdaily and name in ("H", "T", "MIN")):
        return []
    return [f"{r.name}{s}" for r in _MovingHolidays.rules for s in ("_prev", "", "_next")]


def seasonal_positions(dates: pd.DatetimeIndex, freq: str) -> list[tuple[str, int, np.ndarray]]:
    """Dummy seasonalities of ``freq`` as ``(name, period, position)``, position ``[len(dates)]``.

    Weekly: weeks since 1970-01-01 modulo 52, so a position recurs exactly 52 weeks (364 days)
    later, as the seasonal naive's lag; week-of-year buckets counted from 1 January would shift
    by a week between some years (a week's end date moves 1-2 days a year); holidays that move
    are separate regressors. Daily: day of the week; hourly and finer: slot of the day and day of the week;
    monthly: month; quarterly: quarter."""
    name, n = _base(freq)
    d = dates.tz_localize(None) if dates.tz is not None else dates
    if name == "W":
        weeks = (d.normalize() - pd.Timestamp("1970-01-01")).days.to_numpy() // 7
        return [("week_of_year", 52, weeks % 52)]
    if name in ("D", "B"):
        return [("day_of_week", 7, d.dayofweek.to_numpy())]
    if name in ("H", "T", "MIN"):
        minutes = n * (60 if name == "H" else 1)
        per_day = max(1, (24 * 60) // minutes)
        slot = (d.hour.to_numpy() * 60 + d.minute.to_numpy()) // minutes
        return [("slot_of_day", per_day, slot), ("day_of_week", 7, d.dayofweek.to_numpy())]
    if name in ("M", "MS", "ME"):
        return [("month", 12, d.month.to_numpy() - 1)]
    if name in ("Q", "QS", "QE"):
        return [("quarter", 4, d.quarter.to_numpy() - 1)]
    return []


def seasonal_position(dates: pd.DatetimeIndex, freq: str) -> tuple[int, np.ndarray]:
    """All dummy seasonalities of ``freq`` crossed into one position: ``(period, position [len(dates)])``
    (hourly: 24 x 7 = 168 slots of the week; weekly: 52; daily: 7; monthly: 12); ``(1, zeros)``
    for a frequency without one."""
    period, pos = 1, np.zeros(len(dates), dtype=np.int64)
    for _, p, idx in seasonal_positions(dates, freq):
        pos = pos * p + idx
        period *= p
    return period, pos
