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
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .core import ScenarioError, ScenarioSet

__all__ = ["Reduction", "energy_distance", "reduce_scenarios", "scenario_distances"]

#: feature columns per block when accumulating the Gram matrix (bounds the float64 copies)
BLOCK = 1 << 14


def scenario_distances(features: torch.Tensor, progress: bool = False) -> torch.Tensor:
    """``[S, D]`` scenario vectors -> ``[S, S]`` Euclidean distances (float64).

    The Gram matrix of the centred vectors is accumulated over blocks of D in float64, so memory is
    O(S^2 + S * BLOCK) and identical scenarios come out at distance 0 up to rounding."""
    if features.ndim != 2:
        raise ScenarioError(f"features must be [scenarios, dims], got shape {tuple(features.shape)}")
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


@dataclass(frozen=True)
class Reduction:
    """The result of a reduction: ``indices`` ``[K]`` positions of the kept scenarios in the full
    set, ``weights`` ``[K]`` (sum 1), ``assignment`` ``[S]`` (position in ``indices`` each original
    scenario was merged into), ``transport`` and ``energy`` distances to the full set."""

    indices: torch.Tensor
    weights: torch.Tensor
    assignment: torch.Tensor
    transport: float
    energy: float
    method: str

    def apply(self, scenarios: ScenarioSet) -> ScenarioSet:
        """The reduced ScenarioSet ``[N, K, H]``."""
        if scenarios.num_scenarios != self.assignment.shape[0]:
            raise ScenarioError(f"this reduction is for {self.assignment.shape[0]} scenarios, the set has "
                                f"{scenarios.num_scenarios}")
        return scenarios.replace(values=scenarios.values[:, self.indices.to(scenarios.values.device)],
                                 weights=self.weights, method=f"{scenarios.method}+{self.method}")


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
                     max_iter: int = 50, progress: bool = False) -> tuple[ScenarioSet, Reduction]:
    """Reduce ``scenarios`` (``[N, S, H]``, weights ``p``) to ``k`` weighted scenarios (fewer when
    the set holds fewer than ``k`` distinct scenarios).

    ``features`` ``[S, D]`` are the vectors distances are measured on; by default every series and
    step of each scenario (``values`` flattened, in the target's units, so large series weigh
    most, as they do in a simulator's total cost). Pass e.g. hierarchy aggregates or scaled values
    to measure closeness elsewhere. Returns the reduced ScenarioSet and the :class:`Reduction`."""
    S = scenarios.num_scenarios
    if not 1 <= k <= S:
        raise ScenarioError(f"k must be between 1 and the number of scenarios ({S}), got {k}")
    if method not in ("forward", "kmedoids"):
        raise ScenarioError(f"method must be 'forward' or 'kmedoids', got {method!r}")
    if features is None:
        features = scenarios.values.permute(1, 0, 2).reshape(S, -1)
    elif features.ndim != 2 or features.shape[0] != S:
        raise ScenarioError(f"features must be [scenarios, dims] = [{S}, D], got shape {tuple(features.shape)}")
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
    red = Reduction(first[kept], q, assignment[inverse], transport, energy_distance(dist, p, kept, q), method)
    return red.apply(scenarios), red
