"""Run suites cell by cell, resumably: one JSON file per dataset x model x window x seed.

    out/
      cells/<dataset>/<model>/window<w>_seed<s>.json   metrics, times, memory, error, diagnostics
      run.json                                          command, suites, plan, skips, environment
      results.json, results.csv                         every planned cell (diagnostics left out)
      plots/<dataset>/{fan,pit,coverage,crps_by_step}.png   (written by the report)
      forecasts/<dataset>/<model>_window<w>_seed<s>.parquet (with write_forecasts)

A rerun skips every cell whose file exists and was made with the same settings (sample paths and
model options); ``retry_failed`` reruns cells that recorded an error, ``rerun_stale`` those that
recorded another fingerprint of their model's code (``code_fingerprint``) than the current one, or
none (computed before cells recorded it).
A model failing on a cell is recorded with its error and traceback and the run goes on. Window
``w`` is numbered as in the dataset's task (0 = its oldest window), so ``--windows 1`` and a full
run share the last window.
"""
from __future__ import annotations

import ast
import functools
import gc
import hashlib
import inspect
import json
import os
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..datasets import DatasetError, get_spec, list_datasets, load
from ..evaluation.backtest import CellResult, PeakMemory, environment, evaluate
from ..evaluation.plots import diagnostics, fan_series
from ..forecast import atomic_write
from ..models.registry import MODELS, make_model
from .suites import DatasetEntry, ModelEntry, Suite, SuiteError

__all__ = ["Plan", "PlannedCell", "accepted_options", "cell_path", "code_fingerprint", "plan_suites",
           "planned_settings", "read_cells", "read_run_record", "run_plan"]

#: options the runner passes to models that take them (checked against the constructor's signature)
RUNNER_OPTIONS = ("time_limit", "device", "seed", "progress")


@dataclass(frozen=True)
class PlannedCell:
    dataset: str
    model: str
    window: int  # the task's window number (0 = oldest); counted from the end when fewer are run
    seed: int


@dataclass
class Plan:
    """What a run will do: datasets (in order), models per dataset with options, paths and seeds."""

    datasets: list[DatasetEntry]
    models: dict[str, list[ModelEntry]]  # dataset -> its models
    num_samples: int
    seeds: list[int]
    excluded: list[dict] = field(default_factory=list)  # {dataset, model, why} a suite ruled out
    suites: list[dict] = field(default_factory=list)
    validation: bool = False  # the validation windows (before the test windows) instead of the task's

    def to_json(self) -> dict:
        return {"datasets": [vars(d) for d in self.datasets],
                "models": {ds: [{"name": m.key, "options": m.options, **({"model": m.name} if m.label else {})}
                                for m in ms] for ds, ms in self.models.items()},
                "num_samples": self.num_samples, "seeds": self.seeds, "excluded": self.excluded,
                "suites": self.suites, "validation": self.validation}


def plan_suites(suites: Iterable[Suite], num_samples: int | None = None, seeds: Iterable[int] | None = None,
                windows: int | None = None, extra_options: dict | None = None, validation: bool = False) -> Plan:
    """Merge suites into one plan (a dataset x model pair in two suites runs once: the first wins),
    checking every name first so a typo fails before anything runs: datasets, models, the dataset
    names in a model's ``skip``, ``only`` and ``per_dataset`` (any registered dataset: a model entry
    may name datasets of another suite), and each model's options against its constructor's
    parameters (where the constructor names them all; one taking ``**kwargs`` is not checked).

    ``num_samples``, ``seeds`` and ``windows`` override the suites'. Without an override, suites
    that disagree on ``num_samples`` or ``seeds`` are an error (one run has one of each), naming
    both suites and their values. ``windows`` (or a suite's) above a task's number of windows is an
    error: a run scores only the last N of the task's windows. ``extra_options`` (e.g.
    ``time_limit`` from the command line) fill in the model options a suite did not set, for the
    models whose constructor takes them.
    ``validation``: score the validation windows (``Dataset.windows(validation=True)``), which end
    before the task's test windows start, to choose settings without looking at the test."""
    suites = list(suites)
    known_ds, known_models = set(list_datasets()), set(MODELS)
    datasets: list[DatasetEntry] = []
    models: dict[str, list[ModelEntry]] = {}
    excluded: list[dict] = []
    for s in suites:
        where = _where(s)
        bad = [d.name for d in s.datasets if d.name not in known_ds]
        if bad:
            raise SuiteError(f"{where}: unknown dataset(s) {bad}; known datasets: {', '.join(sorted(known_ds))}")
        bad = [m.name for m in s.models if m.name not in known_models]
        if bad:
            raise SuiteError(f"{where}: unknown model(s) {bad}; known models: {', '.join(MODELS)}")
        clash = [m.label for m in s.models if m.label in known_models and m.label != m.name]
        if clash:  # its row would pass for that model's (and replace it when suites merge)
            raise SuiteError(f"{where}: label(s) {clash} name other registered models; choose another label")
        for m in s.models:
            for field_name, names in (("skip", m.skip), ("only", m.only), ("per_dataset", tuple(m.per_dataset))):
                bad = [n for n in names if n not in known_ds]
                if bad:
                    raise SuiteError(f"{where}: model {m.key!r}: {field_name} names {bad}, not a known dataset "
                                     f"name; known datasets: {', '.join(sorted(known_ds))}")
            _check_options(m, get_spec(s.datasets[0].name).task, where)
        for d in s.datasets:
            n = windows if windows is not None else d.windows
            total = get_spec(d.name).task.num_windows
            if n is not None and n > total:
                what = f"--windows {n}" if windows is not None else f"{where}: dataset {d.name!r}: windows = {n}"
                raise SuiteError(f"{what}: {d.name}'s task has {total} rolling window(s); a run scores only the last "
                                 f"N of them, so N must be <= {total}")
            entry = DatasetEntry(d.name, n, d.optional, d.validation_before)
            if d.name not in models:
                datasets.append(entry)
                models[d.name] = []
            have = {m.key for m in models[d.name]}
            for m in s.models:
                if not m.runs_on(d.name):
                    excluded.append({"dataset": d.name, "model": m.key, "why": m.why or "excluded by the suite"})
                elif m.key not in have:
                    extra = accepted_options(m.name, get_spec(d.name).task, extra_options or {})
                    label = m.label if m.label != m.name else ""  # a label equal to its model's name is none
                    models[d.name].append(ModelEntry(m.name, {**extra, **m.options_for(d.name)}, label=label))
    if suites and num_samples is None:
        _agree(suites, "num_samples", lambda s: s.num_samples, "--num-samples")
    if suites and not seeds:
        _agree(suites, "seeds", lambda s: list(s.seeds), "--seed")
    ns = num_samples if num_samples is not None else suites[0].num_samples
    sd = list(seeds) if seeds else list(suites[0].seeds)
    if ns < 1:
        raise SuiteError(f"num_samples must be >= 1, got {ns}")
    return Plan(datasets, models, ns, sd, excluded,
                [{"name": s.name, "source": s.source, "description": s.description} for s in suites],
                validation=validation)


def _where(s: Suite) -> str:
    return f"suite {s.name!r}" + (f" ({s.source})" if s.source else "")


def _agree(suites: list[Suite], what: str, value, flag: str) -> None:
    """Raise when two suites set different ``what`` (one run has one value of it)."""
    first = suites[0]
    for s in suites[1:]:
        if value(s) != value(first):
            raise SuiteError(f"the suites disagree on {what}: {_where(first)} has {value(first)}, {_where(s)} has "
                             f"{value(s)}; run them separately (another --out), make them agree, or set {flag} "
                             "on the command line for all of them")


def _constructor_params(name: str, task) -> tuple[set[str], bool] | None:
    """``(named parameters, takes **kwargs)`` of model ``name``'s constructor; None when the model
    cannot be built (it then fails in its cells, with its error)."""
    try:
        probe = make_model(name, task)
    except Exception:  # noqa: BLE001 - e.g. an optional dependency is missing
        return None
    params = inspect.signature(type(probe).__init__).parameters
    named = {p for p, v in params.items() if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL) and p != "self"}
    return named, any(v.kind == v.VAR_KEYWORD for v in params.values())


def _check_options(m: ModelEntry, task, where: str) -> None:
    """Raise when a suite gives model entry ``m`` an option its constructor does not take: a name
    it does not have (when it names them all), or a runner option (:data:`RUNNER_OPTIONS`), which
    the runner passes only to constructors that name it."""
    found = _constructor_params(m.name, task)
    if found is None:
        return
    named, var_kw = found
    given = dict.fromkeys([*m.options, *(k for o in m.per_dataset.values() for k in o)])
    bad = [k for k in given if k not in named and (k in RUNNER_OPTIONS or not var_kw)]
    if bad:
        raise SuiteError(f"{where}: model {m.key!r}: option(s) {bad} are not parameters of {m.name!r} "
                         f"(it takes: {', '.join(sorted(named)) or 'none'})")


def accepted_options(name: str, task, options: dict) -> dict:
    """The entries of ``options`` that model ``name``'s constructor names (baselines take none of
    :data:`RUNNER_OPTIONS`; DeepAR and the GluonTS peer take all). None for a model that cannot be
    built: it fails in its cells, with its error."""
    found = _constructor_params(name, task)
    return {k: v for k, v in options.items() if found is not None and k in found[0]}


def cell_path(out: Path, c: PlannedCell) -> Path:
    return Path(out) / "cells" / c.dataset / c.model / f"window{c.window}_seed{c.seed}.json"


def _settings(num_samples: int, options: dict, model: str | None = None, device: str | None = None,
              validation: bool | int = False) -> dict:
    """What a finished cell must have been run with to be reused and reported (``model``: the
    registered model behind a label; ``device``: the run's ``--device``, for models that take one;
    ``validation``: a validation-window cell (True, or the steps its windows sit before the test
    windows when a suite sets them), never taken for a test-window one)."""
    out = {"num_samples": num_samples, "options": options, **({"model": model} if model else {}),
           **({"device": device} if device else {}), **({"validation": validation} if validation else {})}
    return json.loads(json.dumps(out, default=str))


def _package_imports(path: Path, package: Path) -> set[Path]:
    """The files of this package that module ``path`` imports (``forecasting.x`` or relative
    imports, anywhere in the file), found by parsing, not importing. A package named in an import
    counts by its ``__init__.py``; the ``__init__.py`` files an import merely passes through (they
    re-export, and would tie every model to every other) do not."""
    found = set()
    inside = path.is_relative_to(package)  # a plugin's module elsewhere: only its absolute imports resolve
    here = path.relative_to(package.parent).with_suffix("").parts[:-1] if inside else ()  # the module's package
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            named = tuple(node.module.split(".")) if node.module else ()
            if node.level and not inside:
                continue
            base = here[:len(here) - node.level + 1] + named if node.level else named
            targets = [base] + [base + (a.name,) for a in node.names]  # `from . import x`: x may be a module
        elif isinstance(node, ast.Import):
            targets = [tuple(a.name.split(".")) for a in node.names]
        else:
            continue
        for t in targets:
            if t and t[0] == package.name:
                stem = package.parent.joinpath(*t)
                found.update(f for f in (stem.with_suffix(".py"), stem / "__init__.py") if f.is_file())
    return found


@functools.lru_cache(maxsize=None)
def code_fingerprint(model: str, dataset: str) -> str | None:
    """A short hash of the source a model's cells depend on: the module (for a package, every
    module of it) that defines the model's class and every module of this package those import,
    transitively (the shared model base, the panel, the forecast object, the calendar), plus the
    metrics. A cell records it, so the report can tell cells computed by other code (None:
    unknown)."""
    try:
        probe = make_model(model, get_spec(dataset).task)
        path = Path(inspect.getsourcefile(type(probe))).resolve()
    except Exception:  # noqa: BLE001 - a model that cannot be built fails in its cells
        return None
    package = Path(__file__).resolve().parents[1]
    todo = sorted(path.parent.glob("*.py")) if path.parent.parent.name == "models" else [path]  # a model package
    todo.append(package / "evaluation" / "metrics.py")
    files: set[Path] = set()
    while todo:
        f = todo.pop()
        if f not in files:
            files.add(f)
            todo.extend(_package_imports(f, package) - files)
    h = hashlib.sha256()
    for f in sorted(files):
        name = f.relative_to(package).as_posix() if f.is_relative_to(package) else f.name
        h.update(name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def _takes_device(model: str, dataset: str) -> bool:
    return "device" in accepted_options(model, get_spec(dataset).task, {"device": "cpu"})


def planned_settings(plan: dict, dataset: str, key: str, device: str | None = None) -> dict | None:
    """The settings a cell of ``plan`` (as in ``run.json``) must carry to belong to it; None when
    the plan has no such dataset x model."""
    entry = next((m for m in plan["models"].get(dataset, []) if m["name"] == key), None)
    if entry is None:
        return None
    model = entry.get("model", entry["name"])
    before = next((d.get("validation_before") for d in plan["datasets"] if d["name"] == dataset), None)
    stage = (before or True) if plan.get("validation") else False  # a validation cell: True, or its offset
    return _settings(plan["num_samples"], entry["options"], entry.get("model"),
                     device if device and _takes_device(model, dataset) else None, stage)


def read_run_record(out: Path) -> dict:
    """``out/run.json``, checked: a :class:`ValueError` names the file when it is not a run record
    of this package (not JSON, or without a plan); :class:`FileNotFoundError` when it is absent."""
    path = Path(out) / "run.json"
    if not path.exists():
        raise FileNotFoundError(f"{out} holds no benchmark run (no run.json): run `forecasting run --out {out}` first")
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable run record ({type(err).__name__}: {err}); it was not written "
                         "by `forecasting run`, or was damaged: move it away (or use another --out)") from None
    plan = run.get("plan") if isinstance(run, dict) else None
    if not isinstance(plan, dict) or not all(k in plan for k in ("datasets", "models", "num_samples", "seeds")):
        raise ValueError(f"{path} is not a run record of `forecasting run` (no plan with datasets, models, "
                         "num_samples and seeds): move it away (or use another --out)")
    return run


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent or half-written by a killed run (writes are atomic, so: absent)


def read_cells(out: Path, cells: Iterable[PlannedCell] | None = None) -> list[dict]:
    """Every cell record under ``out/cells`` (or only ``cells``), in plan order where given."""
    out = Path(out)
    paths = [cell_path(out, c) for c in cells] if cells is not None else sorted((out / "cells").glob("*/*/*.json"))
    return [r for r in (_read(p) for p in paths) if r is not None]


def _write_json(path: Path, payload) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1, default=str)))


def run_plan(plan: Plan, out_dir, data_dir=None, device: str | None = None, progress: bool = True,
             write_forecasts: bool = False, retry_failed: bool = False, rerun_stale: bool = False,
             command: str | None = None,
             log: Callable[[str], None] = print) -> dict:
    """Run every planned cell not already finished; returns the run record (also ``run.json``).

    Datasets load one at a time (an optional one whose files are absent is skipped with its
    reason). Every cell writes its file as soon as it ends, so an interrupted run resumes where
    it stopped."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: give a folder for the run's cells and results")
    earlier = read_run_record(out) if (out / "run.json").exists() else None
    if earlier is not None and bool(earlier.get("plan", {}).get("validation")) != plan.validation:
        stage = lambda v: "validation" if v else "test"  # noqa: E731
        raise ValueError(f"{out} holds a {stage(not plan.validation)}-window run; write the "
                         f"{stage(plan.validation)}-window run to another folder (cells would mix)")
    out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    specs = {d.name: get_spec(d.name) for d in plan.datasets}
    windows_of = {d.name: d.windows or specs[d.name].task.num_windows for d in plan.datasets}
    cells = [PlannedCell(d.name, m.key, specs[d.name].task.num_windows - windows_of[d.name] + w, s)
             for d in plan.datasets for m in plan.models[d.name] for w in range(windows_of[d.name]) for s in plan.seeds]
    options_of = {(d.name, m.key): m.options for d in plan.datasets for m in plan.models[d.name]}
    kind_of = {(d.name, m.key): m.name for d in plan.datasets for m in plan.models[d.name]}
    plan_json = plan.to_json()

    def settings(c: PlannedCell) -> dict:  # what the report checks too (planned_settings)
        return planned_settings(plan_json, c.dataset, c.model, device)

    def finished(c: PlannedCell) -> bool:
        rec = _read(cell_path(out, c))
        if rec is None or rec.get("settings") != settings(c):
            return False
        current = code_fingerprint(kind_of[c.dataset, c.model], c.dataset) if rerun_stale else None
        if current is not None and rec.get("code") != current:
            return False  # computed by other code of its model, or before cells recorded their code
        return not (retry_failed and rec.get("error"))

    todo = [c for c in cells if not finished(c)]
    log(f"{len(cells)} cells planned ({len(plan.datasets)} datasets); {len(cells) - len(todo)} already finished "
        f"in {out}, {len(todo)} to run")
    record = {"command": command, "started": started, "finished": None, "plan": plan_json, "skipped": [],
              "cells": len(cells), "completed": len(cells) - len(todo), "device": device,
              "environment": environment()}
    if earlier is None:  # a complete record from the start: the report of an interrupted first run reads it
        _write_json(out / "run.json", record)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), disable=not progress, unit="cell", dynamic_ncols=True)
    by_dataset: dict[str, list[PlannedCell]] = {}
    for c in todo:
        by_dataset.setdefault(c.dataset, []).append(c)
    for entry in plan.datasets:
        pending = by_dataset.get(entry.name, [])
        if not pending:
            continue
        bar.set_description(f"{entry.name}: loading")
        try:
            ds = load(entry.name, data_dir)
        except DatasetError as err:
            reason = str(err)
            record["skipped"].append({"dataset": entry.name, "optional": entry.optional, "reason": reason})
            log(f"{'skipped' if entry.optional else 'FAILED'} dataset {entry.name}: {reason}")
            bar.update(len(pending))
            continue
        n = windows_of[entry.name]
        first = ds.task.num_windows - n
        try:
            windows = {first + w.index: w for w in ds.windows(n, validation=plan.validation,
                                                              before=entry.validation_before)}
        except Exception as err:  # noqa: BLE001 - e.g. too many windows for the series' length
            record["skipped"].append({"dataset": entry.name, "optional": entry.optional,
                                      "reason": f"{type(err).__name__}: {err}"})
            log(f"FAILED dataset {entry.name}: cannot cut {n} windows: {err}")
            bar.update(len(pending))
            continue
        last = max(windows)
        fan_rows = fan_series(windows[last])
        for c in pending:
            bar.set_description(f"{c.dataset} / {c.model} / window {c.window} / seed {c.seed}")
            rec = _run_cell(ds, windows[c.window], c, plan.num_samples, options_of[c.dataset, c.model], device,
                            fan_rows if (c.window == last and c.seed == plan.seeds[0]) else [],
                            out if write_forecasts else None, kind_of[c.dataset, c.model], settings(c))
            _write_json(cell_path(out, c), rec)
            if rec["error"]:
                log(f"cell {c.dataset} / {c.model} / window {c.window} / seed {c.seed} failed: {rec['error']}")
            bar.update(1)
        del ds, windows
        gc.collect()
    bar.close()
    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    # only cells made with this run's settings: a cell left from earlier settings (e.g. of a dataset
    # that could not be loaded this time) is stale, not a result of this run
    records = [r for c, r in zip(cells, (_read(cell_path(out, c)) for c in cells))
               if r is not None and r.get("settings") == settings(c)]
    record["completed"] = len(records)
    _write_json(out / "run.json", record)
    write_results(out, records, record)
    return record


def _run_cell(ds, window, c: PlannedCell, num_samples: int, options: dict, device: str | None, fan_rows,
              forecasts_dir: Path | None, kind: str, settings: dict) -> dict:
    """Fit, predict, score one cell; never raises (errors are recorded). ``kind``: the registered
    model (the cell may be named by a label); ``settings``: recorded with the cell."""
    result = CellResult(c.dataset, c.model, c.window, c.seed, window.train.num_series, num_samples, window.horizon)
    rec = {"settings": settings, "code": code_fingerprint(kind, c.dataset)}
    try:
        runner_opts = {"seed": c.seed, "progress": False, **({"device": device} if device else {})}
        wanted = {**runner_opts, **options}
        passed = accepted_options(kind, ds.task, {k: v for k, v in wanted.items() if k in RUNNER_OPTIONS})
        model_opts = {k: v for k, v in options.items() if k not in RUNNER_OPTIONS}
        model = make_model(kind, ds.task, **model_opts, **passed)
        torch.manual_seed(c.seed)
        # the machine's load when the cell starts and the CPU seconds its fit took: a time-limited
        # fit trains for fewer steps when other processes share the cores, and these say so
        if hasattr(os, "getloadavg"):
            rec["load_at_start"] = round(os.getloadavg()[0], 2)
        with PeakMemory() as mem:
            t0, cpu0 = time.perf_counter(), time.process_time()
            model.fit(window.train, window.horizon)
            t1 = time.perf_counter()
            rec["fit_cpu_seconds"] = round(time.process_time() - cpu0, 3)
            fc = model.predict(window.train, num_samples=num_samples, seed=c.seed)
            t2 = time.perf_counter()
        result.fit_seconds, result.predict_seconds, result.peak_rss_mb = t1 - t0, t2 - t1, mem.peak_mb
        result.metrics = evaluate(fc, window, ds.task)
        rec["diagnostics"] = diagnostics(fc, window, fan_rows=fan_rows, seed=c.seed)
        if forecasts_dir is not None:
            fc.to_parquet(forecasts_dir / "forecasts" / c.dataset / f"{c.model}_window{c.window}_seed{c.seed}.parquet")
        for attr in ("stopped_by_", "epochs_"):  # how a trained model stopped, where it says
            if hasattr(model, attr):
                rec[attr.rstrip("_")] = getattr(model, attr)
    except Exception as err:  # noqa: BLE001 - one failing model must not stop a benchmark
        result.error = f"{type(err).__name__}: {err}"
        rec["traceback"] = traceback.format_exc(limit=8)
    rec.update(result.flat())
    rec["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return json.loads(json.dumps(rec, default=str))


RESULT_COLUMNS = ["dataset", "model", "window", "seed", "num_series", "num_samples", "horizon", "wql", "crps",
                  "scaled_crps", "mase", "wape", "coverage_50", "coverage_80", "coverage_95", "pit_coverage_80",
                  "interval_score_80", "observed_points", "fit_seconds", "predict_seconds", "peak_rss_mb", "error"]


def results_frame(records: list[dict]) -> pd.DataFrame:
    """One row per cell with the metrics, times, memory and error (no diagnostics)."""
    rows = [{k: r.get(k) for k in RESULT_COLUMNS} for r in records]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def write_results(out: Path, records: list[dict], record: dict) -> None:
    """``results.json`` (environment, command, every cell without diagnostics) and ``results.csv``."""
    frame = results_frame(records)
    payload = {"environment": record.get("environment"), "command": record.get("command"),
               "plan": record.get("plan"), "skipped": record.get("skipped"),
               "results": [{k: v for k, v in r.items() if k != "diagnostics"} for r in records]}
    _write_json(Path(out) / "results.json", payload)
    atomic_write(Path(out) / "results.csv", lambda tmp: frame.to_csv(tmp, index=False))
