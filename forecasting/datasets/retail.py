"""Retail demand: car parts (intermittent, monthly), Stallion (monthly, promotions), M5 (daily).

``m5_last56`` is the M5 data held in the shared folder (only the last 56 days of all 30,490
series); ``m5`` is the full Kaggle data, which the user downloads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..data.panel import Panel
from .embedded import wide_to_long
from .registry import GITHUB_RAW, DatasetError, DatasetSpec, Source, Task, register



def _read_rda(path: Path, name: str) -> pd.DataFrame:
    """One object of an R ``.rda`` file, via the optional ``pyreadr``."""
    try:
        import pyreadr
    except ImportError:
        raise DatasetError(
            f"{path.name} is an R file and reading it needs pyreadr (pip install 'forecasting[rda]' or "
            f"pip install pyreadr); or put the CSV version next to it") from None
    return pyreadr.read_r(str(path))[name]


# ---------------------------------------------------------------------------------------- car parts
#: the R ts starts in January 1998 (expsmooth docs: "Jan 1998 - Mar 2002")
CARPARTS_START = "1998-01-01"


def build_car_parts(paths: Mapping[str, Path]) -> Panel:
    """2,674 part numbers x 51 months. Leading/trailing NA (165 series) stay missing, not zero."""
    if "carparts.csv.gz" in paths:
        wide = pd.read_csv(paths["carparts.csv.gz"], index_col="month")
    else:
        wide = _read_rda(paths["carparts.rda"], "carparts").apply(pd.to_numeric)
    values = wide.to_numpy(dtype=float).T  # [parts, months]
    return Panel.from_long(wide_to_long(values, wide.columns.astype(str), CARPARTS_START, "MS"), freq="MS")


CAR_PARTS = register(DatasetSpec(
    name="car_parts",
    folder="car_parts",
    files=(
        # the CSV is a plain conversion of the .rda (no pyreadr needed); the .rda is the original
        Source("carparts.csv.gz", "ec37a330b613079bd107eed795eeb08ea6467288d23e5eca27579b7b505fc5dc", optional=True),
        Source("carparts.rda", "81f1d1f1785278e376651ff447b6b0e0a2cf763373f01d61fe04fad0b7f20b0c",
               url=f"{GITHUB_RAW}/cran/expsmooth/1c8e4c57f557bc5b2ea64eb130647f6d70d7545e/data/carparts.rda"),
    ),
    # every series cut at the same date (the last 12 months of the grid): 2,509 of the 2,674
    # series have truth there; the other 165 ended earlier (trailing NA) and are scored nowhere
    task=Task(freq="MS", horizon=12, num_windows=1, season=12, mase_season=12, min_history=1,
              align="grid", count_data=True, intermittent=True),
    build=build_car_parts,
    description="Monthly sales of 2,674 car parts, 1998-01..2002-03 (51 months), integer counts, "
                "71 % zeros; 165 series have leading/trailing NA (masked). Monash car_parts.",
    citation="Hyndman, Koehler, Ord & Snyder (2008), Forecasting with Exponential Smoothing, Springer; "
             "R package expsmooth (GPL >= 2)",
))


# ---------------------------------------------------------------------------------------- stallion
STALLION_EVENTS = ("easter_day", "good_friday", "new_year", "christmas", "labor_day", "independence_day",
                   "revolution_day_memorial", "regional_games", "fifa_u_17_world_cup", "football_gold_cup",
                   "beer_capital", "music_fest")
STALLION_KNOWN = ("price_regular", "price_actual", "discount", "discount_in_percent") + STALLION_EVENTS
STALLION_PAST = ("industry_volume", "soda_volume", "avg_max_temp")


def build_stallion(paths: Mapping[str, Path]) -> Panel:
    """350 agency x SKU series, monthly volume 2013-01..2017-12, with price/event covariates."""
    df = pd.read_parquet(paths["stallion.parquet"])
    df["item_id"] = df["agency"].astype(str) + "_" + df["sku"].astype(str)
    df["agency"], df["sku"] = df["agency"].astype(str), df["sku"].astype(str)
    return Panel.from_long(
        df.rename(columns={"date": "timestamp"}), target="volume", freq="MS",
        known_covariates=STALLION_KNOWN, past_covariates=STALLION_PAST,
        static_categorical=("agency", "sku"),
        static_real=("avg_population_2017", "avg_yearly_household_income_2017"))


STALLION = register(DatasetSpec(
    name="stallion",
    folder="stallion",
    files=(Source("stallion.parquet", "22397fe65d91eb4ac8ae05d307f64244a36649f58d6f3232da98ec1f13e3d0ba",
                  url=f"{GITHUB_RAW}/sktime/pytorch-forecasting/062aeb47b75d589dcce621c04572181e3584a301/"
                      "examples/data/stallion.parquet"),),
    task=Task(freq="MS", horizon=6, num_windows=1, season=12, mase_season=12, group="sku"),
    build=build_stallion,
    description="Stallion beverage sales: 350 agency x SKU series, monthly volume 2013-01..2017-12; known "
                "prices, discounts and 12 holiday/event flags; past industry/soda volume and temperature; "
                "static agency, SKU, population and income.",
    citation="Stallion sales data (Kaggle), as distributed with PyTorch Forecasting (MIT)",
))


# ---------------------------------------------------------------------------------------- M5
M5_IDS = ("item_id", "dept_id", "cat_id", "store_id", "state_id")
#: calendar.csv's event types, one 0/1 column each (a day with two events sets both): fev's encoding
M5_EVENT_TYPES = ("National", "Religious", "Cultural", "Sporting")
M5_EVENTS = tuple(f"event_{t}" for t in M5_EVENT_TYPES)
M5_STATES = ("CA", "TX", "WI")


def _m5_calendar(path: Path) -> pd.DataFrame:
    """calendar.csv indexed by ``d`` ('d_1'...): ``date``, ``wm_yr_wk``, ``event_<type>``, ``snap_<state>``."""
    cal = pd.read_csv(path, parse_dates=["date"])
    for t in M5_EVENT_TYPES:
        cal[f"event_{t}"] = ((cal["event_type_1"] == t) | (cal["event_type_2"] == t)).astype(float)
    return cal.set_index("d")[["date", "wm_yr_wk", *M5_EVENTS, *(f"snap_{s}" for s in M5_STATES)]]


def _m5_long(sales: pd.DataFrame, days: list[str], cal: pd.DataFrame, snap: str,
             prices: pd.DataFrame | None = None) -> pd.DataFrame:
    """A long frame (``id``, ``timestamp``, ``target``, covariates, static ids) for ``days`` of the
    wide ``sales`` rows. ``snap="own"`` gives one ``snap`` column for each series' own state;
    ``"all"`` keeps ``snap_CA/TX/WI`` (fev). ``sales`` may lack the target columns (future rows)."""
    n, t = len(sales), len(days)
    c = cal.loc[days]
    out = {
        "id": np.repeat((sales["item_id"] + "_" + sales["store_id"]).to_numpy(), t),
        "timestamp": np.tile(c["date"].to_numpy(), n),
        "target": (sales[days].to_numpy(dtype=np.float32).reshape(-1) if set(days) <= set(sales.columns)
                   else np.full(n * t, np.nan, dtype=np.float32)),
    }
    for col in M5_IDS:  # categoricals: 1-2 byte codes per row instead of string pointers
        cat = pd.Categorical(sales[col])
        out[col] = pd.Categorical.from_codes(np.repeat(cat.codes, t), cat.categories)
    for e in M5_EVENTS:
        out[e] = np.tile(c[e].to_numpy(dtype=np.float32), n)
    snaps = c[[f"snap_{s}" for s in M5_STATES]].to_numpy(dtype=np.float32)  # [t, 3]
    if snap == "own":
        state = pd.Index(M5_STATES).get_indexer(sales["state_id"])
        if (state < 0).any():
            raise DatasetError(f"m5: unknown state_id {sorted(set(sales['state_id']) - set(M5_STATES))}")
        out["snap"] = snaps[:, state].T.reshape(-1)  # [n, t] -> rows series-major
    else:
        for k, s in enumerate(M5_STATES):
            out[f"snap_{s}"] = np.tile(snaps[:, k], n)
    if prices is not None:
        # weekly price per (store, item) -> daily; NaN before the item was on sale in that store
        keys = pd.MultiIndex.from_frame(sales[["store_id", "item_id"]])
        weeks = pd.Index(np.sort(cal["wm_yr_wk"].unique()))
        row = keys.get_indexer(pd.MultiIndex.from_frame(prices[["store_id", "item_id"]]))
        col = weeks.get_indexer(prices["wm_yr_wk"])
        ok = (row >= 0) & (col >= 0)
        grid = np.full((n, len(weeks)), np.nan, dtype=np.float32)
        grid[row[ok], col[ok]] = prices["sell_price"].to_numpy(dtype=np.float32)[ok]
        out["sell_price"] = grid[:, weeks.get_indexer(c["wm_yr_wk"])].reshape(-1)
    return pd.DataFrame(out)


def _m5_weights(path: Path) -> pd.DataFrame:
    w = pd.read_csv(path)
    return w.rename(columns={"Weight": "weight"})[["Level_id", "Agg_Level_1", "Agg_Level_2", "weight"]]


def _d_range(first: int, last: int) -> list[str]:
    return [f"d_{i}" for i in range(first, last + 1)]


M5_LAST56_KNOWN = M5_EVENTS + ("snap",)


def build_m5_last56(paths: Mapping[str, Path]) -> Panel:
    """30,490 item x store series, d_1914..d_1969 (2016-04-25..2016-06-19): 28 days of context
    then the official 28-day hold-out. d_1914..d_1941 come from the recovered file, or from the
    last 28 columns of Kaggle's sales_train_evaluation.csv if that is there instead."""
    test = pd.read_csv(paths["sales_test_evaluation.csv"])
    first = _d_range(1914, 1941)
    if "sales_test_validation_recovered.csv" in paths:
        hist = pd.read_csv(paths["sales_test_validation_recovered.csv"])
    elif "sales_train_evaluation.csv" in paths:
        hist = pd.read_csv(paths["sales_train_evaluation.csv"], usecols=[*M5_IDS, *first])
    else:
        raise DatasetError(
            "m5_last56 needs the sales of d_1914..d_1941: sales_test_validation_recovered.csv (see the "
            "shared data folder's m5/SOURCE.md) or Kaggle's sales_train_evaluation.csv, in <data_dir>/m5/")
    keys = list(M5_IDS)
    if not hist[keys].reset_index(drop=True).equals(test[keys].reset_index(drop=True)):
        raise DatasetError("m5_last56: the two sales files do not list the same series in the same order")
    sales = pd.concat([test[keys], hist[first], test[_d_range(1942, 1969)]], axis=1)
    long = _m5_long(sales, _d_range(1914, 1969), _m5_calendar(paths["calendar.csv"]), snap="own")
    return Panel.from_long(long, id_col="id", freq="D", known_covariates=M5_LAST56_KNOWN,
                           static_categorical=M5_IDS)


_POOL = f"{GITHUB_RAW}/mathsoul/Pool-Inference/2f73110bec60c70bad84cd460e3e4cb0287dcdd2/M5RawData"
_M5_CALENDAR = Source("calendar.csv", "d12b5914ef03e66649adf5dd9e996e6602251c22b7a6af8f1f7e3aa12f8860f5",
                      url=f"{GITHUB_RAW}/tng-konrad/time-series-with-Konrad/35f69cf2df352c70693414db35c7842d9b8f94a0/"
                          "data/calendar.csv")
_KAGGLE_M5 = "https://www.kaggle.com/c/m5-forecasting-accuracy/data"

M5_LAST56 = register(DatasetSpec(
    name="m5_last56",
    folder="m5",
    files=(
        _M5_CALENDAR,
        Source("sales_test_evaluation.csv", "9d912fee92cef659513faf62e6825d9b8ed2345d08c92adf63f69602d5e25ad8",
               url=f"{_POOL}/sales_test_evaluation.csv"),
        Source("weights_evaluation.csv", "f56f2e5c1910ed75ecaa0ac57bafecb89e07c79ee96d1803913c7d501433ada1",
               url=f"{_POOL}/weights_evaluation.csv"),
        # d_1914..d_1941: the recovered file (derived, not downloadable), else Kaggle's history file
        Source("sales_test_validation_recovered.csv",
               "0e88bdeba0f9d5534667a3c1758dd595962447b212f5d596a29a2986c90dd5b1", optional=True),
        Source("sales_train_evaluation.csv", None, optional=True),
    ),
    task=Task(freq="D", horizon=28, num_windows=1, season=7, mase_season=7, count_data=True, intermittent=True,
              group="dept_id"),
    build=build_m5_last56,
    extra=lambda paths, panel: {"weights": _m5_weights(paths["weights_evaluation.csv"])},
    description="M5 (Walmart) unit sales, 30,490 item x store series, only the last 56 days "
                "(2016-04-25..2016-06-19): a 28-day context and the official 28-day hold-out. Known "
                "event-type flags and the series' own-state SNAP flag; static M5 ids; WSPL weights in "
                "extra['weights']. PARTIAL: no sales history before d_1914, no prices.",
    citation="Makridakis, Spiliotis & Assimakopoulos (2022), The M5 competition, IJF 38(4); Kaggle M5 "
             "(competition rules); test data released by the M Open Forecasting Center",
))


M5_KNOWN = ("sell_price",) + M5_EVENTS + tuple(f"snap_{s}" for s in M5_STATES)


def build_m5(paths: Mapping[str, Path]) -> Panel:
    """The Kaggle M5 files as fev-bench's ``m5_1D``: 30,490 series, d_1..d_1941 (2011-01-29..
    2016-05-22), known sell_price, event-type flags and snap_CA/TX/WI; known covariates run on to
    d_1969 so a model can also forecast the official hold-out."""
    cal = _m5_calendar(paths["calendar.csv"])
    sales = pd.read_csv(paths["sales_train_evaluation.csv"])
    prices = pd.read_csv(paths["sell_prices.csv"])
    days = [c for c in sales.columns if c.startswith("d_")]
    have = set(days)
    future_days = [d for d in cal.index if d not in have]
    long = _m5_long(sales, days, cal, snap="all", prices=prices)
    future = _m5_long(sales[list(M5_IDS)], future_days, cal, snap="all", prices=prices) if future_days else None
    return Panel.from_long(long, id_col="id", freq="D", known_covariates=M5_KNOWN,
                           static_categorical=M5_IDS, future=future)


M5 = register(DatasetSpec(
    name="m5",
    folder="m5",
    files=(
        _M5_CALENDAR,
        Source("sales_train_evaluation.csv", None),
        Source("sell_prices.csv", None),
        # the weights for scoring d_1914..d_1941 (the task's window), for m5_wspl
        Source("weights_validation.csv", "45884c6e10e8a3f038d18cf60d5cd3b9b902ba94d8811bc5edefd3ad4dd1c98e",
               url=f"{GITHUB_RAW}/Mcompetitions/M5-methods/60829cf13c8688b164a7a2fc8c4832cc216bdbec/"
                   "validation/weights_validation.csv", optional=True),
    ),
    task=Task(freq="D", horizon=28, num_windows=1, season=7, mase_season=7, count_data=True, intermittent=True,
              group="dept_id"),
    build=build_m5,
    extra=lambda paths, panel: ({"weights": _m5_weights(paths["weights_validation.csv"])}
                                if "weights_validation.csv" in paths else {}),
    description="M5 (Walmart) unit sales, 30,490 item x store series, d_1..d_1941 (2011-01-29..2016-05-22), "
                "fev-bench m5_1D: h=28, known sell_price, event types and SNAP, static M5 ids. The Kaggle "
                "files must be downloaded by hand.",
    citation="Makridakis, Spiliotis & Assimakopoulos (2022), The M5 competition, IJF 38(4); Kaggle M5 "
             "(competition rules)",
    manual=(f"download sales_train_evaluation.csv and sell_prices.csv (and calendar.csv) from {_KAGGLE_M5} "
            "(Kaggle account needed, accept the competition rules) into <data_dir>/m5/"),
))
