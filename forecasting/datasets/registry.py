"""The dataset registry: where files live, how they are checked, fetched and turned into Panels.

A dataset is a :class:`DatasetSpec`: its files (with sha256 and, where public, a download URL),
its evaluation :class:`Task`, and a ``build`` function from file paths to a :class:`Panel`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..data.panel import Panel, PanelError, Window
from ..forecast import DEFAULT_QUANTILES, atomic_write

__all__ = [
    "Task", "Source", "DatasetSpec", "Dataset", "DatasetError", "register", "load", "list_datasets",
    "get_spec", "resolve_data_dir", "sha256", "fetch", "validation_offset",
]

ENV_VAR = "FORECASTING_DATA"

#: raw files of public GitHub repositories, pinned to the commits each SOURCE.md names
GITHUB_RAW = "https://raw.githubusercontent.com"
#: Godahewa et al.'s weekly datasets (traffic_weekly, ausgrid weekly)
WEEKLY_FORECASTING = f"{GITHUB_RAW}/rakshitha123/WeeklyForecasting/ec933d83903be9f773cdf77724c7fed59f405227/datasets"


class DatasetError(RuntimeError):
    """A dataset cannot be loaded: unknown name, missing or corrupt file."""


@dataclass(frozen=True)
class Task:
    """How a dataset is evaluated (fev-bench's task fields, plus the natural season).

    - ``season``: the data's natural period, used by seasonal baselines (52 weekly, 12 monthly, ...)
    - ``mase_season``: the seasonality fev-bench uses for MASE's scale (1 for weekly, as fev)
    - ``align``: ``"series"`` counts cutoffs from each series' end (fev); ``"grid"`` from the grid's end
    - ``group``: a static categorical that groups related series (walmart's ``Dept``); models that
      pool across series (the state-space family) share strength within these groups
    """

    freq: str
    horizon: int
    num_windows: int = 1
    step: int | None = None
    season: int = 1
    mase_season: int = 1
    min_history: int = 1
    align: str = "series"
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    count_data: bool = False
    intermittent: bool = False
    group: str | None = None


def validation_offset(task: Task) -> int:
    """Steps the validation windows sit before the test windows: the span the task's windows cover."""
    return task.horizon + (task.num_windows - 1) * (task.step or task.horizon)


@dataclass(frozen=True)
class Source:
    """One file of a dataset. ``sha256`` None means the file has no published checksum (a file the
    user supplies); ``url`` None means it cannot be downloaded automatically."""

    name: str
    sha256: str | None
    url: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str
    files: tuple[Source, ...]
    task: Task
    build: Callable[[Mapping[str, Path]], Panel]
    description: str = ""
    citation: str = ""
    manual: str | None = None  # how to get the files when they cannot be downloaded
    embedded: bool = False  # files ship inside the package
    extra: Callable[[Mapping[str, Path], Panel], dict] | None = None


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: the full Panel, its evaluation Task, and extras (e.g. M5 weights)."""

    name: str
    panel: Panel
    task: Task
    extra: dict = field(default_factory=dict)

    def windows(self, num_windows: int | None = None, validation: bool = False,
                before: int | None = None) -> list[Window]:
        """The task's rolling-origin evaluation windows (the last ``num_windows`` if given).

        ``validation``: the same windows moved back by the span the task's windows cover
        (``horizon + (num_windows - 1) * step``), so every validation truth ends before the first
        test window starts: choose hyperparameters there, score the test windows once. ``before``:
        move them back that many steps instead (at least that span), e.g. a year, to validate on
        the same calendar period as the test."""
        t = self.task
        n = t.num_windows if num_windows is None else num_windows
        span = validation_offset(t)
        if validation and before is not None and before < span:
            raise ValueError(f"{self.name}: validation windows {before} steps before the test windows would overlap "
                             f"them (the test windows cover {span} steps)")
        return self.panel.windows(t.horizon, n, t.step, min_history=t.min_history, align=t.align,
                                  before=(span if before is None else before) if validation else 0)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {self.panel!r}, {self.task!r})"


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}") from None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$FORECASTING_DATA``, else the per-user cache
    (``$XDG_CACHE_HOME/forecasting`` or ``~/.cache/forecasting``)."""
    if data_dir is not None:
        return Path(data_dir).expanduser().absolute()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().absolute()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return (Path(cache) / "forecasting").absolute()


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest: Path, expected: str | None) -> None:
    def write(tmp):
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        if expected is not None and (got := sha256(tmp)) != expected:
            raise DatasetError(f"downloaded {url} but its sha256 is {got}, expected {expected}; "
                               "the file was not kept")
    try:
        atomic_write(dest, write)
    except DatasetError:
        raise
    except OSError as err:
        raise DatasetError(f"could not download {url} to {dest}: {err}") from err


def fetch(spec: DatasetSpec, data_dir=None, download: bool = True, verify: bool = True) -> dict[str, Path]:
    """Paths of the dataset's files, downloading the public ones that are missing; checks sha256."""
    if spec.embedded:
        folder = Path(__file__).parent / "_embedded"
    else:
        root = resolve_data_dir(data_dir)
        if (data_dir is not None or os.environ.get(ENV_VAR)) and not root.is_dir():
            given = "data_dir=" if data_dir is not None else f"${ENV_VAR}"
            raise DatasetError(f"the data directory {root} ({given}) does not exist; create it to download "
                               f"dataset {spec.name!r} into it, or point {given} at the folder that holds the data")
        folder = root / spec.folder
    paths: dict[str, Path] = {}
    missing = []
    for src in spec.files:
        path = folder / src.name
        if not path.exists():
            if src.optional:
                continue
            if src.url and download:
                _download(src.url, path, src.sha256)
            else:
                missing.append(src)
                continue
        if verify and src.sha256 is not None and (got := sha256(path)) != src.sha256:
            raise DatasetError(
                f"{path} is corrupt or a different version: sha256 {got}, expected {src.sha256}. "
                f"Delete it{' to download it again' if src.url else ' and put the original file there'}.")
        paths[src.name] = path
    if missing:
        names = ", ".join(s.name for s in missing)
        how = spec.manual or ("call load(..., download=True) to download them" if all(s.url for s in missing)
                              else "they cannot be downloaded automatically")
        raise DatasetError(f"dataset {spec.name!r}: missing file(s) {names} in {folder}; {how}. "
                           f"The data directory comes from data_dir=, ${ENV_VAR}, or the per-user cache.")
    return paths


def load(name: str, data_dir: str | os.PathLike | None = None, download: bool = True,
         verify: bool = True) -> Dataset:
    """Load a registered dataset as a :class:`Dataset` (Panel + Task).

    ``data_dir`` falls back to ``$FORECASTING_DATA``, then to the per-user cache. Public files that
    are missing are downloaded when ``download`` is True; every file's sha256 is checked."""
    spec = get_spec(name)
    paths = fetch(spec, data_dir, download=download, verify=verify)
    try:
        panel = spec.build(paths)
        extra = spec.extra(paths, panel) if spec.extra is not None else {}
    except (DatasetError, PanelError):
        raise
    except Exception as err:  # noqa: BLE001 - a reader's own error, re-raised with the files named
        files = ", ".join(str(p) for p in paths.values())
        hint = "" if verify else "; load with verify=True to compare the files' sha256 with the expected ones"
        raise DatasetError(f"dataset {name!r}: could not read {files}: {type(err).__name__}: {err}{hint}") from err
    return Dataset(name=name, panel=panel, task=spec.task, extra=extra)
