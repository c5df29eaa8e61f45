"""End to end over a real Datasette portal: good data goes live, bad data is refused
with a reason naming the file, row or field, and the live version stays complete."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from civicflow import published
from civicflow.ledger import Ledger
from civicflow.pipeline import RunOutcome, run_dataset
from civicflow.settings import Settings, load_settings
from civicflow.spec import SpecError, find_dataset

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
    # the same input as the live version's run ends before any check or portal write
    assert "source unchanged" in again.reason
    assert again.report_path is None
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


# -- issue 8 items 7 and 8: concurrent runs, metadata edits, the Parquet copy ----------


def _portal_version(settings: Settings):
    from civicflow.portals import get_portal

    return get_portal("datasette", settings).current_version(TABLE)


def _assert_parquet_matches_portal(settings: Settings) -> None:
    live = _portal_version(settings)
    manifest = published.latest(settings, TABLE)
    assert live is not None and manifest is not None
    assert (manifest.version, manifest.data_version) == (live.version, live.data_version)
    assert manifest.path.is_file() and pd.read_parquet(manifest.path).shape[0] == live.rows


def test_a_metadata_edit_goes_live_as_a_new_version(live, datasette_server) -> None:
    settings, _ = live
    run_dataset(settings, TABLE)  # the bundled spec is live
    rows_before = _live_state(datasette_server)
    spec = find_dataset(settings.datasets_dir, TABLE)
    column = spec.published_fields()[0]
    edited = spec.model_copy(
        update={
            "title": spec.title + " (edited)",
            "fields": [
                f.model_copy(update={"description": "Edited description."})
                if f.name == column.name
                else f
                for f in spec.fields
            ],
        }
    )
    try:
        outcome = run_dataset(settings, TABLE, spec=edited)
        assert outcome.outcome == "published", outcome.reason
        assert outcome.result is not None and outcome.result.change == "metadata"
        assert outcome.reason == "published a new version (metadata only, same rows)"
        meta = get_portal_metadata(datasette_server)
        assert meta["title"] == edited.title
        assert meta["columns"][column.name].startswith("Edited description.")
        assert _live_state(datasette_server) == rows_before  # same rows, new version
        assert Ledger(settings.ledger_path).last(TABLE).portal_version == outcome.result.version
        _assert_parquet_matches_portal(settings)
        manifest = published.latest(settings, TABLE)
        assert manifest is not None and manifest.metadata["title"] == edited.title
    finally:
        restored = run_dataset(settings, TABLE)
    assert restored.outcome == "published" and get_portal_metadata(datasette_server)["title"] == (
        spec.title
    )


def get_portal_metadata(server) -> dict:
    import httpx

    response = httpx.get(
        f"{server.url}/portal/{TABLE}.json", params={"_extra": "metadata", "_size": "0"}
    )
    response.raise_for_status()
    return response.json()["metadata"]


def test_a_parquet_copy_that_lags_after_a_crash_past_the_swap_is_rewritten(
    live, datasette_server, tmp_path, monkeypatch
) -> None:
    settings, _ = live
    variant = _write_variant(tmp_path, lambda f: f.iloc[:-5])

    def crash(*args, **kwargs):
        raise OSError("disk full (injected after the swap)")

    with monkeypatch.context() as mp:
        mp.setattr(published, "write_version", crash)
        with pytest.raises(OSError, match="injected"):
            run_dataset(settings, TABLE, variant)
    live_version = _portal_version(settings)
    assert live_version is not None and live_version.rows == 9994  # the swap happened
    assert published.lags(settings, TABLE, live_version.version)

    again = run_dataset(settings, TABLE, variant)

    assert again.outcome == "unchanged", again.reason
    _assert_parquet_matches_portal(settings)
    restored = run_dataset(settings, TABLE)
    assert restored.outcome == "published"
    _assert_parquet_matches_portal(settings)


def test_two_runs_at_once_one_publishes_the_other_is_refused_naming_it(
    live, datasette_server, tmp_path
) -> None:
    import threading

    settings, _ = live
    run_dataset(settings, TABLE)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    sources = {
        "a": _write_variant(tmp_path / "a", lambda f: f.iloc[:-3]),
        "b": _write_variant(tmp_path / "b", lambda f: f.iloc[:-7]),
    }
    outcomes: dict[str, RunOutcome | BaseException] = {}

    def run(name: str) -> None:
        try:
            outcomes[name] = run_dataset(settings, TABLE, sources[name])
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=(name,)) for name in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)

    records = {r.run_id: r for r in Ledger(settings.ledger_path).runs(TABLE)}
    ran = {name: records[_run_id_of(o)] for name, o in outcomes.items()}
    winners = [n for n, r in ran.items() if r.outcome == "published"]
    assert len(winners) == 1, {n: (r.outcome, r.reason) for n, r in ran.items()}
    (loser,) = set(sources) - set(winners)
    winner_run = ran[winners[0]].run_id
    assert ran[loser].outcome == "failed"
    assert winner_run in ran[loser].reason and "changed since run" in ran[loser].reason
    live_version = _portal_version(settings)
    assert live_version is not None and live_version.run_id == winner_run
    assert datasette_server.row_count(TABLE) == {"a": 9996, "b": 9992}[winners[0]]
    _assert_parquet_matches_portal(settings)
    assert run_dataset(settings, TABLE).outcome == "published"  # back to the bundled data


def _run_id_of(outcome: RunOutcome | BaseException) -> str:
    """The run id of a finished run, or of a failed one (recorded before re-raising)."""
    if isinstance(outcome, RunOutcome):
        return outcome.record.run_id
    match = re.search(r"run (\d{8}T\d{6}Z-[0-9a-f]{6}) refused", str(outcome))
    assert match, outcome
    return match.group(1)
