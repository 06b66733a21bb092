import pandas as pd
import pytest
import torch

from forecasting.scenarios import (
    ScenarioError,
    ScenarioSet,
    reduce_scenarios,
    scenario_distances,
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
