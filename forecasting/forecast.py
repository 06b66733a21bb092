"""The Forecast: sample paths ``[series, samples, horizon]`` and the index that names them."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .data.calendar import forecast_dates

__all__ = ["Forecast", "DEFAULT_QUANTILES", "atomic_write"]

DEFAULT_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` then move the file into place, so readers never see half a file.
    The file gets the permissions an ordinary ``open(path, "w")`` would give it: an existing file's
    mode, else ``0o666`` less the umask (the temporary file itself is private, 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_torch_file(path, writer: str, map_location="cpu"):
    """``torch.load`` of a file ``writer`` (e.g. ``"Forecast.save"``) wrote; any other file (a
    parquet frame, text, a truncated download) is a ValueError that says what the file is."""
    path = Path(path)
    with open(path, "rb") as f:  # FileNotFoundError as is
        head = f.read(4)
    if head == b"PAR1":
        raise ValueError(f"{path} is a parquet file (e.g. from Forecast.to_parquet), not a file written by {writer}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - pickle, zip and torch errors all mean "not such a file"
        raise ValueError(f"{path} is not a file written by {writer} ({type(err).__name__}: {err})") from None


@dataclass(frozen=True, eq=False)
class Forecast:
    """Sample paths for N series.

    - ``samples``: ``[N, S, H]`` tensor (any device), in the target's units
    - ``item_ids``: ``[N]`` series names; ``start``: ``[N]`` first forecast timestamp of each series
    - ``freq``: the pandas frequency of the steps
    """

    samples: torch.Tensor
    item_ids: pd.Index
    start: pd.DatetimeIndex
    freq: str

    def __post_init__(self):
        # dates in nanoseconds, whatever unit they came in (pandas 2 keeps seconds or microseconds
        # from numpy and parquet), so the stored integers and the date arithmetic agree
        object.__setattr__(self, "start", pd.DatetimeIndex(self.start).as_unit("ns"))
        if self.samples.ndim != 3:
            raise ValueError(f"samples must be [series, samples, horizon], got shape {tuple(self.samples.shape)}")
        n = self.samples.shape[0]
        if len(self.item_ids) != n or len(self.start) != n:
            raise ValueError(f"samples hold {n} series but item_ids has {len(self.item_ids)} "
                             f"and start has {len(self.start)}")
        if not bool(torch.isfinite(self.samples).all()):
            bad = ~torch.isfinite(self.samples).reshape(n, -1).all(1)
            raise ValueError(f"non-finite sample paths for series {list(self.item_ids[bad.cpu().numpy()][:5])}")

    @property
    def num_series(self) -> int:
        return self.samples.shape[0]

    @property
    def num_samples(self) -> int:
        return self.samples.shape[1]

    @property
    def horizon(self) -> int:
        return self.samples.shape[2]

    def __repr__(self) -> str:
        return (f"Forecast({self.num_series} series x {self.num_samples} samples x {self.horizon} steps, "
                f"freq={self.freq!r}, device={self.samples.device})")

    def to(self, device) -> "Forecast":
        return Forecast(self.samples.to(device), self.item_ids, self.start, self.freq)

    def mean(self) -> torch.Tensor:
        """``[N, H]`` (float32 for integer count paths)"""
        return (self.samples if self.samples.is_floating_point() else self.samples.float()).mean(1)

    def median(self) -> torch.Tensor:
        """``[N, H]``"""
        return self.quantile([0.5])[:, 0]

    def quantile(self, levels: Sequence[float] = DEFAULT_QUANTILES) -> torch.Tensor:
        """``[N, Q, H]`` sample quantiles, linearly interpolated (numpy's default rule)."""
        q = torch.as_tensor(list(levels), dtype=torch.float64)  # checked before any cast (0.9 -> 0 in ints)
        if bool(((q < 0) | (q > 1)).any()):
            raise ValueError(f"quantile levels must lie in [0, 1], got {list(levels)}")
        s = self.samples if self.samples.is_floating_point() else self.samples.float()  # integer (count) paths
        return torch.quantile(s, q.to(s.device, s.dtype), dim=1).permute(1, 0, 2)

    def timestamps(self) -> pd.DatetimeIndex:
        """``[N * H]`` timestamps of every (series, step), series-major."""
        offset = pd.tseries.frequencies.to_offset(self.freq)
        return forecast_dates(self.start, self.horizon, offset)

    def to_pandas(self, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> pd.DataFrame:
        """A long frame: ``item_id``, ``timestamp``, ``mean`` and one column per quantile level."""
        h = self.horizon
        out = pd.DataFrame({
            "item_id": np.repeat(self.item_ids.to_numpy(), h),
            "timestamp": self.timestamps(),
            "mean": self.mean().double().cpu().numpy().reshape(-1),
        })
        qs = self.quantile(quantiles).double().cpu().numpy()  # [N, Q, H]
        for j, q in enumerate(quantiles):
            out[str(q)] = qs[:, j].reshape(-1)
        return out

    def to_parquet(self, path, quantiles: Sequence[float] = DEFAULT_QUANTILES, samples: bool = False) -> Path:
        """Write the quantile frame (or, with ``samples=True``, every path as a long frame with a
        ``sample`` column) to parquet, atomically."""
        if samples:
            n, s, h = self.samples.shape
            frame = pd.DataFrame({
                "item_id": np.repeat(self.item_ids.to_numpy(), s * h),
                "sample": np.tile(np.repeat(np.arange(s), h), n),
                "timestamp": self.timestamps()[np.repeat(np.arange(n * h).reshape(n, 1, h), s, axis=1).reshape(-1)],
                "value": self.samples.cpu().numpy().reshape(-1),
            })
        else:
            frame = self.to_pandas(quantiles)
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))

    def save(self, path) -> Path:
        """Save samples and index (torch format), atomically; read back with :meth:`load`."""
        payload = {"samples": self.samples.cpu(), "item_ids": self.item_ids.tolist(),
                   "item_ids_name": self.item_ids.name, "start": self.start.astype("int64").tolist(),
                   "tz": str(self.start.tz) if self.start.tz is not None else None, "freq": self.freq}
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path, map_location="cpu") -> "Forecast":
        """A forecast written by :meth:`save` (not the parquet frame of :meth:`to_parquet`)."""
        p = load_torch_file(path, "Forecast.save", map_location)
        keys = {"samples", "item_ids", "item_ids_name", "start", "tz", "freq"}
        if not isinstance(p, dict) or not keys <= set(p):
            what = f"a {type(p).__name__}" + (" (a model: load it with Model.load and call predict)"
                                              if hasattr(p, "predict") else "")
            raise ValueError(f"{path} holds {what}, not a forecast written by Forecast.save")
        start = pd.DatetimeIndex(pd.to_datetime(p["start"]))
        if p["tz"]:
            start = start.tz_localize("UTC").tz_convert(p["tz"])
        return cls(p["samples"], pd.Index(p["item_ids"], name=p["item_ids_name"]), start, p["freq"])
