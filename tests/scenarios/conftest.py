import numpy as np
import pandas as pd
import pytest
import torch

from forecasting import Forecast, Panel


def make_panel(n=12, t=60, horizon=6, seed=0, common=1.0):
    """Weekly series: store-level random walks shared by the series of a store (strong dependence
    across series and steps), a promotion covariate, stores nested in regions."""
    rng = np.random.default_rng(seed)
    stores = np.array([f"s{i % 3}" for i in range(n)])
    regions = np.where(np.isin(stores, ["s0", "s1"]), "r0", "r1")
    total = t + horizon
    store_walk = {s: np.cumsum(rng.normal(size=total)) for s in np.unique(stores)}
    y = np.stack([50 + 5 * i % 7 + common * store_walk[stores[i]] + 0.3 * rng.normal(size=total) for i in range(n)])
    promo = (rng.random((n, total)) < 0.2).astype(float)
    ts = pd.date_range("2020-01-03", periods=total, freq="W-FRI")
    df = pd.DataFrame({"item_id": np.repeat([f"x{i}" for i in range(n)], total), "timestamp": np.tile(ts, n),
                       "target": y.reshape(-1), "promo": promo.reshape(-1),
                       "store": np.repeat(stores, total), "region": np.repeat(regions, total)})
    hist, fut = df[df.timestamp < ts[t]], df[df.timestamp >= ts[t]]
    panel = Panel.from_long(hist, freq="W-FRI", known_covariates=["promo"], static_categorical=["store", "region"],
                            future=fut[["item_id", "timestamp", "promo"]])
    return panel, torch.tensor(y[:, t:], dtype=torch.float32)


def make_forecast(panel, samples=200, horizon=6, seed=0):
    """Independent Gaussian samples around each series' last value."""
    g = torch.Generator().manual_seed(seed)
    last = panel.history(1)[0][:, 0]
    s = last[:, None, None] + 2 * torch.randn(panel.num_series, samples, horizon, generator=g)
    return Forecast(s, panel.item_ids, panel.forecast_start(), panel.freq)


@pytest.fixture(scope="module")
def panel_truth():
    return make_panel()
