"""Streams of scenario chunks and the files they are written to.

A :class:`ScenarioStream` yields :class:`ScenarioChunk` s of a few hundred scenarios; memory stays
bounded by one chunk however many scenarios there are. It is made either from a ScenarioSet in
memory (:meth:`ScenarioStream.from_set`) or by generating chunks on the fly from a sampler and a
dependence method (:meth:`ScenarioStream.generate`), optionally with every hierarchy aggregate.

Writers (all atomic: a temporary file moved into place):

- :func:`write_parquet`: a long table ``scenario, weight, item_id, timestamp, value``, one row
  group per chunk (pyarrow's ParquetWriter)
- :func:`write_numpy`: ``<path>.npy`` scenario-major ``[S, N, H]`` (written through a memmap) and
  ``<stem>.index.json`` (series ids, first timestamps, freq, weights); read the values back with
  ``np.load(path, mmap_mode="r")``, or ``torch.from_numpy`` on that
- :func:`write_torch` / :func:`read_torch`: a ScenarioSet in memory as one ``torch.save`` file
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from ..forecast import Forecast, atomic_write
from ..data.calendar import forecast_dates
from .core import ScenarioError, ScenarioSet
from .hierarchy import Hierarchy

__all__ = [
    "ScenarioChunk",
    "ScenarioStream",
    "read_numpy",
    "read_torch",
    "write_numpy",
    "write_parquet",
    "write_torch",
]


@dataclass(frozen=True)
class ScenarioChunk:
    """Scenarios ``offset .. offset + s - 1`` of a stream: ``values`` ``[N, s, H]`` and their
    probabilities ``weights`` ``[s]`` in the whole set (a chunk's weights sum to its share)."""

    values: torch.Tensor
    weights: torch.Tensor
    offset: int


class ScenarioStream:
    """An iterable of :class:`ScenarioChunk` with the index every chunk shares.

    ``item_ids`` ``[N]``, ``start`` ``[N]``, ``freq``, ``horizon``, ``num_scenarios``; ``chunks`` is a
    callable returning a fresh iterator (a stream can be read more than once)."""

    def __init__(self, chunks: Callable[[], Iterator[ScenarioChunk]], item_ids: pd.Index, start: pd.DatetimeIndex,
                 freq: str, horizon: int, num_scenarios: int, method: str = ""):
        self._chunks = chunks
        self.item_ids, self.start, self.freq = pd.Index(item_ids), pd.DatetimeIndex(start), freq
        self.horizon, self.num_scenarios, self.method = horizon, num_scenarios, method

    def __iter__(self) -> Iterator[ScenarioChunk]:
        return self._chunks()

    @property
    def num_series(self) -> int:
        return len(self.item_ids)

    def __repr__(self) -> str:
        return (f"ScenarioStream({self.num_series} series x {self.num_scenarios} scenarios x {self.horizon} steps, "
                f"method={self.method!r})")

    @classmethod
    def from_set(cls, scenarios: ScenarioSet, chunk_size: int = 256) -> ScenarioStream:
        """Chunks of ``chunk_size`` scenarios of a set in memory."""
        if chunk_size < 1:
            raise ScenarioError(f"chunk_size must be >= 1, got {chunk_size}")

        def chunks():
            for i in range(0, scenarios.num_scenarios, chunk_size):
                yield ScenarioChunk(scenarios.values[:, i:i + chunk_size], scenarios.weights[i:i + chunk_size], i)

        return cls(chunks, scenarios.item_ids, scenarios.start, scenarios.freq, scenarios.horizon,
                   scenarios.num_scenarios, scenarios.method)

    @classmethod
    def generate(cls, sampler: Callable[[int, int], Forecast], dependence, num_scenarios: int,
                 chunk_size: int = 250, seed: int = 0, hierarchy: Hierarchy | None = None,
                 progress: bool = False) -> ScenarioStream:
        """Generate ``num_scenarios`` equal-weight joint scenarios chunk by chunk.

        ``sampler(num_samples, seed) -> Forecast`` draws fresh marginal samples (e.g.
        ``lambda n, s: model.predict(panel, n, s)``); ``dependence`` (fitted, see
        :mod:`forecasting.scenarios.dependence`) joins each chunk's samples into scenarios, so each
        chunk keeps its own samples' marginals exactly. With ``hierarchy`` every chunk also holds
        each aggregate node after the bottom series (``item_ids`` then names the nodes too)."""
        if num_scenarios < 1 or chunk_size < 1:
            raise ScenarioError(f"num_scenarios and chunk_size must be >= 1, got {num_scenarios} and {chunk_size}")
        first = sampler(1, seed)
        ids, start, H = first.item_ids, first.start, first.horizon
        agg = None
        if hierarchy is not None:
            one = ScenarioSet.from_forecast(first)
            agg = hierarchy.align(ids)
            full = agg.aggregate_scenarios(one, include_bottom=True)  # checks the groups' start dates
            ids, start = full.item_ids, full.start
        w = 1.0 / num_scenarios

        def chunks():
            # one chunk per iteration: sampling and reordering are batched within it
            for c, i in enumerate(tqdm(range(0, num_scenarios, chunk_size), disable=not progress,
                                       desc="scenarios", leave=False)):
                s = min(chunk_size, num_scenarios - i)
                fc = sampler(s, seed + 1 + c)
                if fc.horizon != H or not fc.item_ids.equals(first.item_ids):
                    raise ScenarioError("the sampler returned a different set of series or horizon between chunks")
                v = dependence.apply(fc.samples, seed=seed + 1 + c, item_ids=fc.item_ids)
                if agg is not None:
                    v = torch.cat([v, agg.aggregate_all(v)])
                yield ScenarioChunk(v, torch.full((s,), w, dtype=torch.float64), i)

        return cls(chunks, ids, start, first.freq, H, num_scenarios, getattr(dependence, "name", ""))


def _as_stream(source, chunk_size: int) -> ScenarioStream:
    if isinstance(source, ScenarioStream):
        return source
    if isinstance(source, ScenarioSet):
        return ScenarioStream.from_set(source, chunk_size)
    raise ScenarioError(f"expected a ScenarioSet or ScenarioStream, got {type(source).__name__}")


def _timestamps(stream: ScenarioStream) -> np.ndarray:
    offset = pd.tseries.frequencies.to_offset(stream.freq)
    return forecast_dates(stream.start, stream.horizon, offset).values  # UTC instants


def write_parquet(path, source, chunk_size: int = 100, compression: str = "zstd", max_rows: int = 1 << 22,
                  progress: bool = False) -> Path:
    """Write scenarios as a long parquet table, atomically.

    Columns: ``scenario`` (int32), ``weight`` (float64), ``item_id`` (dictionary of strings),
    ``timestamp``, ``value`` (float32); rows ordered by scenario, series, step. Each chunk of the
    source is written as row groups of at most ``max_rows`` rows (whole scenarios), so memory is one
    chunk of values plus the columns of one row group, however many scenarios there are."""
    stream = _as_stream(source, chunk_size)
    N, H = stream.num_series, stream.horizon
    items = pa.array([str(i) for i in stream.item_ids], type=pa.string())
    ts = _timestamps(stream)  # [N * H]
    # timezone-aware starts keep their zone (the int64 values are UTC): local midnight stays that day
    ts_type = pa.timestamp("ns", tz=str(stream.start.tz)) if stream.start.tz is not None else pa.timestamp("ns")
    schema = pa.schema([("scenario", pa.int32()), ("weight", pa.float64()),
                        ("item_id", pa.dictionary(pa.int32(), pa.string())), ("timestamp", ts_type),
                        ("value", pa.float32())])
    item_codes = np.repeat(np.arange(N, dtype=np.int32), H)
    per_group = max(1, max_rows // (N * H))  # scenarios per row group

    def write(tmp):
        seen = 0
        with pq.ParquetWriter(tmp, schema, compression=compression) as writer:
            for chunk in tqdm(stream, disable=not progress, desc="parquet", leave=False):
                v = chunk.values
                if v.ndim != 3 or v.shape[0] != N or v.shape[2] != H:
                    raise ScenarioError(f"chunk at scenario {chunk.offset} has shape {tuple(v.shape)}, expected [{N}, s, {H}]")
                w = chunk.weights.cpu().numpy().astype(np.float64)
                # row groups of whole scenarios: bounded memory whatever the chunk size
                for j in range(0, v.shape[1], per_group):
                    s = min(per_group, v.shape[1] - j)
                    vals = v[:, j:j + s].detach().to("cpu", torch.float32).permute(1, 0, 2).reshape(-1).numpy()
                    first = chunk.offset + j
                    table = pa.Table.from_arrays([
                        pa.array(np.repeat(np.arange(first, first + s, dtype=np.int32), N * H)),
                        pa.array(np.repeat(w[j:j + s], N * H)),
                        pa.DictionaryArray.from_arrays(pa.array(np.tile(item_codes, s)), items),
                        pa.array(np.tile(ts, s), type=ts_type),
                        pa.array(vals),
                    ], schema=schema)
                    writer.write_table(table, row_group_size=table.num_rows)
                seen += v.shape[1]
        if seen != stream.num_scenarios:
            raise ScenarioError(f"the stream yielded {seen} scenarios, it announced {stream.num_scenarios}")

    return atomic_write(path, write)


def _ids_json(ids: pd.Index) -> list:
    """Series ids as JSON keeps them: ints and strings as they are (integer ids come back as ints),
    anything else as its string."""
    return [i if isinstance(i, (int, str)) else str(i) for i in ids.tolist()]


def _fingerprint(path: Path, span: int = 1 << 20) -> str:
    """sha256 of a file's size and its first and last ``span`` bytes: ties an index to its values
    file (cheap at any size; a copied file keeps it)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(span))
        f.seek(max(0, size - span))
        h.update(f.read(span))
    return h.hexdigest()


def _index_json(stream: ScenarioStream, weights: np.ndarray) -> dict:
    return {"layout": "values[scenario, series, step]", "item_ids": _ids_json(stream.item_ids),
            # readable local dates, and the zone by name (offsets alone lose it and mix across DST)
            "start": [t.isoformat() for t in stream.start], "start_ns": stream.start.asi8.tolist(),
            "tz": str(stream.start.tz) if stream.start.tz is not None else None,
            "freq": stream.freq, "horizon": stream.horizon,
            "num_scenarios": stream.num_scenarios, "method": stream.method, "weights": weights.tolist()}


def write_numpy(path, source, chunk_size: int = 256, progress: bool = False) -> Path:
    """Write ``<path>`` (``.npy``, float32 ``[S, N, H]``, scenario-major for simulators) chunk by
    chunk through a memmap, and ``<stem>.index.json`` with ids, start dates, freq and weights.
    Both atomically. Returns the ``.npy`` path."""
    stream = _as_stream(source, chunk_size)
    path = Path(path)
    if path.suffix != ".npy":
        raise ScenarioError(f"write_numpy writes a .npy file, got {path}")
    shape = (stream.num_scenarios, stream.num_series, stream.horizon)
    weights = np.zeros(stream.num_scenarios)

    def write(tmp):
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        seen = 0
        for chunk in tqdm(stream, disable=not progress, desc="npy", leave=False):
            s = chunk.values.shape[1]
            if chunk.values.shape[0] != shape[1] or chunk.values.shape[2] != shape[2]:
                raise ScenarioError(f"chunk at scenario {chunk.offset} has shape {tuple(chunk.values.shape)}")
            mm[chunk.offset:chunk.offset + s] = chunk.values.detach().to("cpu", torch.float32).permute(1, 0, 2).numpy()
            weights[chunk.offset:chunk.offset + s] = chunk.weights.cpu().numpy()
            seen += s
            mm.flush()
        del mm
        if seen != stream.num_scenarios:
            raise ScenarioError(f"the stream yielded {seen} scenarios, it announced {stream.num_scenarios}")

    atomic_write(path, write)
    # two files cannot be replaced in one step: the index records the values file's fingerprint, so
    # a run that dies between the two renames leaves a pair that read_numpy refuses, not mislabels
    meta = {**_index_json(stream, weights), "values_fingerprint": _fingerprint(path)}
    atomic_write(path.with_suffix(".index.json"), lambda tmp: Path(tmp).write_text(json.dumps(meta)))
    return path


def read_numpy(path, mmap: bool = True) -> ScenarioSet:
    """A ScenarioSet from :func:`write_numpy`'s files (values memory-mapped unless ``mmap=False``;
    the ScenarioSet holds them series-major as a view, no copy)."""
    path = Path(path)
    index = path.with_suffix(".index.json")
    for f, what in ((path, "values file"), (index, "index (series, dates, weights)")):
        if not f.exists():
            raise ScenarioError(f"{f} does not exist: write_numpy writes the {what} there; read the .npy that "
                                "write_numpy wrote, with its .index.json beside it")
    try:
        meta = json.loads(index.read_text())
    except ValueError as err:
        raise ScenarioError(f"{index} is not an index written by write_numpy ({err})") from None
    if "values_fingerprint" in meta and meta["values_fingerprint"] != _fingerprint(path):
        raise ScenarioError(f"{index} does not describe {path}: the values file was replaced after the index "
                            "was written (an interrupted write_numpy?); write the scenarios again")
    # copy-on-write mapping: torch needs a writable array, the file is never changed
    values = torch.from_numpy(np.load(path, mmap_mode="c" if mmap else None))
    expected = (meta["num_scenarios"], len(meta["item_ids"]), meta["horizon"])
    if tuple(values.shape) != expected:
        raise ScenarioError(f"{path} holds values of shape {tuple(values.shape)}, its index describes {expected}")
    return ScenarioSet(values.permute(1, 0, 2), torch.tensor(meta["weights"], dtype=torch.float64),
                       pd.Index(meta["item_ids"], name="item_id"), _start_of(meta), meta["freq"],
                       meta.get("method", ""))


def _start_of(meta: dict) -> pd.DatetimeIndex:
    """The start dates of an index written by :func:`write_numpy` (files written before the zone
    was kept hold ISO strings only)."""
    if "start_ns" not in meta:
        return pd.DatetimeIndex(meta["start"])
    start = pd.DatetimeIndex(np.asarray(meta["start_ns"], dtype="int64").view("datetime64[ns]"))
    return start.tz_localize("UTC").tz_convert(meta["tz"]) if meta.get("tz") else start


def write_torch(path, scenarios: ScenarioSet) -> Path:
    """One ``torch.save`` file with values, weights and index, atomically."""
    if not isinstance(scenarios, ScenarioSet):
        raise ScenarioError(f"write_torch takes a ScenarioSet in memory, got {type(scenarios).__name__}; "
                            "stream large sets with write_numpy or write_parquet")
    payload = {"values": scenarios.values.cpu(), "weights": scenarios.weights.cpu(),
               "item_ids": scenarios.item_ids.tolist(), "item_ids_name": scenarios.item_ids.name, "start": scenarios.start.astype("int64").tolist(),
               "tz": str(scenarios.start.tz) if scenarios.start.tz is not None else None,
               "freq": scenarios.freq, "method": scenarios.method}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_torch(path, map_location="cpu") -> ScenarioSet:
    p = torch.load(path, map_location=map_location, weights_only=False)
    start = pd.DatetimeIndex(pd.to_datetime(p["start"]))
    if p["tz"]:
        start = start.tz_localize("UTC").tz_convert(p["tz"])
    return ScenarioSet(p["values"], p["weights"], pd.Index(p["item_ids"], name=p.get("item_ids_name", "item_id")),
                       start, p["freq"], p["method"])
