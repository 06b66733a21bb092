import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_forecast

from forecasting.scenarios import (
    Hierarchy,
    ScenarioError,
    ScenarioSet,
    ScenarioStream,
    SchaakeShuffle,
    read_numpy,
    read_torch,
    write_numpy,
    write_parquet,
    write_torch,
)


def test_parquet_is_long_and_holds_every_value(panel_truth, tmp_path):
    panel, _ = panel_truth
    sc = ScenarioSet.from_forecast(make_forecast(panel, samples=7))
    path = write_parquet(tmp_path / "s.parquet", sc, chunk_size=3)
    f = pq.ParquetFile(path)
    assert f.metadata.num_row_groups == 3 and f.metadata.num_rows == 7 * 12 * 6
    df = f.read().to_pandas()
    assert list(df.columns) == ["scenario", "weight", "item_id", "timestamp", "value"]
    assert df.scenario.tolist() == sorted(df.scenario.tolist())
    wide = df.pivot_table(index=["item_id", "scenario"], columns="timestamp", values="value", observed=True)
    got = torch.tensor(wide.loc[list(sc.item_ids)].to_numpy()).view(12, 7, 6)
    assert torch.equal(got.float(), sc.values)
    assert df.weight.unique().tolist() == pytest.approx([1 / 7])
    assert df.groupby("scenario").weight.first().sum() == pytest.approx(1.0)
    first = df[(df.item_id == "x0") & (df.scenario == 0)].timestamp
    assert list(first) == list(pd.date_range(sc.start[0], periods=6, freq="W-FRI"))
    assert not list(tmp_path.glob(".*tmp"))


def test_numpy_and_torch_roundtrips(panel_truth, tmp_path):
    panel, _ = panel_truth
    sc = ScenarioSet.from_forecast(make_forecast(panel, samples=9)).select([0, 2, 4])
    path = write_numpy(tmp_path / "s.npy", sc, chunk_size=2)
    assert np.load(path).shape == (3, 12, 6)  # scenario-major for simulators
    meta = json.loads((tmp_path / "s.index.json").read_text())
    assert meta["weights"] == pytest.approx([1 / 3] * 3) and meta["item_ids"][:2] == ["x0", "x1"]
    back = read_numpy(path)
    assert torch.equal(back.values, sc.values) and list(back.start) == list(sc.start)
    t = read_torch(write_torch(tmp_path / "s.pt", sc))
    assert torch.equal(t.values, sc.values) and torch.equal(t.weights, sc.weights) and t.freq == "W-FRI"
    with pytest.raises(ScenarioError, match=".npy"):
        write_numpy(tmp_path / "s.bin", sc)


def test_series_ids_keep_their_type_and_the_numpy_pair_cannot_be_mixed(panel_truth, tmp_path):
    panel, _ = panel_truth
    sc = ScenarioSet.from_forecast(make_forecast(panel, samples=4))
    ints = sc.replace(item_ids=pd.Index(range(100, 112), name="series"))
    t = read_torch(write_torch(tmp_path / "s.pt", ints))
    assert t.item_ids.tolist() == list(range(100, 112)) and t.item_ids.name == "series"
    path = write_numpy(tmp_path / "s.npy", ints)
    assert read_numpy(path).item_ids.tolist() == list(range(100, 112))
    # a run that dies after the values file is replaced, before its index: the pair is refused
    index = (tmp_path / "s.index.json").read_text()
    write_numpy(path, sc.replace(values=sc.values + 1))
    (tmp_path / "s.index.json").write_text(index)
    with pytest.raises(ScenarioError, match="does not describe .*interrupted write_numpy"):
        read_numpy(path)
    (tmp_path / "s.index.json").write_text("{not json")
    with pytest.raises(ScenarioError, match="is not an index written by write_numpy"):
        read_numpy(path)
    (tmp_path / "s.index.json").unlink()
    with pytest.raises(ScenarioError, match=r"s.index.json does not exist: write_numpy writes the index"):
        read_numpy(path)


def test_numpy_index_keeps_the_zone_of_starts_on_both_sides_of_a_dst_change(tmp_path):
    start = pd.DatetimeIndex([pd.Timestamp("2024-10-25", tz="Europe/Berlin"), pd.Timestamp("2024-03-01", tz="Europe/Berlin")])
    sc = ScenarioSet(torch.zeros(2, 3, 4), torch.full((3,), 1 / 3, dtype=torch.float64), pd.Index([1, 2]), start, "D")
    back = read_numpy(write_numpy(tmp_path / "s.npy", sc))
    assert list(back.start) == list(start) and str(back.start.tz) == "Europe/Berlin"


def test_parquet_keeps_the_timezone_of_the_dates(panel_truth, tmp_path):
    panel, _ = panel_truth
    sc = ScenarioSet.from_forecast(make_forecast(panel, samples=2))
    local = sc.replace(start=sc.start.tz_localize("Europe/Berlin"))
    df = pq.read_table(write_parquet(tmp_path / "s.parquet", local)).to_pandas()
    first = df[(df.item_id == "x0") & (df.scenario == 0)].timestamp
    assert list(first) == list(pd.date_range(local.start[0], periods=6, freq="W-FRI"))


def test_generated_stream_is_bounded_coherent_and_complete(panel_truth, tmp_path):
    panel, _ = panel_truth
    dep = SchaakeShuffle("diff").fit(panel, 6)
    hier = Hierarchy.from_panel(panel, ["store", "region"])
    calls = []

    def sampler(n, seed):
        calls.append(n)
        return make_forecast(panel, samples=n, seed=seed)

    stream = ScenarioStream.generate(sampler, dep, num_scenarios=25, chunk_size=10, hierarchy=hier)
    assert stream.num_series == 12 + 3 + 2 + 1 and stream.item_ids[-1] == "total"
    chunks = list(stream)
    assert [c.values.shape[1] for c in chunks] == [10, 10, 5] and max(calls) == 10
    for c in chunks:
        assert torch.allclose(c.values[-1], c.values[:12].sum(0), rtol=1e-6)  # total = sum of the series
        assert torch.allclose(c.values[12:15].sum(0), c.values[-1], rtol=1e-5)
    assert float(torch.cat([c.weights for c in chunks]).sum()) == pytest.approx(1.0)
    df = pq.read_table(write_parquet(tmp_path / "g.parquet", stream)).to_pandas()
    assert len(df) == 25 * 18 * 6 and df.scenario.nunique() == 25
