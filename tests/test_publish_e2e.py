"""End to end over a real Datasette portal: good data goes live, bad data is refused
with a reason naming the file, row or field, and the live version stays complete."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from civicflow import published
from civicflow.ledger import Ledger
from civicflow.pipeline import RunOutcome, run_dataset
from civicflow.settings import Settings, load_settings
from civicflow.spec import SpecError

PROJECT = Path(__file__).resolve().parents[1]
CSV = PROJECT / "data" / "la311_service_requests" / "MyLA311_Service_Request_Data_2017_Subset.csv"
TABLE = "la311_service_requests"


@pytest.fixture(scope="module")
def live(datasette_server, tmp_path_factory) -> Iterator[tuple[Settings, RunOutcome]]:
    """The good version, published once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in datasette_server.env.items():
            mp.setenv(key, value)
        mp.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
        mp.setenv("CIVICFLOW_VAR_DIR", str(tmp_path_factory.mktemp("e2e") / "var"))
        settings = load_settings()
        outcome = run_dataset(settings, TABLE)
        yield settings, outcome


def _live_state(server) -> tuple[int, str]:
    rows = server.row_count(TABLE)
    digest = server.query(
        f"select group_concat(sr_number, ',') as ids from (select sr_number from {TABLE} order by sr_number)"
    )[0]["ids"]
    return rows, digest


def test_good_version_is_live_with_every_row(live, datasette_server) -> None:
    settings, outcome = live
    assert outcome.outcome in ("published", "unchanged"), outcome.reason
    expected = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    assert datasette_server.row_count(TABLE) == len(expected) == 9999
    row = datasette_server.query(f"select * from {TABLE} where sr_number = '1-870704831'")[0]
    assert row["request_type"] == "Homeless Encampment"
    assert row["cd"] == 13
    assert row["created_date"].startswith("2017-12-31T23:59:58") or row["created_date"].startswith(
        "2017-12-31 23:59:58"
    )
    manifest = published.latest(settings, TABLE)
    assert manifest is not None and manifest.rows == 9999
    assert pd.read_parquet(manifest.path).shape[0] == 9999


def test_republishing_unchanged_data_changes_nothing(live, datasette_server) -> None:
    settings, _ = live
    before = _live_state(datasette_server)
    again = run_dataset(settings, TABLE)
    assert again.outcome == "unchanged"
    assert "already holds" in again.reason
    assert _live_state(datasette_server) == before
    assert Ledger(settings.ledger_path).last(TABLE).outcome == "unchanged"


Mutation = Callable[[pd.DataFrame], pd.DataFrame]


def _write_variant(tmp_path: Path, mutate: Mutation) -> Path:
    frame = pd.read_csv(CSV, dtype=str, keep_default_na=False)
    path = tmp_path / "variant.csv"
    mutate(frame).to_csv(path, index=False)
    return path


def _dup_key(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[6, "SRNumber"] = frame.loc[2, "SRNumber"]  # data rows 3 and 7
    return frame


def _wrong_type(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[99, "CD"] = "thirteen"  # data row 100
    return frame


def _missing_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["Status"])


def _bad_status(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[[9, 19], "Status"] = "Lost"  # data rows 10 and 20
    return frame


@pytest.mark.parametrize(
    ("mutate", "must_mention"),
    [
        (_dup_key, ["sr_number", "3", "7"]),
        (_wrong_type, ["cd", "100", "thirteen"]),
        (_missing_column, ["Status"]),
        (_bad_status, ["status", "Lost", "10", "20"]),
    ],
    ids=[
        "duplicate-primary-key",
        "wrong-type-at-row",
        "missing-column",
        "value-outside-observed-set",
    ],
)
def test_bad_content_is_rejected_and_live_version_kept(
    live, datasette_server, tmp_path, mutate, must_mention
) -> None:
    settings, _ = live
    before = _live_state(datasette_server)
    outcome = run_dataset(settings, TABLE, _write_variant(tmp_path, mutate))
    assert outcome.outcome == "rejected"
    report = json.loads(outcome.report_path.read_text())
    text = outcome.reason + json.dumps(report)
    for word in must_mention:
        assert word in text, f"{word!r} not in report/reason"
    assert report["passed"] is False
    assert _live_state(datasette_server) == before
    assert Ledger(settings.ledger_path).last(TABLE).outcome == "rejected"


def _raw_bytes_variant(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "variant.csv"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_bytes", "must_mention"),
    [
        (lambda raw: b"", ["empty"]),
        (
            lambda raw: raw.replace(b"GREATER ECHO PARK", b"GREATER \xc9CHO PARK", 1),
            ["utf-8", "line 2"],
        ),
        (lambda raw: raw.rstrip(b"\n")[:-200], ["malformed", "line 10000"]),
    ],
    ids=["empty-file", "non-utf8", "truncated-last-line"],
)
def test_unreadable_files_are_rejected_with_location(
    live, datasette_server, tmp_path, make_bytes, must_mention
) -> None:
    settings, _ = live
    before = _live_state(datasette_server)
    outcome = run_dataset(
        settings, TABLE, _raw_bytes_variant(tmp_path, make_bytes(CSV.read_bytes()))
    )
    assert outcome.outcome == "rejected"
    for word in must_mention:
        assert word in outcome.reason
    assert _live_state(datasette_server) == before


def test_suite_that_does_not_parse_fails_naming_the_file(live, datasette_server, tmp_path) -> None:
    settings, _ = live
    project = tmp_path / "project"
    (project / "datasets").mkdir(parents=True)
    (project / "expectations").mkdir()
    (project / "datasets" / f"{TABLE}.yaml").write_text(
        (PROJECT / "datasets" / f"{TABLE}.yaml").read_text()
    )
    bad_suite = project / "expectations" / f"{TABLE}.json"
    bad_suite.write_text('{"name": "la311_service_requests", "expectations": [')
    (project / "pyproject.toml").write_text("")
    before = _live_state(datasette_server)
    other = load_settings(project)
    with pytest.raises(SpecError) as err:
        run_dataset(other, TABLE, CSV)
    assert str(bad_suite) in str(err.value)
    assert _live_state(datasette_server) == before
    assert Ledger(other.ledger_path).last(TABLE).outcome == "failed"
