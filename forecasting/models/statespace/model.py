"""The generative story of the structural model: one Pyro model over every series at once.

For series ``n`` (pooling group ``g = group[n]``) and step ``t`` of its right-aligned window::

    mean[n, t] = level[n, t] + sum_p season_p[n, pos_p[n, t]] + fourier[n, t] . a[n] + x[n, t] . beta[n]
    level[n, t] = level[n, t-1] + slope[n, t-1] + sigma_level[n] * eta[n, t]          (local level)
    eta ~ Normal(0, 1), or StudentT(level_df, 0, 1): occasional level shifts without a wide level noise
    slope[n, t] = phi * slope[n, t-1] + sigma_slope[n] * eps[n, t]                     (damped trend)

- real-valued targets (standardised): ``y ~ StudentT(df, mean, sigma[n])`` or ``Normal``
- counts: ``y ~ NB(mean = scale[n] * exp(mean), concentration r[n])``, ``Poisson``, or a
  zero-inflated NB with gate ``pi[n]`` (intermittent demand)

Hierarchical priors pool across the series of a group: log noise scales, log level/slope scales,
NB concentrations and zero gates are Normal around a per-group location with a learned spread; each
seasonal profile is the group's profile plus a series deviation whose size is learned per group;
regression and Fourier coefficients are the group's plus a shrunken series deviation. With
``season_smooth`` the profiles and deviations also get a prior on the change between neighbouring
positions (week 17 like week 16): few years of history see each position once or twice.

Plates: ``series`` (dim -2) x time/position (dim -1), ``groups`` (dim -2); inference runs with
``max_plate_nesting = 2`` and samples are a leading batch dim. Each latent's shape is checked
(pyro-ppl/pyro#2990: reparameterised sites inside plates can broadcast silently).
"""
from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.reparam import DiscreteCosineReparam

from .design import Design

__all__ = ["LIKELIHOODS", "Structure", "coefficient_model", "dct_model", "structural_model"]

LIKELIHOODS = ("normal", "studentT", "poisson", "negbin", "zinb")
COUNT_LIKELIHOODS = ("poisson", "negbin", "zinb")


@dataclass(frozen=True)
class Structure:
    likelihood: str = "studentT"
    trend: bool = True
    level_prior: float = -3.0  # prior location of log sigma_level (standardised units)
    level_prior_scale: float = 1.0  # prior scale of the per-group location of log sigma_level
    noise_prior: float = -1.0  # prior location of log sigma_obs
    season_spread: float = 0.5  # prior scale of the per-group spread of series seasonal deviations
    coef_scale: float = 0.5  # prior scale of group regression coefficients
    coef_spread: float = 0.2  # prior scale of series deviations from the group coefficients
    level_df: float | None = None  # Student-t level innovations with these degrees of freedom (None: Normal)
    season_smooth: float | None = None  # prior sd of the change between neighbouring seasonal positions

    @property
    def count(self) -> bool:
        return self.likelihood in COUNT_LIKELIHOODS


def _plate_factory():
    """``P(name, size, dim)``: a plate created once per model run and reused (Pyro forbids two
    plates of one name in a trace)."""
    plates: dict[str, pyro.plate] = {}

    def P(name: str, size: int, dim: int) -> pyro.plate:
        if name not in plates:
            plates[name] = pyro.plate(name, size, dim=dim)
        return plates[name]
    return P


def _check(name: str, value: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if tuple(value.shape[value.dim() - len(shape):]) != shape:
        raise RuntimeError(f"latent {name!r} has shape {tuple(value.shape)}, expected (..., {shape})")
    return value


def _pooled(P, name: str, d: Design, loc_prior: float, loc_scale: float, spread_scale: float) -> torch.Tensor:
    """``[..., N, 1]`` series values Normal around a per-group location with a learned spread."""
    t = lambda v: torch.tensor(float(v), device=d.y.device)  # noqa: E731  priors on the data's device (CUDA)
    with P("groups", d.num_groups, dim=-2):
        loc_g = pyro.sample(f"{name}_loc", dist.Normal(t(loc_prior), loc_scale))
    spread = pyro.sample(f"{name}_spread", dist.HalfNormal(t(spread_scale)))
    loc_g = _check(f"{name}_loc", loc_g, (d.num_groups, 1))
    with P("series", d.num_series, dim=-2):
        z = pyro.sample(f"{name}_z", dist.Normal(t(0.0), 1.0))
    z = _check(f"{name}_z", z, (d.num_series, 1))
    return loc_g.index_select(-2, d.group) + spread * z


def _coefficients(P, name: str, d: Design, size: int, cfg: Structure) -> torch.Tensor:
    """``[..., N, size]`` group coefficients plus shrunken series deviations."""
    t = lambda v: torch.tensor(float(v), device=d.y.device)  # noqa: E731  priors on the data's device (CUDA)
    with P("groups", d.num_groups, dim=-2), P(f"{name}_dim", size, dim=-1):
        b_g = pyro.sample(f"{name}_group", dist.Normal(t(0.0), cfg.coef_scale))
    with P(f"{name}_dim", size, dim=-1):
        tau = pyro.sample(f"{name}_spread", dist.HalfNormal(t(cfg.coef_spread)))
    with P("series", d.num_series, dim=-2), P(f"{name}_dim", size, dim=-1):
        z = pyro.sample(f"{name}_z", dist.Normal(t(0.0), 1.0))
    b_g = _check(f"{name}_group", b_g, (d.num_groups, size))
    z = _check(f"{name}_z", z, (d.num_series, size))
    return b_g.index_select(-2, d.group) + tau * z


def _cat_time(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Concatenate along time (-1) after broadcasting the leading dims."""
    lead = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return torch.cat([a.expand(*lead, a.shape[-1]), b.expand(*lead, b.shape[-1])], -1)


def _damped_sum(eps: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """``slope[..., t] = sum_{j <= t} phi**(t - j) * eps[..., j]`` as one matmul (no loop over t)."""
    T = eps.shape[-1]
    t = torch.arange(T, device=eps.device, dtype=eps.dtype)
    lag = t[:, None] - t[None, :]
    kernel = torch.where(lag >= 0, phi ** lag.clamp_min(0), torch.zeros_like(lag))  # [..., T, T]
    return eps @ kernel.transpose(-1, -2)


def _roughness(s: torch.Tensor, sd: float) -> torch.Tensor:
    """``[..., n, P]`` profiles -> ``[..., n, 1]`` log density of their circular first differences
    under ``Normal(0, sd)`` (up to a constant): a Gaussian Markov random field prior on the profile,
    on top of each position's own ``Normal(0, 1)``."""
    step = s - torch.roll(s, 1, dims=-1)
    return -(step * step).sum(-1, keepdim=True) / (2 * sd * sd)


def structural_model(d: Design, cfg: Structure, forecast: bool = False):
    """Pyro model over all series; with ``forecast=True`` it also samples ``y_future [..., N, H]``."""
    N, L, H = d.num_series, d.history, d.horizon
    T = L + H if forecast else L
    P = _plate_factory()

    dev = d.y.device
    series = P("series", N, dim=-2)

    # ---- level (+ damped slope) as a non-centred random walk
    log_sig_level = _pooled(P, "log_level_scale", d, cfg.level_prior, cfg.level_prior_scale, 0.5)
    with series:
        level0 = pyro.sample("level0", dist.Normal(torch.zeros((), device=dev), 3.0 if cfg.count else 2.0))
    level0 = _check("level0", level0, (N, 1))
    zero = torch.zeros((), device=dev)
    innovation = dist.Normal(zero, 1.0) if cfg.level_df is None else dist.StudentT(zero + cfg.level_df, zero, 1.0)
    with series, P("steps", L - 1, dim=-1):
        eta = pyro.sample("level_noise", innovation)
    eta = _check("level_noise", eta, (N, L - 1))
    if forecast:
        with series, P("future", H, dim=-1):
            eta_f = pyro.sample("level_noise_future", innovation)
        eta = _cat_time(eta, eta_f)
    incr = torch.exp(log_sig_level) * eta  # [..., N, T - 1]
    if cfg.trend:
        log_sig_slope = _pooled(P, "log_slope_scale", d, cfg.level_prior - 1.5, 1.0, 0.5)
        phi = pyro.sample("damping", dist.Beta(torch.tensor(8.0, device=dev), 2.0))
        with series, P("steps", L - 1, dim=-1):
            eps = pyro.sample("slope_noise", dist.Normal(torch.zeros((), device=dev), 1.0))
        eps = _check("slope_noise", eps, (N, L - 1))
        if forecast:
            with series, P("future", H, dim=-1):
                eps_f = pyro.sample("slope_noise_future", dist.Normal(torch.zeros((), device=dev), 1.0))
            eps = _cat_time(eps, eps_f)
        slope = _damped_sum(torch.exp(log_sig_slope) * eps, phi)  # slope[t] drives level[t + 1]
        incr = incr + torch.cat([torch.zeros_like(slope[..., :1]), slope[..., :-1]], -1)
    level = level0 + torch.cat([torch.zeros_like(incr[..., :1]), incr.cumsum(-1)], -1)  # [..., N, T]

    # ---- seasonality: group profile + series deviation, centred per series
    seasonal = torch.zeros((), device=dev)
    for name, period, idx in d.seasons:
        with P("groups", d.num_groups, dim=-2), P(f"{name}_pos", period, dim=-1):
            s_g = pyro.sample(f"{name}_group", dist.Normal(torch.zeros((), device=dev), 1.0))
        with P("groups", d.num_groups, dim=-2):
            tau = pyro.sample(f"{name}_spread", dist.HalfNormal(torch.tensor(cfg.season_spread, device=dev)))
        with series, P(f"{name}_pos", period, dim=-1):
            z = pyro.sample(f"{name}_z", dist.Normal(torch.zeros((), device=dev), 1.0))
        s_g = _check(f"{name}_group", s_g, (d.num_groups, period))
        z = _check(f"{name}_z", z, (N, period))
        if cfg.season_smooth is not None:  # neighbouring positions alike (circular): a smooth profile
            with P("groups", d.num_groups, dim=-2):
                pyro.factor(f"{name}_group_smooth", _roughness(s_g, cfg.season_smooth))
            with series:
                pyro.factor(f"{name}_z_smooth", _roughness(z, cfg.season_smooth))
        s = s_g.index_select(-2, d.group) + tau.index_select(-2, d.group) * z
        for j, (codes, size) in enumerate(d.season_groups):  # crossed groupings (e.g. store)
            sd_j = pyro.sample(f"{name}_by{j}_scale", dist.HalfNormal(torch.tensor(cfg.season_spread, device=dev)))
            with P(f"by{j}", size, dim=-2), P(f"{name}_pos", period, dim=-1):
                s_j = pyro.sample(f"{name}_by{j}", dist.Normal(torch.zeros((), device=dev), 1.0))
            s_j = _check(f"{name}_by{j}", s_j, (size, period))
            s = s + sd_j * s_j.index_select(-2, codes)
        s = s - s.mean(-1, keepdim=True)
        pos = idx[:, :T].expand(*s.shape[:-1], T)
        seasonal = seasonal + torch.gather(s, -1, pos)
    if d.fourier.shape[-1]:
        a = _coefficients(P, "yearly", d, d.fourier.shape[-1], cfg)
        seasonal = seasonal + (d.fourier[:, :T] * a.unsqueeze(-2)).sum(-1)
    regression = torch.zeros((), device=dev)
    if d.x.shape[-1]:
        beta = _coefficients(P, "coef", d, d.x.shape[-1], cfg)
        pyro.deterministic("beta", beta, event_dim=2)
        regression = (d.x[:, :T] * beta.unsqueeze(-2)).sum(-1)
    mean = level + seasonal + regression
    pyro.deterministic("level", level, event_dim=2)
    pyro.deterministic("seasonal", seasonal + torch.zeros_like(level), event_dim=2)
    pyro.deterministic("regression", regression + torch.zeros_like(level), event_dim=2)

    # ---- observations
    def obs_dist(m):
        if not cfg.count:
            sigma = torch.exp(log_sig_obs)
            if cfg.likelihood == "normal":
                return dist.Normal(m, sigma)
            return dist.StudentT(df, m, sigma)
        log_rate = (torch.log(d.scale)[:, None] + m).clamp(-30.0, 30.0)
        if cfg.likelihood == "poisson":
            return dist.Poisson(torch.exp(log_rate))
        # concentration r in [0.05, 400]: below, paths grow absurd tails (GluonTS's exploding NB
        # paths on intermittent items); p = sigmoid(logits) must stay below 1 in float32
        lc = log_conc.clamp(-3.0, 6.0)
        r = torch.exp(lc)
        nb_logits = (log_rate - lc).clamp(max=15.0)  # NB(r, p): mean r p / (1 - p) = rate
        if cfg.likelihood == "negbin":
            return dist.NegativeBinomial(total_count=r, logits=nb_logits)
        return dist.ZeroInflatedNegativeBinomial(total_count=r, logits=nb_logits, gate_logits=gate_logit.clamp(-12.0, 12.0))

    if not cfg.count:
        log_sig_obs = _pooled(P, "log_obs_scale", d, cfg.noise_prior, 1.0, 0.5)
        if cfg.likelihood == "studentT":
            df = pyro.sample("df", dist.Uniform(torch.tensor(2.5, device=dev), 60.0))
    elif cfg.likelihood in ("negbin", "zinb"):
        log_conc = _pooled(P, "log_concentration", d, 0.0, 1.5, 1.0)
        if cfg.likelihood == "zinb":
            gate_logit = _pooled(P, "gate_logit", d, -1.0, 2.0, 1.0)
    with series, P("time", L, dim=-1):
        pyro.sample("obs", obs_dist(mean[..., :L]).mask(d.mask), obs=d.y)
    if forecast:
        with series, P("future", H, dim=-1):
            pyro.sample("y_future", obs_dist(mean[..., L:]))


def coefficient_model(d: Design, cfg: Structure):
    """The regression part alone: ``beta [..., N, K]`` (for ``StateSpace.coefficients``)."""
    P = _plate_factory()

    beta = _coefficients(P, "coef", d, d.x.shape[-1], cfg)
    pyro.deterministic("beta", beta, event_dim=2)
    return beta


def _dct_config(msg):
    """Reparameterise the latent noise sequences in the frequency domain (as pyro.contrib.forecast's
    ``time_reparam="dct"``): the prior is unchanged (an orthonormal transform of iid normals), but a
    mean-field guide over DCT coefficients captures smooth correlations across time."""
    if msg["name"] in ("level_noise", "slope_noise") and not msg["is_observed"]:
        return DiscreteCosineReparam(dim=-1, experimental_allow_batch=True)
    return None


def dct_model(d: Design, cfg: Structure, forecast: bool = False):
    """``structural_model`` with its level and slope noise reparameterised by a DCT."""
    with poutine.reparam(config=_dct_config):
        return structural_model(d, cfg, forecast)
