"""Benchmark suites: which datasets, which models (with their options), how many paths and seeds.

A suite is a TOML file (``benchmarks/suites/retail.toml``)::

    name = "retail"
    description = "..."
    num_samples = 100          # sample paths per series
    seeds = [0]                # repeat every cell per seed; the report shows mean ± sd

    [[dataset]]
    name = "walmart"
    windows = 1                # optional: the last N windows (default: the task's)

    [[dataset]]
    name = "m5"
    optional = true            # skipped, with a note in the report, when its files are absent

    [[model]]
    name = "gluonts_deepar"
    time_limit = 300           # any other key is a model option (time_limit, max_epochs, ...);
                               # "none" is None (TOML has no null): time_limit = "none" trains
                               # for the model's step budget (max_epochs x batches), unlimited
    skip = ["m5_last56"]       # datasets this model does not run on (or only = [...]) ...
    why = "..."                # ... and why (shown in the report)
    [model.per_dataset]        # options for one dataset only
    metro_traffic = { time_limit = 30 }

The same :class:`Suite` is built from command-line flags for an ad hoc run.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

__all__ = ["SUITE_DIRS", "DatasetEntry", "ModelEntry", "Suite", "SuiteError", "load_suite", "suite_paths"]


class SuiteError(ValueError):
    """A suite file or an ad hoc suite is invalid: the message names the file and the field."""


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    windows: int | None = None
    optional: bool = False
    # steps the validation windows sit before the test windows (None: the span the test windows
    # cover); e.g. 8736 hours (52 weeks) validates on the same calendar week a year earlier
    validation_before: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    options: dict = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    why: str = ""
    per_dataset: dict = field(default_factory=dict)  # dataset -> options that override ``options`` there
    label: str = ""  # the row's name when one model runs under several settings (e.g. "deepar_anchor168")

    @property
    def key(self) -> str:
        """What names this entry's cells and leaderboard row: its label, else the model's name."""
        return self.label or self.name

    def options_for(self, dataset: str) -> dict:
        return {**self.options, **self.per_dataset.get(dataset, {})}

    def runs_on(self, dataset: str) -> bool:
        return dataset not in self.skip and (not self.only or dataset in self.only)


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[DatasetEntry, ...]
    models: tuple[ModelEntry, ...]
    num_samples: int = 100
    seeds: tuple[int, ...] = (0,)
    description: str = ""
    source: str | None = None  # the TOML file, if any

    def __post_init__(self):
        where = f"suite {self.name!r}" + (f" ({self.source})" if self.source else "")
        if not self.datasets:
            raise SuiteError(f"{where}: no datasets")
        if not self.models:
            raise SuiteError(f"{where}: no models")
        if self.num_samples < 1:
            raise SuiteError(f"{where}: num_samples must be >= 1, got {self.num_samples}")
        if not self.seeds:
            raise SuiteError(f"{where}: seeds must not be empty")
        for d in self.datasets:
            if d.windows is not None and d.windows < 1:
                raise SuiteError(f"{where}: dataset {d.name!r}: windows must be >= 1, got {d.windows}")
        for kind, names in (("dataset", [d.name for d in self.datasets]), ("model", [m.key for m in self.models])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                hint = "; give each setting its own `label`" if kind == "model" else ""
                raise SuiteError(f"{where}: {kind}(s) listed twice: {', '.join(dup)}{hint}")
        for m in self.models:
            if "seed" in m.options or any("seed" in o for o in m.per_dataset.values()):
                raise SuiteError(f"{where}: model {m.key!r}: `seed` is not a model option here; every cell runs "
                                 "with each of the suite's `seeds` (a fixed seed would repeat one fit per seed)")
            if m.label and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", m.label):
                raise SuiteError(f"{where}: model {m.name!r}: label {m.label!r} must be letters, digits and _ . + - "
                                 "(it names a folder)")


#: where ``--suite NAME`` looks for ``NAME.toml``: the working directory's benchmarks/suites, then
#: the checkout this package was installed from (editable installs)
SUITE_DIRS = (Path("benchmarks") / "suites", Path(__file__).resolve().parents[2] / "benchmarks" / "suites")


def suite_paths() -> dict[str, Path]:
    """Suites found by name: ``{name: path}``."""
    found: dict[str, Path] = {}
    for folder in SUITE_DIRS:
        if folder.is_dir():
            for p in sorted(folder.glob("*.toml")):
                found.setdefault(p.stem, p)
    return found


def _seq(value, what: str, where: str) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SuiteError(f"{where}: {what} must be a list of dataset names (strings), got {value!r}")
    return tuple(value)


def _int(value, what: str, where: str, low: int = 1) -> int:
    """``value`` when it is an integer >= ``low`` (TOML ``2``; not ``"2"``, ``2.5`` or ``true``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SuiteError(f"{where}: {what} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low:
        raise SuiteError(f"{where}: {what} must be >= {low}, got {value!r}")
    return value


def _typed(value, kind: type, what: str, where: str):
    if not isinstance(value, kind):
        raise SuiteError(f"{where}: {what} must be a {'boolean (true or false)' if kind is bool else 'string'}, "
                         f"got {value!r} ({type(value).__name__})")
    return value


def _tables(raw: dict, key: str, where: str) -> list[dict]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise SuiteError(f"{where}: `{key}` must be a list of [[{key}]] tables, got {value!r}")
    return value


def _nones(options: dict) -> dict:
    """Model options with the string ``"none"`` (any case) read as None: TOML has no null."""
    return {k: None if isinstance(v, str) and v.lower() == "none" else v for k, v in options.items()}


def load_suite(name_or_path: str | os.PathLike) -> Suite:
    """A suite from a TOML file path, or by name from :data:`SUITE_DIRS`.

    Every field is type-checked (integers for ``num_samples``, ``seeds`` and ``windows``, never
    booleans or strings; a boolean ``optional``; lists of dataset names for ``skip`` and
    ``only``); the :class:`SuiteError` names the file, the section and the field."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        known = suite_paths()
        if str(name_or_path) not in known:
            raise SuiteError(f"unknown suite {str(name_or_path)!r}; known suites: {', '.join(known) or 'none'} "
                             f"(looked in {', '.join(str(d) for d in SUITE_DIRS)}); or give a path to a .toml file")
        path = known[str(name_or_path)]
    if not path.is_file():
        raise SuiteError(f"suite file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SuiteError(f"suite file {path} is not valid TOML: {err}") from err
    where = f"suite file {path}"
    allowed = {"name", "description", "num_samples", "seeds", "dataset", "model"}
    extra = set(raw) - allowed
    if extra:
        raise SuiteError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    datasets = []
    for i, d in enumerate(_tables(raw, "dataset", where)):
        if "name" not in d:
            raise SuiteError(f"{where}: [[dataset]] number {i + 1} has no name")
        _typed(d["name"], str, f"[[dataset]] number {i + 1}: name", where)
        at = f"{where}: dataset {d['name']!r}"
        unknown = set(d) - {"name", "windows", "optional", "validation_before"}
        if unknown:
            raise SuiteError(f"{at}: unknown key(s) {sorted(unknown)}; allowed: name, windows, optional, "
                             "validation_before")
        windows = d.get("windows")
        windows = None if windows is None else _int(windows, "windows", at)
        vb = d.get("validation_before")
        if vb is not None and (isinstance(vb, bool) or not isinstance(vb, int) or vb < 1):
            raise SuiteError(f"{at}: validation_before must be a number of steps >= 1, got {vb!r}")
        optional = _typed(d.get("optional", False), bool, "optional", at)
        datasets.append(DatasetEntry(d["name"], windows, optional, vb))
    models = []
    for i, m in enumerate(_tables(raw, "model", where)):
        if "name" not in m:
            raise SuiteError(f"{where}: [[model]] number {i + 1} has no name")
        _typed(m["name"], str, f"[[model]] number {i + 1}: name", where)
        at = f"{where}: model {m['name']!r}"
        opts = _nones({k: v for k, v in m.items() if k not in ("name", "skip", "only", "why", "per_dataset", "label")})
        per = m.get("per_dataset", {})
        if not isinstance(per, dict) or not all(isinstance(v, dict) for v in per.values()):
            raise SuiteError(f"{at}: per_dataset must map dataset names to option tables, got {per!r}")
        per = {d: _nones(o) for d, o in per.items()}
        models.append(ModelEntry(m["name"], opts, _seq(m.get("skip"), "skip", at), _seq(m.get("only"), "only", at),
                                 _typed(m.get("why", ""), str, "why", at), per,
                                 _typed(m.get("label", ""), str, "label", at)))
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list):
        raise SuiteError(f"{where}: seeds must be a list of integers, got {seeds!r}")
    seeds = [_int(s, "seeds", where, low=0) for s in seeds]
    return Suite(name=_typed(raw.get("name", path.stem), str, "name", where), datasets=tuple(datasets),
                 models=tuple(models), num_samples=_int(raw.get("num_samples", 100), "num_samples", where),
                 seeds=tuple(seeds), description=_typed(raw.get("description", ""), str, "description", where),
                 source=str(path))
