import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from forecasting import Panel, PanelError
from forecasting.evaluation import metrics as M
from forecasting.models import SeasonalNaive
from forecasting.models.deepar import DeepAR

FAST = dict(hidden_size=24, num_layers=1, batch_size=64, batches_per_epoch=20, device="cpu")


def nb_panel(n=40, t=72, season=12, seed=0, promo_effect=0.0, gaps=False):
    """Negative-binomial counts with a seasonal mean and an optional promotion covariate."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(3, 30, size=(n, 1))
    amp = rng.uniform(0.3, 0.8, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    steps = np.arange(t + 12)
    promo = (rng.random((n, t + 12)) < 0.2).astype(float)
    mean = level * np.exp(amp * np.sin(2 * np.pi * steps / season + phase)) * (1 + promo_effect * promo)
    y = rng.negative_binomial(5, 5 / (5 + mean)).astype(float)
    ts = pd.date_range("2015-01-01", periods=t + 12, freq="MS")
    df = pd.DataFrame({"item_id": np.repeat([f"s{i}" for i in range(n)], t + 12), "timestamp": np.tile(ts, n),
                       "target": y.reshape(-1), "promo": promo.reshape(-1),
                       "group": np.repeat([f"g{i % 4}" for i in range(n)], t + 12)})
    hist = df[df.timestamp < ts[t]].copy()
    if gaps:
        hist.loc[hist.sample(frac=0.1, random_state=seed).index, "target"] = np.nan
    future = df[df.timestamp >= ts[t]]
    panel = Panel.from_long(hist, freq="MS", known_covariates=["promo"], static_categorical=["group"],
                            future=future[["item_id", "timestamp", "promo"]])
    truth = torch.tensor(y[:, t:], dtype=torch.float32)
    return panel, truth, torch.tensor(promo[:, t:], dtype=torch.float32)


@pytest.fixture(scope="module")
def fitted():
    panel, truth, _ = nb_panel()
    model = DeepAR(likelihood="negbin", max_epochs=15, validation=False, **FAST).fit(panel, 12)
    return model, panel, truth


def test_beats_seasonal_naive_on_a_seasonal_negative_binomial_panel(fitted):
    model, panel, truth = fitted
    f = model.predict(panel, num_samples=200, seed=0)
    assert f.samples.shape == (40, 200, 12)
    sn = SeasonalNaive(12).fit(panel, 12).predict(panel, 200, seed=0)
    ours, base = M.crps(f.samples, truth).item(), M.crps(sn.samples, truth).item()
    assert ours < 0.9 * base, (ours, base)


def test_same_seed_same_samples_and_save_load_roundtrip(fitted, tmp_path):
    model, panel, _ = fitted
    a = model.predict(panel, num_samples=30, seed=5).samples
    assert torch.equal(a, model.predict(panel, num_samples=30, seed=5).samples)
    assert not torch.equal(a, model.predict(panel, num_samples=30, seed=6).samples)
    again = DeepAR.load(model.save(tmp_path / "deepar.pt"))
    assert torch.equal(a, again.predict(panel, num_samples=30, seed=5).samples)


def test_same_seed_trains_the_same_model():
    panel, _, _ = nb_panel(n=10, t=40)
    a = DeepAR(likelihood="negbin", max_epochs=2, validation=False, seed=3, **FAST).fit(panel, 6)
    b = DeepAR(likelihood="negbin", max_epochs=2, validation=False, seed=3, **FAST).fit(panel, 6)
    for p, q in zip(a.net_.parameters(), b.net_.parameters()):
        assert torch.equal(p, q)


def test_used_known_covariates_name_what_predict_reads(fitted):
    model, panel, _ = fitted
    assert model.used_known_covariates() == {"promo"}
    off = DeepAR(use_known_covariates=False, max_epochs=1, validation=False, **FAST).fit(panel, 12)
    assert off.used_known_covariates() == frozenset()
    assert SeasonalNaive(12).fit(panel, 12).used_known_covariates() == frozenset()


def test_known_promotion_effect_shows_in_the_forecast_mean():
    panel, _, promo = nb_panel(n=60, promo_effect=1.5, seed=1)
    model = DeepAR(likelihood="negbin", max_epochs=15, validation=False, **FAST).fit(panel, 12)
    mean = model.predict(panel, num_samples=200, seed=0).mean()
    naive = SeasonalNaive(12, point=True).fit(panel, 12).predict(panel, 1).samples[:, 0]
    ratio = (mean / naive.clamp_min(1)).log()
    lift = ratio[promo == 1].mean() - ratio[promo == 0].mean()
    assert lift.item() > 0.4  # exp(0.4) = 1.5x; the true lift is 2.5x


def test_gaps_train_without_nan_and_validation_with_refit_runs():
    panel, _, _ = nb_panel(n=20, gaps=True)
    model = DeepAR(likelihood="negbin", max_epochs=3, validation=True, refit=True, patience=2, **FAST).fit(panel, 12)
    hist = model.train_["validation"]["history"]
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in hist)
    assert model.train_["refit"]["epochs"] == model.train_["validation"]["best_epoch"]
    assert model.epochs_ == model.train_["validation"]["epochs"] + model.train_["refit"]["epochs"]
    assert torch.isfinite(model.predict(panel, 20).samples).all()


def test_negative_binomial_paths_stay_finite_and_plausible_on_intermittent_spiky_series():
    rng = np.random.default_rng(0)
    n, t = 30, 60
    y = np.where(rng.random((n, t)) < 0.8, 0.0, rng.negative_binomial(0.3, 0.3 / (0.3 + 20), size=(n, t)))
    y[:, 50] = 400  # one huge spike near the end of every series
    df = pd.DataFrame({"item_id": np.repeat(np.arange(n), t), "timestamp": np.tile(pd.date_range("2019-01-01", periods=t, freq="D"), n),
                       "target": y.reshape(-1)})
    panel = Panel.from_long(df, freq="D")
    for lk in ("negbin", "zinb"):
        model = DeepAR(likelihood=lk, max_epochs=4, validation=False, **FAST).fit(panel, 28)
        s = model.predict(panel, num_samples=200, seed=0).samples
        assert torch.isfinite(s).all() and s.min() >= 0
        assert s.max().item() <= 20 * y.max()  # GluonTS's NB DeepAR reaches 1e10 on intermittent M5 items


def test_bad_input_is_a_clear_error():
    panel, _, _ = nb_panel(n=4, t=30)
    neg = Panel.from_long(panel.to_long().assign(target=lambda d: d.target.where(d.index != 3, -2.0)), freq="MS")
    with pytest.raises(PanelError, match=r"'negbin' needs non-negative integer targets.*series 's0' has -2.0"):
        DeepAR(likelihood="negbin", **FAST).fit(neg, 6)
    frac = Panel.from_long(panel.to_long().assign(target=lambda d: d.target + 0.5), freq="MS")
    with pytest.raises(PanelError, match="non-negative integer"):
        DeepAR(likelihood="poisson", **FAST).fit(frac, 6)
    with pytest.raises(ValueError, match="unknown likelihood 'gamma'"):
        DeepAR(likelihood="gamma")
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        DeepAR(hidden_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            DeepAR(device="cuda", **{k: v for k, v in FAST.items() if k != "device"}).fit(panel, 6)
    short = panel.select([0])
    with pytest.raises(PanelError, match="known covariates missing in the forecast window"):
        DeepAR(**FAST).fit(short, 40)
    with pytest.raises(ValueError, match="lags must not repeat"):
        DeepAR(lags=(1, 1, 2, 12))
    for clip in (0.0, -1.0):
        with pytest.raises(ValueError, match="clip"):
            DeepAR(clip=clip)
    with pytest.raises(ValueError, match="anchor_penalty"):
        DeepAR(anchor="profile", anchor_penalty=float("nan"))


def test_profile_anchor_on_a_series_that_is_zero_throughout_forecasts_zeros():
    panel, _, _ = nb_panel(n=8, t=48)
    d = panel.to_long()
    d.loc[d.item_id == "s3", "target"] = 0.0
    zero = Panel.from_long(d, freq="MS")
    m = DeepAR(likelihood="studentT", anchor="profile", max_epochs=2, validation=False, use_known_covariates=False,
               **FAST).fit(zero, 12)
    s = m.predict(zero, 20, seed=0).samples
    assert torch.isfinite(s).all()
    assert float(s[3].abs().max()) < 0.01 * float(s.abs().mean())  # its scale is the floor: next to 0


def test_static_codes_and_profiles_are_matched_by_level_not_position():
    panel, _, _ = nb_panel(n=12, t=48)
    groups = {f"s{i}": f"g{i % 4}" for i in range(12)}
    d = panel.to_long().drop(columns="promo").assign(group=lambda x: x.item_id.map(groups))
    full = Panel.from_long(d, freq="MS", static_categorical=["group"])
    sub_ids = [i for i, g in groups.items() if g in ("g2", "g3")]
    sub = Panel.from_long(d[d.item_id.isin(sub_ids)], freq="MS", static_categorical=["group"])
    assert list(sub.static_cat_levels[0]) == ["g2", "g3"]  # codes 0, 1 there; 2, 3 at fit
    m = DeepAR(likelihood="studentT", anchor="profile", profile_group="group", max_epochs=1, validation=False,
               use_known_covariates=False, **FAST).fit(full, 12)
    rows = [list(full.item_ids).index(i) for i in sub.item_ids]
    a, b = m._tensors(full, 12), m._tensors(sub, 12)
    assert torch.equal(b.codes, a.codes[rows]) and set(b.codes[:, 0].tolist()) == {2, 3}
    # the pooled group part of the profile is the same; the series' own part is its own in both
    torch.testing.assert_close(b.profile, a.profile[rows])
    unseen = Panel.from_long(d.assign(group=lambda x: x.group.replace("g1", "g9")), freq="MS",
                             static_categorical=["group"])
    codes = m._tensors(unseen, 12).codes[:, 0]
    assert set(codes[[list(unseen.item_ids).index(i) for i, g in groups.items() if g == "g1"]].tolist()) == {4}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fast_sampling_step_equals_the_network(cell):
    from forecasting.models.deepar.features import fit_features
    from forecasting.models.deepar.module import DeepARNetwork
    from forecasting.models.deepar.sampling import FastStep
    panel, _, _ = nb_panel(n=4, t=30)
    spec = fit_features(panel, True, True)
    torch.manual_seed(0)
    net = DeepARNetwork(spec, 6, hidden_size=16, num_layers=2, likelihood="negbin", cell=cell).eval()
    n, S, L2 = 3, 5, 2 * len(spec.lags)
    lag_in = torch.randn(n * S, L2)
    rest = torch.randn(n, 1, net.num_dynamic - L2)
    static = torch.randn(n, net.num_static)
    h0 = torch.randn(2, n * S, 16)
    state = (h0, torch.randn(2, n * S, 16)) if cell == "lstm" else h0
    dyn = torch.cat([lag_in, rest[:, 0].repeat_interleave(S, 0)], -1)[:, None, :]
    with torch.no_grad():
        ref, ref_state = net(dyn, static.repeat_interleave(S, 0), state)
        step = FastStep(net)
        got, got_state = step(lag_in, step.shared(rest, static)[:, 0], state, S)
    torch.testing.assert_close(got, ref[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_state, ref_state, rtol=1e-5, atol=1e-5)


def test_two_gloo_processes_train_the_model_one_process_trains():
    # data parallel: each process takes half of every batch; the summed gradients are the
    # one-process gradients, so the weights agree up to float summation order
    panel, _, _ = nb_panel(n=12, t=40)
    opts = dict(likelihood="negbin", max_epochs=2, validation=False, seed=1, dropout=0.0, **FAST)
    one = DeepAR(**opts).fit(panel, 6)
    two = DeepAR(num_processes=2, **opts).fit(panel, 6)
    assert two.train_["processes"] == 2 and one.train_["processes"] == 1
    for (name, p), q in zip(one.net_.named_parameters(), two.net_.parameters()):
        assert torch.allclose(p, q, atol=1e-5, rtol=1e-4), name
    assert two.train_["train"]["history"][-1]["train_loss"] == pytest.approx(
        one.train_["train"]["history"][-1]["train_loss"], rel=1e-4)
    f = two.predict(panel, num_samples=20, seed=0)
    assert f.samples.shape == (12, 20, 6) and torch.isfinite(f.samples).all()


def test_validation_in_two_processes_picks_the_same_epochs():
    panel, _, _ = nb_panel(n=12, t=40)
    opts = dict(likelihood="negbin", max_epochs=3, validation=True, refit=True, seed=2, dropout=0.0, **FAST)
    one = DeepAR(**opts).fit(panel, 6)
    two = DeepAR(num_processes=2, **opts).fit(panel, 6)
    v1, v2 = one.train_["validation"], two.train_["validation"]
    assert v1["best_epoch"] == v2["best_epoch"]
    assert [h["val_loss"] for h in v2["history"]] == pytest.approx([h["val_loss"] for h in v1["history"]], rel=1e-4)


def test_profile_index_leaves_the_anchored_value_out():
    from forecasting.models.deepar.features import fit_features
    panel, _, _ = nb_panel(n=8, t=48)
    spec = fit_features(panel, False, True, profile=True, profile_group="group", profile_weight=0.5)
    dates = pd.date_range(panel.index[0], periods=panel.num_steps + 12, freq="MS")
    grid = spec.profile_grid(panel, dates)
    assert grid.shape == (8, panel.num_steps + 12) and torch.isfinite(grid).all()
    y = panel.target[0].double()
    z = y / y.abs().mean()
    g = spec.profile[int(panel.static_cat[0, 0])].double()
    # month 0 of series 0: observed 4 times (t = 0, 12, 24, 36); at t = 12 the index holds the other 3
    others = z[[0, 24, 36]].sum()
    want = (others + 0.5 * g[0]) / (3 + 0.5)
    assert float(grid[0, 12]) == pytest.approx(float(want), rel=1e-5)
    # in the forecast window every observation counts
    want_future = (z[[0, 12, 24, 36]].sum() + 0.5 * g[0]) / (4 + 0.5)
    assert float(grid[0, 48]) == pytest.approx(float(want_future), rel=1e-5)


def test_profile_anchor_options_are_checked():
    panel, _, _ = nb_panel(n=6, t=40)
    with pytest.raises(ValueError, match="anchor"):
        DeepAR(anchor="yearly")
    with pytest.raises(ValueError, match="real-valued"):
        DeepAR(anchor="profile", likelihood="negbin", max_epochs=1, **FAST).fit(panel, 6)
    with pytest.raises(ValueError, match="profile_group='Dept'"):
        DeepAR(anchor="profile", profile_group="Dept", max_epochs=1, **FAST).fit(panel, 6)


def test_validation_on_sampled_forecast_crps_picks_an_epoch():
    panel, _, _ = nb_panel(n=12, t=48)
    m = DeepAR(likelihood="negbin", max_epochs=3, validation=True, refit=False, val_metric="crps", val_samples=8,
               seed=0, **FAST).fit(panel, 6)
    hist = m.train_["validation"]["history"]
    assert len(hist) == 3 and all(np.isfinite(h["val_loss"]) and 0 < h["val_loss"] < 2 for h in hist)
    assert m.train_["validation"]["best_val"] == min(h["val_loss"] for h in hist)
    with pytest.raises(ValueError, match="val_metric"):
        DeepAR(val_metric="mse")


def test_profile_anchor_in_the_unroll_equals_the_training_anchor():
    # the sampler's per-step anchor (history lags, then draws) must be the anchor training used
    from forecasting.models.deepar.module import ProfileHistory, profile_base
    panel, _, _ = nb_panel(n=6, t=48)
    m = DeepAR(anchor="profile", profile_group="group", max_epochs=1, **FAST).fit(panel, 12)
    pt = m._tensors(panel, 12)
    rows, end, S, H, lags = torch.arange(6), pt.end, 3, 12, m.net_.lags
    drawn = torch.randn(6 * S, H, generator=torch.Generator().manual_seed(0)) * 5 + 10
    maxlag = int(lags.max())
    pos = end[:, None] + torch.arange(-maxlag, 0)
    pc = pos.clamp(0, pt.y.shape[1] - 1)
    buf = torch.cat([pt.y[rows[:, None], pc].repeat_interleave(S, 0), drawn], 1)
    bobs = torch.cat([(pt.obs[rows[:, None], pc] & (pos >= 0)).repeat_interleave(S, 0),
                      torch.ones(6 * S, H, dtype=torch.bool)], 1)
    hist = ProfileHistory.build(pt, rows, end, H, lags)
    for h in range(H):
        idx = maxlag + h - lags
        lprof = pt.profile[rows[:, None], end[:, None] + h - lags[None]].repeat_interleave(S, 0)
        want = profile_base(buf[:, idx], bobs[:, idx], lprof, pt.profile[rows, end + h].repeat_interleave(S, 0), lags,
                            pt.series_scale.repeat_interleave(S, 0))
        assert torch.allclose(hist.base(drawn, h, S), want, atol=1e-5), h


def test_profile_anchor_forecasts_are_finite_and_seeded():
    panel, _, _ = nb_panel(n=8, t=48)
    m = DeepAR(anchor="profile", profile_group="group", max_epochs=2, **FAST).fit(panel, 12)
    a = m.predict(panel, num_samples=20, seed=1).samples
    assert a.shape == (8, 20, 12) and torch.isfinite(a).all()
    assert torch.equal(a, m.predict(panel, num_samples=20, seed=1).samples)


def test_fair_sample_crps_matches_the_normal_closed_form():
    from forecasting.models.deepar.training import sample_crps
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, 2, 1, generator=g, dtype=torch.float64)  # S=2 is unbiased too
    got = float(sample_crps(x, torch.zeros(200_000, 1, dtype=torch.float64)).mean())
    assert got == pytest.approx(2 / np.sqrt(2 * np.pi) - 1 / np.sqrt(np.pi), abs=0.004)  # 0.2337
    same = torch.full((3, 4, 2), 5.0)
    assert torch.equal(sample_crps(same, torch.full((3, 2), 2.0)), torch.full((3, 2), 3.0))


@pytest.mark.parametrize("anchor", [None, "profile"])
def test_multi_step_loss_unrolls_the_paths_the_sampler_draws(monkeypatch, anchor):
    # with every draw made deterministic (loc + 0.1 scale), the training unroll over a window's
    # horizon and the sampler forecasting from the same cutoff must produce the same path
    import dataclasses
    from forecasting.models.deepar.sampling import sample_paths
    from forecasting.models.deepar.training import TrainConfig, _multi_step_sum
    det = lambda self, sample_shape=torch.Size(): self.loc + 0.1 * self.scale  # noqa: E731
    monkeypatch.setattr(torch.distributions.Normal, "rsample", det)
    monkeypatch.setattr(torch.distributions.Normal, "sample", det)
    panel, _, _ = nb_panel(n=6, t=60)
    m = DeepAR(likelihood="normal", anchor=anchor, profile_group="group" if anchor else None, max_epochs=1,
               validation=False, **FAST).fit(panel, 12)
    net = m.net_.eval()
    pt = m._tensors(panel, 12)
    H, C = 12, m.context_
    cut = pt.end - H
    cfg = TrainConfig(context=C, horizon=H, loss="crps", loss_samples=3)
    rows = torch.arange(6)
    with torch.no_grad():
        # limit pt.end: the horizon's truth is the target; its lags are the draws either way
        _, (crps, n), paths = _multi_step_sum(net, pt, rows, pt.end, cfg, pt.end)
        want = sample_paths(net, dataclasses.replace(pt, end=cut), C, H, 3)
    assert paths.shape == (6, 3, H)
    torch.testing.assert_close(paths, want, rtol=1e-4, atol=1e-3)
    # the pair term vanishes for identical draws: the loss is the absolute error per unit of scale
    assert int(n) == int(pt.obs[:, -H:].sum()) == 72
    ctx = pt.y[:, -H - C:-H]
    s = ctx.abs().mean(1).clamp_min(pt.min_scale)
    want_crps = ((paths[:, 0] - pt.y[:, -H:]).abs() / s[:, None]).sum()
    torch.testing.assert_close(crps, want_crps, rtol=1e-4, atol=1e-4)


def test_multi_step_objectives_train_finite_models_and_check_their_arguments():
    panel, truth, _ = nb_panel(n=12, t=48)
    for loss in ("crps", "nll+crps"):
        m = DeepAR(likelihood="studentT", loss=loss, loss_samples=4, max_epochs=2, validation=False,
                   **{**FAST, "batches_per_epoch": 5}).fit(panel, 12)
        hist = m.train_["train"]["history"]
        assert len(hist) == 2 and all(np.isfinite(h["train_loss"]) for h in hist)
        assert torch.isfinite(m.predict(panel, 20, seed=0).samples).all()
    with pytest.raises(ValueError, match="real-valued likelihood"):
        DeepAR(likelihood="negbin", loss="crps")
    with pytest.raises(ValueError, match="loss must be"):
        DeepAR(loss="mse")
    with pytest.raises(ValueError, match="loss_samples"):
        DeepAR(loss="crps", loss_samples=1)


def test_ensemble_pools_the_members_paths_and_round_trips(tmp_path):
    panel, _, _ = nb_panel(n=10, t=48)
    m = DeepAR(likelihood="studentT", ensemble=3, max_epochs=1, validation=False, **FAST).fit(panel, 12)
    assert len(m.members_) == 3 and m.net_ is m.members_[0]
    w = [net.head.weight.detach() for net in m.members_]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])  # seeds 0, 1, 2
    assert len(m.train_["members"]) == 3
    single = DeepAR(likelihood="studentT", seed=1, max_epochs=1, validation=False, **FAST).fit(panel, 12)
    torch.testing.assert_close(single.net_.head.weight, m.members_[1].head.weight)  # member k = seed + k
    fc = m.predict(panel, 10, seed=4)
    assert fc.samples.shape == (10, 10, 12) and torch.isfinite(fc.samples).all()
    assert torch.equal(fc.samples, m.predict(panel, 10, seed=4).samples)
    m.save(tmp_path / "ens.pt")
    assert torch.equal(DeepAR.load(tmp_path / "ens.pt").predict(panel, 10, seed=4).samples, fc.samples)
    # 10 paths from 3 members: 4 + 3 + 3, the first member's are its own 4 draws
    torch.manual_seed(4)
    from forecasting.models.deepar.sampling import sample_paths
    never_negative = torch.ones(panel.num_series, dtype=torch.bool)  # Student-t on counts: every series floored
    own = sample_paths(m.members_[0], m._tensors(panel, 12), m.context_, 12, 4, m.max_rows, floor=never_negative)
    got = {tuple(x.tolist()) for x in fc.samples[0]}
    assert all(tuple(x.tolist()) in got for x in own[0])
    with pytest.raises(ValueError, match="ensemble"):
        DeepAR(ensemble=0)


def test_anchor_penalty_keeps_the_location_nearer_the_anchor_and_checks_its_arguments():
    from forecasting.models.deepar.training import _nll_sum, window_batch
    panel, _, _ = nb_panel(n=8, t=48)
    kw = dict(likelihood="studentT", anchor="profile", profile_group="group", max_epochs=3, validation=False, seed=0)
    free = DeepAR(**kw, **FAST).fit(panel, 12)
    tied = DeepAR(**kw, anchor_penalty=100.0, **FAST).fit(panel, 12)
    corr = []
    for m in (free, tied):
        pt = m._tensors(panel, 12)
        with torch.no_grad():
            batch = window_batch(m.net_, pt, torch.arange(8), pt.end, m.context_, m.context_ + 12, pt.end)
            raw, _ = m.net_(*batch[:2])
            # the penalty term is exactly lambda * sum of squared corrections over the observed steps
            plain, n = _nll_sum(m.net_, *batch)
            pen, n2 = _nll_sum(m.net_, *batch, anchor_penalty=2.5)
        o = batch[3]
        torch.testing.assert_close(pen - plain, 2.5 * (raw[..., 0].square() * o).sum(), rtol=1e-4, atol=1e-4)
        assert int(n) == int(n2) == int(o.sum())
        corr.append(float(raw[..., 0].abs().mean()))
    assert corr[1] < 0.5 * corr[0]
    assert torch.isfinite(tied.predict(panel, 10, seed=0).samples).all()
    with pytest.raises(ValueError, match="anchor_penalty"):
        DeepAR(anchor_penalty=1.0)
    with pytest.raises(ValueError, match="anchor_penalty"):
        DeepAR(anchor="profile", anchor_penalty=-1.0)


def test_validation_phase_features_do_not_see_the_held_out_steps():
    panel, _, _ = nb_panel(n=8, t=48)
    groups = {f"s{i}": f"g{i % 4}" for i in range(8)}
    d = panel.to_long().drop(columns="promo").assign(group=lambda x: x.item_id.map(groups))
    a = Panel.from_long(d, freq="MS", static_categorical=["group"])
    late = d.timestamp >= d.timestamp.max() - pd.DateOffset(months=11)  # the last 12 steps: held out
    b = Panel.from_long(d.assign(target=d.target.where(~late, d.target * 10)), freq="MS", static_categorical=["group"])
    m = DeepAR(likelihood="studentT", anchor="profile", profile_group="group", max_epochs=1, validation=True,
               use_known_covariates=False, **FAST).fit(a, 12)
    va, vb = (m._held_out_tensors(p, 12, m._tensors(p, 12)) for p in (a, b))
    torch.testing.assert_close(va.series_scale, vb.series_scale)
    torch.testing.assert_close(va.profile, vb.profile)
    assert not torch.equal(va.y, vb.y)  # the held-out truth itself is still there to be scored
    full = m._tensors(b, 12)
    assert not torch.allclose(full.series_scale, vb.series_scale)  # the full-history scale does see them


def test_bfloat16_training_keeps_float32_weights_and_matches_float32_accuracy():
    panel, truth, _ = nb_panel()
    scores = {}
    for dt in ("float32", "bfloat16"):
        m = DeepAR(likelihood="negbin", max_epochs=15, validation=False, train_dtype=dt, **FAST).fit(panel, 12)
        assert all(p.dtype == torch.float32 for p in m.net_.parameters())
        assert all(np.isfinite(h["train_loss"]) for h in m.train_["train"]["history"])
        scores[dt] = M.crps(m.predict(panel, num_samples=200, seed=0).samples, truth).item()
    sn = M.crps(SeasonalNaive(12).fit(panel, 12).predict(panel, 200, seed=0).samples, truth).item()
    assert scores["bfloat16"] < 0.9 * sn, (scores, sn)
    assert abs(scores["bfloat16"] - scores["float32"]) < 0.05 * scores["float32"], scores
    # the multi-step objective differentiates through draws: it runs under autocast too
    m = DeepAR(likelihood="studentT", loss="nll+crps", loss_samples=4, max_epochs=1, validation=False,
               train_dtype="bfloat16", **{**FAST, "batches_per_epoch": 3}).fit(panel, 12)
    assert np.isfinite(m.train_["train"]["history"][0]["train_loss"])
    with pytest.raises(ValueError, match="train_dtype must be 'float32' or 'bfloat16'"):
        DeepAR(train_dtype="float16")


def test_hourly_models_see_holidays_and_models_saved_without_them_still_predict(tmp_path, monkeypatch):
    import dataclasses

    import forecasting.models.deepar.model as dm
    rng = np.random.default_rng(0)
    ts = pd.date_range("2016-11-01", periods=24 * 60, freq="h")
    df = pd.DataFrame({"item_id": np.repeat(["a", "b"], len(ts)), "timestamp": np.tile(ts, 2),
                       "target": rng.normal(10, 1, 2 * len(ts))})
    panel = Panel.from_long(df, freq="h")
    kw = dict(likelihood="studentT", max_epochs=1, validation=False, context_length=24, **{**FAST, "batches_per_epoch": 2})
    new = DeepAR(**kw).fit(panel, 24)
    assert new.features_.subdaily_holidays and new.net_.num_dynamic > 0
    wide = new._tensors(panel, 24).calendar.shape[1]
    # a model saved before hourly holidays existed: its spec has no such field (the class default)
    real = dm.fit_features
    monkeypatch.setattr(dm, "fit_features", lambda *a, **k: dataclasses.replace(real(*a, **k), subdaily_holidays=False))
    old = DeepAR(**kw).fit(panel, 24)
    del old.features_.__dict__["subdaily_holidays"]
    back = DeepAR.load(old.save(tmp_path / "old.pt"))
    assert not back.features_.subdaily_holidays and back._tensors(panel, 24).calendar.shape[1] == wide - 24
    assert torch.equal(back.predict(panel, 10, seed=0).samples, old.predict(panel, 10, seed=0).samples)


def test_nonnegative_floors_the_draws_of_series_that_never_went_below_zero(tmp_path):
    rng = np.random.default_rng(0)
    n, t = 12, 48
    y = rng.poisson(0.8, size=(n, t)).astype(float)  # low counts: a Student-t draws below zero often
    y[0, 5] = -2.0  # s0 went below zero once (a return)
    ts = pd.date_range("2015-01-01", periods=t, freq="MS")
    panel = Panel.from_long(pd.DataFrame({"item_id": np.repeat([f"s{i}" for i in range(n)], t),
                                          "timestamp": np.tile(ts, n), "target": y.reshape(-1)}), freq="MS")
    model = DeepAR(likelihood="studentT", max_epochs=3, validation=False, nonnegative=False, **FAST).fit(panel, 12)
    plain = model.predict(panel, num_samples=100, seed=0).samples
    assert (plain[1:] < 0).any() and (plain[0] < 0).any()
    model.nonnegative = None  # the default
    auto = model.predict(panel, num_samples=100, seed=0).samples
    assert (auto[1:] >= 0).all()
    assert torch.allclose(auto[0], plain[0], atol=1e-5)  # s0 is not floored: its draws are unchanged
    model.nonnegative = True
    every = model.predict(panel, num_samples=100, seed=0).samples
    assert (every >= 0).all()
    # the first step reads no draw: it is the plain draw, floored; later steps read the floored
    # draws (the floor is inside the unroll), so they are not the plain paths clipped
    assert torch.allclose(every[:, :, 0], plain[:, :, 0].clamp_min(0), atol=1e-5)
    assert not torch.allclose(every, plain.clamp_min(0), atol=1e-3)
    # early stopping on sampled CRPS scores the paths predict would draw: floored the same way
    from forecasting.models.deepar.training import TrainConfig, forecast_crps
    pt = model._tensors(panel, 12)
    crps = {f: forecast_crps(model.net_, pt, TrainConfig(context=model.context_, horizon=12, val_samples=50,
                                                         nonnegative=f)) for f in (False, None, True)}
    assert crps[True] < crps[None] < crps[False]  # s0's history holds -2: None leaves it unfloored
    with pytest.raises(ValueError, match="nonnegative must be None, True or False"):
        DeepAR(nonnegative="auto")
    # a model saved before the option existed keeps its draws as they were
    del model.nonnegative
    assert torch.equal(DeepAR.load(model.save(tmp_path / "old.pt")).predict(panel, num_samples=100, seed=0).samples,
                       plain)


def test_a_process_dying_at_shutdown_after_training_keeps_the_saved_weights(monkeypatch):
    import types
    from forecasting.models.deepar import distributed
    died = distributed.mp.ProcessExitedException("process 1 terminated with signal SIGABRT", error_index=1,
                                                  error_pid=1, exit_code=-6, signal_name="SIGABRT")

    def spawn_that_saves_then_dies(fn, args, nprocs, join):
        torch.save({"state": {"w": torch.ones(2)}, "train": {"epochs": 3}}, args[7])  # process 0's weights
        raise died

    def spawn_that_dies_in_training(fn, args, nprocs, join):
        raise died

    pt = types.SimpleNamespace(y=torch.zeros(2, 3))
    model = DeepAR(num_processes=2, device="cpu")
    monkeypatch.setattr(distributed.mp, "spawn", spawn_that_saves_then_dies)
    with pytest.warns(RuntimeWarning, match="died while shutting down after training finished"):
        state, info = distributed.spawn_fit(model, pt, 6, 0)
    assert torch.equal(state["w"], torch.ones(2)) and info == {"epochs": 3}
    monkeypatch.setattr(distributed.mp, "spawn", spawn_that_dies_in_training)
    with pytest.raises(distributed.mp.ProcessExitedException):
        distributed.spawn_fit(model, pt, 6, 0)


def test_validation_on_series_shorter_than_the_horizon_is_a_clear_error():
    panel, _, _ = nb_panel(n=4, t=30)
    short = panel.truncate(torch.full((4,), 5))
    with pytest.raises(PanelError, match=r"validation=True holds out each series' last 6 steps.*longest has 5 observed"):
        DeepAR(use_known_covariates=False, **FAST).fit(short, 6)
    mixed = panel.truncate(torch.tensor([5, 30, 30, 30]))
    with pytest.warns(UserWarning, match=r"series 's0' have no observed value before their last 6 steps"):
        DeepAR(use_known_covariates=False, max_epochs=1, **FAST).fit(mixed, 6)


def test_an_epoch_cut_short_by_the_time_limit_averages_the_batches_it_ran():
    panel, _, _ = nb_panel(n=8, t=40)
    cut = DeepAR(max_epochs=1, validation=False, time_limit=1e-9, **FAST).fit(panel, 6)
    entry = cut.train_["train"]["history"][0]
    assert entry["batches"] == 1  # the first batch always runs
    one = DeepAR(max_epochs=1, validation=False, **{**FAST, "batches_per_epoch": 1}).fit(panel, 6)
    assert entry["train_loss"] == pytest.approx(one.train_["train"]["history"][0]["train_loss"], rel=1e-6)


def test_predict_refuses_other_frequencies_reordered_static_reals_and_unflagged_missing_covariates(fitted):
    model, panel, _ = fitted
    with pytest.raises(PanelError, match="fitted on 'MS' data, the panel's frequency is 'W-SUN'"):
        model.predict(dataclasses.replace(panel, freq="W-SUN"), 5)
    rng = np.random.default_rng(0)
    ts = pd.date_range("2015-01-01", periods=42, freq="MS")
    d = pd.DataFrame({"item_id": np.repeat([f"s{i}" for i in range(8)], 42), "timestamp": np.tile(ts, 8),
                      "target": rng.poisson(5, 8 * 42).astype(float), "promo": rng.integers(0, 2, 8 * 42) * 1.0,
                      "temp": rng.normal(size=8 * 42), "size": np.repeat(np.arange(8.0), 42)})
    d["age"] = 2 * d["size"]
    hist, fut = d[d.timestamp < ts[36]], d[d.timestamp >= ts[36]][["item_id", "timestamp", "promo", "temp"]]
    fit_on = Panel.from_long(hist, freq="MS", static_real=["size", "age"], known_covariates=["promo", "temp"],
                             future=fut)
    m = DeepAR(likelihood="negbin", max_epochs=1, validation=False, **FAST).fit(fit_on, 6)
    gap = fit_on.known.clone()
    gap[3, int(fit_on.end[3]) + 2, 0] = float("nan")  # promo had no gap at fit: no missing-value input for it
    with pytest.raises(PanelError, match=r"'promo' is missing in the forecast window of series 's3' .*2018-03-01"):
        m.predict(dataclasses.replace(fit_on, known=gap), 5)
    swapped = Panel.from_long(hist, freq="MS", static_real=["age", "size"], known_covariates=["promo", "temp"],
                              future=fut)
    with pytest.raises(ValueError, match=r"static reals \['age', 'size'\] differ from those at fit \['size', 'age'\]"):
        m.predict(swapped, 5)


def past_panel(n=40, t=60, seed=0):
    """y_t = 20 + 8 x_{t-1} + noise with x a past-only covariate (white noise: only its last value
    before the forecast start tells anything about the first step)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, t))
    y = 20 + np.concatenate([np.zeros((n, 1)), 8 * x[:, :-1]], 1) + rng.normal(scale=0.5, size=(n, t))
    ts = pd.date_range("2015-01-01", periods=t, freq="MS")
    df = pd.DataFrame({"item_id": np.repeat([f"s{i}" for i in range(n)], t), "timestamp": np.tile(ts, n),
                       "target": y.reshape(-1), "x": x.reshape(-1)})
    return Panel.from_long(df, freq="MS", past_covariates=["x"]), torch.tensor(x, dtype=torch.float32)


def test_past_covariates_inform_the_first_step_and_nothing_after_the_forecast_start_is_read():
    panel, x = past_panel()
    kw = dict(FAST, likelihood="normal", lags=[1, 2, 3], max_epochs=25, validation=False)
    on = DeepAR(use_past_covariates=True, **kw).fit(panel, 3)
    off = DeepAR(**kw).fit(panel, 3)  # the default: not read
    assert on.features_.past_names == ("x",) and off.features_.past_names == ()
    last = x[:, -1]  # the past covariate's last value: what the first forecast step depends on
    corr = lambda m, k: float(np.corrcoef(m.predict(panel, 200, seed=0).mean()[:, k], last)[0, 1])  # noqa: E731
    assert corr(on, 0) > 0.9 and abs(corr(off, 0)) < 0.5, (corr(on, 0), corr(off, 0))
    # a series that ends early: values of the past covariate after its end are never read
    short = panel.truncate(panel.end - torch.tensor([4] + [0] * 39))
    noisy = dataclasses.replace(short, past=torch.where(torch.isnan(short.past), 99.0, short.past))
    a, b = on.predict(short, 50, seed=1).samples, on.predict(noisy, 50, seed=1).samples
    assert torch.equal(a, b)
    # a panel without them cannot be forecast by a model that reads them
    bare = dataclasses.replace(panel, past=None, past_names=())
    with pytest.raises(ValueError, match=r"past covariates \[\] differ from those at fit \['x'\]"):
        on.predict(bare, 10)


def test_training_windows_mask_past_covariates_over_their_last_horizon_steps():
    from forecasting.models.deepar.training import window_batch
    panel, _ = past_panel(n=5, t=30)
    model = DeepAR(use_past_covariates=True, **dict(FAST, likelihood="normal", lags=[1, 2], max_epochs=1,
                                                    validation=False)).fit(panel, 4)
    pt = model._tensors(panel, 4)
    rows, t_end = torch.arange(5), torch.tensor([30, 25, 20, 12, 9])
    dyn = window_batch(model.net_, pt, rows, t_end, 6, 10, pt.end)[0]
    flag = dyn[..., 2 * 2 + 1]  # after 2 lags' values and flags: the value of x, then its flag
    pos = t_end[:, None] - 10 + torch.arange(10)
    # step t reads x_{t-1}: available at the first context step with a predecessor on the grid up
    # to the window's forecast start (t - 1 < t_end - 4), never after
    assert torch.equal(flag.bool(), (pos - 1 >= 0) & (pos - 1 < (t_end - 4)[:, None]))


def test_training_and_validation_never_read_past_covariates_at_or_after_the_held_out_steps():
    from forecasting.models.deepar.training import (TrainConfig, _multi_step_sum, forecast_crps, validation_loss,
                                                    window_batch)
    panel, _ = past_panel(n=6, t=30)
    H = 4
    model = DeepAR(use_past_covariates=True, **dict(FAST, likelihood="normal", lags=[1, 2], max_epochs=1,
                                                    validation=False)).fit(panel, H)
    net, pt = model.net_, model._tensors(panel, H)
    late = torch.arange(pt.past.shape[1])[None, :] >= (pt.end - H)[:, None]  # the held-out steps on
    poisoned = dataclasses.replace(pt, past=torch.where(late[..., None], 99.0, pt.past))
    cfg = TrainConfig(context=model.context_, horizon=H, val_samples=4, loss="crps", loss_samples=4)
    assert validation_loss(net, pt, cfg) == validation_loss(net, poisoned, cfg)
    assert forecast_crps(net, pt, cfg) == forecast_crps(net, poisoned, cfg)
    # windows of the validation phase's training: they end at or before the limit end - H
    limit = pt.end - H
    rows = torch.arange(6).repeat(3)
    t_end = limit[rows] - torch.tensor([0, 2, 5]).repeat_interleave(6)
    C = model.context_
    a = window_batch(net, pt, rows, t_end, C, C + H, limit)[0]
    assert torch.equal(a, window_batch(net, poisoned, rows, t_end, C, C + H, limit)[0])
    net.eval()
    losses = []
    for tensors in (pt, poisoned):
        torch.manual_seed(0)
        (nll, _), (crps, _), _ = _multi_step_sum(net, tensors, rows, t_end, cfg, limit)
        losses.append((float(nll), float(crps)))
    assert losses[0] == losses[1]
