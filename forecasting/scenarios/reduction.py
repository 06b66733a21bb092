"""Scenario reduction: from S weighted scenarios to K weighted ones that stay close in distribution.

- ``"forward"``: fast forward selection (Heitsch & Römisch, 2003). Scenarios are added one at a
  time, each time the one that most lowers the Kantorovich (transport) distance between the full
  set and the kept ones; the weight of every dropped scenario then goes to its nearest kept one.
- ``"kmedoids"``: weighted k-medoids (alternating assignment / medoid update, started from the
  forward selection) on the Euclidean distance that underlies the energy distance; the kept
  scenarios are the medoids, their weights the probability mass of their clusters.

Both return a :class:`Reduction` with the kept positions, weights, the transport distance
sum_i p_i min_j ||x_i - y_j|| and the energy distance 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||
between the full and the reduced distribution.

Weights that keep means (``match=``): the transport weights keep the full set's distribution
approximately, but not the means of what a simulator sums (demand, and how far it runs above or
below the stock a policy holds), and a KPI mean inherits that error. :func:`match_weights` moves
the weights as little as possible (in Kullback-Leibler divergence from the transport weights) so
that the weighted means of chosen scenario features equal the full set's: an exponential tilt
w_k ~ q_k exp(phi_k . lambda), with lambda from a few Newton steps on the convex dual. Weights stay positive and sum to 1; the means
are matched exactly when the full set's means lie inside the convex hull of the kept scenarios'
features (a ridge keeps the solution finite when they do not).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .core import ScenarioError, ScenarioSet

__all__ = ["Reduction", "energy_distance", "match_weights", "reduce_scenarios", "scenario_distances",
           "transport_distance"]

#: feature columns per block when accumulating the Gram matrix (bounds the float64 copies)
BLOCK = 1 << 14


def _check_rows(x: torch.Tensor, name: str, S: int, dims: str) -> None:
    """Raise unless ``x`` is ``[S, ...]`` with finite values, naming the scenarios (rows) that are not."""
    if x.ndim != 2 or x.shape[0] != S:
        raise ScenarioError(f"{name} must be [scenarios, {dims}] = [{S}, {dims[0].upper()}], got shape {tuple(x.shape)}")
    bad = (~torch.isfinite(x)).any(1).nonzero().squeeze(1).tolist()
    if bad:
        more = ", ..." if len(bad) > 10 else ""
        raise ScenarioError(f"{name} hold non-finite values in scenarios [{', '.join(map(str, bad[:10]))}{more}] "
                            f"({len(bad)} of {S} scenarios)")


def scenario_distances(features: torch.Tensor, progress: bool = False) -> torch.Tensor:
    """``[S, D]`` scenario vectors -> ``[S, S]`` Euclidean distances (float64).

    The Gram matrix of the centred vectors is accumulated over blocks of D in float64, so memory is
    O(S^2 + S * BLOCK) and identical scenarios come out at distance 0 up to rounding."""
    _check_rows(features, "features", features.shape[0] if features.ndim else 0, "dims")
    S, D = features.shape
    mean = features.double().mean(0)
    gram = torch.zeros(S, S, dtype=torch.float64)
    # blocks over D: each is one float64 matrix product
    for i in tqdm(range(0, D, BLOCK), disable=not progress, desc="distances", leave=False):
        x = features[:, i:i + BLOCK].double() - mean[i:i + BLOCK]
        gram += x @ x.T
    sq = gram.diagonal()
    d2 = sq[:, None] + sq[None, :] - 2 * gram
    # rounding can make d2 slightly negative (and nonzero on the diagonal): those are zeros
    d2 = d2.clamp_min(0)
    d2.fill_diagonal_(0)
    return d2.sqrt()


def energy_distance(dist: torch.Tensor, p: torch.Tensor, kept: torch.Tensor, q: torch.Tensor) -> float:
    """Energy distance between the weighted set (``p`` ``[S]``) and the kept scenarios ``kept`` ``[K]``
    with weights ``q`` ``[K]``, from the ``[S, S]`` distance matrix."""
    cross = (p[:, None] * q[None, :] * dist[:, kept]).sum()
    within_p = (p[:, None] * p[None, :] * dist).sum()
    within_q = (q[:, None] * q[None, :] * dist[kept][:, kept]).sum()
    return float(2 * cross - within_p - within_q)


def transport_distance(dist: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> float:
    """Kantorovich distance between weights ``p`` ``[S]`` on the full set and ``q`` ``[K]`` on the
    kept scenarios, from ``dist`` ``[S, K]`` (full to kept): the optimal transport plan by linear
    programming (scipy's HiGHS; S x K variables, a second for 1000 x 50). With the nearest-kept
    assignment's own weights this equals sum_i p_i min_j dist_ij; other weights need the LP."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    S, K = dist.shape
    rows = torch.arange(S).repeat_interleave(K)
    cols = torch.arange(K).repeat(S)
    var = torch.arange(S * K)
    # equality constraints: each full scenario ships p_i, each kept one receives q_j
    a = coo_matrix((torch.ones(2 * S * K).numpy(), (torch.cat([rows, S + cols]).numpy(), torch.cat([var, var]).numpy())),
                   shape=(S + K, S * K))
    b = torch.cat([p.double(), q.double() * p.double().sum() / q.double().sum()]).numpy()
    # the S + K constraints are rank S + K - 1 (both sides ship the same mass): with the redundant
    # row left in, HiGHS' presolve can call a feasible problem infeasible when some weights are
    # tiny (seen with matched weights down to 4e-9); without it, and without presolve as a fallback
    cost, a = dist.double().reshape(-1).numpy(), a.tocsr()[:-1]
    res = linprog(cost, A_eq=a, b_eq=b[:-1], bounds=(0, None), method="highs")
    if res.status == 2:
        res = linprog(cost, A_eq=a, b_eq=b[:-1], bounds=(0, None), method="highs", options={"presolve": False})
    if res.status != 0:
        raise ScenarioError(f"the transport problem failed: {res.message}")
    return float(res.fun)


def match_weights(features: torch.Tensor, p: torch.Tensor, kept: torch.Tensor, q: torch.Tensor,
                  ridge: float = 1e-6, max_iter: int = 100) -> tuple[torch.Tensor, dict]:
    """Weights ``[K]`` for the kept scenarios, closest to ``q`` in Kullback-Leibler divergence among
    those whose weighted means of ``features`` equal the full set's.

    ``features`` ``[S, F]`` of every scenario, ``p`` ``[S]`` their weights, ``kept`` ``[K]``
    positions of the kept ones, ``q`` ``[K]`` their weights so far (positive, e.g. the transport
    weights). Each feature is centred on its full-set mean and divided by its standard deviation
    (constant ones are dropped). Minimises the convex dual
    ``log sum_k q_k exp(phi_k . lambda) + ridge / 2 |lambda|^2`` by damped Newton steps; the result
    ``w ~ q exp(phi lambda)`` has mean error ``-ridge * lambda`` (standardised units), 0 up to the
    ridge when the full set's means lie inside the convex hull of the kept features.

    Returns the weights (float64, sum 1) and ``{"error_before", "error_after"}``: the largest
    absolute standardised difference between the reduced and the full means with ``q`` and ``w``."""
    x = features.double().cpu()
    p = p.double().cpu()
    _check_rows(x, "match features", p.shape[0], "features")
    if ridge <= 0:
        raise ScenarioError(f"ridge must be > 0, got {ridge}")
    mean = p @ x
    sd = (p @ (x - mean) ** 2).sqrt()
    keep = sd > 1e-12 * x.abs().amax(0).clamp_min(1e-300)
    phi = (x[kept][:, keep] - mean[keep]) / sd[keep]  # [K, F]: the target is 0
    q = q.double().cpu() / q.double().sum()
    if phi.shape[1] == 0:  # nothing varies: every weighting keeps the means
        return q, {"error_before": 0.0, "error_after": 0.0}
    logq = q.clamp_min(1e-300).log()
    lam = torch.zeros(phi.shape[1], dtype=torch.float64)

    def dual(lam):
        return torch.logsumexp(logq + phi @ lam, 0) + 0.5 * ridge * lam @ lam

    f = dual(lam)
    # Newton on a smooth convex function of F variables: a few dozen steps at most
    for _ in range(max_iter):
        w = torch.softmax(logq + phi @ lam, 0)
        m = phi.T @ w
        g = m + ridge * lam
        if float(g.abs().max()) < 1e-12:
            break
        hess = (phi * w[:, None]).T @ phi - torch.outer(m, m) + ridge * torch.eye(phi.shape[1], dtype=torch.float64)
        step = torch.linalg.solve(hess, g)
        t = 1.0
        while t > 1e-10:  # backtracking (Armijo) keeps every step a descent step
            new = lam - t * step
            f_new = dual(new)
            if f_new <= f - 1e-4 * t * (g @ step):
                break
            t *= 0.5
        if t <= 1e-10:
            break
        lam, f = new, f_new
    w = torch.softmax(logq + phi @ lam, 0)
    return w, {"error_before": float((phi.T @ q).abs().max()), "error_after": float((phi.T @ w).abs().max())}


@dataclass(frozen=True)
class Reduction:
    """The result of a reduction: ``indices`` ``[K]`` positions of the kept scenarios in the full
    set, ``weights`` ``[K]`` (sum 1), ``assignment`` ``[S]`` (position in ``indices`` each original
    scenario was merged into), ``transport`` and ``energy`` distances to the full set (with the
    final weights). With ``match=``: ``transport_weights`` ``[K]``, the weights before matching, and
    ``match_error`` ``{"error_before", "error_after"}`` (see :func:`match_weights`)."""

    indices: torch.Tensor
    weights: torch.Tensor
    assignment: torch.Tensor
    transport: float
    energy: float
    method: str
    transport_weights: torch.Tensor | None = None
    match_error: dict | None = None

    def apply(self, scenarios: ScenarioSet) -> ScenarioSet:
        """The reduced ScenarioSet ``[N, K, H]``."""
        if scenarios.num_scenarios != self.assignment.shape[0]:
            raise ScenarioError(f"this reduction is for {self.assignment.shape[0]} scenarios, the set has "
                                f"{scenarios.num_scenarios}")
        dev = scenarios.values.device  # weights beside the values: weighted means and quantiles mix them
        return scenarios.replace(values=scenarios.values[:, self.indices.to(dev)],
                                 weights=self.weights.to(dev), method=f"{scenarios.method}+{self.method}")


def _forward(dist: torch.Tensor, p: torch.Tensor, k: int, progress: bool) -> torch.Tensor:
    S = dist.shape[0]
    selected = torch.zeros(S, dtype=torch.bool)
    mind = torch.full((S,), float("inf"), dtype=torch.float64)
    order = []
    # K greedy steps, each one vectorised over all candidates (O(S^2))
    for _ in tqdm(range(k), disable=not progress, desc="forward selection", leave=False):
        cost = (p[:, None] * torch.minimum(dist, mind[:, None])).sum(0)
        cost[selected] = float("inf")
        u = int(cost.argmin())
        order.append(u)
        selected[u] = True
        mind = torch.minimum(mind, dist[:, u])
    return torch.tensor(order, dtype=torch.long)


def _assign(dist: torch.Tensor, p: torch.Tensor, kept: torch.Tensor):
    d = dist[:, kept]
    assignment = d.argmin(1)
    assignment[kept] = torch.arange(kept.shape[0])  # a kept scenario keeps its own mass (ties at 0)
    q = torch.zeros(kept.shape[0], dtype=torch.float64).index_add_(0, assignment, p)
    transport = float((p * d.gather(1, assignment[:, None]).squeeze(1)).sum())
    return assignment, q, transport


def _kmedoids(dist: torch.Tensor, p: torch.Tensor, kept: torch.Tensor, max_iter: int) -> torch.Tensor:
    kept = kept.clone()
    for _ in range(max_iter):  # alternating k-medoids converges in a few iterations
        assignment, _, _ = _assign(dist, p, kept)
        # medoid of cluster j: the member m minimising sum_{i in j} p_i d(i, m)
        member = torch.nn.functional.one_hot(assignment, kept.shape[0]).double() * p[:, None]  # [S, K]
        within = dist.T @ member  # [S (candidate), K]: sum_i p_i d(i, m) over cluster j's members i
        same = torch.nn.functional.one_hot(assignment, kept.shape[0]).bool()
        within = torch.where(same, within, torch.full_like(within, float("inf")))
        new = within.argmin(0)
        if torch.equal(new, kept):
            break
        kept = new
    return kept


def reduce_scenarios(scenarios: ScenarioSet, k: int, method: str = "forward", features: torch.Tensor | None = None,
                     max_iter: int = 50, progress: bool = False, match: torch.Tensor | None = None,
                     match_ridge: float = 1e-6) -> tuple[ScenarioSet, Reduction]:
    """Reduce ``scenarios`` (``[N, S, H]``, weights ``p``) to ``k`` weighted scenarios (fewer when
    the set holds fewer than ``k`` distinct scenarios).

    ``features`` ``[S, D]`` are the vectors distances are measured on; by default every series and
    step of each scenario (``values`` flattened, in the target's units, so large series weigh
    most, as they do in a simulator's total cost). Pass e.g. hierarchy aggregates or scaled values
    to measure closeness elsewhere.

    ``match`` ``[S, F]``: features whose weighted means the reduced set keeps (e.g.
    :func:`~forecasting.scenarios.simulation.newsvendor_features`: demand, and its shortfall and
    leftover against a base-stock policy's levels; F well below k); after the selection, the weights are re-optimised by :func:`match_weights` (ridge
    ``match_ridge``), and the transport distance is then the optimal transport's (a linear program).
    Non-finite ``features`` or ``match`` values are errors that name the scenarios holding them.
    Returns the reduced ScenarioSet and the :class:`Reduction`."""
    S = scenarios.num_scenarios
    if not 1 <= k <= S:
        raise ScenarioError(f"k must be between 1 and the number of scenarios ({S}), got {k}")
    if method not in ("forward", "kmedoids"):
        raise ScenarioError(f"method must be 'forward' or 'kmedoids', got {method!r}")
    if features is None:
        features = scenarios.values.permute(1, 0, 2).reshape(S, -1)  # finite: a ScenarioSet checks
    else:
        _check_rows(features, "features", S, "dims")  # before merging duplicates, in the set's positions
    if match is not None:
        _check_rows(match, "match features", S, "features")  # before the selection, not after it
    features = features.cpu()
    p_all = scenarios.weights.cpu().double()
    # exact duplicates are merged first (their weights added): a set of copies collapses to its
    # distinct scenarios, and k larger than their number keeps each once
    uniq, inverse = torch.unique(features, dim=0, return_inverse=True)
    U = uniq.shape[0]
    p = torch.zeros(U, dtype=torch.float64).index_add_(0, inverse, p_all)
    first = torch.full((U,), S, dtype=torch.long).scatter_reduce_(0, inverse, torch.arange(S), reduce="amin")
    dist = scenario_distances(uniq, progress)
    kept = _forward(dist, p, min(k, U), progress)
    if method == "kmedoids":
        kept = _kmedoids(dist, p, kept, max_iter)
    assignment, q, transport = _assign(dist, p, kept)
    if match is None:
        red = Reduction(first[kept], q, assignment[inverse], transport, energy_distance(dist, p, kept, q), method)
        return red.apply(scenarios), red
    w, err = match_weights(match, p_all, first[kept], q, match_ridge)
    red = Reduction(first[kept], w, assignment[inverse], transport_distance(dist[:, kept], p, w),
                    energy_distance(dist, p, kept, w), f"{method}+match", q, err)
    return red.apply(scenarios), red
