"""A data file that cannot be read is named in the error, alone or inside a folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlops.data.sources import DataSourceError, read_frame

GARBAGE = bytes(range(256)) * 8  # not UTF-8, no Parquet magic bytes


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("binary.csv", GARBAGE, "cannot be read as CSV"),
        ("binary.parquet", GARBAGE, "cannot be read as Parquet"),
        ("cut.csv.gz", b"\x1f\x8b\x08\x00garbage", "cannot be read as CSV"),
        ("empty.csv", b"", "is empty"),
    ],
)
def test_an_unreadable_file_is_named_in_the_error(
    tmp_path: Path, name: str, content: bytes, says: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(DataSourceError, match=says) as raised:
        read_frame(str(path))

    assert str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_unreadable_file_of_a_folder_is_named_not_the_folder(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1, 2]}).to_csv(tmp_path / "day-1.csv", index=False)
    (tmp_path / "day-2.csv").write_bytes(b"")

    with pytest.raises(DataSourceError, match=r"day-2\.csv is empty"):
        read_frame(str(tmp_path))


def test_a_csv_with_only_a_header_reads_as_no_rows(tmp_path: Path) -> None:
    (tmp_path / "header.csv").write_text("a,b\n")

    frame, _ = read_frame(str(tmp_path / "header.csv"))

    assert list(frame.columns) == ["a", "b"] and frame.empty
