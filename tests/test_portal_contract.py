"""The Portal protocol, checked the same way for every registered portal kind.

Each kind supplies a ``<kind>_contract_portal`` fixture (see tests/fixtures/portal.py)
returning a PortalUnderTest backed by a real server; a registered kind without one
fails here rather than going untested.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from civicflow import published
from civicflow.portals import (
    Portal,
    PortalConflict,
    PortalError,
    PublishResult,
    RowChanges,
    get_portal,
    published_version,
    registered_portals,
    server,
)
from civicflow.portals.datasette import DatasettePortal
from civicflow.portals.socrata import SocrataPortal
from civicflow.settings import Settings
from civicflow.spec.models import FieldSpec
from tests.fixtures.portal import (
    PROJECT_DIR,
    SAMPLE_FIELDS,
    DatasetteServer,
    PortalUnderTest,
    point_civicflow_at,
    sample_frame,
    sample_metadata,
    unique_table,
)
from tests.socrata.fixtures import KEY_ID, KEY_SECRET, SocrataServer, start_server
from tests.socrata.tls import make_tls_files


@pytest.fixture
def socrata_contract_portal(socrata_tls: SocrataServer, tmp_path: Path) -> PortalUnderTest:
    """The Socrata adapter against the Socrata test server over TLS (socrata-py needs https)."""
    assert socrata_tls.tls is not None
    env = {
        "CIVICFLOW_SOCRATA_DOMAIN": socrata_tls.url,
        "CIVICFLOW_SOCRATA_KEY_ID": KEY_ID,
        "CIVICFLOW_SOCRATA_KEY_SECRET": KEY_SECRET,
        "CIVICFLOW_SOCRATA_CA_BUNDLE": str(socrata_tls.tls.ca),
    }
    settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path / "var", env=env)
    portal = get_portal("socrata", settings)
    assert isinstance(portal, SocrataPortal)

    def view(table: str) -> dict[str, Any]:
        fourfour = portal.fourfour(table)
        assert fourfour is not None, f"no four-by-four recorded for {table}"
        response = requests.get(
            f"{socrata_tls.url}/api/views/{fourfour}.json",
            auth=(KEY_ID, KEY_SECRET),
            verify=str(socrata_tls.tls.ca),  # type: ignore[union-attr]
            timeout=30,
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def row_count(table: str) -> int:
        fourfour = portal.fourfour(table)
        response = requests.get(
            f"{socrata_tls.url}/resource/{fourfour}.json",
            params={"$select": "id", "$limit": "1000000"},  # the test server has no count(*)
            auth=(KEY_ID, KEY_SECRET),
            verify=str(socrata_tls.tls.ca),  # type: ignore[union-attr]
            timeout=30,
        )
        response.raise_for_status()
        return len(response.json())

    def metadata(table: str) -> dict[str, Any]:
        got = view(table)
        return {
            "title": got["name"],
            "description": got["description"],
            "license": got.get("licenseId"),
            "source": got.get("attribution"),
            "columns": {c["fieldName"]: c["description"] for c in got["columns"]},
        }

    return PortalUnderTest(portal=portal, row_count=row_count, metadata=metadata)


@dataclasses.dataclass
class Outage:
    """A portal on a private server that goes down mid-publish once ``armed``."""

    portal: Portal
    row_count: Callable[[str], int]
    restart: Callable[[], object]
    armed: bool = False


@pytest.fixture
def datasette_outage(
    datasette_factory: Callable[[], DatasetteServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Outage:
    private = datasette_factory()
    settings = point_civicflow_at(private, tmp_path / "client-var", monkeypatch)
    portal = get_portal("datasette", settings)
    assert isinstance(portal, DatasettePortal)
    portal.batch_rows, portal.lease_seconds = 100, 2
    down = Outage(portal, private.row_count, private.start)

    def kill_after_the_first_batch(done: int, total: int) -> None:
        if down.armed and done >= 100:
            down.armed = False
            private.kill()  # SIGKILL: mid-upload, no chance to finish

    portal.on_batch = kill_after_the_first_batch
    return down


@pytest.fixture
def socrata_outage(tmp_path: Path) -> Iterator[Outage]:
    server = start_server(tls=make_tls_files(tmp_path))
    assert server.tls is not None
    env = {
        "CIVICFLOW_SOCRATA_DOMAIN": server.url,
        "CIVICFLOW_SOCRATA_KEY_ID": KEY_ID,
        "CIVICFLOW_SOCRATA_KEY_SECRET": KEY_SECRET,
        "CIVICFLOW_SOCRATA_CA_BUNDLE": str(server.tls.ca),
    }
    settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path / "var", env=env)

    def stop_after_the_upload(step: str) -> None:
        # "uploaded": a publish's rows are in its revision; "changes": a change set is
        # about to be sent
        if down.armed and step in ("uploaded", "changes"):
            down.armed = False
            server.stop()  # down between the upload and the apply

    portal = SocrataPortal(
        settings, retry_seconds=1.0, first_backoff=0.2, on_step=stop_after_the_upload
    )

    def row_count(table: str) -> int:
        response = requests.get(
            f"{server.url}/resource/{portal.fourfour(table)}.json",
            params={"$select": "id", "$limit": "1000000"},
            auth=(KEY_ID, KEY_SECRET),
            verify=str(server.tls.ca),  # type: ignore[union-attr]
            timeout=30,
        )
        response.raise_for_status()
        return len(response.json())

    down = Outage(portal, row_count, server.start)
    yield down
    server.stop()


@pytest.fixture(params=registered_portals())
def outage(request: pytest.FixtureRequest) -> Outage:
    fixture: Outage = request.getfixturevalue(f"{request.param}_outage")
    assert fixture.portal.kind == request.param
    return fixture


@pytest.fixture(params=registered_portals())
def under_test(request: pytest.FixtureRequest) -> PortalUnderTest:
    fixture: PortalUnderTest = request.getfixturevalue(f"{request.param}_contract_portal")
    assert fixture.portal.kind == request.param
    return fixture


#: a secret no portal was given: each kind's wrong credential
WRONG_SECRET = "wrong-secret-CANARY-4d1c"  # noqa: S105  (a test value)


@dataclasses.dataclass
class WrongCredentials:
    """A portal whose publishing secret (``setting``) is ``secret``, a wrong one, beside
    the contract portal with the right one (to publish first and read back)."""

    portal: Portal
    setting: str
    secret: str
    under_test: PortalUnderTest


@pytest.fixture
def socrata_wrong_credentials(
    socrata_contract_portal: PortalUnderTest, tmp_path: Path
) -> WrongCredentials:
    """The key secret wrong (as tests/test_portal_socrata.py's bad-credential test)."""
    right = socrata_contract_portal.portal
    assert isinstance(right, SocrataPortal)
    setting = "CIVICFLOW_SOCRATA_KEY_SECRET"  # noqa: S105  (a variable's name)
    env = {**right.settings.env, setting: WRONG_SECRET}
    wrong = get_portal("socrata", dataclasses.replace(right.settings, env=env))
    return WrongCredentials(wrong, setting, WRONG_SECRET, socrata_contract_portal)


@pytest.fixture
def datasette_wrong_credentials(
    datasette_contract_portal: PortalUnderTest, portal_env: Settings
) -> WrongCredentials:
    """The portal's signing secret wrong: each publish mints its token from it."""
    setting = server.SECRET_ENV
    env = {**portal_env.env, setting: WRONG_SECRET}
    wrong = get_portal("datasette", dataclasses.replace(portal_env, env=env))
    return WrongCredentials(wrong, setting, WRONG_SECRET, datasette_contract_portal)


@pytest.fixture(params=registered_portals())
def wrong_credentials(request: pytest.FixtureRequest) -> WrongCredentials:
    fixture: WrongCredentials = request.getfixturevalue(f"{request.param}_wrong_credentials")
    assert fixture.portal.kind == request.param
    return fixture


def test_a_publish_with_a_wrong_secret_names_the_setting_never_the_secret(
    wrong_credentials: WrongCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    under_test = wrong_credentials.under_test
    table = unique_table("cred")
    first = sample_frame(20, "first")
    _publish(under_test, table, first, "run-1")
    before = under_test.portal.current_version(table)
    second = sample_frame(30, "second", seed=1)
    with caplog.at_level(logging.DEBUG), pytest.raises(PortalError) as refused:
        wrong_credentials.portal.publish(
            table,
            second,
            fields=SAMPLE_FIELDS,
            primary_key=["id"],
            version=published.content_version(second),
            run_id="run-2",
            metadata=sample_metadata(),
        )
    message = str(refused.value)
    assert wrong_credentials.secret not in message
    assert caplog.records and wrong_credentials.secret not in caplog.text
    assert under_test.portal.current_version(table) == before
    assert under_test.row_count(table) == 20
    assert wrong_credentials.setting in message, message


def _publish(
    under_test: PortalUnderTest,
    table: str,
    frame,
    run_id: str,
    title: str = "Sample requests",
    **kwargs,
):
    return under_test.portal.publish(
        table,
        frame,
        fields=SAMPLE_FIELDS,
        primary_key=["id"],
        version=published.content_version(frame),
        run_id=run_id,
        metadata=sample_metadata(title),
        **kwargs,
    )


def test_a_portal_down_mid_publish_keeps_the_old_version_and_the_next_run_finishes(
    outage: Outage,
) -> None:
    table = unique_table("outage")
    first, second = sample_frame(300, "first"), sample_frame(500, "second", seed=1)

    def publish(frame: pd.DataFrame, run_id: str) -> PublishResult:
        return outage.portal.publish(
            table,
            frame,
            fields=SAMPLE_FIELDS,
            primary_key=["id"],
            version=published.content_version(frame),
            run_id=run_id,
            metadata=sample_metadata(),
        )

    publish(first, "run-1")
    before = outage.portal.current_version(table)
    outage.armed = True
    with pytest.raises(PortalError, match="unreachable"):
        publish(second, "run-2")
    outage.restart()
    assert outage.portal.current_version(table) == before
    assert outage.row_count(table) == 300

    result = publish(second, "run-3")
    live = outage.portal.current_version(table)
    assert result.changed is True and live is not None
    assert (live.run_id, live.rows, outage.row_count(table)) == ("run-3", 500, 500)


def _version(frame, title: str = "Sample requests") -> str:
    """The published version: the rows' hash and the metadata together."""
    return published_version(published.content_version(frame), sample_metadata(title))


def test_unpublished_table_has_no_version(under_test: PortalUnderTest) -> None:
    assert under_test.portal.current_version(unique_table("never")) is None


def test_publish_then_current_version(under_test: PortalUnderTest) -> None:
    table = unique_table()
    frame = sample_frame(1_234, "first")
    result = _publish(under_test, table, frame, "run-1")
    version = _version(frame)
    assert (result.table, result.version, result.rows, result.changed) == (
        table,
        version,
        len(frame),
        True,
    )
    assert result.url == under_test.portal.table_url(table)
    live = under_test.portal.current_version(table)
    assert live is not None
    assert (live.table, live.version, live.rows, live.run_id) == (
        table,
        version,
        len(frame),
        "run-1",
    )
    assert under_test.row_count(table) == len(frame)


def test_same_version_is_unchanged(under_test: PortalUnderTest) -> None:
    table = unique_table()
    frame = sample_frame(300, "first")
    _publish(under_test, table, frame, "run-1")
    before = under_test.portal.current_version(table)
    again = _publish(under_test, table, frame, "run-2")
    assert again.changed is False
    assert again.rows == len(frame)
    assert under_test.portal.current_version(table) == before  # run-1 still recorded as live


def test_new_version_replaces_the_old(under_test: PortalUnderTest) -> None:
    table = unique_table()
    _publish(under_test, table, sample_frame(500, "first"), "run-1")
    second = sample_frame(200, "second", seed=1)
    result = _publish(under_test, table, second, "run-2")
    assert result.changed is True
    live = under_test.portal.current_version(table)
    assert live is not None
    assert (live.version, live.rows, live.run_id) == (_version(second), 200, "run-2")
    assert live.data_version == published.content_version(second)
    assert under_test.row_count(table) == 200


def test_metadata_reaches_the_portal(under_test: PortalUnderTest) -> None:
    table = unique_table()
    _publish(under_test, table, sample_frame(10, "first"), "run-1", title="First title")
    _publish(under_test, table, sample_frame(10, "second"), "run-2", title="Second title")
    expected = sample_metadata("Second title")
    got = under_test.metadata(table)
    assert got["title"] == "Second title"
    assert got["description"] == expected.description
    assert got["license"] == expected.license
    assert got["source"] == expected.source
    assert got["columns"] == expected.columns


def test_a_metadata_edit_is_a_new_version_with_the_same_rows(under_test: PortalUnderTest) -> None:
    """Issue 8 item 8: a new title alone used to report "unchanged"."""
    table = unique_table()
    frame = sample_frame(50, "first")
    first = _publish(under_test, table, frame, "run-1", title="First title")
    edited = _publish(under_test, table, frame, "run-2", title="Edited title")
    assert edited.changed is True and edited.version != first.version
    assert edited.version == _version(frame, "Edited title")
    live = under_test.portal.current_version(table)
    assert live is not None and (live.version, live.run_id, live.rows) == (
        edited.version,
        "run-2",
        50,
    )
    assert live.data_version == published.content_version(frame)
    assert under_test.metadata(table)["title"] == "Edited title"
    assert under_test.row_count(table) == 50
    again = _publish(under_test, table, frame, "run-3", title="Edited title")
    assert again.changed is False


def test_a_publish_from_a_stale_base_is_refused_naming_the_other_run(
    under_test: PortalUnderTest,
) -> None:
    """Issue 8 item 7: compare-and-swap on the live version."""
    table = unique_table()
    _publish(under_test, table, sample_frame(40, "first"), "run-1")
    started_from = under_test.portal.current_version(table)
    _publish(under_test, table, sample_frame(30, "second", seed=1), "run-2")
    with pytest.raises(PortalConflict, match="run-2") as refused:
        _publish(under_test, table, sample_frame(20, "third", seed=2), "run-3", base=started_from)
    assert refused.value.other_run == "run-2"
    live = under_test.portal.current_version(table)
    assert live is not None and (live.run_id, live.rows) == ("run-2", 30)
    assert under_test.row_count(table) == 30


# -- plan (publish --dry-run): what a publish would change, computed by reading only -----


def _plan(under_test: PortalUnderTest, table: str, frame, *, fields=SAMPLE_FIELDS, **kwargs):
    title = kwargs.pop("title", "Sample requests")
    return under_test.portal.plan(
        table,
        frame,
        fields=fields,
        primary_key=kwargs.pop("primary_key", ["id"]),
        version=published.content_version(frame),
        metadata=kwargs.pop("metadata", None) or sample_metadata(title),
    )


def _untouched(under_test: PortalUnderTest, table: str, live, rows: int) -> None:
    """The plan wrote nothing: the same live version and rows."""
    assert under_test.portal.current_version(table) == live
    assert under_test.row_count(table) == rows


def test_plan_of_a_new_table_adds_every_row_and_column(under_test: PortalUnderTest) -> None:
    table = unique_table("plan")
    frame = sample_frame(120, "first")
    plan = _plan(under_test, table, frame)
    assert (plan.exists, plan.changed, plan.current_version) == (False, True, None)
    assert plan.target_version == _version(frame)
    assert (plan.rows.before, plan.rows.after, plan.rows.added) == (0, 120, 120)
    assert (plan.rows.updated, plan.rows.deleted) == (0, 0)
    assert plan.schema.added == [f.name for f in SAMPLE_FIELDS]
    assert under_test.portal.current_version(table) is None  # nothing was created


def test_plan_of_the_live_version_says_unchanged(under_test: PortalUnderTest) -> None:
    table = unique_table("plan")
    frame = sample_frame(200, "first")
    _publish(under_test, table, frame, "run-1")
    live = under_test.portal.current_version(table)
    plan = _plan(under_test, table, frame)
    assert plan.changed is False and plan.current_version == plan.target_version
    assert (plan.rows.added, plan.rows.updated, plan.rows.deleted) == (0, 0, 0)
    assert not plan.schema.changed and plan.metadata == []
    assert plan.lines() == [f"{table}: unchanged: the portal already holds this exact version"]
    _untouched(under_test, table, live, 200)


def test_plan_counts_rows_to_add_update_and_delete_by_key(under_test: PortalUnderTest) -> None:
    """Every field type (nulls included) survives the round trip through the portal:
    only the rows built to differ are counted as updated."""
    table = unique_table("plan")
    first = sample_frame(300, "first")
    _publish(under_test, table, first, "run-1")
    live = under_test.portal.current_version(table)
    kept = first.iloc[10:].copy()  # ids 1..10 deleted
    changed = kept["id"].between(100, 119)  # 20 rows updated, one field each kind
    kept.loc[changed & (kept["id"] % 2 == 0), "label"] = "changed"
    kept.loc[changed & (kept["id"] % 2 == 1), "amount"] = 1.5
    extra = sample_frame(15, "new", seed=3).assign(id=lambda f: f["id"] + 1_000)
    second = pd.concat([kept, extra], ignore_index=True)
    plan = _plan(under_test, table, second)
    assert plan.changed is True and plan.exists is True
    assert (plan.rows.before, plan.rows.after) == (300, 305)
    assert (plan.rows.added, plan.rows.updated, plan.rows.deleted) == (15, 20, 10)
    assert not plan.schema.changed and plan.metadata == []
    _untouched(under_test, table, live, 300)


def test_plan_of_a_metadata_edit_keeps_the_rows(under_test: PortalUnderTest) -> None:
    table = unique_table("plan")
    frame = sample_frame(40, "first")
    _publish(under_test, table, frame, "run-1", title="First title")
    live = under_test.portal.current_version(table)
    plan = _plan(under_test, table, frame, title="Second title")
    assert plan.changed is True and plan.metadata == ["title"]
    assert plan.rows.content_changed is False
    assert (plan.rows.added, plan.rows.updated, plan.rows.deleted) == (0, 0, 0)
    assert "  rows 40 -> 40: 0 to add, 0 to update, 0 to delete: same rows (nothing uploaded)" in (
        plan.lines()
    )
    _untouched(under_test, table, live, 40)


def test_plan_reports_columns_added_removed_retyped(under_test: PortalUnderTest) -> None:
    table = unique_table("plan")
    frame = sample_frame(30, "first")
    _publish(under_test, table, frame, "run-1")
    live = under_test.portal.current_version(table)
    fields = [
        FieldSpec(name="day", type="date", description="The day, now first."),
        *[f for f in SAMPLE_FIELDS if f.name not in ("note", "amount", "day")],
        FieldSpec(name="amount", type="integer", description="Whole dollars now."),
        FieldSpec(name="ward", type="integer", description="A new column."),
    ]
    second = frame.assign(amount=frame["amount"].round().astype("Int64"), ward=7)
    second = second[[f.name for f in fields]]
    columns = {f.name: f.description for f in fields}
    metadata = dataclasses.replace(sample_metadata(), columns=columns)
    plan = _plan(under_test, table, second, fields=fields, metadata=metadata)
    assert (plan.schema.added, plan.schema.removed) == (["ward"], ["note"])
    assert [(name, was != now) for name, was, now in plan.schema.retyped] == [("amount", True)]
    assert plan.schema.reordered is True
    # New and removed columns change every row; their column descriptions changed too.
    assert plan.rows.updated == 30
    assert plan.metadata == ["columns.amount", "columns.day", "columns.note", "columns.ward"]
    _untouched(under_test, table, live, 30)


def test_plan_without_a_primary_key_says_whether_the_content_differs(
    under_test: PortalUnderTest,
) -> None:
    table = unique_table("plan")
    frame = sample_frame(50, "first")
    under_test.portal.publish(
        table,
        frame,
        fields=SAMPLE_FIELDS,
        primary_key=[],
        version=published.content_version(frame),
        run_id="run-1",
        metadata=sample_metadata(),
    )
    live = under_test.portal.current_version(table)
    same = _plan(under_test, table, frame, primary_key=[])
    assert same.changed is False and same.rows.content_changed is False
    other = _plan(under_test, table, frame.iloc[:45], primary_key=[])
    assert (other.rows.before, other.rows.after, other.rows.content_changed) == (50, 45, True)
    assert other.rows.added is None and other.rows.updated is None
    _untouched(under_test, table, live, 50)


def test_a_plan_prints_counts_and_names_never_row_values(under_test: PortalUnderTest) -> None:
    table = unique_table("plan")
    _publish(under_test, table, sample_frame(25, "first"), "run-1")
    canary = "CANARY-7f3e resident name"
    frame = sample_frame(25, canary, seed=4).assign(id=lambda f: f["id"] + 987_650)
    text = "\n".join(_plan(under_test, table, frame, title="New title").lines())
    assert canary not in text and "987651" not in text and "987,651" not in text
    assert "25 to add" in text and "25 to delete" in text and "title" in text


def test_plan_matches_sub_second_and_zoned_times_as_the_portal_stores_them(
    under_test: PortalUnderTest,
) -> None:
    """A portal may keep times as text, to the millisecond, in UTC: the plan compares
    what a publish would store, so only the row built to differ counts as updated."""
    table = unique_table("plan")
    frame = sample_frame(60, "first")
    created = frame["created"] + pd.to_timedelta(frame.index * 1_234_567, unit="ns")
    frame = frame.assign(created=created.dt.tz_localize("America/Los_Angeles"))
    _publish(under_test, table, frame, "run-1")
    live = under_test.portal.current_version(table)
    edited = frame.copy()
    edited.loc[edited.index[7], "label"] = "edited"
    plan = _plan(under_test, table, edited)
    assert (plan.rows.added, plan.rows.updated, plan.rows.deleted) == (0, 1, 0)
    _untouched(under_test, table, live, 60)


# -- apply_changes: a change set by primary key as one new version ----------------------


def _changes(frame: pd.DataFrame, deleted: list[int]) -> RowChanges:
    return RowChanges(upserts=frame, deletes=pd.DataFrame({"id": pd.array(deleted, dtype="Int64")}))


def _apply(
    portal: Portal, table: str, changes: RowChanges, after: pd.DataFrame, run_id: str, **kwargs
):
    """apply_changes with ``after`` (the whole table once changed) giving the version."""
    return portal.apply_changes(
        table,
        changes,
        fields=SAMPLE_FIELDS,
        primary_key=kwargs.pop("primary_key", ["id"]),
        version=published.content_version(after),
        run_id=run_id,
        metadata=sample_metadata(kwargs.pop("title", "Sample requests")),
        **kwargs,
    )


def _live_rows_match(under_test: PortalUnderTest, table: str, expected: pd.DataFrame) -> None:
    """Every live row equals ``expected`` by key and row hash (read through the portal)."""
    plan = under_test.portal.plan(
        table,
        expected,
        fields=SAMPLE_FIELDS,
        primary_key=["id"],
        version="compare-the-rows",  # not the live data version: the rows are read and hashed
        metadata=sample_metadata(),
    )
    assert (plan.rows.before, plan.rows.after) == (len(expected), len(expected))
    assert (plan.rows.added, plan.rows.updated, plan.rows.deleted) == (0, 0, 0)


def _edited(first: pd.DataFrame) -> tuple[pd.DataFrame, RowChanges, pd.DataFrame]:
    """ids 1..10 deleted (and an absent id), ids 100..119 changed, 15 new ids: the
    change set, and the whole table after it."""
    changed = first[first["id"].between(100, 119)].copy()
    changed.loc[changed["id"] % 2 == 0, "label"] = "changed"
    changed.loc[changed["id"] % 2 == 1, "amount"] = None  # a value cleared
    new = sample_frame(15, "new", seed=3).assign(id=lambda f: f["id"] + 1_000)
    upserts = pd.concat([changed, new], ignore_index=True)
    kept = first[~first["id"].between(1, 10) & ~first["id"].between(100, 119)]
    after = pd.concat([kept, upserts], ignore_index=True).sort_values("id", ignore_index=True)
    return upserts, _changes(upserts, [*range(1, 11), 99_999]), after


def test_apply_changes_upserts_changed_rows_inserts_new_keys_and_deletes(
    under_test: PortalUnderTest,
) -> None:
    table = unique_table("changes")
    first = sample_frame(300, "first")
    _publish(under_test, table, first, "run-1")
    before = under_test.portal.current_version(table)
    _, changes, after = _edited(first)
    result = _apply(under_test.portal, table, changes, after, "run-2")
    assert (result.changed, result.change, result.rows) == (True, "data", 305)
    assert (result.upserted, result.deleted) == (35, 10)  # the absent id 99999 is no error
    assert result.version == published_version(published.content_version(after), sample_metadata())
    live = under_test.portal.current_version(table)
    assert live is not None and before is not None
    assert (live.version, live.rows, live.run_id) == (result.version, 305, "run-2")
    assert live.data_version == published.content_version(after)
    assert live.serial is not None and before.serial is not None and live.serial > before.serial
    assert under_test.row_count(table) == 305
    # Unchanged rows are as they were, the 20 changed rows differ, nothing else does.
    _live_rows_match(under_test, table, after)


def test_apply_changes_with_nothing_to_change_writes_nothing(under_test: PortalUnderTest) -> None:
    table = unique_table("changes")
    first = sample_frame(50, "first")
    _publish(under_test, table, first, "run-1")
    before = under_test.portal.current_version(table)
    nothing = _changes(first.iloc[:0], [])
    result = _apply(under_test.portal, table, nothing, first, "run-2")
    assert (result.changed, result.upserted, result.deleted, result.rows) == (False, 0, 0, 50)
    assert under_test.portal.current_version(table) == before  # same serial: no write


def test_apply_changes_with_new_metadata_only_is_a_new_version_with_the_same_rows(
    under_test: PortalUnderTest,
) -> None:
    table = unique_table("changes")
    first = sample_frame(40, "first")
    _publish(under_test, table, first, "run-1")
    nothing = _changes(first.iloc[:0], [])
    result = _apply(under_test.portal, table, nothing, first, "run-2", title="New title")
    assert (result.changed, result.change, result.rows) == (True, "metadata", 40)
    assert result.version == _version(first, "New title")
    live = under_test.portal.current_version(table)
    assert live is not None and (live.version, live.run_id) == (result.version, "run-2")
    assert under_test.metadata(table)["title"] == "New title"
    assert under_test.row_count(table) == 40


def test_apply_changes_from_a_stale_base_is_refused_naming_the_other_run(
    under_test: PortalUnderTest,
) -> None:
    table = unique_table("changes")
    first = sample_frame(60, "first")
    _publish(under_test, table, first, "run-1")
    started_from = under_test.portal.current_version(table)
    second = sample_frame(60, "second", seed=1)
    _publish(under_test, table, second, "run-2")
    upserts, changes, after = _edited(first)
    with pytest.raises(PortalConflict, match="run-2") as refused:
        _apply(under_test.portal, table, changes, after, "run-3", base=started_from)
    assert refused.value.other_run == "run-2"
    live = under_test.portal.current_version(table)
    assert live is not None and (live.run_id, live.rows) == ("run-2", 60)
    _live_rows_match(under_test, table, second)


def test_apply_changes_to_a_table_never_published_is_refused(under_test: PortalUnderTest) -> None:
    table = unique_table("never")
    frame = sample_frame(5, "first")
    with pytest.raises(PortalError, match="publish it in full first"):
        _apply(under_test.portal, table, _changes(frame, []), frame, "run-1")
    assert under_test.portal.current_version(table) is None


def test_apply_changes_needs_a_primary_key_and_key_columns(under_test: PortalUnderTest) -> None:
    table = unique_table("changes")
    first = sample_frame(20, "first")
    _publish(under_test, table, first, "run-1")
    with pytest.raises(PortalError, match="needs a primary key"):
        _apply(under_test.portal, table, _changes(first.iloc[:2], []), first, "r", primary_key=[])
    wrong = RowChanges(first.iloc[:2], first.iloc[:2][["id", "label"]])
    with pytest.raises(PortalError, match="exactly the primary key"):
        _apply(under_test.portal, table, wrong, first, "run-2")
    twice = _changes(pd.concat([first.iloc[:2], first.iloc[:1]]), [])
    with pytest.raises(PortalError, match="repeat a key"):
        _apply(under_test.portal, table, twice, first, "run-3")
    live = under_test.portal.current_version(table)
    assert live is not None and live.run_id == "run-1"


def test_a_reader_during_a_change_set_sees_the_rows_before_or_after(
    under_test: PortalUnderTest,
) -> None:
    """500 deletes and 700 new rows: any half-applied state has a third row count."""
    table = unique_table("changes")
    first = sample_frame(2_000, "first")
    _publish(under_test, table, first, "run-1")
    new = sample_frame(700, "new", seed=5).assign(id=lambda f: f["id"] + 10_000)
    changes = _changes(new, list(range(1, 501)))
    after = pd.concat([first.iloc[500:], new], ignore_index=True)
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(under_test.row_count(table))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        time.sleep(0.2)  # the reader is polling before the change set starts
        result = _apply(under_test.portal, table, changes, after, "run-2")
        time.sleep(0.2)
    finally:
        stop.set()
        reader.join(timeout=60)
    assert (result.upserted, result.deleted, result.rows) == (700, 500, 2_200)
    assert set(seen) <= {2_000, 2_200}, sorted(set(seen))
    assert seen[0] == 2_000 and seen[-1] == 2_200


def test_a_portal_down_mid_change_set_keeps_the_old_version_and_the_next_run_finishes(
    outage: Outage,
) -> None:
    table = unique_table("outage")
    first = sample_frame(300, "first")
    outage.portal.publish(
        table,
        first,
        fields=SAMPLE_FIELDS,
        primary_key=["id"],
        version=published.content_version(first),
        run_id="run-1",
        metadata=sample_metadata(),
    )
    before = outage.portal.current_version(table)
    upserts = sample_frame(250, "changed", seed=2)  # ids 1..250, in 3 batches on Datasette
    after = pd.concat([upserts, first.iloc[250:]], ignore_index=True)
    changes = _changes(upserts, [])
    outage.armed = True
    with pytest.raises(PortalError, match="unreachable"):
        _apply(outage.portal, table, changes, after, "run-2")
    outage.restart()
    assert outage.portal.current_version(table) == before
    assert outage.row_count(table) == 300

    result = _apply(outage.portal, table, changes, after, "run-3")
    live = outage.portal.current_version(table)
    assert result.changed is True and live is not None
    assert (live.run_id, live.rows, outage.row_count(table)) == ("run-3", 300, 300)
    assert live.data_version == published.content_version(after)
