import math

import numpy as np
import properscoring as ps
import pytest
import torch
from scipy import stats

from forecasting.evaluation import metrics as M


def test_crps_matches_properscoring_on_a_slice():
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(7, 50, 5, generator=g, dtype=torch.float64) * 3 + 1
    y = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    ours = M.crps_ensemble(samples, y)
    ref = ps.crps_ensemble(y.numpy(), samples.permute(0, 2, 1).numpy())  # members on the last axis
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-6)


def test_crps_of_many_normal_samples_approaches_the_closed_form():
    # CRPS(N(0, 1), y) = y (2 Phi(y) - 1) + 2 phi(y) - 1/sqrt(pi)
    y = torch.tensor([[0.0, 1.0, -2.0]], dtype=torch.float64)
    q = torch.linspace(0.5 / 20000, 1 - 0.5 / 20000, 20000, dtype=torch.float64)
    samples = torch.distributions.Normal(0.0, 1.0).icdf(q)[None, :, None].expand(1, -1, 3)
    yn = y.numpy()
    exact = yn * (2 * stats.norm.cdf(yn) - 1) + 2 * stats.norm.pdf(yn) - 1 / math.sqrt(math.pi)
    np.testing.assert_allclose(M.crps_ensemble(samples, y).numpy(), exact, atol=2e-4)


def test_crps_of_a_point_forecast_is_absolute_error_and_mask_drops_points():
    samples = torch.full((2, 4, 3), 2.0)
    y = torch.tensor([[1.0, 2.0, 5.0], [0.0, 0.0, 0.0]])
    assert M.crps_ensemble(samples, y).tolist() == [[1.0, 0.0, 3.0], [2.0, 2.0, 2.0]]
    mask = torch.tensor([[True, True, True], [False, False, False]])
    assert M.crps(samples, y, mask).item() == pytest.approx(4 / 3)
    assert M.scaled_crps(samples, y, mask).item() == pytest.approx(4 / 8)


def test_wql_of_exact_quantiles_equals_the_expected_pinball():
    # truth drawn from U(0, 1): exact quantiles are the levels themselves; E pinball_q = q(1-q)/2
    g = torch.Generator().manual_seed(1)
    y = torch.rand(1, 200000, generator=g, dtype=torch.float64)
    levels = (0.1, 0.5, 0.9)
    qp = torch.tensor(levels, dtype=torch.float64)[None, :, None].expand(1, 3, y.shape[1])
    expected = np.mean([2 * q * (1 - q) / 2 / 0.5 for q in levels])  # 2 * E pinball / E|y|
    assert M.wql(qp, y, levels).item() == pytest.approx(expected, rel=5e-3)


def test_wql_by_hand_and_masking():
    y = torch.tensor([[10.0, 20.0], [5.0, float("nan")]])
    qp = torch.tensor([[[8.0, 25.0]], [[5.0, 0.0]]])  # one level, 0.5
    # pinball 0.5: |10-8|/2 + |20-25|/2 + 0 = 3.5; sum|y| = 35 -> 2*3.5/35
    assert M.wql(qp, y, (0.5,)).item() == pytest.approx(0.2)
    mask = torch.tensor([[True, False], [True, True]])
    assert M.wql(qp, y, (0.5,), mask).item() == pytest.approx(2 * 1.0 / 15)


def test_mase_pools_scaled_errors_like_fev():
    hist = torch.tensor([[1.0, 2.0, 4.0, 0.0], [3.0, 3.0, 3.0, 3.0], [1.0, 0.0, 0.0, 0.0]])
    ok = torch.tensor([[True, True, True, False], [True, True, True, True], [True, False, False, False]])
    scale = M.seasonal_scale(hist, ok, 1)
    assert scale[0].item() == pytest.approx(1.5) and scale[1].item() == 0.0 and math.isnan(scale[2].item())
    y = torch.tensor([[5.0, 7.0], [3.0, 3.0], [2.0, 2.0]])
    point = torch.tensor([[4.0, 4.0], [3.0, 3.0], [1.0, 1.0]])
    # series 0: (1/1.5 + 3/1.5); series 1: scale 0 and zero error -> dropped; series 2: no scale -> 1
    assert M.mase(point, y, scale).item() == pytest.approx((1 / 1.5 + 3 / 1.5 + 1 + 1) / 4)


def test_coverage_and_interval_score():
    lo, hi = torch.zeros(1, 4), torch.ones(1, 4) * 2
    y = torch.tensor([[1.0, 3.0, -1.0, 2.0]])
    assert M.coverage(lo, hi, y).item() == 0.5
    # widths 2 each; penalties 2/0.2*(1) for y=3 and y=-1
    assert M.interval_score(lo, hi, y, 0.2).item() == pytest.approx((8 + 10 + 10) / 4)


def test_pit_coverage_is_calibrated_for_counts_where_interval_coverage_is_not():
    """Intermittent counts drawn from the forecast's own distribution: the randomised-PIT coverage of
    the 80 % interval is 0.8 (within Monte Carlo error), the interval coverage far above it."""
    g = torch.Generator().manual_seed(3)
    rate = torch.full((400, 12), 0.4, dtype=torch.float64)  # P(0) = 0.67: the 10 % quantile is 0
    samples = torch.poisson(rate[:, None, :].expand(400, 2000, 12).contiguous(), generator=g)
    y = torch.poisson(rate, generator=g)
    q = torch.quantile(samples, torch.tensor([0.1, 0.9], dtype=torch.float64), dim=1)
    assert M.coverage(q[0], q[1], y).item() > 0.9
    assert M.pit_coverage(samples, y, 0.8, chunk=64).item() == pytest.approx(0.8, abs=0.02)
    # continuous forecasts: the same as interval coverage up to ties and sampling
    x = torch.randn(200, 500, 6, generator=g, dtype=torch.float64)
    yc = torch.randn(200, 6, generator=g, dtype=torch.float64)
    qc = torch.quantile(x, torch.tensor([0.1, 0.9], dtype=torch.float64), dim=1)
    assert M.pit_coverage(x, yc).item() == pytest.approx(M.coverage(qc[0], qc[1], yc).item(), abs=0.01)
    # masked points do not count; bad level errors
    mask = torch.zeros(200, 6, dtype=torch.bool)
    mask[:10] = True
    assert 0 <= M.pit_coverage(x, yc, 0.8, mask).item() <= 1
    with pytest.raises(ValueError, match="level"):
        M.pit_coverage(x, yc, 1.5)


def test_energy_score_matches_scoringrules_style_definition_and_crps_in_1d():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 300, 1, generator=g, dtype=torch.float64)
    y = torch.tensor([[0.3]], dtype=torch.float64)
    # in one dimension the energy score is the CRPS
    es = M.energy_score(x, y, chunk=64)
    assert es.item() == pytest.approx(M.crps_ensemble(x, y).item(), abs=1e-9)
    x2 = torch.randn(2, 40, 3, generator=g, dtype=torch.float64)
    y2 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    brute = [(x2[b] - y2[b]).norm(dim=1).mean() - 0.5 * torch.cdist(x2[b], x2[b]).mean() for b in range(2)]
    np.testing.assert_allclose(M.energy_score(x2, y2, chunk=7).numpy(), torch.stack(brute).numpy(), atol=1e-12)


def test_energy_score_in_float32_is_exact_at_large_levels_and_shift_invariant():
    # 100 samples (cdist's matmul shortcut starts above 25) at level 1e4 with spread 1, float32
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 100, 1400, generator=g)
    x, y = 1e4 + noise, torch.full((1, 1400), 1e4)
    xd = noise.double()
    exact = xd.norm(dim=-1).mean() - torch.cdist(xd, xd, compute_mode="donot_use_mm_for_euclid_dist").mean() / 2
    assert M.energy_score(x, y).item() == pytest.approx(exact.item(), rel=1e-5)
    assert M.energy_score(noise, torch.zeros(1, 1400)).item() == pytest.approx(exact.item(), rel=1e-5)


def test_wspl_is_zero_for_perfect_quantiles_and_weights_levels():
    y = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    q = y[:, None, :].expand(2, 9, 2)
    assert M.wspl(q, y, torch.ones(2), torch.tensor([0.5, 0.5])).item() == 0.0
    q1 = torch.zeros(2, 1, 2)
    # level 0.5, pinball = y/2; mean over steps: 0.75 and 1.75; scales 1 and 2; weights 1 each (two levels)
    got = M.wspl(q1, y, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]), levels=(0.5,))
    assert got.item() == pytest.approx((0.75 + 1.75 / 2) / 2)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="quantiles shape"):
        M.wql(torch.zeros(2, 9, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mask shape"):
        M.crps(torch.zeros(2, 5, 3), torch.zeros(2, 3), torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"samples shape \(5, 4\) does not match truth shape \(5, 4\): samples are "
                                         r"\[\.\.\., S, H\]"):
        M.crps(torch.rand(5, 4), torch.rand(5, 4))
    with pytest.raises(ValueError, match=r"scale shape \(3,\) must be \[N\] = \(2,\)"):
        M.mase(torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(3))


def test_undefined_denominators_and_bad_forecasts_give_nan_not_a_number_that_looks_fine():
    y = torch.zeros(2, 3)
    assert math.isnan(M.wql(torch.zeros(2, 1, 3), y, (0.5,)).item())
    assert math.isnan(M.scaled_crps(torch.zeros(2, 4, 3), y).item())
    point = torch.tensor([[1.0, float("nan"), 1.0], [1.0, 1.0, 1.0]])
    assert math.isnan(M.mase(point, torch.ones(2, 3), torch.ones(2)).item())


def test_means_over_no_observed_point_are_nan_not_a_perfect_zero():
    samples, y = torch.rand(2, 5, 3), torch.full((2, 3), float("nan"))
    lo, hi = torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.isnan(M.crps(samples, y)) and torch.isnan(M.coverage(lo, hi, y))
    assert torch.isnan(M.interval_score(lo, hi, y, 0.2)) and torch.isnan(M.pit_coverage(samples, y))
    assert torch.isnan(M.mase(lo, torch.ones(2, 3), torch.zeros(2)))  # every scale 0: no point counts
    assert float(M.coverage(lo, hi, torch.full((2, 3), 0.5))) == 1.0


def test_interval_and_quantile_metrics_check_shapes():
    y = torch.rand(3, 4)
    with pytest.raises(ValueError, match="lower bounds shape"):
        M.coverage(torch.zeros(2, 4), torch.ones(2, 4), y)
    with pytest.raises(ValueError, match="upper bounds shape"):
        M.interval_score(torch.zeros(3, 4), torch.ones(3, 5), y, 0.2)
    with pytest.raises(ValueError, match="Q = 2 levels"):
        M.quantile_loss(torch.rand(3, 3, 4), y, [0.1, 0.9])
