"""Training: windows drawn from the padded tensors already on the device, masked likelihood loss,
gradient clipping, validation on the last horizon before the cutoff, early stopping.

Data-parallel training (``World`` of several processes, torch.distributed): every process draws
the same global batch of windows from the same seeded generator and computes its share of it; the
loss is each share's summed negative log-likelihood over the whole batch's observation count, so
the summed gradients (one all-reduce per step) are those of the one-process step, and every
process takes the same optimizer step."""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..base import floor_rows
from .module import DeepARNetwork, PanelTensors, anchor_base, lag_inputs, profile_base, read_draws, step_inputs

__all__ = ["window_batch", "TrainConfig", "train", "validation_loss", "forecast_crps", "World", "sample_crps"]


def window_batch(net: DeepARNetwork, pt: PanelTensors, rows: torch.Tensor, t_end: torch.Tensor,
                 context: int, length: int, limit: torch.Tensor, parts: bool = False):
    """Inputs and targets of the windows ``[t_end - length, t_end)`` of series ``rows``.

    Values at or after ``limit[row]`` (the training cutoff of each series) and before the grid
    start are unobserved: neither inputs nor targets. The scale is the mean |y| of the first
    ``context`` steps (the series' history mean if they hold nothing).
    Returns dynamic ``[B, W, D]``, static ``[B, Ds]``, y ``[B, W]``, observed ``[B, W]``, scale ``[B]``
    and the anchor ``[B, W]`` (None without one); with ``parts`` also a dict of what the anchor and
    the lag inputs are made of (lag values ``lv`` / flags ``lo`` ``[B, W, L]``, and for the profile
    anchor the lags' indices ``lag_profile`` ``[B, W, L]`` and the steps' own ``profile`` ``[B, W]``),
    which the multi-step loss re-uses with drawn values in place of the lags inside the horizon."""
    T = pt.y.shape[1]
    pos = t_end[:, None] - length + torch.arange(length, device=rows.device)
    lim = limit[rows, None]
    r2 = rows[:, None]
    pc = pos.clamp(0, T - 1)
    y = pt.y[r2, pc]
    o = pt.obs[r2, pc] & (pos >= 0) & (pos < lim)
    ctx = o[:, :context]
    s = (y[:, :context].abs() * ctx).sum(1) / ctx.sum(1).clamp_min(1)
    s = torch.where(s > 0, s, pt.series_scale[rows]).clamp_min(pt.min_scale)
    lp = pos[..., None] - net.lags  # [B, W, L]
    lpc = lp.clamp(0, T - 1)
    lv = pt.y[rows[:, None, None], lpc]
    lo = pt.obs[rows[:, None, None], lpc] & (lp >= 0) & (lp < lim[..., None])
    # the window's forecast start: past-only covariates are read before it only (see step_inputs)
    cut = torch.minimum(t_end - (length - context), limit[rows])
    dyn = torch.cat([lag_inputs(lv, lo, s[:, None, None]), step_inputs(pt, rows, pos, cut)], -1)
    static = net.static(pt.codes[rows], pt.reals[rows], s)
    extra = {"lv": lv, "lo": lo}
    if net.anchor == "profile":
        prof = pt.profile
        extra["lag_profile"] = prof[rows[:, None, None], lp.clamp(0, prof.shape[1] - 1)]
        extra["profile"] = prof[r2, pos.clamp(0, prof.shape[1] - 1)]
        base = profile_base(lv, lo, extra["lag_profile"], extra["profile"], net.lags, pt.series_scale[rows, None])
    else:
        base = anchor_base(lv, lo, net.lags, net.anchor)
    if parts:
        return dyn, static, y, o, s, base, extra
    return dyn, static, y, o, s, base


@dataclass
class World:
    """This process's place among ``size`` data-parallel processes (``size=1``: no communication)."""

    rank: int = 0
    size: int = 1
    device: str = "cpu"  # where collectives run (CUDA tensors for nccl)

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This process's share of a batch drawn identically by every process."""
        return x[self.rank::self.size] if self.size > 1 else x

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over processes (in place; returns ``x``)."""
        if self.size > 1:
            y = x.to(self.device)
            dist.all_reduce(y)
            x.copy_(y)
        return x

    def sum_grads(self, net: torch.nn.Module) -> None:
        """Sum every parameter's gradient over processes, in one flat all-reduce."""
        if self.size == 1:
            return
        params = [p for p in net.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        for g, f in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            g.copy_(f)


def _nll_sum(net, dyn, static, y, o, s, base=None, weight=None, anchor_penalty: float = 0.0):
    """Summed negative log-likelihood of the observed (and weighted) steps, and their count.
    ``anchor_penalty``: plus that times the squared location correction (per unit of scale) the
    network adds to the anchor, a ridge that keeps the location near the anchor unless the data say
    otherwise (training only)."""
    raw, _ = net(dyn, static)
    d = net.likelihood.distribution(raw, s[:, None], base)
    lp = d.log_prob(torch.where(o, y, torch.zeros_like(y)))
    m = o if weight is None else o & weight
    total = -(lp * m).sum()
    if anchor_penalty:
        total = total + anchor_penalty * (raw[..., 0].square() * m).sum()
    return total, m.sum()


def sample_crps(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased ensemble CRPS of draws ``x`` ``[B, S, H]`` against ``y`` ``[B, H]`` -> ``[B, H]``:
    ``E|X - y| - E|X - X'| / 2`` with the pairwise term over distinct draws (the "fair" CRPS, whose
    expectation is minimised by the true distribution for any ``S >= 2``). Differentiable in ``x``."""
    S = x.shape[1]
    first = (x - y[:, None]).abs().mean(1)
    pair = (x[:, :, None] - x[:, None]).abs().sum((1, 2)) / (S * (S - 1))
    return first - 0.5 * pair


def _multi_step_sum(net: DeepARNetwork, pt: PanelTensors, rows: torch.Tensor, t_end: torch.Tensor,
                    cfg: "TrainConfig", limit: torch.Tensor):
    """The multi-step loss of windows ``[t_end - context - horizon, t_end)``: teacher-forced over the
    context (its NLL sum and count when ``cfg.loss`` has ``nll``), then ``cfg.loss_samples``
    reparameterised paths unrolled over the horizon, each drawn value fed back as the lags and the
    anchor of later steps exactly as when forecasting, scored by their CRPS per unit of the window's
    scale. Gradients flow through the draws, so the network learns the distribution of the paths it
    will sample, not only of one step given the truth (exposure bias).

    Returns ``(loss sum, count)`` pairs for the NLL part and the CRPS part, and the paths
    ``[B, S, H]``. A Python loop over the horizon's steps: each step needs the draws of the one
    before (as in sampling)."""
    C, H, S = cfg.context, cfg.horizon, cfg.loss_samples
    dyn, static, y, o, s, base, ex = window_batch(net, pt, rows, t_end, C, C + H, limit, parts=True)
    B, L = dyn.shape[0], net.lags.numel()
    raw, state = net(dyn[:, :C], static)
    nll_sum, nll_n = torch.zeros((), device=y.device), torch.zeros((), device=y.device, dtype=torch.long)
    if "nll" in cfg.loss:
        d = net.likelihood.distribution(raw, s[:, None], None if base is None else base[:, :C])
        lp = d.log_prob(torch.where(o[:, :C], y[:, :C], torch.zeros_like(y[:, :C])))
        nll_sum, nll_n = -(lp * o[:, :C]).sum(), o[:, :C].sum()
    rep = lambda x: x.repeat_interleave(S, 0)  # noqa: E731  samples of a window adjacent
    if isinstance(state, tuple):  # LSTM (h, c); a GRU's state is one tensor
        state = tuple(h.repeat_interleave(S, 1) for h in state)
    else:
        state = state.repeat_interleave(S, 1)
    st, sr = rep(static), rep(s)
    lv, lo, rest = rep(ex["lv"][:, C:]), rep(ex["lo"][:, C:]), rep(dyn[:, C:, 2 * L:])
    if net.anchor == "profile":
        lprof, prof, sscale = rep(ex["lag_profile"][:, C:]), rep(ex["profile"][:, C:]), rep(pt.series_scale[rows])
    lags = net.lags
    drawn: list[torch.Tensor] = []
    for t in range(H):
        vals, obs = read_draws(lv[:, t], lo[:, t], torch.stack(drawn, 1) if drawn else None, lags, t)
        x = torch.cat([lag_inputs(vals, obs, sr[:, None]), rest[:, t]], -1)
        r, state = net(x[:, None], st, state)
        if net.anchor == "profile":
            b = profile_base(vals, obs, lprof[:, t], prof[:, t], lags, sscale)
        else:
            b = anchor_base(vals, obs, lags, net.anchor)
        drawn.append(net.likelihood.distribution(r[:, 0], sr, b).rsample())
    paths = torch.stack(drawn, 1).view(B, S, H)
    m = o[:, C:]
    score = sample_crps(paths, torch.where(m, y[:, C:], torch.zeros_like(y[:, C:]))) / s[:, None]
    return (nll_sum, nll_n), ((score * m).sum(), m.sum()), paths


def _nll(net, dyn, static, y, o, s, base=None, weight=None):
    total, n = _nll_sum(net, dyn, static, y, o, s, base, weight)
    return total / n.clamp_min(1)


@dataclass
class TrainConfig:
    context: int
    horizon: int
    batch_size: int = 128
    batches_per_epoch: int = 100
    max_epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-8
    clip: float | None = 10.0  # gradient-norm limit; None: no clipping
    patience: int | None = 10
    time_limit: float | None = None
    progress: bool = False
    val_metric: str = "nll"  # "nll": one-step NLL (teacher-forced); "crps": CRPS of sampled paths
    val_samples: int = 16
    loss: str = "nll"  # "nll": teacher-forced one-step; "crps" / "nll+crps": multi-step (see _multi_step_sum)
    loss_samples: int = 8
    crps_weight: float = 1.0  # of the CRPS part in "nll+crps"
    anchor_penalty: float = 0.0  # ridge on the network's location correction of the anchor (see _nll_sum)
    dtype: str = "float32"  # "bfloat16": the training forward's matmuls and LSTM kernels under autocast
    nonnegative: bool | None = False  # floor of the val_metric="crps" paths, as DeepAR.predict's


@dataclass
class TrainResult:
    epochs: int = 0
    best_epoch: int = 0
    best_val: float = math.inf
    stopped_by: str = "max_epochs"
    seconds: float = 0.0
    history: list = field(default_factory=list)


@torch.no_grad()
def validation_loss(net: DeepARNetwork, pt: PanelTensors, cfg: TrainConfig, chunk: int = 4096,
                    world: World = World()) -> float:
    """Mean NLL of the last ``horizon`` observed steps of every series, given what precedes them
    (each process of a ``world`` scores its share of the series)."""
    net.eval()
    N = pt.y.shape[0]
    acc = torch.zeros(2, dtype=torch.float64, device=pt.y.device)
    length = cfg.context + cfg.horizon
    weight = torch.zeros(length, dtype=torch.bool, device=pt.y.device)
    weight[cfg.context:] = True
    mine = world.shard(torch.arange(N, device=pt.y.device))
    for i in range(0, mine.numel(), chunk):  # chunks bound memory; a handful of iterations
        rows = mine[i:i + chunk]
        dyn, static, y, o, s, base = window_batch(net, pt, rows, pt.end[rows], cfg.context, length, pt.end)
        total, n = _nll_sum(net, dyn, static, y, o, s, base, weight)
        acc += torch.stack([total.double(), n.double()])
    world.sum(acc)
    net.train()
    return float(acc[0] / acc[1].clamp_min(1))


@torch.no_grad()
def forecast_crps(net: DeepARNetwork, pt: PanelTensors, cfg: TrainConfig, world: World = World(),
                  seed: int = 0) -> float:
    """Scaled CRPS (sum of CRPS / sum of |y|) of ``cfg.val_samples`` sampled paths over each series'
    last ``horizon`` steps, forecast from ``end - horizon``: what the forecasts will be scored on,
    unlike the teacher-forced one-step NLL. The same seed every call, so epochs compare on the same
    draws. Each process of a ``world`` samples its share of the series."""
    from ...evaluation.metrics import crps_ensemble
    from .sampling import sample_paths

    net.eval()
    H = cfg.horizon
    mine = world.shard(torch.arange(pt.y.shape[0], device=pt.y.device))
    sub = pt.subset(mine)
    cut = sub.end - H
    past = dataclasses.replace(sub, end=cut)
    devices = [pt.y.device.index or 0] if pt.y.device.type == "cuda" else []
    before = torch.arange(sub.y.shape[1], device=pt.y.device)[None, :] < cut[:, None]  # as predict: the history
    floor = None if net.likelihood.count else floor_rows(sub.y, sub.obs & before, cfg.nonnegative)
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        paths = sample_paths(net, past, cfg.context, H, cfg.val_samples, floor=floor)
    pos = cut[:, None] + torch.arange(H, device=pt.y.device)
    pc = pos.clamp(0, sub.y.shape[1] - 1)
    truth = sub.y.gather(1, pc)
    m = sub.obs.gather(1, pc) & (pos >= 0) & (pos < sub.end[:, None])
    score = crps_ensemble(paths, truth)
    acc = torch.stack([(score * m).sum().double(), (truth.abs() * m).sum().double()])
    world.sum(acc)
    net.train()
    return float(acc[0] / acc[1].clamp_min(1e-12))


def _out_of_time(cfg: TrainConfig, t0: float, world: World) -> bool:
    """Whether the time limit has passed (in a world: for any process, so all stop together)."""
    if cfg.time_limit is None:
        return False
    late = torch.tensor([float(time.perf_counter() - t0 > cfg.time_limit)])
    return bool(world.sum(late) > 0)


def train(net: DeepARNetwork, pt: PanelTensors, limit: torch.Tensor, cfg: TrainConfig, gen: torch.Generator,
          val: PanelTensors | None = None, epochs: int | None = None, world: World = World()) -> TrainResult:
    """Adam on random windows ending at or before ``limit`` (per series). With ``val`` the best
    epoch's weights are kept and training stops after ``patience`` epochs without improvement;
    ``epochs`` fixes the number of epochs (the refit on the full history). In a ``world`` of
    several processes each computes its share of every batch (see the module's docstring)."""
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5,
                                                       patience=max(1, (cfg.patience or 10) // 3)) if val else None
    res = TrainResult()
    N = pt.y.shape[0]
    dev = pt.y.device
    length = cfg.context + cfg.horizon
    # each series' windows end after its first observed value and no later than its limit
    lo = torch.minimum(pt.start + 2, limit)
    span = (limit - lo + 1).clamp_min(1)
    best_state = None
    t0 = time.perf_counter()
    n_epochs = epochs if epochs is not None else cfg.max_epochs
    bar = tqdm(range(n_epochs), disable=not cfg.progress or world.rank > 0, desc="DeepAR", unit="epoch",
               leave=False)
    stale = 0
    # bfloat16: matmuls and LSTM kernels in bfloat16 (AVX-512 bf16 / AMX on CPUs, tensor cores on
    # GPUs); weights, optimizer state and the likelihood stay float32
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")
    net.train()
    for epoch in bar:
        run = torch.zeros((), device=dev)  # summed on the device: no host sync per step
        batches = 0
        for _ in range(cfg.batches_per_epoch):  # optimizer steps are sequential by nature
            batches += 1
            rows = torch.randint(0, N, (cfg.batch_size,), generator=gen, device=dev)
            t_end = lo[rows] + (torch.rand(cfg.batch_size, generator=gen, device=dev) * span[rows]).long()
            rows, t_end = world.shard(rows), world.shard(t_end)
            with autocast:  # the backward pass runs outside it, in the forward's dtypes
                if cfg.loss == "nll":
                    total, n = _nll_sum(net, *window_batch(net, pt, rows, t_end, cfg.context, length, limit),
                                        anchor_penalty=cfg.anchor_penalty)
                    n_all = world.sum(n.detach().clone()).clamp_min(1)
                    loss = total / n_all
                else:  # each part averaged over the whole (global) batch's count, then weighted
                    (a, na), (c, nc), _ = _multi_step_sum(net, pt, rows, t_end, cfg, limit)
                    n_all = world.sum(torch.stack([na, nc]).detach().clone()).clamp_min(1)
                    loss = cfg.crps_weight * c / n_all[1] + (a / n_all[0] if "nll" in cfg.loss else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            world.sum_grads(net)
            if cfg.clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
            opt.step()
            run += world.sum(loss.detach().clone())
            if _out_of_time(cfg, t0, world):
                break
        res.epochs = epoch + 1
        entry = {"epoch": epoch + 1, "train_loss": float(run) / batches}  # the batches run: the time limit may cut one short
        if batches < cfg.batches_per_epoch:
            entry["batches"] = batches
        if val is not None:
            v = (forecast_crps(net, val, cfg, world=world) if cfg.val_metric == "crps"
                 else validation_loss(net, val, cfg, world=world))
            entry["val_loss"] = v
            sched.step(v)
            if v < res.best_val - 1e-4:
                res.best_val, res.best_epoch, stale = v, epoch + 1, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
        res.history.append(entry)
        bar.set_postfix({k: round(v, 4) for k, v in entry.items() if k != "epoch"})
        if _out_of_time(cfg, t0, world):
            res.stopped_by = "time_limit"
            break
        if val is not None and cfg.patience is not None and stale >= cfg.patience:
            res.stopped_by = "early_stopping"
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    else:
        res.best_epoch = res.epochs
    res.seconds = time.perf_counter() - t0
    net.eval()
    return res
