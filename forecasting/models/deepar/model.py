"""``DeepAR``: the estimator users call (``fit`` / ``predict`` / ``save`` / ``load``)."""
from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Sequence

import pandas as pd
import torch
import torch.distributed as dist

from ...data.calendar import shift_dates
from ...data.panel import Panel, PanelError, _first_bad, _names
from ...forecast import Forecast
from ..base import Model, check_nonnegative, check_same_freq, floor_rows, resolve_device
from .features import calendar_features, fit_features
from .module import DeepARNetwork, PanelTensors
from .sampling import sample_paths
from .training import TrainConfig, World, train

__all__ = ["DeepAR"]


def _history(panel: Panel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets (0 where not observed) and flags of the observed steps before each series' end, and
    each series' mean |y| over them (its scale)."""
    steps = torch.arange(panel.num_steps, device=panel.device)
    obs = panel.observed & (steps[None] < panel.end[:, None])
    y = torch.where(obs, panel.target, torch.zeros_like(panel.target))
    return y, obs, y.abs().sum(1) / obs.sum(1).clamp_min(1)


class DeepAR(Model):
    """A global autoregressive RNN fitted on every series of a Panel at once.

    Hyperparameters:

    - ``context_length``: steps unrolled before the forecast (None: ``max(2 * horizon, 8)``);
      ``lags``: target lags, distinct (None: from the frequency)
    - ``hidden_size``, ``num_layers``, ``dropout``, ``cell`` (``"lstm"`` or ``"gru"``)
    - ``likelihood``: ``"studentT"``, ``"normal"``, ``"negbin"``, ``"poisson"``, ``"zinb"`` (counts
      need non-negative integer targets; anything else is an error naming the series)
    - ``batch_size`` x ``batches_per_epoch`` x ``max_epochs``, ``lr``, ``weight_decay``, ``clip``
    - ``validation``: hold out each series' last ``horizon`` steps to choose the number of epochs
      (early stopping, ``patience``); ``refit``: then train again on the full history for that
      many epochs, so the most recent data is not lost to validation; ``val_metric``: ``"nll"`` (the
      one-step, teacher-forced NLL of the held-out steps) or ``"crps"`` (the scaled CRPS of
      ``val_samples`` paths sampled over them: what forecasts are scored on, at the cost of sampling
      once per epoch)
    - ``loss``: the training objective. ``"nll"``: the one-step negative log-likelihood of every
      window step given the true lags (teacher forcing, DeepAR's). ``"crps"``: ``loss_samples``
      reparameterised paths are unrolled over the window's last ``horizon`` steps, each draw fed back
      as the later steps' lags and anchor as when forecasting, and scored by their CRPS per unit of
      scale (gradients flow through the draws); ``"nll+crps"``: the context steps' NLL plus
      ``crps_weight`` times that CRPS. The multi-step objectives train the distribution of the
      paths that will be sampled, not only of one step given the truth; real-valued likelihoods only
    - ``ensemble``: train this many networks with seeds ``seed, seed + 1, ...`` and draw the
      samples from all of them (as evenly as possible, in random order); a short-trained DeepAR's
      accuracy varies with the seed, the pooled paths vary less. Costs ``ensemble`` fits
    - ``time_limit``: seconds for the whole fit (split between the members, and between the two
      phases when refitting)
    - ``use_known_covariates``, ``use_static``; ``use_past_covariates``: read the panel's past-only
      covariates (observed, not known ahead: weather, market volume), each step the value of the step
      before, up to the forecast start (see ``module.step_inputs``); off by default: on the validation
      windows of stallion and metro_traffic they did not help (benchmarks/results/past_covariates_val.md);
      ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``);
      ``seed``; ``max_rows``: series x samples unrolled together when sampling (None: 16,384 on
      the CPU, 262,144 on a GPU); ``sample_dtype``: matmul
      dtype when sampling, ``"float32"`` or ``"bfloat16"`` (opt-in; not faster on this CPU, samples
      statistically equal); ``train_dtype``: ``"float32"`` or ``"bfloat16"`` (the training forward's
      matmuls and LSTM kernels under autocast; weights, optimizer and likelihood stay float32;
      opt-in, see ``benchmarks/results/deepar.md``); ``progress``
    - ``nonnegative`` (real-valued likelihoods; count draws are never negative): ``None``
      (default) floors at zero every draw of a series whose observed history never went below
      zero, ``True`` of every series, ``False`` keeps the draws as they are. The floor applies
      inside the autoregressive unroll, so a floored draw is what later steps read as their lag
      (demand for a simulator has no negative sales; walmart validation WQL 0.0895 -> 0.0883).
      Models saved before the option keep no floor. ``val_metric="crps"`` scores floored paths too
    - ``anchor``: a lag (e.g. 52 for weekly data) whose value, where observed, is the location the
      network corrects (a seasonal-naive prior; real-valued likelihoods only); None: no anchor
      ``anchor="profile"``: the location corrected is ``scale * (level + index - 1)``, a seasonal
      index per series (mean of ``y / series mean`` at the same week of the year, hour of the week,
      ...; its group's index, pooled within the static categorical ``profile_group`` at fit, counts
      as ``profile_weight`` observations) and the mean deseasonalised value of the last 13 steps
    - ``anchor_penalty``: with an anchor, adds that times the squared location correction (per unit
      of scale) to each step's training NLL: a ridge that keeps forecasts near the anchor unless the
      data pull them away (0: none)
    - ``num_processes``: data-parallel training in that many processes (torch.distributed; each
      computes a share of every batch and gradients are summed, so the model is the one-process
      model); ``backend``: ``"gloo"`` (CPU) or ``"nccl"`` (one GPU per process), None: from the
      device. Under ``torchrun`` (a process group already initialised) every process calls ``fit``
      and they train together.

    Learned state: ``net_`` (the first network), ``members_`` (all of them), ``features_``,
    ``horizon_``, ``context_``, ``train_`` (fit history; per member under ``"members"`` when several),
    ``stopped_by_`` and ``epochs_`` (epochs trained over all phases and members).
    """

    name = "deepar"

    def __init__(self, context_length: int | None = None, lags: Sequence[int] | None = None, hidden_size: int = 40,
                 num_layers: int = 2, dropout: float = 0.1, cell: str = "lstm", likelihood: str = "studentT",
                 batch_size: int = 128, batches_per_epoch: int = 100, max_epochs: int = 100, lr: float = 1e-3,
                 weight_decay: float = 1e-8, clip: float = 10.0, validation: bool = True, refit: bool = True,
                 patience: int | None = 10, time_limit: float | None = None, use_known_covariates: bool = True,
                 use_static: bool = True, use_past_covariates: bool = False, device: str = "auto", seed: int = 0,
                 max_rows: int | None = None,
                 sample_dtype: str = "float32", train_dtype: str = "float32",
                 anchor: int | str | None = None, profile_group: str | None = None, profile_weight: float = 0.5,
                 num_processes: int = 1, backend: str | None = None, val_metric: str = "nll",
                 val_samples: int = 16, loss: str = "nll", loss_samples: int = 8, crps_weight: float = 1.0,
                 ensemble: int = 1, anchor_penalty: float = 0.0, nonnegative: bool | None = None,
                 progress: bool = False):
        from .likelihoods import get_likelihood
        lk = get_likelihood(likelihood)  # unknown names fail here, not after a long fit
        if loss not in ("nll", "crps", "nll+crps"):
            raise ValueError(f"loss must be 'nll', 'crps' or 'nll+crps', got {loss!r}")
        if loss != "nll" and lk.count:
            raise ValueError(f"loss={loss!r} differentiates through sampled paths: it needs a real-valued "
                             f"likelihood ('studentT' or 'normal'), not {likelihood!r}")
        if int(loss_samples) < 2:
            raise ValueError(f"loss_samples must be >= 2, got {loss_samples!r}")
        if crps_weight <= 0:
            raise ValueError(f"crps_weight must be > 0, got {crps_weight!r}")
        self.loss, self.loss_samples, self.crps_weight = loss, int(loss_samples), float(crps_weight)
        self.ensemble = int(ensemble)
        if not anchor_penalty >= 0 or (anchor_penalty > 0 and (anchor is None or lk.count or loss != "nll")):
            raise ValueError(f"anchor_penalty={anchor_penalty!r} must be >= 0, and > 0 only with an anchor, a "
                             f"real-valued likelihood and loss='nll'")
        self.anchor_penalty = float(anchor_penalty)
        for arg, value in (("hidden_size", hidden_size), ("num_layers", num_layers), ("batch_size", batch_size),
                           ("batches_per_epoch", batches_per_epoch), ("max_epochs", max_epochs),
                           ("max_rows", 1 if max_rows is None else max_rows), ("num_processes", num_processes), ("ensemble", ensemble)):
            if int(value) < 1:
                raise ValueError(f"{arg} must be >= 1, got {value!r}")
        if context_length is not None and context_length < 1:
            raise ValueError(f"context_length must be >= 1 or None, got {context_length!r}")
        if lags is not None and (len(lags) == 0 or min(lags) < 1):
            raise ValueError(f"lags must be positive integers or None, got {lags!r}")
        if lags is not None and len(set(int(l) for l in lags)) != len(lags):
            raise ValueError(f"lags must not repeat, got {lags!r}")
        if clip is not None and not clip > 0:
            raise ValueError(f"clip (the gradient-norm limit) must be > 0 or None, got {clip!r}")
        if time_limit is not None and time_limit <= 0:
            raise ValueError(f"time_limit must be > 0 seconds or None, got {time_limit!r}")
        self.context_length = context_length
        self.lags = None if lags is None else tuple(int(l) for l in lags)
        self.hidden_size, self.num_layers, self.dropout, self.cell = hidden_size, num_layers, dropout, cell
        self.likelihood = likelihood
        self.batch_size, self.batches_per_epoch, self.max_epochs = batch_size, batches_per_epoch, max_epochs
        self.lr, self.weight_decay, self.clip = lr, weight_decay, clip
        self.validation, self.refit, self.patience, self.time_limit = validation, refit, patience, time_limit
        self.use_known_covariates, self.use_static = use_known_covariates, use_static
        self.use_past_covariates = use_past_covariates
        self.device, self.seed, self.max_rows, self.progress = device, seed, max_rows, progress
        self.anchor = anchor
        if anchor is not None and anchor != "profile" and not (isinstance(anchor, int) and anchor >= 1):
            raise ValueError(f"anchor must be None, a lag >= 1 or 'profile', got {anchor!r}")
        if profile_weight <= 0:
            raise ValueError(f"profile_weight must be > 0, got {profile_weight!r}")
        self.profile_group, self.profile_weight = profile_group, profile_weight
        if backend not in (None, "gloo", "nccl"):
            raise ValueError(f"backend must be None, 'gloo' or 'nccl', got {backend!r}")
        self.num_processes, self.backend = int(num_processes), backend
        from .sampling import _dtype
        _dtype(sample_dtype)  # an unknown dtype fails here
        self.sample_dtype = sample_dtype
        if train_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"train_dtype must be 'float32' or 'bfloat16', got {train_dtype!r}")
        self.train_dtype = train_dtype
        if val_metric not in ("nll", "crps"):
            raise ValueError(f"val_metric must be 'nll' or 'crps', got {val_metric!r}")
        if int(val_samples) < 2:
            raise ValueError(f"val_samples must be >= 2, got {val_samples!r}")
        self.val_metric, self.val_samples = val_metric, int(val_samples)
        self.nonnegative = check_nonnegative(nonnegative)

    # ------------------------------------------------------------------ data
    def _check_targets(self, panel: Panel) -> None:
        from .likelihoods import get_likelihood
        if not get_likelihood(self.likelihood).count:
            return
        y, o = panel.target, panel.observed
        bad = o & ((y < 0) | (y != torch.round(y)))
        if bool(bad.any()):
            rows, i, j = _first_bad(bad)
            raise PanelError(
                f"likelihood {self.likelihood!r} needs non-negative integer targets, but series "
                f"{list(panel.item_ids[rows[:5]])} have other values: series {panel.item_ids[i]!r} has "
                f"{float(y[i, j])} at {panel.index[j]}. Use likelihood='studentT' or 'normal' for real values.")

    def _tensors(self, panel: Panel, horizon: int) -> PanelTensors:
        spec = self.features_
        dev = panel.device
        T = panel.num_steps
        t_ext = max(T + horizon, panel.known.shape[1] if panel.known is not None and spec.known_names else 0)
        ext = pd.date_range(panel.index[0], periods=t_ext, freq=panel.freq)
        cal = calendar_features(ext, panel.freq, subdaily_holidays=spec.subdaily_holidays).to(dev)
        y, obs, series_scale = _history(panel)
        codes, reals = spec.static_inputs(panel)
        return PanelTensors(y=y, obs=obs, known=spec.known_inputs(panel, t_ext), calendar=cal, start=panel.start,
                            end=panel.end, codes=codes, reals=reals, series_scale=series_scale,
                            min_scale=self.min_scale_, profile=spec.profile_grid(panel, ext),
                            past=spec.past_values(panel))

    # ------------------------------------------------------------------ fit / predict
    def fit(self, panel: Panel, horizon: int) -> "DeepAR":
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        t0 = time.perf_counter()
        self._check_targets(panel)
        dev = resolve_device(self.device)
        panel = panel.to(dev)
        if self.use_known_covariates and panel.known is not None:
            panel.future_known(horizon)  # fail now, not at predict, if the covariates stop short
        self.horizon_ = horizon
        self.features_ = fit_features(panel, self.use_known_covariates, self.use_static, self.lags,
                                      self.anchor == "profile", self.profile_group, self.profile_weight,
                                      use_past=getattr(self, "use_past_covariates", False))  # models saved before: none
        self.context_ = self.context_length or max(2 * horizon, 8)
        obs_abs = panel.target.abs()[panel.observed]
        from .likelihoods import get_likelihood
        lk = get_likelihood(self.likelihood)
        self.min_scale_ = 0.1 if lk.count else max(1e-6, 1e-3 * float(obs_abs.mean()))
        pt = self._tensors(panel, horizon)
        pt_val = self._held_out_tensors(panel, horizon, pt) if self.validation else None
        spawn = self.num_processes > 1 and not dist.is_initialized()
        # one process, or one of a world already launched (e.g. by torchrun): train together
        world = World(dist.get_rank(), dist.get_world_size(), str(dev)) if dist.is_initialized() else World()
        nets, infos = [], []
        for seed in range(self.seed, self.seed + self.ensemble):  # members one after another
            if spawn:
                from .distributed import spawn_fit
                state, info = spawn_fit(self, pt, horizon, seed, pt_val)
                net = self._new_net(pt, dev, seed)
                net.load_state_dict(state)
            else:
                net, info = self._train_phases(pt, horizon, world, seed, pt_val)
            nets.append(net.eval())
            infos.append(info)
        self.net_, self.members_ = nets[0], nets
        self.train_ = infos[0] if len(infos) == 1 else {"members": infos}
        self.train_["fit_seconds"] = time.perf_counter() - t0
        return self

    def _phases(self) -> list[dict]:
        """The training phases run (validation, refit, or one training run) of every member."""
        infos = self.train_.get("members", [self.train_])
        return [phase for info in infos for phase in (info.get(k) for k in ("validation", "refit", "train"))
                if isinstance(phase, dict)]

    @property
    def stopped_by_(self) -> str:
        """Why training stopped: ``"time_limit"`` when any phase of any member ran out of time,
        else the last phase's reason (``"max_epochs"``, ``"early_stopping"``, ...)."""
        reasons = [phase.get("stopped_by") for phase in self._phases()]
        return "time_limit" if "time_limit" in reasons else (reasons[-1] if reasons else "unknown")

    @property
    def epochs_(self) -> int:
        """Epochs trained in all, over every phase (validation, refit) and ensemble member: the
        work a ``time_limit`` bought (the benchmark's report shows it beside the limit)."""
        return sum(int(phase.get("epochs", 0)) for phase in self._phases())

    def _held_out_tensors(self, panel: Panel, horizon: int, pt: PanelTensors) -> PanelTensors:
        """``pt`` for the validation phase: the same targets (the held-out last ``horizon`` steps
        are scored), but each series' scale and seasonal profiles (its own and its group's) from
        the history before them only, so early stopping scores what a forecast from there could
        know."""
        steps = torch.arange(panel.num_steps, device=panel.device)
        before = (panel.observed & (steps[None, :] < (panel.end - horizon)[:, None])).any(1)
        if not bool(before.any()):
            longest = int(panel.lengths.max())
            raise PanelError(
                f"validation=True holds out each series' last {horizon} steps (the horizon) to choose the "
                f"number of epochs, but no series has an observed value before them (the longest has {longest} "
                f"observed values, e.g. series {panel.item_ids[int(panel.lengths.argmax())]!r}); pass "
                "validation=False, or give the series more history")
        if not bool(before.all()):
            warnings.warn(f"series {_names(panel.item_ids[(~before).cpu().numpy()])} have no observed value before "
                          f"their last {horizon} steps: the validation phase (validation=True) learns from the "
                          "other series only", UserWarning, stacklevel=3)
        cut = panel.truncate((panel.end - horizon).clamp(min=0))
        scale = _history(cut)[2]
        profile = None
        if pt.profile is not None:
            spec = fit_features(cut, False, False, self.lags, True, self.profile_group, self.profile_weight)
            ext = pd.date_range(panel.index[0], periods=pt.profile.shape[1], freq=panel.freq)
            profile = spec.profile_grid(cut, ext)
        return dataclasses.replace(pt, series_scale=scale, profile=profile)

    def _new_net(self, pt: PanelTensors, dev, seed: int) -> DeepARNetwork:
        torch.manual_seed(seed)
        return DeepARNetwork(self.features_, pt.calendar.shape[1], self.hidden_size, self.num_layers,
                             self.dropout, self.likelihood, self.cell, anchor=self.anchor).to(dev)

    def _train_phases(self, pt: PanelTensors, horizon: int, world: World, seed: int,
                      pt_val: PanelTensors | None = None) -> tuple[DeepARNetwork, dict]:
        """Validation (early stopping) and refit, or one training run, of the member with ``seed``;
        returns the net and its history. ``pt_val``: the tensors of the validation phase (see
        ``_held_out_tensors``; default ``pt``)."""
        dev = pt.y.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed)
        time_limit = None if self.time_limit is None else self.time_limit / self.ensemble
        cfg = TrainConfig(context=self.context_, horizon=horizon, batch_size=self.batch_size,
                          batches_per_epoch=self.batches_per_epoch, max_epochs=self.max_epochs, lr=self.lr,
                          weight_decay=self.weight_decay, clip=self.clip, patience=self.patience,
                          time_limit=time_limit, progress=self.progress, val_metric=self.val_metric,
                          val_samples=self.val_samples, loss=self.loss,
                          loss_samples=self.loss_samples, crps_weight=self.crps_weight,
                          anchor_penalty=getattr(self, "anchor_penalty", 0.0),
                          dtype=getattr(self, "train_dtype", "float32"),
                          nonnegative=getattr(self, "nonnegative", False))
        info = {}
        if self.validation:
            # validate on each series' last `horizon` steps; train only on what precedes them
            if self.refit and time_limit is not None:
                cfg.time_limit = time_limit / 2
            net = self._new_net(pt, dev, seed)
            pv = pt if pt_val is None else pt_val
            res = train(net, pv, pv.end - horizon, cfg, gen, val=pv, world=world)
            info["validation"] = res.__dict__
            if self.refit:
                net = self._new_net(pt, dev, seed)
                res2 = train(net, pt, pt.end, cfg, gen, epochs=max(1, res.best_epoch), world=world)
                info["refit"] = res2.__dict__
        else:
            net = self._new_net(pt, dev, seed)
            res = train(net, pt, pt.end, cfg, gen, world=world)
            info["train"] = res.__dict__
        info["processes"] = world.size
        return net, info

    def used_known_covariates(self) -> frozenset[str]:
        """The panel's known covariates at fit (all of them, unless ``use_known_covariates=False``)."""
        self._check_fitted()
        return frozenset(self.features_.known_names)

    def _check_future_known(self, panel: Panel, future: torch.Tensor) -> None:
        """A covariate with no gap in the history never taught the model what a missing value of it
        means: a missing value of it in the forecast window is an error. One with gaps in the
        history is imputed and flagged, as in training."""
        spec = self.features_
        if tuple(panel.known_names) != spec.known_names:
            return  # the features say so, with both lists
        steps = torch.arange(panel.num_steps, device=future.device)
        span = (steps[None] >= panel.start[:, None]) & (steps[None] < panel.end[:, None])  # [N, T] histories
        gaps = (torch.isnan(panel.known[:, :panel.num_steps]) & span[..., None]).flatten(0, 1).any(0)  # [K]
        bad = torch.isnan(future) & ~(gaps & spec.known_flag.to(future.device))[None, None, :]
        if bool(bad.any()):
            i, j, c = (int(v) for v in bad.nonzero()[0])
            rows = bad.flatten(1).any(1).nonzero().squeeze(1).cpu().numpy()
            when = shift_dates(panel.forecast_start()[i:i + 1], j, pd.tseries.frequencies.to_offset(panel.freq))[0]
            raise PanelError(f"known covariate {spec.known_names[c]!r} is missing in the forecast window of series "
                             f"{_names(panel.item_ids[rows])} (e.g. series {panel.item_ids[i]!r} at {when}); it had "
                             "no gap at fit, so the model has no missing-value input for it: fill it in")

    def predict(self, panel: Panel, num_samples: int = 100, seed: int | None = None) -> Forecast:
        H = self._check_fitted(num_samples)
        check_same_freq(self, self.features_.freq, panel)
        self._check_targets(panel)
        dev = next(self.net_.parameters()).device
        panel = panel.to(dev)
        if self.features_.known_names:
            self._check_future_known(panel, panel.future_known(H))
        pt = self._tensors(panel, H)
        floor = None if self.net_.likelihood.count else floor_rows(  # models saved before the option: no floor
            *panel.history(panel.num_steps), getattr(self, "nonnegative", False))
        devices = [dev.index or 0] if dev.type == "cuda" else []
        members = getattr(self, "members_", [self.net_])
        K = len(members)
        counts = [num_samples // K + (k < num_samples % K) for k in range(K)]
        parts = []
        base = self.seed if seed is None else seed
        with torch.random.fork_rng(devices=devices):
            for k, (net, n) in enumerate(zip(members, counts)):
                if n == 0:
                    continue
                torch.manual_seed(base + 1_000_003 * k)  # one member: the seed alone decides, as ever
                parts.append(sample_paths(net, pt, self.context_, H, n, self.max_rows,
                                          dtype=getattr(self, "sample_dtype", None), floor=floor))
            paths = parts[0]
            if len(parts) > 1:  # mix the members' paths so any first k samples are a random subset
                perm = torch.randperm(num_samples, generator=torch.Generator().manual_seed(base)).to(dev)
                paths = torch.cat(parts, 1)[:, perm]
        return Forecast(paths, panel.item_ids, panel.forecast_start(), panel.freq)
