"""Extract: raw copies are immutable and hashed; unreadable input fails with file and row."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest

from civicflow.settings import load_settings
from civicflow.sources import ExtractError, extract
from civicflow.spec import find_dataset

PROJECT = Path(__file__).resolve().parents[1]
CSV = PROJECT / "data" / "la311_service_requests" / "MyLA311_Service_Request_Data_2017_Subset.csv"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    return load_settings()


@pytest.fixture
def spec(settings):
    return find_dataset(settings.datasets_dir, "la311_service_requests")


def test_raw_copy_is_byte_identical_read_only_and_hashed(settings, spec) -> None:
    ext = extract(spec, settings, "run-1")
    assert ext.raw_path == settings.raw_dir / "la311_service_requests" / "run-1.csv"
    assert ext.raw_path.read_bytes() == CSV.read_bytes()
    assert ext.sha256 == hashlib.sha256(CSV.read_bytes()).hexdigest()
    assert not os.access(ext.raw_path, os.W_OK) or os.geteuid() == 0
    assert ext.raw_path.stat().st_mode & 0o222 == 0


def test_types_and_real_formats_parse(settings, spec) -> None:
    ext = extract(spec, settings, "run-1")
    expected = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    assert ext.rows == len(expected) == 9999
    frame = ext.frame
    assert list(frame.index[:2]) == [1, 2]
    # '12/31/2017 11:59:58 PM' → 23:59:58 (the 12-hour clock with AM/PM).
    assert frame.loc[1, "created_date"] == pd.Timestamp("2017-12-31 23:59:58")
    created = pd.to_datetime(expected["CreatedDate"], format="%m/%d/%Y %I:%M:%S %p")
    assert (frame["created_date"].to_numpy() == created.to_numpy()).all()
    # Empty strings are null, not "", and numbers stay numbers.
    assert frame["latitude"].isna().sum() == (expected["Latitude"] == "").sum()
    assert frame["cd"].dtype == "Int64"
    assert frame["cd"].isna().sum() == (expected["CD"] == "").sum()
    # Every non-empty location parsed as a geopoint.
    assert frame["location"].notna().sum() == (expected["Location"] != "").sum()


def _bad_copy(tmp_path: Path, mutate) -> Path:
    lines = CSV.read_bytes().split(b"\n")
    path = tmp_path / "bad.csv"
    path.write_bytes(mutate(lines))
    return path


def test_empty_file_is_rejected(settings, spec, tmp_path: Path) -> None:
    path = _bad_copy(tmp_path, lambda lines: b"")
    with pytest.raises(ExtractError, match="file is empty"):
        extract(spec, settings, "run-1", path)


def test_header_only_file_is_rejected(settings, spec, tmp_path: Path) -> None:
    path = _bad_copy(tmp_path, lambda lines: lines[0] + b"\n")
    with pytest.raises(ExtractError, match="no data rows"):
        extract(spec, settings, "run-1", path)


def test_non_utf8_byte_is_located(settings, spec, tmp_path: Path) -> None:
    def mutate(lines: list[bytes]) -> bytes:
        lines[41] = lines[41][:5] + b"\xe9" + lines[41][6:]
        return b"\n".join(lines)

    path = _bad_copy(tmp_path, mutate)
    with pytest.raises(ExtractError) as err:
        extract(spec, settings, "run-1", path)
    assert "not valid utf-8" in str(err.value)
    assert "line 42" in str(err.value) and "0xe9" in str(err.value)
    # the file the steward gave, not the private raw copy (that is in the detail)
    assert str(path) in str(err.value) and str(settings.raw_dir) not in str(err.value)
    assert err.value.detail is not None and str(settings.raw_dir) in err.value.detail


def test_truncated_last_line_is_named(settings, spec, tmp_path: Path) -> None:
    def mutate(lines: list[bytes]) -> bytes:
        body = [line for line in lines if line]
        body[-1] = body[-1][:60]
        return b"\n".join(body) + b"\n"

    path = _bad_copy(tmp_path, mutate)
    with pytest.raises(ExtractError) as err:
        extract(spec, settings, "run-1", path)
    assert "1 malformed row" in str(err.value)
    assert "line 10000" in str(err.value) and "expected 33 columns" in str(err.value)


def test_missing_source_file(settings, spec, tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="source file not found"):
        extract(spec, settings, "run-1", tmp_path / "nope.csv")
