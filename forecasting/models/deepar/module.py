"""The DeepAR network and the one function that turns panel tensors into its inputs.

Shapes: B rows (series or series x samples), W steps, L lags. The network reads, at each step t,
the transformed target lags ``y_{t-l} / scale`` with their observed flags, known covariates,
past-only covariates of step ``t - 1`` (with availability flags), calendar features, the series'
age, static embeddings and ``log(scale)``, and outputs the raw parameters of ``y_t``'s
distribution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .features import FeatureSpec
from .likelihoods import get_likelihood

__all__ = ["DeepARNetwork", "PanelTensors", "squash", "lag_inputs", "step_inputs", "anchor_base", "profile_base",
           "ProfileHistory", "PROFILE_LEVEL_LAGS", "read_draws"]

#: the level of ``anchor="profile"`` is the mean of the deseasonalised lags up to this many steps
PROFILE_LEVEL_LAGS = 13


def squash(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|): lags enter the network on a log scale, so a large sampled value
    cannot feed back linearly into the next step's mean (what makes autoregressive paths explode)."""
    return torch.sign(x) * torch.log1p(x.abs())


@dataclass
class PanelTensors:
    """A panel prepared for DeepAR (all on one device).

    ``y`` / ``obs`` ``[N, T]`` (targets at or after ``end`` are never read), ``known`` ``[N, T_ext,
    Dk]``, ``calendar`` ``[T_ext, Dc]``, ``start`` / ``end`` ``[N]``, ``codes`` ``[N, C]``, ``reals``
    ``[N, R]``, ``series_scale`` ``[N]`` (mean |y| of each series' observed history, a fallback),
    ``profile`` ``[N, T_ext]`` each series' seasonal index at each step (``anchor="profile"`` only),
    ``past`` ``[N, T, P]`` standardised past-only covariates, NaN where missing (None: none read)."""

    y: torch.Tensor
    obs: torch.Tensor
    known: torch.Tensor
    calendar: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    codes: torch.Tensor
    reals: torch.Tensor
    series_scale: torch.Tensor
    min_scale: float
    profile: torch.Tensor | None = None  # [N, T_ext] seasonal index (anchor="profile"), see FeatureSpec
    past: torch.Tensor | None = None  # [N, T, P] past-only covariates, see FeatureSpec.past_values

    def subset(self, rows: torch.Tensor) -> "PanelTensors":
        """The same tensors for series ``rows`` only."""
        pick = lambda x: None if x is None else x[rows]  # noqa: E731
        return PanelTensors(y=self.y[rows], obs=self.obs[rows], known=self.known[rows], calendar=self.calendar,
                            start=self.start[rows], end=self.end[rows], codes=self.codes[rows],
                            reals=self.reals[rows], series_scale=self.series_scale[rows],
                            min_scale=self.min_scale, profile=pick(self.profile), past=pick(self.past))


def lag_inputs(values: torch.Tensor, observed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``[..., L]`` lag values and flags -> ``[..., 2L]`` network inputs."""
    v = torch.where(observed, squash(values / scale), torch.zeros_like(values))
    return torch.cat([v, observed.to(v.dtype)], -1)


def step_inputs(pt: PanelTensors, rows: torch.Tensor, pos: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
    """Everything but the lags at grid positions ``pos`` ``[B, W]`` of series ``rows`` ``[B]``:
    known covariates, past-only covariates, calendar and age, ``[B, W, Dk + 2P + Dc + 1]``.

    A past-only covariate enters one step late: step ``t`` reads its value at ``t - 1`` and a flag,
    1 where that value is observed and ``t - 1 < cut`` (``[B]``, the forecast start of each row's
    window), else 0 with the value 0. So past the forecast start none is read, as when forecasting,
    and training windows mask their last ``horizon`` steps the same way."""
    p = pos.clamp(0, pt.calendar.shape[0] - 1)
    age = torch.log1p((pos - pt.start[rows, None]).clamp_min(0).to(torch.float32)) / 5.0
    parts = [pt.known[rows[:, None], p]]
    if pt.past is not None:
        q = pos - 1
        v = pt.past[rows[:, None], q.clamp(0, pt.past.shape[1] - 1)]  # [B, W, P]
        ok = ~torch.isnan(v) & ((q >= 0) & (q < cut[:, None]))[..., None]
        parts += [torch.where(ok, v, torch.zeros_like(v)), ok.to(v.dtype)]
    parts += [pt.calendar[p], age[..., None]]
    return torch.cat(parts, -1)


def anchor_base(values: torch.Tensor, observed: torch.Tensor, lags: torch.Tensor, anchor: int | None):
    """The seasonal-naive value each step is anchored on: ``y_{t-anchor}`` where observed, else the
    lag-1 value, else 0. ``values``/``observed`` ``[..., L]`` are the step's lag inputs."""
    if anchor is None:
        return None
    # one-hot selections instead of an index looked up on the host: no device sync per step on a GPU
    is_s, is_1 = lags == anchor, lags == 1
    v_s, v_1 = (values * is_s).sum(-1), (values * is_1).sum(-1)
    last = torch.where((observed & is_1).any(-1), v_1, torch.zeros_like(v_1))
    return torch.where((observed & is_s).any(-1), v_s, last)


def profile_base(values: torch.Tensor, observed: torch.Tensor, lag_profile: torch.Tensor, profile: torch.Tensor,
                 lags: torch.Tensor, series_scale: torch.Tensor) -> torch.Tensor:
    """The location ``anchor="profile"`` corrects, in target units: ``scale * (level + profile - 1)``.

    ``values``/``observed``/``lag_profile`` ``[..., L]``: the step's lags, their flags and seasonal
    indices; ``profile`` ``[...]``: the step's own index; ``series_scale`` broadcasts to ``[...]``.
    The level is the mean over the observed lags ``<= PROFILE_LEVEL_LAGS`` of ``y / scale - (index
    - 1)`` (1, the series mean, if none is observed): seasonal naive with a smoothed season and a
    recent level instead of last year's single value."""
    short = (lags <= PROFILE_LEVEL_LAGS) & (lags >= 1)
    m = observed & short
    s = series_scale
    # a series that is zero throughout has scale 0: its anchor is 0 (0 x a finite level), not 0 / 0
    deseason = values / torch.where(s > 0, s, torch.ones_like(s))[..., None] - (lag_profile - 1)
    n = m.sum(-1)
    level = torch.where(n > 0, (deseason * m).sum(-1) / n.clamp_min(1), torch.ones_like(profile))
    return s * (level + profile - 1)


def read_draws(values: torch.Tensor, observed: torch.Tensor, drawn: torch.Tensor, lags: torch.Tensor,
               t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lag values ``[R, L]`` and flags of forecast step ``t`` with the lags that reach inside the
    forecast (``lag <= t``) read from the values drawn so far, ``drawn`` ``[R, >= t]`` (observed)."""
    if t < 1:
        return values, observed
    inside = lags <= t  # a mask, not indices: no device sync per step on a GPU
    got = drawn[:, (t - lags).clamp_min(0)]  # columns < t exist; those of lags > t are not used
    return torch.where(inside, got, values), observed | inside


@dataclass
class ProfileHistory:
    """What ``anchor="profile"`` needs to unroll ``H`` forecast steps of ``n`` series: for each step
    and short lag (``lags`` ``[Ls]``, those ``<= PROFILE_LEVEL_LAGS``) the history value and flag
    (used while the lag reaches before the forecast), the lag's seasonal index, and each step's own
    index; ``scale`` ``[n]`` the series scale."""

    lags: torch.Tensor  # [Ls]
    values: torch.Tensor  # [n, H, Ls]
    observed: torch.Tensor  # [n, H, Ls]
    lag_profile: torch.Tensor  # [n, H, Ls]
    profile: torch.Tensor  # [n, H]
    scale: torch.Tensor  # [n]

    @classmethod
    def build(cls, pt: PanelTensors, rows: torch.Tensor, end: torch.Tensor, horizon: int,
              lags: torch.Tensor) -> "ProfileHistory":
        short = lags[(lags >= 1) & (lags <= PROFILE_LEVEL_LAGS)]
        steps = torch.arange(horizon, device=end.device)
        pos = end[:, None, None] + steps[None, :, None] - short  # [n, H, Ls]
        T, T_ext = pt.y.shape[1], pt.profile.shape[1]
        pc = pos.clamp(0, T - 1)
        r = rows[:, None, None]
        values = torch.where(pos < end[:, None, None], pt.y[r, pc], torch.zeros_like(pt.y[r, pc]))
        observed = pt.obs[r, pc] & (pos >= 0) & (pos < end[:, None, None])
        lag_profile = pt.profile[r, pos.clamp(0, T_ext - 1)]
        profile = pt.profile[rows[:, None], (end[:, None] + steps).clamp(max=T_ext - 1)]
        return cls(short, values, observed, lag_profile, profile, pt.series_scale[rows])

    def base(self, drawn: torch.Tensor, t: int, S: int) -> torch.Tensor:
        """The anchor of step ``t`` for the ``n * S`` rows (samples of a series adjacent), given the
        values drawn so far ``drawn`` ``[n * S, >= t]``: lags ``<= t`` read the draws."""
        R = drawn.shape[0]
        vals, obs = read_draws(self.values[:, t].repeat_interleave(S, 0), self.observed[:, t].repeat_interleave(S, 0),
                               drawn, self.lags, t)  # [R, Ls]
        return profile_base(vals, obs, self.lag_profile[:, t].repeat_interleave(S, 0),
                            self.profile[:, t].repeat_interleave(S, 0), self.lags,
                            self.scale.repeat_interleave(S, 0)).view(R)


class DeepARNetwork(nn.Module):
    """Autoregressive RNN (LSTM or GRU) with static embeddings and a distribution head."""

    def __init__(self, spec: FeatureSpec, num_calendar: int, hidden_size: int = 40, num_layers: int = 2,
                 dropout: float = 0.1, likelihood: str = "studentT", cell: str = "lstm",
                 embedding_dims: tuple[int, ...] | None = None, anchor: int | str | None = None):
        super().__init__()
        self.likelihood = get_likelihood(likelihood)
        if anchor == "profile":
            if self.likelihood.count or spec.profile is None:
                raise ValueError("anchor='profile' needs a real-valued likelihood and a profile in the features")
        elif anchor is not None and (self.likelihood.count or anchor not in spec.lags or 1 not in spec.lags):
            raise ValueError(f"anchor={anchor} needs a real-valued likelihood and lags that include 1 and {anchor}")
        self.anchor = anchor
        self.register_buffer("lags", torch.tensor(spec.lags, dtype=torch.long))
        dims = embedding_dims or tuple(min(50, (c + 1) // 2 + 1) for c in spec.cardinalities)
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, d) for c, d in zip(spec.cardinalities, dims))
        self.num_static = sum(dims) + len(spec.static_real_names) + 1
        self.num_dynamic = 2 * len(spec.lags) + spec.num_known_inputs + spec.num_past_inputs + num_calendar + 1
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell)
        if rnn is None:
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        self.rnn = rnn(self.num_dynamic + self.num_static, hidden_size, num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, self.likelihood.num_params)

    def static(self, codes: torch.Tensor, reals: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``[B, num_static]``: embeddings, static reals and log scale."""
        parts = [emb(codes[:, j]) for j, emb in enumerate(self.embeddings)]
        parts += [reals, torch.log(scale)[:, None]]
        return torch.cat(parts, -1)

    def forward(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        """``dynamic`` ``[B, W, num_dynamic]``, ``static`` ``[B, num_static]`` -> raw ``[B, W, P]``, state."""
        x = torch.cat([dynamic, static[:, None, :].expand(-1, dynamic.shape[1], -1)], -1)
        out, state = self.rnn(x, state)
        return self.head(out).float(), state  # float32 even under a bfloat16 autocast: the likelihood needs it
