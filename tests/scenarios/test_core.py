import numpy as np
import pandas as pd
import pytest
import torch

from forecasting import Forecast
from forecasting.scenarios import ScenarioError, ScenarioSet, weighted_quantile

IDS, START = pd.Index(["a", "b"]), pd.DatetimeIndex(["2021-01-01", "2021-01-01"])


def test_weights_must_sum_to_one_and_match_shapes():
    v = torch.zeros(2, 4, 3)
    with pytest.raises(ScenarioError, match="sum to 1"):
        ScenarioSet(v, torch.full((4,), 0.3), IDS, START, "D")
    with pytest.raises(ScenarioError, match=r"weights must be \[scenarios\] = \[4\]"):
        ScenarioSet(v, torch.full((3,), 1 / 3), IDS, START, "D")
    with pytest.raises(ScenarioError, match="non-negative"):
        ScenarioSet(v, torch.tensor([1.5, -0.5, 0, 0]), IDS, START, "D")
    with pytest.raises(ScenarioError, match="values must be"):
        ScenarioSet(torch.zeros(2, 4), torch.full((4,), 0.25), IDS, START, "D")
    with pytest.raises(ScenarioError, match="hold 2 series"):
        ScenarioSet(v, torch.full((4,), 0.25), IDS[:1], START, "D")
    bad = v.clone()
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ScenarioError, match=r"\['b'\]"):
        ScenarioSet(bad, torch.full((4,), 0.25), IDS, START, "D")


def test_select_renormalises_and_quantiles_use_weights():
    v = torch.arange(8.0).view(2, 4, 1)
    sc = ScenarioSet(v, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), IDS, START, "D")
    sub = sc.select([2, 3])
    assert sub.weights.tolist() == pytest.approx([3 / 7, 4 / 7])
    assert sc.mean()[0, 0].item() == pytest.approx(0 * 0.1 + 1 * 0.2 + 2 * 0.3 + 3 * 0.4)
    # inverse weighted CDF: cumulative 0.1, 0.3, 0.6, 1.0
    q = sc.quantile([0.05, 0.3, 0.31, 1.0])
    assert q[0, :, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(ScenarioError, match="unequal weights"):
        sc.to_forecast()


def test_equal_weights_agree_with_the_forecast():
    f = Forecast(torch.randn(2, 50, 3), IDS, START, "D")
    sc = ScenarioSet.from_forecast(f)
    assert sc.uniform and torch.allclose(sc.quantile([0.1, 0.9]), f.quantile([0.1, 0.9]), atol=1e-6)
    assert torch.equal(sc.to_forecast().samples, f.samples)
    # weighted_quantile with equal weights is numpy's inverted_cdf rule
    w = torch.full((50,), 1 / 50, dtype=torch.float64)
    ref = np.quantile(f.samples.numpy(), [0.1, 0.5, 0.9], axis=1, method="inverted_cdf").transpose(1, 0, 2)
    np.testing.assert_allclose(weighted_quantile(f.samples, w, [0.1, 0.5, 0.9]).numpy(), ref)
