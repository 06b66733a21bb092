import pandas as pd
import pytest
import torch

from forecasting.scenarios import (
    ScenarioError,
    ScenarioSet,
    match_weights,
    reduce_scenarios,
    scenario_distances,
    transport_distance,
)


def scen(values, weights=None):
    n, s, _h = values.shape
    w = torch.full((s,), 1 / s, dtype=torch.float64) if weights is None else weights
    return ScenarioSet(values, w, pd.Index([f"x{i}" for i in range(n)]),
                       pd.DatetimeIndex(["2021-01-01"] * n), "D")


@pytest.mark.parametrize("method", ["forward", "kmedoids"])
def test_copies_of_three_scenarios_collapse_to_them(method):
    base = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0))
    pick = torch.tensor([0] * 10 + [1] * 6 + [2] * 4)
    sc = scen(base[:, pick])
    for k in (3, 8):
        small, red = reduce_scenarios(sc, k, method=method)
        assert small.num_scenarios == 3 and red.transport == 0.0 and red.energy == pytest.approx(0.0, abs=1e-9)
        got = {int(pick[i]): float(w) for i, w in zip(red.indices, red.weights)}
        assert got == pytest.approx({0: 0.5, 1: 0.3, 2: 0.2})
        assert float(small.weights.sum()) == pytest.approx(1.0)
        assert torch.equal(small.values[:, red.assignment[red.indices]], small.values)


def test_forward_selection_and_kmedoids_known_results_on_a_line():
    # 1-D scenarios at 0, 1, 2, 10 and 11 with equal weight: the best single point is the median 2
    v = torch.tensor([0.0, 1.0, 2.0, 10.0, 11.0]).view(1, 5, 1)
    _, red = reduce_scenarios(scen(v), 1)
    assert red.indices.tolist() == [2] and red.transport == pytest.approx((2 + 1 + 8 + 9) / 5)
    # greedy: keeps 2, then adds 10 (transport 0.8); k-medoids moves 2 to the cluster's medoid 1 (0.6)
    _, red = reduce_scenarios(scen(v), 2)
    assert red.indices.tolist() == [2, 3] and red.transport == pytest.approx(4 / 5)
    assert red.weights.tolist() == pytest.approx([0.6, 0.4])
    _small, red = reduce_scenarios(scen(v), 2, method="kmedoids")
    assert red.indices.tolist() == [1, 3] and red.transport == pytest.approx(3 / 5)
    assert red.energy < reduce_scenarios(scen(v), 2)[1].energy


def test_weights_of_a_weighted_set_are_respected():
    v = torch.tensor([0.0, 1.0, 5.0]).view(1, 3, 1)
    sc = scen(v, torch.tensor([0.1, 0.1, 0.8], dtype=torch.float64))
    small, red = reduce_scenarios(sc, 1)
    assert small.values.view(-1).tolist() == [5.0] and red.weights.tolist() == [1.0]
    small, red = reduce_scenarios(sc, 2, method="kmedoids")
    assert float(red.weights.sum()) == pytest.approx(1.0)


def test_distances_and_errors():
    x = torch.randn(6, 40, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(scenario_distances(x), torch.cdist(x.double(), x.double()), atol=1e-9)
    sc = scen(torch.zeros(2, 4, 3))
    with pytest.raises(ScenarioError, match="between 1 and"):
        reduce_scenarios(sc, 5)
    with pytest.raises(ScenarioError, match="method"):
        reduce_scenarios(sc, 2, method="kmeans")
    with pytest.raises(ScenarioError, match="features"):
        reduce_scenarios(sc, 2, features=torch.zeros(3, 2))


def test_matched_weights_are_a_distribution_and_keep_feature_means():
    g = torch.Generator().manual_seed(0)
    sc = scen(torch.randn(3, 400, 4, generator=g))
    feats = torch.stack([sc.values[0].sum(1), sc.values[1:].sum((0, 2)), sc.values[2, :, 0].clamp_min(0)], 1)  # [S, 3]
    small, red = reduce_scenarios(sc, 30, match=feats)
    assert bool((red.weights > 0).all()) and float(red.weights.sum()) == pytest.approx(1.0, abs=1e-12)
    full_mean, reduced_mean = feats.double().mean(0), red.weights @ feats[red.indices].double()
    assert torch.allclose(reduced_mean, full_mean, atol=1e-4 * float(feats.std(0).max()))
    assert red.match_error["error_after"] < 1e-4 < red.match_error["error_before"]
    assert red.method == "forward+match" and torch.equal(small.weights, red.weights)
    # the selection is the same as without matching; only the weights moved
    _, plain = reduce_scenarios(sc, 30)
    assert torch.equal(plain.indices, red.indices) and torch.equal(plain.weights, red.transport_weights)
    assert red.transport >= plain.transport - 1e-9  # the transport weights are the optimal ones for that plan


def test_match_weights_exact_when_feasible_and_bounded_when_not():
    # 1-D features 0, 1, 2, 3 with prior weights; the full mean 1.5 lies inside the hull of {0, 3}
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    p = torch.full((4,), 0.25, dtype=torch.float64)
    w, err = match_weights(x, p, torch.tensor([0, 3]), torch.tensor([0.9, 0.1], dtype=torch.float64), ridge=1e-10)
    assert w.tolist() == pytest.approx([0.5, 0.5], abs=1e-8) and err["error_after"] < 1e-8
    # kept {0, 1}: the mean 1.5 is outside their hull; the weights stay finite, positive, sum to 1
    w, err = match_weights(x, p, torch.tensor([0, 1]), torch.tensor([0.5, 0.5], dtype=torch.float64), ridge=1e-3)
    assert bool((w > 0).all()) and float(w.sum()) == pytest.approx(1.0) and float(w[1]) > 0.99
    assert err["error_after"] < err["error_before"]
    # a constant feature is ignored; matching already-matched means leaves the weights alone
    w, _ = match_weights(torch.ones(4, 1), p, torch.tensor([0, 1]), torch.tensor([0.3, 0.7], dtype=torch.float64))
    assert w.tolist() == pytest.approx([0.3, 0.7])


def test_matching_copies_collapses_and_keeps_their_mass():
    base = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(2))
    pick = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    sc = scen(base[:, pick])
    feats = sc.values.sum((0, 2))[:, None]
    small, red = reduce_scenarios(sc, 3, match=feats)
    assert small.num_scenarios == 3
    assert {int(pick[i]): float(w) for i, w in zip(red.indices, red.weights)} == pytest.approx({0: 0.5, 1: 0.3, 2: 0.2})
    assert red.transport == pytest.approx(0.0, abs=1e-9)


def test_transport_distance_is_the_nearest_assignment_for_its_own_weights():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p = torch.full((40,), 1 / 40, dtype=torch.float64)
    sc = scen(x.T[:, :, None].float(), p)
    _, red = reduce_scenarios(sc, 5)
    d = torch.cdist(x, x[red.indices])
    assert transport_distance(d, p, red.weights) == pytest.approx(red.transport, rel=1e-6)


def test_non_finite_features_name_the_scenarios():
    g = torch.Generator().manual_seed(0)
    sc = scen(torch.randn(3, 10, 4, generator=g))
    feats = torch.randn(10, 3, generator=g)
    feats[[3, 7], 1] = float("nan")
    with pytest.raises(ScenarioError, match=r"features hold non-finite values in scenarios \[3, 7\] \(2 of 10"):
        reduce_scenarios(sc, 4, features=feats)
    with pytest.raises(ScenarioError, match=r"features hold non-finite values in scenarios \[0, 1, .*, 9, \.\.\.\] \(12 of 12"):
        scenario_distances(torch.full((12, 2), float("inf")))
    match = torch.randn(10, 2, generator=g)
    match[2, 0] = float("inf")
    with pytest.raises(ScenarioError, match=r"match features hold non-finite values in scenarios \[2\] \(1 of 10"):
        reduce_scenarios(sc, 4, match=match)
    with pytest.raises(ScenarioError, match=r"match features hold non-finite values in scenarios \[2\]"):
        match_weights(match, sc.weights, torch.tensor([0, 1]), torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_transport_distance_survives_tiny_weights_that_fool_the_lp_presolve():
    """A 50 x 50 transport problem from walmart's matched reduction (distances rounded): with the
    redundant mass constraint kept, HiGHS' presolve called it infeasible (matched weights down to
    4e-9)."""
    from pathlib import Path

    import numpy as np

    from forecasting.scenarios.reduction import transport_distance
    data = np.load(Path(__file__).parent / "data" / "transport_presolve_infeasible.npz")
    dist = torch.tensor(data["dist"], dtype=torch.float64)
    q = torch.tensor(data["q"], dtype=torch.float64)
    p = torch.full((dist.shape[0],), 1 / dist.shape[0], dtype=torch.float64)
    assert q.min() < 1e-8 and abs(float(q.sum()) - 1) < 1e-6
    cost = transport_distance(dist, p, q)
    # bounds: shipping each full scenario to its nearest kept one ignores q; the product plan is feasible
    assert float((p[:, None] * dist).min(1).values.sum()) <= cost + 1e-6
    assert cost <= float((p[:, None] * q[None, :] * dist).sum()) + 1e-6
