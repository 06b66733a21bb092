"""The Panel: many series on one regular time grid, as padded tensors.

Every input check of the package lives in this module. A Panel is built once from a long pandas
frame (or a GluonTS dataset) and then only sliced; models see nothing else.

Shapes (N series, T grid steps, K known covariates, P past covariates):

- ``target``    ``[N, T]`` float32, 0.0 where not observed
- ``observed``  ``[N, T]`` bool, True where the target was observed
- ``known``     ``[N, T + F, K]`` float32, NaN where missing; F >= 0 steps past the grid end
- ``past``      ``[N, T, P]`` float32, NaN where missing
- ``static_cat`` ``[N, C]`` int64 codes into ``static_cat_levels``; ``static_real`` ``[N, R]``
- ``start`` / ``end`` ``[N]`` int64: first observed step and one past the last one (the
  forecast origin of each series). Series may start and end at different grid steps.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from .calendar import shift_dates

__all__ = ["Panel", "PanelError", "Window"]


class PanelError(ValueError):
    """Bad input data. The message names the series and the problem."""


def _names(ids: Sequence, limit: int = 5) -> str:
    ids = [i.item() if isinstance(i, np.generic) else i for i in ids]  # 1, not np.int64(1)
    shown = ", ".join(repr(i) for i in ids[:limit])
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return shown + more


def _offset(freq) -> pd.DateOffset:
    try:
        return pd.tseries.frequencies.to_offset(freq)
    except (ValueError, TypeError) as err:
        raise PanelError(f"unknown frequency {freq!r}: {err}") from None


def _grid(first: pd.Timestamp, last: pd.Timestamp, offset: pd.DateOffset) -> pd.DatetimeIndex:
    """The regular grid of ``offset`` that covers first..last, anchored on the offset's calendar."""
    if isinstance(offset, pd.offsets.Tick):
        anchor = first.floor(offset)
    else:
        anchor = first if offset.is_on_offset(first) else offset.rollback(first)
    return pd.date_range(anchor, last, freq=offset)


def _period_stamps(periods: pd.PeriodIndex) -> pd.DatetimeIndex:
    """Timestamps that label GluonTS periods on a pandas grid: a week by the day that anchors it
    (its last day: the Friday of a 'W-FRI' week, as pandas' 'W-FRI' dates are), anything else by
    its start."""
    if isinstance(periods.freq, pd.offsets.Week):
        return periods.to_timestamp(how="end").normalize()
    return periods.to_timestamp(how="start")


def _to_datetime(df: pd.DataFrame, id_col: str, timestamp_col: str, where: str) -> pd.Series:
    """``df[timestamp_col]`` as datetimes; timestamps pandas cannot parse together (time zones mixed
    with naive times, text that is no date) are an error that names the series."""
    try:
        return pd.to_datetime(df[timestamp_col])
    except (ValueError, TypeError) as err:
        stamps = df[timestamp_col]
        aware = stamps.map(lambda t: getattr(t, "tzinfo", None) is not None)
        if aware.any() and not aware.all():
            raise PanelError(
                f"time-zone-aware and naive timestamps mixed in {timestamp_col!r} of {where}: aware in series "
                f"{_names(df.loc[aware, id_col].unique())}, naive in series {_names(df.loc[~aware, id_col].unique())}; "
                "localise or convert them all to one zone") from None
        bad = pd.to_datetime(stamps, errors="coerce").isna() & stamps.notna()
        rows = df.loc[bad] if bad.any() else df
        raise PanelError(f"cannot read {timestamp_col!r} of {where} as timestamps in series "
                         f"{_names(rows[id_col].unique())}: {err}") from None



def _first_bad(bad: torch.Tensor) -> tuple[np.ndarray, int, int]:
    """For a ``[N, T]`` mask of bad entries (some set): the rows with one, and the row and column
    of the first, for error messages that name the series and an example."""
    rows = bad.any(1).nonzero().squeeze(1).cpu().numpy()
    i = int(rows[0])
    return rows, i, int(bad[i].nonzero()[0, 0])


def _numeric(df: pd.DataFrame, col: str, id_col: str, where: str) -> pd.Series:
    """Column ``col`` as float64; a value that is not a number is an error naming the series."""
    vals = pd.to_numeric(df[col], errors="coerce")
    bad = vals.isna() & df[col].notna()
    if bad.any():
        raise PanelError(f"non-numeric values in column {col!r}{where} for series "
                         f"{_names(df.loc[bad, id_col].unique())}: e.g. {df.loc[bad, col].iloc[0]!r}")
    return vals.astype("float64")

@dataclass(frozen=True, eq=False)
class Panel:
    """Series on a common regular grid as padded tensors (see the module docstring for shapes)."""

    item_ids: pd.Index
    index: pd.DatetimeIndex
    freq: str
    target: torch.Tensor
    observed: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    known: torch.Tensor | None = None
    known_names: tuple[str, ...] = ()
    past: torch.Tensor | None = None
    past_names: tuple[str, ...] = ()
    static_cat: torch.Tensor | None = None
    static_cat_names: tuple[str, ...] = ()
    static_cat_levels: tuple[pd.Index, ...] = ()
    static_real: torch.Tensor | None = None
    static_real_names: tuple[str, ...] = ()
    known_index: pd.DatetimeIndex = field(default=None)  # grid of `known`, extends `index`

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_long(
        cls,
        df: pd.DataFrame,
        *,
        id_col: str = "item_id",
        timestamp_col: str = "timestamp",
        target: str = "target",
        freq: str | None = None,
        known_covariates: Sequence[str] = (),
        past_covariates: Sequence[str] = (),
        static_categorical: Sequence[str] = (),
        static_real: Sequence[str] = (),
        future: pd.DataFrame | None = None,
    ) -> "Panel":
        """Build a Panel from a long frame with one row per (series, timestamp).

        ``future`` holds known covariates for timestamps after the history (same id and
        timestamp columns); they extend ``known`` past the target grid. Rows of ``df`` whose
        target is NaN are missing observations: masked, never filled.
        """
        known_covariates, past_covariates = list(known_covariates), list(past_covariates)
        static_categorical, static_real = list(static_categorical), list(static_real)
        needed = [id_col, timestamp_col, target, *known_covariates, *past_covariates,
                  *static_categorical, *static_real]
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise PanelError(f"unknown column(s) {missing}; the frame has {list(df.columns)}")
        if len(df) == 0:
            raise PanelError("the frame is empty")
        df = df[list(dict.fromkeys(needed))].copy()
        df[timestamp_col] = _to_datetime(df, id_col, timestamp_col, "the frame")
        if df[timestamp_col].isna().any():
            raise PanelError(f"missing timestamps (NaT) in {timestamp_col!r} for series "
                             f"{_names(df.loc[df[timestamp_col].isna(), id_col].unique())}")
        if df[id_col].isna().any():
            raise PanelError(f"{int(df[id_col].isna().sum())} row(s) have no series id in {id_col!r}")

        # target must be numeric: report the first value that is not
        values = pd.to_numeric(df[target], errors="coerce")
        bad = values.isna() & df[target].notna()
        if bad.any():
            rows = df.loc[bad, [id_col, target]]
            raise PanelError(
                f"non-numeric target {target!r} in series {_names(rows[id_col].unique())}: "
                f"e.g. {rows[target].iloc[0]!r}")
        df[target] = values.astype("float64")
        big = (df[target].abs() > 2 ** 24) & np.isfinite(df[target])  # inf is refused below
        if big.any():  # float32 holds integers exactly up to 2^24; beyond, values are rounded
            top = float(df.loc[big, target].abs().max())
            warnings.warn(f"target values above 2^24 = 16,777,216 in series {_names(df.loc[big, id_col].unique())} "
                          f"(up to {top:.6g}) are stored as float32, rounded to steps of up to "
                          f"{float(np.spacing(np.float32(top))):g}; rescale them (e.g. to thousands) to keep "
                          "their digits", UserWarning, stacklevel=2)
        for col in known_covariates + past_covariates + static_real:
            df[col] = _numeric(df, col, id_col, "")

        if future is not None:  # the same check for the future frame, before it is used below
            missing_cols = [c for c in known_covariates if c not in future.columns]
            if not missing_cols:
                future = future.copy()
                for col in known_covariates:
                    future[col] = _numeric(future, col, id_col, " of `future`")

        dup = df.duplicated([id_col, timestamp_col], keep=False)
        if dup.any():
            rows = df.loc[dup, [id_col, timestamp_col]]
            first = rows.iloc[0]
            raise PanelError(
                f"duplicate timestamps in series {_names(rows[id_col].unique())}: e.g. "
                f"{first[timestamp_col]} appears {int((rows[id_col].eq(first[id_col]) & rows[timestamp_col].eq(first[timestamp_col])).sum())} times "
                f"in series {first[id_col]!r}")

        if freq is None:
            freq = cls._infer_freq(df, id_col, timestamp_col)
        offset = _offset(freq)

        if future is not None:
            fmissing = [c for c in [id_col, timestamp_col, *known_covariates] if c not in future.columns]
            if fmissing:
                raise PanelError(f"unknown column(s) {fmissing} in `future`; it has {list(future.columns)}")
            future = future[[id_col, timestamp_col, *known_covariates]].copy()
            future[timestamp_col] = _to_datetime(future, id_col, timestamp_col, "`future`")
            fdup = future.duplicated([id_col, timestamp_col], keep=False)
            if fdup.any():
                rows = future.loc[fdup]
                raise PanelError(f"duplicate timestamps in `future` for series {_names(rows[id_col].unique())}: "
                                 f"e.g. {rows[timestamp_col].iloc[0]} in series {rows[id_col].iloc[0]!r}")
            unknown = set(future[id_col]) - set(df[id_col])
            if unknown:
                raise PanelError(f"`future` names series that have no history: {_names(sorted(unknown, key=str))}")

        all_ts = df[timestamp_col] if future is None else pd.concat([df[timestamp_col], future[timestamp_col]])
        index = _grid(df[timestamp_col].min(), df[timestamp_col].max(), offset)
        known_index = _grid(df[timestamp_col].min(), all_ts.max(), offset)

        ids = pd.Index(pd.unique(df[id_col]), name=id_col)
        row = ids.get_indexer(df[id_col])
        col = known_index.get_indexer(df[timestamp_col])
        off = col < 0
        if off.any():
            rows = df.loc[off, [id_col, timestamp_col]]
            raise PanelError(
                f"timestamps off the declared frequency {freq!r} in series {_names(rows[id_col].unique())}: "
                f"e.g. {rows[timestamp_col].iloc[0]} in series {rows[id_col].iloc[0]!r}")
        cls._check_step(row, col, ids, freq, df[timestamp_col])
        N, T, TK = len(ids), len(index), len(known_index)

        y = np.full((N, T), np.nan)
        y[row, col] = df[target].to_numpy()
        observed = ~np.isnan(y)
        empty = ~observed.any(axis=1)
        if empty.any():
            raise PanelError(f"series with no observed target value: {_names(ids[empty])}")
        has_row = np.zeros((N, T), dtype=bool)
        has_row[row, col] = True
        start = observed.argmax(axis=1)
        end = T - observed[:, ::-1].argmax(axis=1)

        known = None
        if known_covariates:
            known = np.full((N, TK, len(known_covariates)), np.nan)
            known[row, col] = df[known_covariates].to_numpy()
            if future is not None:
                frow = ids.get_indexer(future[id_col])
                fcol = known_index.get_indexer(future[timestamp_col])
                early = (future[timestamp_col] < known_index[0]).to_numpy()
                if early.any():
                    bad = future.loc[early]
                    raise PanelError(
                        f"`future` rows dated before the history starts ({known_index[0]}) for series "
                        f"{_names(bad[id_col].unique())}: e.g. {bad[timestamp_col].iloc[0]}")
                if (fcol < 0).any():
                    bad = future.loc[fcol < 0]
                    raise PanelError(
                        f"timestamps off the declared frequency {freq!r} in `future` for series "
                        f"{_names(bad[id_col].unique())}: e.g. {bad[timestamp_col].iloc[0]}")
                clash = fcol < T
                clash &= has_row[frow, np.minimum(fcol, T - 1)]
                if clash.any():
                    bad = future.loc[clash]
                    raise PanelError(
                        f"`future` repeats timestamps already in the history for series "
                        f"{_names(bad[id_col].unique())}: e.g. {bad[timestamp_col].iloc[0]}")
                known[frow, fcol] = future[known_covariates].to_numpy()
        past = None
        if past_covariates:
            past = np.full((N, T, len(past_covariates)), np.nan)
            past[row, col] = df[past_covariates].to_numpy()

        firsts = df.groupby(row, sort=True)
        scat, levels = None, ()
        if static_categorical:
            nun = firsts[static_categorical].nunique(dropna=False)
            cls._check_constant(nun, ids, static_categorical)
            first_rows = firsts[static_categorical].first()
            cls._check_present(first_rows, ids, "static categorical")
            codes, lv = [], []
            for c in static_categorical:
                cat = pd.Categorical(first_rows[c])
                codes.append(cat.codes.astype(np.int64))
                lv.append(pd.Index(cat.categories, name=c))
            scat, levels = torch.from_numpy(np.stack(codes, axis=1)), tuple(lv)
        sreal = None
        if static_real:
            nun = firsts[static_real].nunique(dropna=False)
            cls._check_constant(nun, ids, static_real)
            first_real = firsts[static_real].first()
            cls._check_present(first_real, ids, "static real")
            sreal = torch.tensor(first_real.to_numpy(), dtype=torch.float32)

        return cls(
            item_ids=ids, index=index, freq=freq,
            target=torch.from_numpy(np.where(observed, y, 0.0).astype(np.float32)),  # +-inf stays inf: refused below
            observed=torch.from_numpy(observed),
            start=torch.from_numpy(start.astype(np.int64)), end=torch.from_numpy(end.astype(np.int64)),
            known=None if known is None else torch.from_numpy(known.astype(np.float32)),
            known_names=tuple(known_covariates),
            past=None if past is None else torch.from_numpy(past.astype(np.float32)),
            past_names=tuple(past_covariates),
            static_cat=scat, static_cat_names=tuple(static_categorical), static_cat_levels=levels,
            static_real=sreal, static_real_names=tuple(static_real),
            known_index=known_index,
        )

    @staticmethod
    def _check_step(row: np.ndarray, col: np.ndarray, ids: pd.Index, freq: str, stamps: pd.Series) -> None:
        """Refuse a declared frequency finer than the data's: when the rows of every series fall on
        every k-th step (k >= 2) of the grid, the panel would be (k-1)/k missing values (weekly
        data declared daily). Irregular gaps (a daily series missing some days) pass."""
        order = np.lexsort((col, row))
        same = row[order][1:] == row[order][:-1]
        gaps = np.diff(col[order])[same]
        k = int(np.gcd.reduce(gaps)) if len(gaps) else 1
        if k >= 2:
            counts = np.bincount(row, minlength=len(ids))
            longest = np.sort(stamps.to_numpy()[row == counts.argmax()])
            guess = pd.infer_freq(pd.DatetimeIndex(longest)) if len(longest) >= 3 else None
            raise PanelError(
                f"the timestamps of every series are {k} steps of freq {freq!r} apart (or a multiple of it), "
                f"e.g. series {ids[counts.argmax()]!r}: {pd.Timestamp(longest[0])}, {pd.Timestamp(longest[1])}, ...; "
                f"the panel would be {k - 1}/{k} missing values. Pass the data's own frequency"
                + (f" (it looks like {guess!r})" if guess else "") + " or omit freq= to infer it")

    @staticmethod
    def _check_constant(nunique: pd.DataFrame, ids: pd.Index, cols: list[str]) -> None:
        for c in cols:
            varying = nunique[c].to_numpy() > 1
            if varying.any():
                raise PanelError(f"static column {c!r} changes over time in series {_names(ids[varying])}")

    @staticmethod
    def _check_present(first: pd.DataFrame, ids: pd.Index, kind: str) -> None:
        """Static values must be given: a missing category would become code -1 (read as the last
        level), a missing real a NaN model input."""
        for c in first.columns:
            missing = first[c].isna().to_numpy()
            if missing.any():
                raise PanelError(f"{kind} column {c!r} has no value for series {_names(ids[missing])}; "
                                 f"fill it (e.g. with an explicit 'unknown' level) before building the panel")

    @staticmethod
    def _infer_freq(df: pd.DataFrame, id_col: str, timestamp_col: str) -> str:
        lengths = df.groupby(id_col)[timestamp_col].size()
        longest = df.loc[df[id_col] == lengths.idxmax(), timestamp_col].sort_values()
        freq = pd.infer_freq(longest) if len(longest) >= 3 else None
        if freq is None:
            raise PanelError(
                f"cannot infer the frequency from series {lengths.idxmax()!r}; pass freq= (e.g. 'W-FRI', 'MS', 'D', 'h')")
        return freq

    @classmethod
    def from_gluonts(cls, dataset: Iterable[dict], freq: str | None = None) -> "Panel":
        """Build a Panel from a GluonTS dataset (entries with ``start``, ``target`` and optional
        ``item_id``, ``feat_dynamic_real`` (known), ``past_feat_dynamic_real``,
        ``feat_static_cat``, ``feat_static_real``)."""
        frames, futures, statics, seen = [], [], [], set()
        for i, entry in enumerate(dataset):
            item = entry.get("item_id", i)
            if item in seen:
                raise PanelError(f"item_id {item!r} names more than one entry of the GluonTS dataset "
                                 f"(entry {i} and an earlier one); give every series its own item_id")
            seen.add(item)
            start = entry["start"]
            f = freq or getattr(start, "freqstr", None)
            if f is None:
                raise PanelError(f"series {item!r}: `start` has no frequency; pass freq=")
            freq = freq or f
            y = np.asarray(entry["target"], dtype=float)
            if y.ndim != 1:
                raise PanelError(f"series {item!r}: target must be 1-d, got shape {y.shape}")
            ts = _period_stamps(pd.period_range(pd.Period(start, freq=freq), periods=len(y))) \
                if isinstance(start, pd.Period) else pd.date_range(start, periods=len(y), freq=freq)
            frame = {"item_id": item, "timestamp": ts, "target": y}
            kn = np.asarray(entry.get("feat_dynamic_real", np.zeros((0, len(y)))), dtype=float)
            pa = np.asarray(entry.get("past_feat_dynamic_real", np.zeros((0, len(y)))), dtype=float)
            for field, arr, need in (("feat_dynamic_real", kn, len(y)), ("past_feat_dynamic_real", pa, len(y))):
                if arr.ndim != 2 or (arr.shape[0] and arr.shape[1] < need):
                    raise PanelError(f"series {item!r}: {field} must be [features, >= {need} steps] (the target's "
                                     f"length), got shape {arr.shape}")
            for k in range(kn.shape[0]):
                frame[f"feat_dynamic_real_{k}"] = kn[k, : len(y)]
            for k in range(pa.shape[0]):
                frame[f"past_feat_dynamic_real_{k}"] = pa[k, : len(y)]
            frames.append(pd.DataFrame(frame))
            if kn.shape[0] and kn.shape[1] > len(y):
                fts = _period_stamps(pd.period_range(pd.Period(ts[-1], freq=freq) + 1, periods=kn.shape[1] - len(y))) \
                    if isinstance(start, pd.Period) else pd.date_range(ts[-1], periods=kn.shape[1] - len(y) + 1, freq=freq)[1:]
                futures.append(pd.DataFrame({"item_id": item, "timestamp": fts,
                                             **{f"feat_dynamic_real_{k}": kn[k, len(y):] for k in range(kn.shape[0])}}))
            st = {"item_id": item}
            st.update({f"feat_static_cat_{k}": v for k, v in enumerate(entry.get("feat_static_cat", []))})
            st.update({f"feat_static_real_{k}": v for k, v in enumerate(entry.get("feat_static_real", []))})
            statics.append(st)
        if not frames:
            raise PanelError("the GluonTS dataset is empty")
        df = pd.concat(frames, ignore_index=True).merge(pd.DataFrame(statics), on="item_id")
        cols = df.columns
        if not isinstance(freq, str):
            freq = freq.freqstr
        # Period frequencies mark spans: a month ('M') is labelled by its first day (grid 'MS'), a
        # week ('W-FRI') by the day that anchors it, its last (grid 'W-FRI'), as pandas labels weeks.
        if isinstance(pd.Period("2000-01-01", freq=freq).freq, pd.offsets.MonthEnd):
            freq = "MS"
        return cls.from_long(
            df, freq=freq,
            known_covariates=[c for c in cols if c.startswith("feat_dynamic_real_")],
            past_covariates=[c for c in cols if c.startswith("past_feat_dynamic_real_")],
            static_categorical=[c for c in cols if c.startswith("feat_static_cat_")],
            static_real=[c for c in cols if c.startswith("feat_static_real_")],
            future=pd.concat(futures, ignore_index=True) if futures else None,
        )

    # ------------------------------------------------------------------ basic properties
    def __post_init__(self):
        if self.known_index is None:
            object.__setattr__(self, "known_index", self.index)
        N, T = self.target.shape
        if self.observed.shape != (N, T) or len(self.item_ids) != N or len(self.index) != T:
            raise PanelError(f"inconsistent panel shapes: target {tuple(self.target.shape)}, "
                             f"observed {tuple(self.observed.shape)}, {len(self.item_ids)} ids, {len(self.index)} steps")
        inf = self.observed & torch.isinf(self.target)  # NaN is a missing value; an infinite one is an error
        if bool(inf.any()):
            rows, i, j = _first_bad(inf)
            raise PanelError(f"infinite target values in series {_names(self.item_ids[rows])}: e.g. "
                             f"{float(self.target[i, j])} at {self.index[j]} in series {self.item_ids[i]!r}")
        for kind, x, names, index in (("known covariate", self.known, self.known_names, self.known_index),
                                      ("past covariate", self.past, self.past_names, self.index)):
            bad = None if x is None else torch.isinf(x)
            if bad is not None and bool(bad.any()):
                i, j, c = (int(v) for v in bad.nonzero()[0])
                rows = bad.flatten(1).any(1).nonzero().squeeze(1).cpu().numpy()
                raise PanelError(f"infinite values in {kind} {names[c]!r} of series {_names(self.item_ids[rows])}: "
                                 f"e.g. {float(x[i, j, c])} at {index[j]} in series {self.item_ids[i]!r} "
                                 "(a missing value is NaN)")
        bad = None if self.static_real is None else torch.isinf(self.static_real)
        if bad is not None and bool(bad.any()):
            i, c = (int(v) for v in bad.nonzero()[0])
            rows = bad.any(1).nonzero().squeeze(1).cpu().numpy()
            raise PanelError(f"infinite values in static real {self.static_real_names[c]!r} of series "
                             f"{_names(self.item_ids[rows])}: e.g. {float(self.static_real[i, c])} in series "
                             f"{self.item_ids[i]!r}")

    @property
    def num_series(self) -> int:
        return self.target.shape[0]

    @property
    def num_steps(self) -> int:
        return self.target.shape[1]

    @property
    def device(self) -> torch.device:
        return self.target.device

    @property
    def lengths(self) -> torch.Tensor:
        """``[N]`` number of observed values per series."""
        return self.observed.sum(1)

    def __len__(self) -> int:
        return self.num_series

    def __repr__(self) -> str:
        return (f"Panel({self.num_series} series x {self.num_steps} steps, freq={self.freq!r}, "
                f"{self.index[0]}..{self.index[-1]}, known={list(self.known_names)}, past={list(self.past_names)}, "
                f"static_cat={list(self.static_cat_names)}, static_real={list(self.static_real_names)})")

    def to(self, device) -> "Panel":
        """A copy with every tensor on ``device``."""
        move = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **move)

    def select(self, rows) -> "Panel":
        """A Panel holding the series at positions ``rows`` (ints, bool mask or slice)."""
        if isinstance(rows, slice):
            rows = torch.arange(self.num_series)[rows]
        rows = torch.as_tensor(np.asarray(rows))
        if rows.dtype == torch.bool:
            rows = rows.nonzero().squeeze(1)
        r = rows.cpu().numpy()
        take = {f.name: getattr(self, f.name)[rows.to(self.device)] for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, item_ids=self.item_ids[r], **take)

    def static_codes(self, column: str, levels: Sequence | None = None) -> torch.Tensor:
        """``[N]`` codes of the static categorical ``column`` in the numbering of ``levels`` (a
        model's levels at fit; default: the panel's own), matched by level whatever order the
        panel's categories come in. A level not in ``levels``, like a missing level, is ``-1``."""
        names = list(self.static_cat_names)
        if column not in names:
            raise PanelError(f"{column!r} is not a static categorical of the panel (static categoricals: {names})")
        j = names.index(column)
        codes = self.static_cat[:, j]
        if levels is None:
            return codes
        pos = pd.Index(list(levels)).get_indexer(self.static_cat_levels[j])
        table = torch.as_tensor(np.append(pos, -1), dtype=torch.long, device=codes.device)  # code -1 stays -1
        return table[codes]

    # ------------------------------------------------------------------ right-aligned views
    def _gather(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``[N, T, ...]`` at per-series positions ``pos`` ``[N, L]``; out-of-range -> valid False."""
        valid = (pos >= 0) & (pos < x.shape[1])
        idx = pos.clamp(0, x.shape[1] - 1)
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        return x[rows, idx], valid

    def history(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The last ``length`` steps before each series' end: values and mask, both ``[N, length]``.

        Steps before a series' grid start are not observed (mask False, value 0)."""
        pos = self.end[:, None] - length + torch.arange(length, device=self.device)
        y, valid = self._gather(self.target, pos)
        obs, _ = self._gather(self.observed, pos)
        obs = obs & valid
        return torch.where(obs, y, torch.zeros_like(y)), obs

    def future_known(self, horizon: int) -> torch.Tensor:
        """Known covariates for the ``horizon`` steps after each series' end: ``[N, horizon, K]``.

        Raises if the covariate grid does not reach that far or a step has no covariate value at
        all for a series; single missing values are left as NaN for the model (DeepAR imputes and
        flags a covariate that had gaps at fit and refuses one that had none; StateSpace refuses
        them)."""
        if self.known is None:
            raise PanelError("this panel has no known covariates")
        pos = self.end[:, None] + torch.arange(horizon, device=self.device)
        x, valid = self._gather(self.known, pos)
        short = ~valid.all(-1)
        if bool(short.any()):
            i = int(short.nonzero()[0, 0])
            raise PanelError(
                f"known covariates missing in the forecast window of series {_names(self.item_ids[short.cpu().numpy()])}: "
                f"series {self.item_ids[i]!r} needs {horizon} steps after "
                f"{self.index[int(self.end[i]) - 1]}, the covariates' grid reaches {self.known_index[-1]}")
        empty = torch.isnan(x).all(-1)  # [N, horizon]: not one covariate value at that step
        if bool(empty.any()):
            rows, i, j = _first_bad(empty)
            raise PanelError(
                f"known covariates missing in the forecast window of series {_names(self.item_ids[rows])}: "
                f"series {self.item_ids[i]!r} has no value of any of them at forecast step {j + 1} "
                f"({int(self.end[i]) + j} steps into the grid)")
        return x

    def forecast_start(self) -> pd.DatetimeIndex:
        """``[N]`` first forecast timestamp of each series (the step after its end)."""
        offset = _offset(self.freq)
        last = self.index[self.end.cpu().numpy() - 1]
        return pd.DatetimeIndex(shift_dates(pd.DatetimeIndex(last), 1, offset))

    # ------------------------------------------------------------------ splits
    def truncate(self, end: torch.Tensor) -> "Panel":
        """The panel seen at per-series cutoffs ``end`` ``[N]``: targets and past covariates at or
        after each cutoff are masked; the grid is cut to the latest cutoff. Known covariates keep
        their full length (they are known in advance). ``end`` becomes the cutoff: the forecast
        origin, even where the last values before it are missing."""
        end = torch.as_tensor(end, device=self.device)
        if end.shape != (self.num_series,):
            raise PanelError(f"truncate needs one cutoff per series ({self.num_series}), got shape {tuple(end.shape)}")
        if bool((end < 0).any()) or int(end.max()) < 1:
            bad = (end < 0) if bool((end < 0).any()) else (end < 1)
            raise PanelError(f"cutoffs before the grid's start for series {_names(self.item_ids[bad.cpu().numpy()])} "
                             f"(e.g. {int(end.min())}; a cutoff counts the steps kept, at least one series must keep one)")
        T = int(end.max())
        steps = torch.arange(T, device=self.device)
        keep = steps[None, :] < end[:, None]
        observed = self.observed[:, :T] & keep
        past = None
        if self.past is not None:
            past = torch.where(keep[..., None], self.past[:, :T], torch.full_like(self.past[:, :T], float("nan")))
        return dataclasses.replace(
            self, index=self.index[:T], target=torch.where(observed, self.target[:, :T], 0.0),
            observed=observed, end=end.clone(), past=past,
            start=torch.minimum(self.start, end))

    def windows(self, horizon: int, num_windows: int = 1, step: int | None = None,
                min_history: int = 1, align: str = "series", before: int = 0) -> list["Window"]:
        """Rolling-origin evaluation windows as fev-bench counts them.

        Window ``w`` (0 = oldest) of each series starts ``horizon + (num_windows - 1 - w) * step``
        steps before that series' end (``step`` defaults to ``horizon``). With ``align="grid"``
        the cutoffs are counted from the end of the common grid instead, so every series is cut
        at the same date (series that ended earlier then have no truth in the window: all of its
        ``mask`` is False). ``before``: every cutoff that many steps earlier (validation windows
        whose truth ends before the test windows start; see ``Dataset.windows``). Every series
        needs at least ``min_history`` observed values before its first cutoff, else an error
        names it.
        """
        if horizon < 1 or num_windows < 1:
            raise PanelError(f"horizon and num_windows must be >= 1, got {horizon} and {num_windows}")
        if before < 0:
            raise PanelError(f"before must be >= 0 steps, got {before}")
        step = horizon if step is None else step
        if step < 1:
            raise PanelError(f"step must be >= 1, got {step}")
        if min_history < 1:
            raise PanelError(f"min_history must be >= 1, got {min_history}")
        if align not in ("series", "grid"):
            raise PanelError(f"align must be 'series' or 'grid', got {align!r}")
        last = self.end if align == "series" else torch.full_like(self.end, self.num_steps)
        first_cut = last - before - horizon - (num_windows - 1) * step
        steps = torch.arange(self.num_steps, device=self.device)
        hist = (self.observed & (steps[None, :] < first_cut[:, None])).sum(1)
        short = hist < min_history
        if bool(short.any()):
            i = int(short.nonzero()[0, 0])
            raise PanelError(
                f"series shorter than required ({min_history} observed values before the first cutoff, "
                f"horizon {horizon} x {num_windows} windows, step {step}"
                + (f", {before} steps before the end" if before else "") + "): "
                + f"{_names(self.item_ids[short.cpu().numpy()])}; "
                f"series {self.item_ids[i]!r} has {int(hist[i])}")
        out = []
        for w in range(num_windows):  # a handful of windows: one truncate each
            cut = first_cut + w * step
            pos = cut[:, None] + torch.arange(horizon, device=self.device)
            y, valid = self._gather(self.target, pos)
            obs, _ = self._gather(self.observed, pos)
            out.append(Window(train=self.truncate(cut), target=y * (obs & valid), mask=obs & valid,
                              cutoff=cut, index=w))
        return out

    # ------------------------------------------------------------------ back to pandas
    def to_long(self) -> pd.DataFrame:
        """The observed values as a long frame (item_id, timestamp, target, covariates)."""
        obs = self.observed.cpu().numpy()
        r, c = np.nonzero(obs)
        out = {"item_id": self.item_ids[r], "timestamp": self.index[c],
               "target": self.target.cpu().numpy()[r, c]}
        if self.known is not None:
            kn = self.known.cpu().numpy()[:, : self.num_steps]
            out.update({n: kn[r, c, k] for k, n in enumerate(self.known_names)})
        if self.past is not None:
            pa = self.past.cpu().numpy()
            out.update({n: pa[r, c, k] for k, n in enumerate(self.past_names)})
        return pd.DataFrame(out)


@dataclass(frozen=True, eq=False)
class Window:
    """One rolling-origin evaluation window.

    ``train`` is the panel seen at the cutoff; ``target`` and ``mask`` ``[N, horizon]`` hold the
    truth after each series' cutoff ``cutoff`` ``[N]`` (grid positions)."""

    train: Panel
    target: torch.Tensor
    mask: torch.Tensor
    cutoff: torch.Tensor
    index: int

    @property
    def horizon(self) -> int:
        return self.target.shape[1]

    def select(self, rows) -> "Window":
        """The window of the series at positions ``rows`` (ints, bool mask or slice), e.g. to score
        a forecast of some of the series: ``window.select(window.train.item_ids.isin(ids))``."""
        if isinstance(rows, slice):
            rows = torch.arange(self.train.num_series)[rows]
        rows = torch.as_tensor(np.asarray(rows))
        if rows.dtype == torch.bool:
            if rows.shape != (self.train.num_series,):
                raise PanelError(f"a row mask needs {self.train.num_series} entries, got {tuple(rows.shape)}")
            rows = rows.nonzero().squeeze(1)
        if len(rows) == 0:
            raise PanelError("the selection holds no series")
        dev = self.target.device
        return Window(train=self.train.select(rows), target=self.target[rows.to(dev)], mask=self.mask[rows.to(dev)],
                      cutoff=self.cutoff[rows.to(self.cutoff.device)], index=self.index)
