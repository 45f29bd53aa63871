"""Reading user data: files and folders, local and fsspec, ordering, windows and label joins."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from mlops.contract.loader import load_contract
from mlops.contract.spec import Contract
from mlops.data.sources import (
    DataSourceError,
    Window,
    list_data_files,
    load_dataset,
    read_frame,
)

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


@pytest.fixture(scope="module")
def penguins() -> Contract:
    return load_contract(CONTRACTS / "penguins.yaml")


@pytest.fixture(scope="module")
def houses() -> Contract:
    return load_contract(CONTRACTS / "house_prices.yaml")


@pytest.fixture
def memory_root() -> Iterator[str]:
    root = f"memory://sources-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def birds(tags: list[str], times: list[object], **extra: list[object]) -> pd.DataFrame:
    n = len(tags)
    frame = pd.DataFrame(
        {
            "tag": tags,
            "observed_at": times,
            "bill_length_mm": [40.0 + i for i in range(n)],
            "flipper_length_mm": [190] * n,
            "island": ["Dream"] * n,
            "banded": [True] * n,
            "species": ["Adelie"] * n,
        }
    )
    return frame.assign(**extra)


# -- finding and reading files ------------------------------------------------------------------


def test_folders_are_searched_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    birds(["P0001"], ["2024-01-01"]).to_csv(tmp_path / "b" / "deep" / "x.csv", index=False)
    birds(["P0002"], ["2024-01-02"]).to_parquet(tmp_path / "a.parquet")
    birds(["P0003"], ["2024-01-03"]).to_csv(tmp_path / "c.csv.gz", index=False)
    birds(["P0004"], ["2024-01-04"]).to_parquet(tmp_path / "d.pq")
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "_SUCCESS.csv").write_text("a\n1\n")
    (tmp_path / ".hidden.csv").write_text("a\n1\n")
    files = list_data_files(str(tmp_path))
    names = [Path(f).relative_to(tmp_path).as_posix() for f in files]
    assert names == ["a.parquet", "b/deep/x.csv", "c.csv.gz", "d.pq"]
    frame, read = read_frame(str(tmp_path))
    assert read == files
    assert frame["tag"].tolist() == ["P0002", "P0001", "P0003", "P0004"]
    assert isinstance(frame.index, pd.RangeIndex)


def test_a_single_file_is_read(tmp_path: Path) -> None:
    birds(["P0001", "P0002"], ["2024-01-01", "2024-01-02"]).to_csv(tmp_path / "one.csv")
    frame, files = read_frame(str(tmp_path / "one.csv"))
    assert len(frame) == 2
    assert files == [str(tmp_path / "one.csv")]


def test_an_empty_folder_names_the_extensions_read(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataSourceError, match=r"no data files under .*\.csv, \.csv\.gz"):
        list_data_files(str(tmp_path))


def test_a_missing_path_and_an_unknown_extension_are_reported(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="no file or folder at"):
        list_data_files(str(tmp_path / "absent"))
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(DataSourceError, match=r"not a data file \(read: \.csv"):
        list_data_files(str(tmp_path / "data.json"))


def test_fsspec_urls_are_read(memory_root: str, penguins: Contract) -> None:
    fs = fsspec.filesystem("memory")
    with fs.open(f"{memory_root}/part-1.csv", "w") as fh:
        birds(["P0002"], ["2024-01-02"]).to_csv(fh, index=False)
    with fs.open(f"{memory_root}/part-0.parquet", "wb") as fh:
        birds(["P0001"], ["2024-01-01"]).to_parquet(fh)
    files = list_data_files(memory_root)
    assert [f.rsplit("/", 1)[-1] for f in files] == ["part-0.parquet", "part-1.csv"]
    assert all(f.startswith("memory://") for f in files)
    loaded = load_dataset(memory_root, penguins)
    assert loaded.frame["tag"].tolist() == ["P0001", "P0002"]
    assert loaded.files == tuple(files)


def test_string_columns_keep_leading_zeros(tmp_path: Path, houses: Contract) -> None:
    pd.DataFrame({"area_m2": [50.0], "rooms": [2], "city": ["007"], "price": [1.0]}).to_csv(
        tmp_path / "h.csv", index=False
    )
    assert load_dataset(str(tmp_path), houses).frame["city"].tolist() == ["007"]


# -- columns, ordering, timestamps --------------------------------------------------------------


def test_only_contract_columns_are_kept_in_contract_order(
    tmp_path: Path, penguins: Contract
) -> None:
    frame = birds(["P0001"], ["2024-01-01"], weather=["sunny"], observer=["ann"])
    shuffled = ["weather", *reversed([c for c in frame.columns if c != "weather"])]
    frame[shuffled].to_csv(tmp_path / "b.csv", index=False)
    loaded = load_dataset(str(tmp_path), penguins)
    assert list(loaded.frame.columns) == [c.name for c in penguins.columns]
    assert sorted(loaded.dropped_columns) == ["observer", "weather"]


def test_missing_columns_are_left_for_validation(tmp_path: Path, penguins: Contract) -> None:
    birds(["P0001"], ["2024-01-01"]).drop(columns=["island"]).to_csv(
        tmp_path / "b.csv", index=False
    )
    assert "island" not in load_dataset(str(tmp_path), penguins).frame.columns


def test_rows_are_ordered_by_timestamp_with_ties_in_file_order(
    tmp_path: Path, penguins: Contract
) -> None:
    birds(["P0001", "P0002"], ["2024-01-03", "2024-01-01"]).to_csv(tmp_path / "a.csv", index=False)
    birds(["P0003", "P0004"], ["2024-01-01", "2024-01-02"]).to_csv(tmp_path / "b.csv", index=False)
    loaded = load_dataset(str(tmp_path), penguins)
    assert loaded.frame["tag"].tolist() == ["P0002", "P0003", "P0004", "P0001"]
    assert isinstance(loaded.frame.index, pd.RangeIndex)
    assert loaded.frame["observed_at"].dtype.kind == "M"


def test_unparseable_timestamps_are_kept_last_with_their_value(
    tmp_path: Path, penguins: Contract
) -> None:
    times = ["2024-01-02", "yesterday", None, "2024-01-01"]
    birds(["P0001", "P0002", "P0003", "P0004"], times).to_csv(tmp_path / "b.csv", index=False)
    window = Window(start=datetime(2024, 1, 2), end=datetime(2024, 1, 3))
    loaded = load_dataset(str(tmp_path), penguins, window=window)
    assert loaded.frame["tag"].tolist() == ["P0001", "P0002", "P0003"]
    assert loaded.frame["observed_at"].iloc[1] == "yesterday"
    assert (loaded.rows_read, loaded.rows_in_window) == (4, 3)


def test_timezone_aware_timestamps_become_naive_utc(tmp_path: Path, penguins: Contract) -> None:
    times = pd.to_datetime(["2024-01-01 02:00", "2024-01-01 00:30"]).tz_localize("Europe/Paris")
    birds(["P0001", "P0002"], list(times)).to_parquet(tmp_path / "b.parquet")
    stamps = load_dataset(str(tmp_path), penguins).frame["observed_at"]
    assert stamps.dt.tz is None
    assert stamps.tolist() == [pd.Timestamp("2023-12-31 23:30"), pd.Timestamp("2024-01-01 01:00")]


def test_mixed_timestamp_formats_are_parsed(tmp_path: Path, penguins: Contract) -> None:
    times = ["2024-01-02T00:00:00Z", "2024-01-01", "01/03/2024 05:00", "2024-01-01T06:00:00+02:00"]
    birds(["P0001", "P0002", "P0003", "P0004"], times).to_csv(tmp_path / "b.csv", index=False)
    loaded = load_dataset(str(tmp_path), penguins)
    assert loaded.frame["tag"].tolist() == ["P0002", "P0004", "P0001", "P0003"]


def test_without_a_timestamp_rows_keep_file_order(tmp_path: Path, houses: Contract) -> None:
    rows = pd.DataFrame({"area_m2": [3.0, 1.0, 2.0], "rooms": [1, 2, 3], "city": ["Ab"] * 3})
    rows.assign(price=[1.0, 2.0, 3.0]).to_csv(tmp_path / "h.csv", index=False)
    loaded = load_dataset(str(tmp_path), houses, window=Window(last_rows=2))
    assert loaded.frame["area_m2"].tolist() == [1.0, 2.0]


# -- windows ------------------------------------------------------------------------------------


@pytest.fixture
def week(tmp_path: Path) -> str:
    times = [f"2024-01-0{d} 12:00" for d in range(1, 8)]
    birds([f"P000{d}" for d in range(1, 8)], times).to_csv(tmp_path / "w.csv", index=False)
    return str(tmp_path)


def test_window_start_is_inclusive_and_end_exclusive(week: str, penguins: Contract) -> None:
    window = Window(start=datetime(2024, 1, 2, 12), end=datetime(2024, 1, 5, 12))
    loaded = load_dataset(week, penguins, window=window)
    assert loaded.frame["tag"].tolist() == ["P0002", "P0003", "P0004"]


def test_aware_window_bounds_are_compared_in_utc(week: str, penguins: Contract) -> None:
    window = Window(start=datetime(2024, 1, 6, 13, tzinfo=UTC).astimezone())
    start = pd.Timestamp("2024-01-06 14:00", tz="Europe/Paris").to_pydatetime()
    assert load_dataset(week, penguins, window=window).frame["tag"].tolist() == ["P0007"]
    loaded = load_dataset(week, penguins, window=Window(start=start))
    assert loaded.frame["tag"].tolist() == ["P0007"]


def test_last_rows_keeps_the_newest_rows_after_the_range(week: str, penguins: Contract) -> None:
    window = Window(end=datetime(2024, 1, 6), last_rows=2)
    loaded = load_dataset(week, penguins, window=window)
    assert loaded.frame["tag"].tolist() == ["P0004", "P0005"]
    assert (loaded.rows_read, loaded.rows_in_window) == (7, 2)


def test_last_keeps_the_span_before_the_newest_row_in_the_range(
    week: str, penguins: Contract
) -> None:
    loaded = load_dataset(week, penguins, window=Window(last=timedelta(days=2)))
    assert loaded.frame["tag"].tolist() == ["P0006", "P0007"]  # after Jan 5 12:00, to Jan 7
    window = Window(end=datetime(2024, 1, 6), last=timedelta(days=1, hours=12), last_rows=1)
    assert load_dataset(week, penguins, window=window).frame["tag"].tolist() == ["P0005"]
    window = Window(end=datetime(2024, 1, 6), last=timedelta(days=1, hours=12))
    assert load_dataset(week, penguins, window=window).frame["tag"].tolist() == ["P0004", "P0005"]


def test_time_window_without_timestamp_column_is_refused(tmp_path: Path, houses: Contract) -> None:
    pd.DataFrame({"area_m2": [1.0]}).to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(DataSourceError, match=r"has no timestamp column.*last_rows"):
        load_dataset(str(tmp_path), houses, window=Window(start=datetime(2024, 1, 1)))


def test_inconsistent_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="last_rows must be >= 0"):
        Window(last_rows=-1)
    with pytest.raises(ValueError, match="is not before end"):
        Window(start=datetime(2024, 1, 2), end=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="last must be a positive span"):
        Window(last=timedelta(0))


# -- labels -------------------------------------------------------------------------------------


def test_labels_are_joined_on_the_id_keeping_the_last(tmp_path: Path, penguins: Contract) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "labels").mkdir()
    birds(["P0001", "P0002", "P0003"], ["2024-01-01", "2024-01-02", "2024-01-03"]).drop(
        columns=["species"]
    ).to_csv(tmp_path / "data" / "b.csv", index=False)
    labels = pd.DataFrame(
        {
            "tag": ["P0002", "P0001", "P0002", "P9999"],
            "species": ["Adelie", "Gentoo", "Chinstrap", "Adelie"],
            "label_time": ["2024-02-01"] * 4,
        }
    )
    labels.to_csv(tmp_path / "labels" / "l.csv", index=False)
    loaded = load_dataset(str(tmp_path / "data"), penguins, labels_uri=str(tmp_path / "labels"))
    assert loaded.frame["species"].tolist()[:2] == ["Gentoo", "Chinstrap"]
    assert pd.isna(loaded.frame["species"].iloc[2])
    assert loaded.unlabeled_rows == 1
    assert loaded.labeled_frame()["tag"].tolist() == ["P0001", "P0002"]
    assert "label_time" not in loaded.frame.columns
    assert loaded.dropped_columns == ()
    assert len(loaded.label_files) == 1


def test_labels_in_the_data_files_need_no_join(week: str, penguins: Contract) -> None:
    loaded = load_dataset(week, penguins)
    assert loaded.unlabeled_rows == 0
    assert len(loaded.labeled_frame()) == 7


def test_label_join_without_an_id_column_is_refused(tmp_path: Path, houses: Contract) -> None:
    pd.DataFrame({"area_m2": [1.0]}).to_csv(tmp_path / "h.csv", index=False)
    with pytest.raises(DataSourceError, match="no column with 'role: id'"):
        load_dataset(str(tmp_path), houses, labels_uri=str(tmp_path))


def test_label_files_without_the_target_are_reported(tmp_path: Path, penguins: Contract) -> None:
    (tmp_path / "labels").mkdir()
    birds(["P0001"], ["2024-01-01"]).to_csv(tmp_path / "b.csv", index=False)
    pd.DataFrame({"tag": ["P0001"], "kind": ["x"]}).to_csv(tmp_path / "labels" / "l.csv")
    with pytest.raises(DataSourceError, match="no column 'species'"):
        load_dataset(str(tmp_path / "b.csv"), penguins, labels_uri=str(tmp_path / "labels"))
