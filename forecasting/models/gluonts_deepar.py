"""GluonTS's torch DeepAR on our Panels: the peer that every DeepAR of this package is measured against.

    Panel ──► one dict per series (GluonTS's data format) ──► DeepAREstimator (lightning)
          ──► PyTorchPredictor ──► SampleForecasts stacked into one Forecast ``[N, S, H]``

The conversion is the only place that knows both formats. Each series runs from its first observed
step (``panel.start``) to its end (``panel.end``); unobserved steps inside are NaN targets, which
GluonTS masks through ``observed_values``. Known covariates become ``feat_dynamic_real``
``[K, len]`` for training and ``[K, len + horizon]`` for prediction.

Covariate preparation (fitted on the training steps ``[start, end)`` of the panel passed to
``fit``, then frozen), as AutoGluon's ``TimeSeriesFeatureGenerator`` + ``GlobalCovariateScaler``:

- missing known covariates: forward fill, then backward fill, over each series' whole history
  ``[start, end)``; a covariate missing for a whole history takes the training median. The
  forecast window is filled after, carrying the history forward. The history is imputed once,
  before the validation split, so training, validation and prediction see the same inputs
  (walmart's markdowns start after the validation cut). Missing static reals take the median.
- scaling (``covariate_scaling``): ``"standard"`` z-scores every covariate except 0/1 ones;
  ``"autogluon"`` also maps skewed ones (|skew| > 0.99) through a quantile transform to a normal
  (sklearn's ``QuantileTransformer(output_distribution="normal")``, 1,000 quantiles, no
  subsampling); ``None`` passes values through. Static reals get the same treatment.
- static categoricals are embedded; one extra level per feature takes codes unseen at fit time.
  ``static_cat_as_real`` passes named static categoricals (or ``"numeric"``: all whose levels are
  numbers) as static reals, as AutoGluon does with integer columns (walmart's Store and Dept).
"""
from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
import warnings
from datetime import timedelta
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..data.panel import Panel, PanelError
from ..forecast import Forecast
from .base import Model, NotFittedError, check_same_freq, resolve_device

__all__ = ["GluonTSDeepAR", "default_context_length"]

_DISTRIBUTIONS = ("studentT", "negbin", "normal")
_SCALINGS = ("standard", "autogluon", None)
_BOUNDS = 1e-7  # sklearn's QuantileTransformer clips probabilities to [1e-7, 1 - 1e-7]


def period_freq(freq: str) -> str:
    """The pandas *period* frequency GluonTS needs for our timestamp frequency: period frequencies
    have no start/end anchors ("MS" -> "M", "QS" -> "Q", "YS" -> "Y"); others pass unchanged."""
    off = pd.tseries.frequencies.to_offset(freq)
    if isinstance(off, (pd.offsets.MonthBegin, pd.offsets.MonthEnd)):
        return f"{off.n}M" if off.n != 1 else "M"
    if isinstance(off, (pd.offsets.QuarterBegin, pd.offsets.QuarterEnd)):
        return "Q"
    if isinstance(off, (pd.offsets.YearBegin, pd.offsets.YearEnd)):
        return "Y"
    return freq


def default_context_length(horizon: int) -> int:
    """AutoGluon's DeepAR default: ``min(512, max(10, 2 * horizon))`` (2h for h >= 5)."""
    return min(512, max(10, 2 * horizon))


# ---------------------------------------------------------------------------- covariate preparation
def _fill_spans(x: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Forward- then backward-fill NaNs of ``x`` ``[N, L, K]`` along time within each series' span
    ``[start, stop)``. Values outside the span are ignored; what stays NaN had no value at all."""
    N, L, _ = x.shape
    t = np.arange(L)
    inside = (t[None, :] >= start[:, None]) & (t[None, :] < stop[:, None])
    x = np.where(inside[..., None], x, np.nan)
    ok = ~np.isnan(x)
    rows = np.arange(N)[:, None, None]
    cols = np.arange(x.shape[2])[None, None, :]
    last = np.maximum.accumulate(np.where(ok, t[None, :, None], -1), axis=1)  # last valid step so far
    ff = np.where(last >= 0, x[rows, last.clip(0), cols], np.nan)
    ok = ~np.isnan(ff)
    nxt = np.minimum.accumulate(np.where(ok, t[None, :, None], L)[:, ::-1], axis=1)[:, ::-1]  # next valid step
    return np.where(nxt < L, ff[rows, nxt.clip(max=L - 1), cols], np.nan)


def _skew(v: np.ndarray) -> float:
    """Bias-corrected sample skewness (pandas' ``Series.skew``)."""
    n = len(v)
    if n < 3:
        return 0.0
    d = v - v.mean()
    m2, m3 = (d ** 2).mean(), (d ** 3).mean()
    if m2 <= 1e-14 * max(1.0, float(np.abs(v).max()) ** 2):
        return 0.0
    return float(math.sqrt(n * (n - 1)) / (n - 2) * m3 / m2 ** 1.5)


class _ColumnScaler:
    """Per-column scaling fitted on ``[M, K]`` values (NaN ignored): kind ``"pass"``, ``"standard"``
    or ``"quantile"`` per column, chosen by the ``method`` (see the module docstring)."""

    def __init__(self, values: np.ndarray, method: str | None):
        K = values.shape[1]
        self.kinds, self.params = [], []
        for k in range(K):
            v = values[:, k]
            v = v[~np.isnan(v)].astype(np.float64)
            if method is None or len(v) == 0 or set(np.unique(v)) <= {0.0, 1.0}:
                self.kinds.append("pass")
                self.params.append(None)
            elif method == "autogluon" and abs(_skew(v)) > 0.99:
                refs = np.linspace(0, 1, min(1000, len(v)))
                self.kinds.append("quantile")
                self.params.append((np.quantile(v, refs), refs))
            else:
                sd = v.std()
                self.kinds.append("standard")
                self.params.append((v.mean(), sd if sd > 0 else 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x`` ``[..., K]`` -> scaled float32, same shape (NaN stays NaN)."""
        out = np.array(x, dtype=np.float64, copy=True)
        for k, (kind, p) in enumerate(zip(self.kinds, self.params)):
            if kind == "standard":
                out[..., k] = (out[..., k] - p[0]) / p[1]
            elif kind == "quantile":
                out[..., k] = self._to_normal(out[..., k], *p)
        return out.astype(np.float32)

    @staticmethod
    def _to_normal(v: np.ndarray, q: np.ndarray, refs: np.ndarray) -> np.ndarray:
        # sklearn's rule: average the forward and backward interpolation so ties map to their middle
        u = 0.5 * (np.interp(v, q, refs) - np.interp(-v, -q[::-1], -refs[::-1]))
        u = np.where(v - _BOUNDS < q[0], 0.0, u)
        u = np.where(v + _BOUNDS > q[-1], 1.0, u)
        eps = _BOUNDS - np.spacing(1)
        u = np.clip(u, eps, 1 - eps)
        z = torch.special.ndtri(torch.from_numpy(u)).numpy()
        return np.where(np.isnan(v), np.nan, z)


# ---------------------------------------------------------------------------- lightning helpers
@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence lightning's and GluonTS's info logs and their routine warnings while fitting."""
    if not enabled:
        yield
        return
    names = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "gluonts")
    saved = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(does not have many workers|num_workers|"
                                                      r"IterableDataset|LightningModule.*hyperparameters|"
                                                      r"Checkpoint directory|sync_dist|tensorboard|"
                                                      r"_pytree|predict_step|val_dataloader|"
                                                      r"GPU available|TPU available|"
                                                      r"non-tuple sequence for multidimensional indexing).*")
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def _history_callback():
    import lightning.pytorch as pl

    class History(pl.Callback):
        """Per-epoch train and validation loss (``rows``), read from the logged metrics."""

        def __init__(self):
            self.rows: dict[int, dict] = {}

        def _put(self, trainer, key):
            value = trainer.callback_metrics.get(key)
            if value is not None:
                self.rows.setdefault(trainer.current_epoch, {"epoch": trainer.current_epoch})[key] = float(value)

        def on_train_epoch_end(self, trainer, module):
            self._put(trainer, "train_loss")

        def on_validation_epoch_end(self, trainer, module):
            if not trainer.sanity_checking:
                self._put(trainer, "val_loss")

    return History()


# ---------------------------------------------------------------------------- the model
class GluonTSDeepAR(Model):
    """GluonTS's torch ``DeepAREstimator`` trained and sampled on a Panel.

    Hyperparameters (GluonTS's names where they exist):

    - ``context_length``: steps the RNN unrolls before the forecast; None -> AutoGluon's
      ``min(512, max(10, 2 * horizon))``
    - ``num_layers``, ``hidden_size``, ``dropout_rate``: the LSTM
    - ``distr``: ``"studentT"``, ``"negbin"`` (counts) or ``"normal"``
    - ``lags_seq``: target lags fed to the RNN; None -> ``gluonts.time_feature.get_lags_for_frequency``
      of the panel's frequency (AutoGluon passes the same; weekly: 1-8, 12, 51-53, 103-105, 155-157)
    - ``max_epochs`` x ``num_batches_per_epoch`` x ``batch_size``: the training budget; ``lr``,
      ``weight_decay``; ``lr_patience``: epochs without improvement before GluonTS halves the rate
    - ``validation``: hold out the last ``horizon`` steps of every series: train on the panel
      truncated by ``horizon``, compute ``val_loss`` on the held-out window, keep the best epoch's
      weights (AutoGluon's default). ``patience``: stop after this many epochs without a better
      ``val_loss`` (None: never). ``val_batches``: validation batches per epoch (None: all series;
      AutoGluon uses 3)
    - ``time_limit``: seconds for the whole ``fit``; training stops (mid-epoch) when they run out
    - ``use_known_covariates``, ``use_static``, ``static_cat_as_real``, ``covariate_scaling``:
      see the module docstring; ``scaling``: GluonTS's mean scaling of each context window
    - ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"``; ``seed``: seeds the training (numpy, torch)
    - ``num_parallel_samples``: paths unrolled together at prediction (memory vs speed);
      ``predict_batch_size``: series per prediction batch
    - ``progress``: show lightning's progress bar and logs

    Learned state: ``predictor_`` (GluonTS ``PyTorchPredictor``), ``horizon_``, ``context_length_``,
    ``lags_seq_``, the covariate preparation, and the fit history: ``history_`` (per-epoch losses),
    ``epochs_``, ``best_val_loss_``, ``stopped_by_`` (``"max_epochs"``, ``"early_stopping"``,
    ``"time_limit"``), ``fit_seconds_``, ``train_seconds_``, ``conversion_seconds_``.

    ``save``/``load`` are the base class's (``torch.save`` of the model): the fitted predictor pickles
    with its network weights once the lightning trainer reference is dropped, which ``fit`` does.
    """

    name = "gluonts_deepar"

    def __init__(
        self,
        context_length: int | None = None,
        num_layers: int = 2,
        hidden_size: int = 40,
        dropout_rate: float = 0.1,
        distr: str = "studentT",
        lags_seq: Sequence[int] | None = None,
        max_epochs: int = 100,
        num_batches_per_epoch: int = 100,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-8,
        lr_patience: int = 10,
        validation: bool = True,
        patience: int | None = 20,
        val_batches: int | None = None,
        time_limit: float | None = None,
        use_known_covariates: bool = True,
        use_static: bool = True,
        static_cat_as_real: Sequence[str] | str = (),
        covariate_scaling: str | None = "standard",
        scaling: bool = True,
        device: str = "cpu",
        seed: int = 0,
        num_parallel_samples: int = 100,
        predict_batch_size: int = 500,
        progress: bool = False,
    ):
        if distr not in _DISTRIBUTIONS:
            raise ValueError(f"distr must be one of {_DISTRIBUTIONS}, got {distr!r}")
        if covariate_scaling not in _SCALINGS:
            raise ValueError(f"covariate_scaling must be one of {_SCALINGS}, got {covariate_scaling!r}")
        for arg, value in (("num_layers", num_layers), ("hidden_size", hidden_size), ("max_epochs", max_epochs),
                           ("num_batches_per_epoch", num_batches_per_epoch), ("batch_size", batch_size),
                           ("num_parallel_samples", num_parallel_samples),
                           ("predict_batch_size", predict_batch_size)):
            if int(value) < 1:
                raise ValueError(f"{arg} must be >= 1, got {value!r}")
        if context_length is not None and context_length < 1:
            raise ValueError(f"context_length must be >= 1 or None, got {context_length!r}")
        if lags_seq is not None and (len(lags_seq) == 0 or min(lags_seq) < 1):
            raise ValueError(f"lags_seq must be positive integers or None, got {lags_seq!r}")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {patience!r}")
        if time_limit is not None and time_limit <= 0:
            raise ValueError(f"time_limit must be > 0 seconds or None, got {time_limit!r}")
        if isinstance(static_cat_as_real, str) and static_cat_as_real != "numeric":
            raise ValueError(f"static_cat_as_real must be names or 'numeric', got {static_cat_as_real!r}")
        self.context_length = context_length
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.dropout_rate = dropout_rate
        self.distr = distr
        self.lags_seq = None if lags_seq is None else [int(v) for v in lags_seq]
        self.max_epochs = max_epochs
        self.num_batches_per_epoch = num_batches_per_epoch
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_patience = lr_patience
        self.validation = validation
        self.patience = patience
        self.val_batches = val_batches
        self.time_limit = time_limit
        self.use_known_covariates = use_known_covariates
        self.use_static = use_static
        self.static_cat_as_real = static_cat_as_real if isinstance(static_cat_as_real, str) else tuple(static_cat_as_real)
        self.covariate_scaling = covariate_scaling
        self.scaling = scaling
        self.device = device
        self.seed = seed
        self.num_parallel_samples = num_parallel_samples
        self.predict_batch_size = predict_batch_size
        self.progress = progress

    @classmethod
    def fev(cls, horizon: int | None = None, **overrides) -> "GluonTSDeepAR":
        """The settings fev-bench ran DeepAR with (AutoGluon's ``DeepARModel``, walmart h=39):
        context ``2h`` (78), 2 x 40 LSTM, dropout 0.1, Student-t, the frequency's GluonTS lags,
        up to 1,000 epochs x 100 batches x 128 series, lr 1e-3, early stopping after 50 epochs
        without a better ``val_loss`` on the last ``h`` steps (3 validation batches, as AutoGluon's
        ``limit_val_batches``), covariates imputed and scaled as AutoGluon does, numeric static
        categoricals (Store, Dept) as static reals, 250 paths drawn together. ``overrides`` replace
        any of them (e.g. ``time_limit=600``)."""
        settings = dict(
            context_length=None if horizon is None else default_context_length(horizon),
            num_layers=2, hidden_size=40, dropout_rate=0.1, distr="studentT", lags_seq=None,
            max_epochs=1000, num_batches_per_epoch=100, batch_size=128, lr=1e-3,
            validation=True, patience=50, val_batches=3,
            static_cat_as_real="numeric", covariate_scaling="autogluon",
            num_parallel_samples=250, predict_batch_size=500,
        )
        settings.update(overrides)
        return cls(**settings)

    # ------------------------------------------------------------------ features
    def _cat_as_real(self, panel: Panel) -> list[int]:
        """Positions in ``panel.static_cat_names`` of the categoricals passed as reals."""
        names = panel.static_cat_names
        if self.static_cat_as_real == "numeric":
            return [j for j, lv in enumerate(panel.static_cat_levels) if pd.api.types.is_numeric_dtype(lv)]
        unknown = [n for n in self.static_cat_as_real if n not in names]
        if unknown:
            raise ValueError(f"static_cat_as_real names {unknown} that are not static categoricals of the "
                             f"panel; it has {list(names)}")
        out = [names.index(n) for n in self.static_cat_as_real]
        for j in out:
            lv = pd.Series(panel.static_cat_levels[j])
            bad = pd.to_numeric(lv, errors="coerce").isna()
            if bad.any():
                raise ValueError(f"static_cat_as_real: the levels of {names[j]!r} are not numbers, "
                                 f"e.g. {lv[bad].iloc[0]!r}")
        return out

    def _static_raw(self, panel: Panel) -> tuple[np.ndarray, np.ndarray]:
        """``[N, C]`` codes of the embedded categoricals (positions in the fit-time levels; unseen or
        missing -> the extra last level) and ``[N, R]`` raw static reals, in the fit-time order."""
        N = panel.num_series
        codes = panel.static_cat.cpu().numpy() if panel.static_cat is not None else np.zeros((N, 0), np.int64)
        values = {name: np.where(codes[:, j] >= 0, np.asarray(panel.static_cat_levels[j], dtype=object)[codes[:, j].clip(0)], None)
                  for j, name in enumerate(panel.static_cat_names)}
        reals = {name: panel.static_real[:, r].cpu().numpy().astype(np.float64)
                 for r, name in enumerate(panel.static_real_names)}
        missing = [n for n in (*self.cat_levels_, *self.static_real_names_) if n not in values and n not in reals]
        if missing:
            raise PanelError(f"the panel lacks static feature(s) {missing} the model was fitted with")
        cat = np.zeros((N, len(self.cat_levels_)), np.int64)
        for j, (name, levels) in enumerate(self.cat_levels_.items()):
            pos = levels.get_indexer(pd.Series(values[name], dtype=object))
            cat[:, j] = np.where(pos >= 0, pos, len(levels))
        real = np.zeros((N, len(self.static_real_names_)))
        for j, name in enumerate(self.static_real_names_):
            real[:, j] = reals[name] if name in reals else pd.to_numeric(pd.Series(values[name]), errors="coerce")
        return cat, real

    def _prepare(self, panel: Panel) -> None:
        """Fit the covariate imputation and scaling on the training steps of ``panel``."""
        as_real = self._cat_as_real(panel) if self.use_static else []
        self.cat_levels_ = {name: pd.Index(panel.static_cat_levels[j]) for j, name in enumerate(panel.static_cat_names)
                            if self.use_static and j not in as_real}
        self.static_real_names_ = (tuple(panel.static_real_names) + tuple(panel.static_cat_names[j] for j in as_real)
                                   if self.use_static else ())
        start, end = panel.start.cpu().numpy(), panel.end.cpu().numpy()
        self.known_names_ = tuple(panel.known_names) if self.use_known_covariates and panel.known is not None else ()
        if self.known_names_:
            t = np.arange(int(end.max()))
            raw = panel.known.cpu().numpy()[:, : len(t)].astype(np.float64)
            train = (t[None, :] >= start[:, None]) & (t[None, :] < end[:, None])
            rows = raw[train]  # [M, K] the training steps
            med = np.nanmedian(np.where(np.isnan(rows).all(0), 0.0, rows), axis=0) if rows.size else np.zeros(raw.shape[2])
            self.known_median_ = np.nan_to_num(med)
            self.known_scaler_ = _ColumnScaler(self._imputed_known(panel)[train], self.covariate_scaling)
        cat, real = self._static_raw(panel)
        self.cardinality_ = [len(v) + 1 for v in self.cat_levels_.values()]
        self.static_median_ = np.nan_to_num(np.nanmedian(real, axis=0)) if real.shape[1] and len(real) else np.zeros(real.shape[1])
        self.static_scaler_ = _ColumnScaler(np.where(np.isnan(real), self.static_median_, real), self.covariate_scaling)

    def _imputed_known(self, panel: Panel, future: int = 0) -> np.ndarray:
        """Known covariates ``[N, L, K]`` without gaps on each series' history ``[start, end)`` plus
        ``future`` steps (unscaled).

        The history is filled on its own, the same way whether fitting or predicting, so the network
        sees the inputs it was trained on; the training median takes what stays missing. Then the
        ``future`` steps are filled, carrying the history forward."""
        if tuple(panel.known_names) != self.known_names_:
            raise PanelError(f"the panel's known covariates {list(panel.known_names)} differ from those the "
                             f"model was fitted with {list(self.known_names_)}")
        start, end = panel.start.cpu().numpy(), panel.end.cpu().numpy()
        L = int(end.max()) + future
        if panel.known.shape[1] < L:
            raise PanelError(f"known covariates cover {panel.known.shape[1]} grid steps; {L} are needed")
        raw = panel.known.cpu().numpy()[:, :L].astype(np.float64)
        filled = _fill_spans(raw, start, end)
        t = np.arange(L)
        history = ((t[None, :] >= start[:, None]) & (t[None, :] < end[:, None]))[..., None]
        filled = np.where(history & np.isnan(filled), self.known_median_, filled)
        if future:
            filled = _fill_spans(np.where(history, filled, raw), start, end + future)
        return filled

    def _known(self, panel: Panel, future: int = 0) -> np.ndarray | None:
        """:meth:`_imputed_known`, scaled; None when the model uses no known covariates."""
        return self.known_scaler_(self._imputed_known(panel, future)) if self.known_names_ else None

    def to_gluonts(self, panel: Panel, future: bool = False, min_length: int = 1) -> list[dict]:
        """The panel as GluonTS entries, one dict per series in panel order (fitted features).

        Each entry: ``item_id`` (the series' position, as a string), ``start`` (``pd.Period``),
        ``target`` ``[len]`` float32 with NaN where not observed, ``feat_dynamic_real``
        ``[K, len]`` (``[K, len + horizon]`` with ``future=True``: the known covariates of the
        forecast window appended), ``feat_static_cat`` ``[C]`` and ``feat_static_real`` ``[R]``
        when the model uses them. Series shorter than ``min_length`` are left out."""
        H = self._check_fitted()
        if future and self.known_names_:
            panel.future_known(H)  # a clear error when the forecast window has no covariates
        return self._entries(panel, self._known(panel, H if future else 0), H if future else 0, min_length)

    def _entries(self, panel: Panel, known: np.ndarray | None, future: int, min_length: int) -> list[dict]:
        """GluonTS entries of ``panel`` with covariates taken from ``known`` ``[N, L, K]``."""
        start, end = panel.start.cpu().numpy(), panel.end.cpu().numpy()
        start = np.maximum(np.minimum(start, end - 1), 0)  # a series cut before its first value keeps one NaN step
        y = torch.where(panel.observed, panel.target, torch.full_like(panel.target, float("nan"))).cpu().numpy()
        cat, real = self._static_raw(panel)
        real = self.static_scaler_(np.where(np.isnan(real), self.static_median_, real)) if real.shape[1] else None
        periods = panel.index.to_period(period_freq(panel.freq))
        out = []
        for i in range(panel.num_series):  # GluonTS wants one dict per series: slicing views only
            s, e = int(start[i]), int(end[i])
            if e - s < min_length:
                continue
            entry = {"item_id": str(i), "start": periods[s], "target": y[i, s:e]}
            if known is not None:
                entry["feat_dynamic_real"] = known[i, s:e + future].T
            if cat.shape[1]:
                entry["feat_static_cat"] = cat[i]
            if real is not None:
                entry["feat_static_real"] = real[i]
            out.append(entry)
        return out

    # ------------------------------------------------------------------ fit / predict
    def _distr_output(self):
        from gluonts.torch.distributions import NegativeBinomialOutput, NormalOutput, StudentTOutput
        return {"studentT": StudentTOutput, "negbin": NegativeBinomialOutput, "normal": NormalOutput}[self.distr]()

    def fit(self, panel: Panel, horizon: int) -> "GluonTSDeepAR":
        """Train on every series of ``panel`` up to its end (the last ``horizon`` steps held out for
        validation when ``validation``). Honours ``time_limit`` for the whole call."""
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # gluonts warns at import that orjson is not installed
            warnings.filterwarnings("ignore", message=".*json.*")
            import lightning.pytorch as pl
            from gluonts.time_feature import get_lags_for_frequency
            from gluonts.torch.model.deepar import DeepAREstimator
            from lightning.pytorch.callbacks import EarlyStopping, Timer

        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        tc = time.perf_counter()
        device = resolve_device(self.device)
        self.horizon_ = horizon
        self.freq_ = panel.freq
        self.context_length_ = self.context_length or default_context_length(horizon)
        self.lags_seq_ = self.lags_seq or list(get_lags_for_frequency(period_freq(panel.freq)))
        self._prepare(panel)
        # covariates are imputed on each series' whole history once: the training part (truncated
        # for validation) must see the same values as the validation and prediction inputs
        known = self._known(panel)
        if self.validation:
            # a series no longer than the horizon has no training part: it is left out of training
            cut = (panel.end - horizon).clamp(min=0)
            train = self._entries(panel.truncate(cut), known, 0, 1) if int(cut.max()) >= 1 else []
            val = self._entries(panel, known, 0, horizon + 1)
            if not train or not val:
                raise PanelError(f"no series is longer than horizon {horizon}: nothing to validate on; "
                                 "use validation=False")
        else:
            train, val = self._entries(panel, known, 0, 1), None
        # GluonTS's training sampler needs horizon values in some series (measured: horizon - 1 fail);
        # without them it stops with "Reached maximum number of idle transformation calls"
        longest = max(len(e["target"]) for e in train)
        if longest < horizon:
            held = f" before the {horizon} held out for validation (validation=True)" if self.validation else ""
            raise PanelError(f"GluonTS trains on windows of at least the horizon, {horizon} values, but the longest "
                             f"training series has {longest} values{held}; give the series more history"
                             + (" or pass validation=False" if self.validation else ""))
        self.conversion_seconds_ = time.perf_counter() - tc

        pl.seed_everything(self.seed, verbose=False)
        history = _history_callback()
        callbacks = [history]
        early = None
        if val is not None and self.patience is not None:
            early = EarlyStopping(monitor="val_loss", patience=self.patience, mode="min")
            callbacks.append(early)
        timer = None
        if self.time_limit is not None:
            left = max(self.time_limit - (time.perf_counter() - t0), 1e-3)
            timer = Timer(duration=timedelta(seconds=left), interval="step", verbose=False)
            callbacks.append(timer)
        with tempfile.TemporaryDirectory(prefix="gluonts_deepar_") as root, _quiet(not self.progress):
            trainer_kwargs = dict(
                max_epochs=self.max_epochs, callbacks=callbacks, default_root_dir=root, logger=False,
                enable_progress_bar=self.progress, enable_model_summary=False, num_sanity_val_steps=0,
                accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
            )
            if val is not None and self.val_batches is not None:
                trainer_kwargs["limit_val_batches"] = self.val_batches
            estimator = DeepAREstimator(
                freq=period_freq(panel.freq), prediction_length=horizon, context_length=self.context_length_,
                num_layers=self.num_layers, hidden_size=self.hidden_size, dropout_rate=self.dropout_rate,
                lr=self.lr, weight_decay=self.weight_decay, patience=self.lr_patience,
                num_feat_dynamic_real=len(self.known_names_),
                num_feat_static_cat=len(self.cardinality_), cardinality=self.cardinality_ or None,
                num_feat_static_real=len(self.static_real_names_),
                distr_output=self._distr_output(), scaling=self.scaling, lags_seq=self.lags_seq_,
                num_parallel_samples=self.num_parallel_samples, batch_size=self.batch_size,
                num_batches_per_epoch=self.num_batches_per_epoch, trainer_kwargs=trainer_kwargs,
            )
            t1 = time.perf_counter()
            out = estimator.train_model(train, validation_data=val, cache_data=True)
            self.train_seconds_ = time.perf_counter() - t1
        trainer = out.trainer
        best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
        self.history_ = [history.rows[k] for k in sorted(history.rows)]
        self.epochs_ = int(trainer.current_epoch)
        self.global_steps_ = int(trainer.global_step)
        self.best_val_loss_ = float(best) if best is not None and val is not None else None
        if early is not None and early.stopped_epoch > 0:
            self.stopped_by_ = "early_stopping"
        elif timer is not None and timer.time_remaining("train") is not None and timer.time_remaining("train") <= 0:
            self.stopped_by_ = "time_limit"
        else:
            self.stopped_by_ = "max_epochs"
        predictor = out.predictor
        predictor.prediction_net.trainer = None  # the trainer holds data loaders: not picklable, not needed
        predictor.batch_size = self.predict_batch_size
        self.predictor_ = predictor.to(device)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def used_known_covariates(self) -> frozenset[str]:
        self._check_fitted()
        return frozenset(self.known_names_)

    def predict(self, panel: Panel, num_samples: int = 100, seed: int | None = None) -> Forecast:
        """``num_samples`` paths ``[N, num_samples, horizon]`` after each series' end, in panel order.
        The same ``seed`` gives the same paths; the global torch RNG is left as it was."""
        if getattr(self, "predictor_", None) is None:  # horizon_ is set before a fit that may fail
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(panel, horizon) first")
        self._check_fitted(num_samples)
        check_same_freq(self, getattr(self, "freq_", None), panel)  # models saved before it: no check
        entries = self.to_gluonts(panel, future=True)
        net = self.predictor_.prediction_net
        net.model.num_parallel_samples = min(num_samples, self.num_parallel_samples)
        devices = [self.predictor_.device] if self.predictor_.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _quiet(not self.progress):
            torch.manual_seed(0 if seed is None else seed)
            try:
                forecasts = list(self.predictor_.predict(entries, num_samples=num_samples))
            except ValueError as err:  # torch.distributions rejects NaN parameters before any path exists
                if "invalid values" not in str(err):
                    raise
                raise FloatingPointError(
                    "GluonTS DeepAR's network gave non-finite distribution parameters while predicting; "
                    "check the targets and covariates for extreme values") from err
        order = [int(f.item_id) for f in forecasts]
        if order != list(range(panel.num_series)):
            raise RuntimeError("GluonTS returned forecasts out of panel order")
        samples = torch.from_numpy(np.stack([f.samples for f in forecasts]).astype(np.float32))  # [N, S, H]
        bad = ~torch.isfinite(samples).reshape(samples.shape[0], -1).all(1)
        if bool(bad.any()):
            ids = list(panel.item_ids[bad.numpy()][:5])
            raise FloatingPointError(
                f"GluonTS DeepAR produced non-finite sample paths for {int(bad.sum())} series, e.g. {ids}; "
                "check their targets and covariates for extreme values or try distr='normal'")
        return Forecast(samples, panel.item_ids, panel.forecast_start(), panel.freq)
