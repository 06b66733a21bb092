"""Walmart store x department weekly sales: the fev-bench ``walmart`` task."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from ..data.panel import Panel
from .registry import DatasetSpec, Source, Task, register

KNOWN = ("CPI", "Fuel_Price", "IsHoliday", "MarkDown1", "MarkDown2", "MarkDown3", "MarkDown4",
         "MarkDown5", "Temperature", "Unemployment")

#: fev-bench keeps the store x dept series with at least 2h + 1 = 79 observed weeks: this rule
#: gives its 2,936 series and reproduces its published Naive scores to 1e-9 (see docs/datasets.md).
MIN_OBSERVED_WEEKS = 79


def build_walmart(paths: Mapping[str, Path]) -> Panel:
    train = pd.read_csv(paths["train.csv.zip"], parse_dates=["Date"])
    features = pd.read_csv(paths["features.csv"], parse_dates=["Date"]).drop(columns="IsHoliday")
    stores = pd.read_csv(paths["stores.csv"])
    # IsHoliday is the same for every store in a week; take it from train (and test for the future)
    holidays = pd.read_csv(paths["test.csv.zip"], parse_dates=["Date"], usecols=["Date", "IsHoliday"])
    holidays = pd.concat([train[["Date", "IsHoliday"]], holidays]).drop_duplicates("Date")
    features = features.merge(holidays, on="Date", how="left")
    if features["IsHoliday"].isna().any():
        raise ValueError("walmart: IsHoliday unknown for some weeks of features.csv")
    features["IsHoliday"] = features["IsHoliday"].astype(float)

    counts = train.groupby(["Store", "Dept"]).size()
    keep = counts[counts >= MIN_OBSERVED_WEEKS].index
    train = train.set_index(["Store", "Dept"]).loc[keep].reset_index()
    last = train["Date"].max()
    # every kept series on every week of the history; weeks without a sales row stay NaN (masked)
    grid = pd.MultiIndex.from_product([keep.get_level_values(0).unique(), sorted(train["Date"].unique())],
                                      names=["Store", "Date"])
    frame = (pd.DataFrame(index=grid).reset_index()
             .merge(pd.DataFrame(list(keep), columns=["Store", "Dept"]), on="Store"))
    frame = frame.merge(train[["Store", "Dept", "Date", "Weekly_Sales"]], on=["Store", "Dept", "Date"], how="left")
    frame = frame.merge(features, on=["Store", "Date"], how="left").merge(stores, on="Store", how="left")
    frame["item_id"] = frame["Store"].astype(str) + "_" + frame["Dept"].astype(str)
    future = (features[features["Date"] > last]
              .merge(pd.DataFrame(list(keep), columns=["Store", "Dept"]), on="Store"))
    future["item_id"] = future["Store"].astype(str) + "_" + future["Dept"].astype(str)
    rename = {"Date": "timestamp"}
    return Panel.from_long(
        frame.rename(columns=rename), target="Weekly_Sales", freq="W-FRI",
        known_covariates=KNOWN, static_categorical=("Store", "Dept", "Type"), static_real=("Size",),
        future=future.rename(columns=rename),
    )


WALMART = register(DatasetSpec(
    name="walmart",
    folder="walmart_store_sales",
    files=(
        Source("train.csv.zip", "3c0f8ab69c83de7593389c03b39249fc550ea606c2a1cd14b88a5ac71470acbf"),
        Source("test.csv.zip", "0630e3c8502ff1eb5a1269a785ba178a1d55a5893f2aff0832a601016d736be1"),
        Source("features.csv", "56f4892cbfcd018afcb8703f8885bd520ef4bfdc4ee5d2f856cac6a1a3330de6"),
        Source("stores.csv", "88d146882923f04c85a24e0e0260a06ec09a173f3fb976a41b77b0d6003044d3"),
    ),
    task=Task(freq="W-FRI", horizon=39, num_windows=1, season=52, mase_season=1, min_history=1, group="Dept"),
    build=build_walmart,
    description="Walmart store x dept weekly sales, 2,936 series (>= 79 observed weeks), "
                "2010-02-05..2012-10-26; fev-bench `walmart` (h=39, last 39 weeks of each series).",
    citation="Kaggle, Walmart Recruiting - Store Sales Forecasting (2014)",
    manual=("download train.csv.zip, test.csv.zip, features.csv and stores.csv from "
            "https://www.kaggle.com/c/walmart-recruiting-store-sales-forecasting/data "
            "(Kaggle account needed) into <data_dir>/walmart_store_sales/"),
))
