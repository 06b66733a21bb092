import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_forecast, make_panel

from forecasting.models.deepar import DeepAR
from forecasting.scenarios import (
    CovariateOverride,
    Hierarchy,
    ScenarioError,
    ScenarioSet,
    apply_shock,
    override_covariates,
    reforecast,
    stress_scenarios,
)


def scenarios(panel, s=40):
    return ScenarioSet.from_forecast(make_forecast(panel, samples=s))


def test_shock_applies_only_to_the_chosen_group_and_range(panel_truth):
    panel, _ = panel_truth
    sc = scenarios(panel)
    ts = sc.start[0] + pd.tseries.frequencies.to_offset("W-FRI") * np.arange(6)
    out = apply_shock(sc, 0.0, series={"store": "s1"}, start=ts[2], end=ts[3], attributes=panel)
    hit = np.array([s == "s1" for s in Hierarchy.from_panel(panel, ["store"]).labels("store")])
    assert torch.equal(out.values[hit][:, :, 2:4], torch.zeros(hit.sum(), 40, 2))
    assert torch.equal(out.values[hit][:, :, [0, 1, 4, 5]], sc.values[hit][:, :, [0, 1, 4, 5]])
    assert torch.equal(out.values[~hit], sc.values[~hit])
    surge = apply_shock(sc, 1.5, series=["x0", "x5"], start=4)  # step positions 4..5
    assert torch.allclose(surge.values[[0, 5], :, 4:], 1.5 * sc.values[[0, 5], :, 4:])
    assert torch.equal(surge.values[[0, 5], :, :4], sc.values[[0, 5], :, :4])
    assert torch.equal(surge.values[1:5], sc.values[1:5])


def test_shock_errors(panel_truth):
    panel, _ = panel_truth
    sc = scenarios(panel)
    with pytest.raises(ScenarioError, match="factor"):
        apply_shock(sc, -1.0)
    with pytest.raises(ScenarioError, match="store in"):
        apply_shock(sc, 0.5, series={"store": "s9"}, attributes=panel)
    with pytest.raises(ScenarioError, match="needs attributes"):
        apply_shock(sc, 0.5, series={"store": "s1"})
    with pytest.raises(ScenarioError, match="unknown series"):
        apply_shock(sc, 0.5, series=["nope"])
    with pytest.raises(ScenarioError, match="selects no"):
        apply_shock(sc, 0.5, start="2030-01-01")
    with pytest.raises(ScenarioError, match="step range"):
        apply_shock(sc, 0.5, start=3, end=9)


def test_stress_keeps_the_worst_tail_of_total_demand(panel_truth):
    panel, _ = panel_truth
    sc = scenarios(panel, s=100)
    worst, total = stress_scenarios(sc, tail=0.05)
    assert worst.num_scenarios == 5 and float(worst.weights.sum()) == pytest.approx(1.0)
    top = total.argsort(descending=True)[:5]
    assert torch.equal(worst.values, sc.values[:, top])
    low, _ = stress_scenarios(sc, tail=0.1, upper=False, series={"region": "r1"}, attributes=panel)
    assert low.num_scenarios == 10
    with pytest.raises(ScenarioError, match="tail"):
        stress_scenarios(sc, tail=0.0)


def test_override_changes_only_the_chosen_block(panel_truth):
    panel, _ = panel_truth
    when = panel.known_index[-6:]
    ov = [CovariateOverride("promo", value=1.0, series={"store": "s0"}, start=when[1], end=when[3]),
          CovariateOverride("promo", multiplier=2.0, series=["x1"])]
    new = override_covariates(panel, ov)
    diff = (new.known != panel.known)[..., 0]
    s0 = np.array([i % 3 == 0 for i in range(12)])
    rows = diff.any(1).numpy()
    assert set(np.nonzero(rows)[0]) <= set(np.nonzero(s0)[0]) | {1}
    cols = np.nonzero(diff[s0].any(0).numpy())[0]
    assert set(cols) <= {len(panel.known_index) - 5, len(panel.known_index) - 4, len(panel.known_index) - 3}
    assert bool((new.known[s0][:, -5:-2, 0] == 1).all())
    assert torch.equal(new.known[1, :, 0], 2 * panel.known[1, :, 0])
    assert torch.equal(new.target, panel.target)
    with pytest.raises(ScenarioError, match="unknown covariate"):
        override_covariates(panel, [CovariateOverride("price", value=1.0)])
    with pytest.raises(ScenarioError, match="exactly one"):
        CovariateOverride("promo")
    with pytest.raises(ScenarioError, match="no covariate step"):
        override_covariates(panel, [CovariateOverride("promo", value=1.0, start="2035-01-01")])


def test_reforecast_with_a_promotion_through_deepar():
    panel, _ = make_panel(n=16, t=60, horizon=6, seed=1, common=0.0)
    # demand is about 20, plus 40 under promotion: DeepAR learns the effect from the history
    promo = panel.known[:, :60, 0]
    panel = dataclasses.replace(panel, target=panel.target - 30 + 40 * promo)
    model = DeepAR(hidden_size=16, num_layers=1, batch_size=32, batches_per_epoch=20, max_epochs=10, lr=3e-3,
                   validation=False, device="cpu", likelihood="normal").fit(panel, 6)
    future = panel.known_index[60]
    base = reforecast(model, panel, [CovariateOverride("promo", value=0.0, start=future)], num_samples=50, seed=0)
    promo_fc = reforecast(model, panel, [CovariateOverride("promo", value=1.0, start=future)], num_samples=50, seed=0)
    lift = float((promo_fc.mean() - base.mean()).mean())
    assert 20 < lift < 60, lift
    # only the chosen store's series change when only its promotion is switched on
    s0 = reforecast(model, panel, [CovariateOverride("promo", value=0.0, start=future),
                                   CovariateOverride("promo", value=1.0, series={"store": "s0"}, start=future)],
                    num_samples=50, seed=0)
    in_s0 = np.array([i % 3 == 0 for i in range(16)])
    assert torch.equal(s0.samples[~in_s0], base.samples[~in_s0])
    assert float((s0.mean()[in_s0] - base.mean()[in_s0]).mean()) > 20


class _Reads:
    """A fitted model that says which known covariates it reads (None: it cannot tell)."""

    def __init__(self, used):
        self.used, self.calls = used, 0

    def used_known_covariates(self):
        return self.used

    def predict(self, panel, num_samples=100, seed=None):
        self.calls += 1
        return make_forecast(panel, samples=num_samples, seed=0 if seed is None else seed)


class SeasonalNaive(_Reads):
    pass


class StateSpace(_Reads):
    pass


def test_reforecast_refuses_an_override_the_model_does_not_read(panel_truth):
    panel, _ = panel_truth
    promo = [CovariateOverride("promo", value=1.0)]
    with pytest.raises(ScenarioError, match="SeasonalNaive uses no known covariates; overriding 'promo' would change nothing"):
        reforecast(SeasonalNaive(frozenset()), panel, promo, num_samples=5)
    with pytest.raises(ScenarioError, match=r"StateSpace uses known covariates \['x'\]; overriding 'promo' would"):
        reforecast(StateSpace(frozenset({"x"})), panel, promo + [CovariateOverride("promo", multiplier=2.0)], 5)
    # an unknown column is still reported as unknown, whatever the model reads
    with pytest.raises(ScenarioError, match="unknown covariate 'price'"):
        reforecast(SeasonalNaive(frozenset()), panel, [CovariateOverride("price", value=1.0)], 5)
    reads = StateSpace(frozenset({"promo"}))
    assert reforecast(reads, panel, promo, num_samples=5).samples.shape == (12, 5, 6) and reads.calls == 1
    # a model that cannot tell (None), or has no such method, is trusted
    unsure = _Reads(None)
    reforecast(unsure, panel, promo, num_samples=5)
    assert unsure.calls == 1
    legacy = type("Legacy", (), {"predict": lambda self, panel, num_samples, seed: make_forecast(panel, num_samples)})()
    assert reforecast(legacy, panel, promo, num_samples=5).samples.shape == (12, 5, 6)


def test_shock_dates_on_zoned_series_are_wall_clock_times_in_their_zone():
    start = pd.DatetimeIndex([pd.Timestamp("2016-12-24 00:00", tz="Australia/Melbourne")])
    sc = ScenarioSet(torch.ones(1, 2, 48), torch.tensor([0.5, 0.5], dtype=torch.float64), pd.Index(["s"]), start, "h")
    hours = pd.date_range(start[0], periods=48, freq="h")
    out = apply_shock(sc, 0.0, start="2016-12-25 00:00", end="2016-12-25 23:00")
    hit = (out.values[0, 0] == 0).nonzero().squeeze(1)
    assert hours[int(hit[0])] == pd.Timestamp("2016-12-25 00:00", tz="Australia/Melbourne") and len(hit) == 24
    # an aware bound is converted: 13:00 UTC on the 24th is local midnight on the 25th (UTC+11)
    out = apply_shock(sc, 0.0, start=pd.Timestamp("2016-12-24 13:00", tz="UTC"))
    assert int((out.values[0, 0] == 0).sum()) == 24 and float(out.values[0, 0, 23]) == 1.0
    naive = sc.replace(start=pd.DatetimeIndex(["2016-12-24"]))
    with pytest.raises(ScenarioError, match="the dates are time-zone naive but the bound"):
        apply_shock(naive, 0.0, start=pd.Timestamp("2016-12-25", tz="UTC"))


def test_a_shock_of_a_set_that_holds_aggregates_is_refused(panel_truth):
    panel, _ = panel_truth
    sc = scenarios(panel)
    hier = Hierarchy.from_panel(panel, ["store"])
    coherent = hier.aggregate_scenarios(sc, include_bottom=True)
    for attributes in (panel, hier, None):
        series = {"store": "s1"} if attributes is not None else ["x1"]
        with pytest.raises(ScenarioError, match=r"the scenarios hold aggregates \(4 series: 'store=s0'.*shock the "
                                                r"bottom series' scenarios first, then aggregate them"):
            apply_shock(coherent, 0.0, series=series, attributes=attributes)
    # a series of its own that is named like an aggregate: refused by its name alone, accepted
    # when attributes say it is a series
    own = sc.replace(item_ids=pd.Index(["total", *sc.item_ids[1:]]))
    with pytest.raises(ScenarioError, match=r"1 series: 'total'\) \(told by their names: if these are series of their own, "
                                            r"pass attributes="):
        apply_shock(own, 0.0, series=["total"])
    frame = pd.DataFrame({"store": ["s0"] * len(own.item_ids)}, index=own.item_ids)
    assert float(apply_shock(own, 0.0, series=["total"], attributes=frame).values[0].abs().max()) == 0.0
    shocked = hier.aggregate_scenarios(apply_shock(sc, 0.0, series={"store": "s1"}, attributes=panel),
                                       include_bottom=True)
    ids = list(shocked.item_ids)
    assert float(shocked.values[ids.index("store=s1")].abs().max()) == 0.0


def test_unknown_attribute_values_are_shown_as_plain_numbers():
    from forecasting.scenarios import series_mask
    frame = pd.DataFrame({"Store": np.array([1, 2], dtype=np.int64)}, index=pd.Index(["a", "b"]))
    with pytest.raises(ScenarioError) as err:
        series_mask(pd.Index(["a", "b"]), {"Store": [np.int64(7)]}, frame)
    assert str(err.value) == "no series has Store in [7]; Store takes values [1, 2]"
