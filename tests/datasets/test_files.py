"""Files of the registered datasets: checksums, missing files, downloads (file:// URLs, no network)."""
import dataclasses
import shutil

import pytest

from forecasting.datasets import DatasetError, fetch, get_spec, list_datasets, load, registry, sha256

ALL = ["ausgrid", "ausgrid_half_hourly", "car_parts", "m5", "m5_last56", "metro_traffic", "pedestrian",
       "stallion", "traffic_weekly"]


def test_every_dataset_is_registered_with_checksums_and_a_way_to_get_its_files():
    assert set(ALL) <= set(list_datasets())
    for name in ALL:
        spec = get_spec(name)
        assert spec.description and spec.citation, name
        for src in spec.files:
            assert src.sha256 is None or len(src.sha256) == 64, (name, src.name)
            assert src.url or src.optional or spec.manual, (name, src.name)  # downloadable, optional or manual
            if src.url:
                assert src.url.startswith("https://raw.githubusercontent.com/"), src.url


def test_shared_files_match_their_registered_checksums(data_dir):
    for name in ALL:
        spec = get_spec(name)
        for src in spec.files:
            path = data_dir / spec.folder / src.name
            if src.sha256 and path.exists():
                assert sha256(path) == src.sha256, path


def copy_spec_files(spec, data_dir, dest):
    (dest / spec.folder).mkdir(parents=True, exist_ok=True)
    for src in spec.files:
        shutil.copy(data_dir / spec.folder / src.name, dest / spec.folder / src.name)


def test_corrupt_file_is_refused(data_dir, tmp_path):
    spec = get_spec("traffic_weekly")
    copy_spec_files(spec, data_dir, tmp_path)
    path = tmp_path / spec.folder / "traffic_weekly_results.txt"
    path.write_bytes(path.read_bytes().replace(b"10.3964", b"10.3965"))
    with pytest.raises(DatasetError, match="sha256"):
        load("traffic_weekly", data_dir=tmp_path, download=False)


def test_unreadable_file_without_checksum_check_names_the_file(data_dir, tmp_path):
    spec = get_spec("traffic_weekly")
    copy_spec_files(spec, data_dir, tmp_path)
    for src in spec.files:
        (tmp_path / spec.folder / src.name).write_bytes(b"\x00garbage\xff" * 3)
    with pytest.raises(DatasetError, match=r"dataset 'traffic_weekly': could not read .*traffic_weekly.*"
                                           r"load with verify=True"):
        load("traffic_weekly", data_dir=tmp_path, download=False, verify=False)


def test_a_data_directory_that_does_not_exist_is_named_not_created(tmp_path, monkeypatch):
    missing = tmp_path / "typo"
    with pytest.raises(DatasetError, match=r"the data directory .*typo \(data_dir=\) does not exist"):
        load("car_parts", data_dir=missing)
    monkeypatch.setenv("FORECASTING_DATA", str(missing))
    with pytest.raises(DatasetError, match=r"typo \(\$FORECASTING_DATA\) does not exist"):
        load("car_parts")
    assert not missing.exists()


def test_missing_file_is_named(data_dir, tmp_path):
    spec = get_spec("ausgrid")
    copy_spec_files(spec, data_dir, tmp_path)
    (tmp_path / spec.folder / "ausgrid_weekly_results.txt").unlink()
    with pytest.raises(DatasetError, match="missing file.*ausgrid_weekly_results.txt"):
        load("ausgrid", data_dir=tmp_path, download=False)


def local_spec(name, data_dir, monkeypatch, url_of=lambda src: src.name):
    """The registered spec with its URLs pointing at the shared files (file://), registered in place."""
    spec = get_spec(name)
    files = tuple(dataclasses.replace(s, url=(data_dir / spec.folder / url_of(s)).as_uri()) if s.url else s
                  for s in spec.files)
    spec = dataclasses.replace(spec, files=files)
    monkeypatch.setitem(registry._REGISTRY, name, spec)
    return spec


def test_download_arrives_checked_and_atomically(data_dir, tmp_path, monkeypatch):
    local_spec("traffic_weekly", data_dir, monkeypatch)
    ds = load("traffic_weekly", data_dir=tmp_path)  # downloads both files
    folder = tmp_path / "traffic_weekly_pems_sf"
    assert sorted(p.name for p in folder.iterdir()) == ["traffic_weekly_dataset.txt", "traffic_weekly_results.txt"]
    assert sha256(folder / "traffic_weekly_results.txt") == sha256(
        data_dir / "traffic_weekly_pems_sf" / "traffic_weekly_results.txt")
    assert ds.panel.num_series == 862


def test_download_with_a_wrong_checksum_is_not_kept(data_dir, tmp_path, monkeypatch):
    spec = local_spec("traffic_weekly", data_dir, monkeypatch, url_of=lambda src: "traffic_weekly_dataset.txt")
    with pytest.raises(DatasetError, match="sha256"):
        fetch(spec, tmp_path)
    left = sorted(p.name for p in (tmp_path / "traffic_weekly_pems_sf").iterdir())
    assert left == ["traffic_weekly_dataset.txt"]  # the bad results file and its temp file are gone


def test_car_parts_downloads_the_original_rda_when_the_csv_is_absent(data_dir, tmp_path, monkeypatch):
    spec = local_spec("car_parts", data_dir, monkeypatch)
    paths = fetch(spec, tmp_path)
    assert set(paths) == {"carparts.rda"} and (tmp_path / "car_parts" / "carparts.rda").exists()
