"""The Datasette portal over real HTTP: content, metadata, refusals and atomicity.

Atomicity is checked the hard ways: an exception between batches, the server
process killed with SIGKILL mid-upload, and a reader polling the live table while
a new version goes in.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import itsdangerous
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from civicflow import published
from civicflow.portals import PortalError, RowChanges, get_portal, live_read, server
from civicflow.portals import datasette as datasette_module
from civicflow.portals import publish_store as store
from civicflow.portals.datasette import ARROW_STREAM, SQL_TYPES, DatasettePortal
from civicflow.settings import Settings, load_settings
from civicflow.spec.models import FieldSpec
from tests.fixtures.portal import (
    SAMPLE_FIELDS,
    DatasetteServer,
    point_civicflow_at,
    sample_frame,
    sample_metadata,
    unique_table,
)


def publish(portal: DatasettePortal, table: str, frame: pd.DataFrame, run_id: str = "run"):
    return portal.publish(
        table,
        frame,
        fields=SAMPLE_FIELDS,
        primary_key=["id"],
        version=published.content_version(frame),
        run_id=run_id,
        metadata=sample_metadata(),
    )


def live_state(portal: DatasetteServer, table: str) -> tuple[int, list[str], str]:
    """Row count, distinct labels and an order-independent digest of the live table."""
    row = portal.query(
        f"select count(*) as n, group_concat(distinct label) as labels,"
        f" sum(id * 31 + length(coalesce(note, ''))) as digest from {table}"
    )[0]
    return row["n"], sorted((row["labels"] or "").split(",")), str(row["digest"])


def staging_tables(portal: DatasetteServer, table: str = "") -> list[str]:
    """Staging tables on ``portal`` (of ``table`` only, when given: the session's shared
    server also holds other tests' staging, some under a lease still running)."""
    prefix = f"_civicflow_stage_{table}_" if table else "_civicflow_stage_"
    return [t for t in portal.tables() if t.startswith(prefix)]


def expected_wire_rows(frame: pd.DataFrame) -> list[dict]:
    """What residents should read back, derived from the frame (not typed in)."""
    out = []
    for rec in frame.astype(object).where(frame.notna(), None).to_dict(orient="records"):
        out.append(
            {
                "id": int(rec["id"]),
                "label": rec["label"],
                "amount": rec["amount"],
                "created": rec["created"].isoformat() if rec["created"] is not None else None,
                "day": rec["day"].date().isoformat() if rec["day"] is not None else None,
                "open": None if rec["open"] is None else ("true" if rec["open"] else "false"),
                "note": rec["note"],
            }
        )
    return out


@pytest.fixture
def portal(portal_env: Settings) -> DatasettePortal:
    instance = get_portal("datasette", portal_env)
    assert isinstance(instance, DatasettePortal)
    instance.batch_rows = 1_000
    return instance


def test_publish_creates_the_table_with_rows_types_and_metadata(portal, datasette_server) -> None:
    table = unique_table()
    frame = sample_frame(2_500, "first")
    result = publish(portal, table, frame, "run-1")

    assert result.changed and result.rows == 2_500
    assert datasette_server.row_count(table) == 2_500
    got = datasette_server.query(f"select * from {table} order by id limit 1000")
    assert got == expected_wire_rows(frame.iloc[:1000])
    types = {
        r["name"]: r["type"]
        for r in datasette_server.query(f"select name, type from pragma_table_info('{table}')")
    }
    assert types == {
        "id": "INTEGER",
        "label": "TEXT",
        "amount": "REAL",
        "created": "TEXT",
        "day": "TEXT",
        "open": "TEXT",
        "note": "TEXT",
    }

    meta = portal.table_metadata(table)
    expected = sample_metadata()
    assert (
        meta["title"],
        meta["description"],
        meta["license"],
        meta["source"],
        meta["source_url"],
    ) == (
        expected.title,
        expected.description,
        expected.license,
        expected.source,
        expected.source_url,
    )
    assert meta["columns"] == expected.columns
    assert meta["steward"] == "Test steward"

    # Residents see the table; staging and bookkeeping tables stay hidden.
    listing = httpx.get(f"{datasette_server.url}/portal.json", timeout=30).json()
    visible = {t["name"] for t in listing["tables"] if not t["hidden"]}
    assert table in visible
    assert not [t for t in visible if t.startswith("_")]
    assert staging_tables(datasette_server, table) == []


def test_republishing_the_same_version_writes_nothing_and_says_so(
    portal, datasette_server, caplog
) -> None:
    table = unique_table()
    frame = sample_frame(700, "first")
    publish(portal, table, frame, "run-1")
    history = datasette_server.query(
        f"select * from _civicflow_versions where table_name = '{table}'"
    )
    state = live_state(datasette_server, table)

    with caplog.at_level(logging.INFO, logger="civicflow.portals.datasette"):
        again = publish(portal, table, frame, "run-2")

    assert again.changed is False and again.rows == 700
    assert "nothing written" in caplog.text
    assert (
        datasette_server.query(f"select * from _civicflow_versions where table_name = '{table}'")
        == history
    )
    assert live_state(datasette_server, table) == state
    assert staging_tables(datasette_server, table) == []


def test_a_new_version_replaces_the_old_one(portal, datasette_server) -> None:
    table = unique_table()
    publish(portal, table, sample_frame(900, "first"), "run-1")
    second = sample_frame(1_100, "second", seed=7).drop(columns="note")
    fields = [f for f in SAMPLE_FIELDS if f.name != "note"]
    result = portal.publish(
        table,
        second,
        fields=fields,
        primary_key=["id"],
        version=published.content_version(second),
        run_id="run-2",
        metadata=sample_metadata(),
    )

    assert result.changed and result.rows == 1_100
    rows = datasette_server.query(
        f"select count(*) as n, group_concat(distinct label) as labels from {table}"
    )
    assert rows == [{"n": 1_100, "labels": "second"}]
    columns = [
        r["name"] for r in datasette_server.query(f"select name from pragma_table_info('{table}')")
    ]
    assert columns == [f.name for f in fields]
    live = portal.current_version(table)
    assert live is not None and (live.version, live.rows, live.run_id) == (
        result.version,
        1_100,
        "run-2",
    )
    history = datasette_server.query(
        f"select run_id from _civicflow_versions where table_name = '{table}' order by id"
    )
    assert [h["run_id"] for h in history] == ["run-1", "run-2"]


def _expired_token(secret: str, table: str) -> str:
    """A publisher token for ``table`` whose 60 s life ended an hour ago."""
    payload = {
        "a": server.PUBLISHER,
        "t": int(time.time()) - 3600,
        "d": 60,
        "_r": {"r": {"portal": {table: ["cfp"]}}},
    }
    return "dstok_" + itsdangerous.URLSafeSerializer(secret, "token").dumps(payload)


@pytest.mark.parametrize(
    "kind",
    [
        "no-token",
        "garbage-token",
        "token-signed-with-another-secret",
        "expired-token",
        "token-for-another-table",
    ],
)
def test_writes_without_a_valid_token_are_refused(portal_env, datasette_server, kind) -> None:
    table = unique_table()
    token = {
        "no-token": None,
        "garbage-token": "dstok_not-a-real-token",
        "token-signed-with-another-secret": server.mint_token(
            "some other secret", database="portal", table=table
        ),
        "expired-token": _expired_token(datasette_server.secrets.secret, table),
        "token-for-another-table": datasette_server.token_for(unique_table("other")),
    }[kind]
    publish(get_portal("datasette", portal_env), table, sample_frame(50, "first"))
    before = (
        live_state(datasette_server, table),
        get_portal("datasette", portal_env).current_version(table),
    )
    staging = registered_staging(datasette_server, table)  # a real target for load
    headers = {"authorization": f"Bearer {token}"} if token else {}
    base = f"{datasette_server.url}/-/civicflow/portal"
    swap = {"expected_rows": 0, "version": "v", "data_version": "d", "base": None}
    attempts = [
        (f"{base}/prepare", {"table": table, "run_id": "intruder", "columns": [["a", "text"]]}),
        (f"{base}/swap", {"table": table, "staging": staging, "run_id": "test", **swap}),
        (
            f"{base}/apply",
            {
                "table": table,
                "upserts": staging,
                "deletes": None,
                "run_id": "test",
                "primary_key": ["id"],
                **swap,
            },
        ),
        (f"{base}/discard", {"table": table, "staging": staging, "run_id": "test"}),
        (f"{base}/reindex", {"table": table, "indexes": [["label"]]}),
        (
            f"{datasette_server.url}/portal/-/create",
            {"table": "intruder", "columns": [{"name": "a"}]},
        ),
        (
            f"{datasette_server.url}/portal/{table}/-/insert",
            {"rows": [{"id": 999_999, "label": "intruder"}]},
        ),
        (f"{datasette_server.url}/portal/{table}/-/drop", {"confirm": True}),
    ]
    loads = [
        load_request(table, staging, [[999_999, "intruder"]]),
        # The token is checked before the body is read: a broken body changes nothing.
        {**load_request(table, staging, [[999_999, "intruder"]]), "content": b"not arrow"},
    ]
    try:
        for url, body in attempts:
            response = httpx.post(url, json=body, headers=headers, timeout=30)
            assert response.status_code in (401, 403), (url, response.status_code, response.text)
        for request in loads:
            response = post_load(datasette_server, request, headers)
            assert response.status_code in (401, 403), (response.status_code, response.text)
        after = (
            live_state(datasette_server, table),
            get_portal("datasette", portal_env).current_version(table),
        )
        assert after == before
        assert "intruder" not in datasette_server.tables()
        assert staging_rows(datasette_server, table) == {staging: 0}
    finally:
        drop_staging(datasette_server, table, staging)


def arrow_body(columns: tuple[str, ...], rows: list[list]) -> bytes:
    """One Arrow IPC stream of ``rows``, as a publish sends a batch."""
    values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    data = pa.table({c: list(v) for c, v in zip(columns, values, strict=True)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data)
    return bytes(sink.getvalue().to_pybytes())


def load_request(
    table: str,
    staging: str,
    rows: list[list],
    columns: tuple[str, ...] = ("id", "label"),
    run_id: str = "test",
) -> dict:
    """The query and body of one load request."""
    return {
        "params": {"table": table, "staging": staging, "run_id": run_id, "rows": str(len(rows))},
        "content": arrow_body(columns, rows),
    }


def post_load(
    server_: DatasetteServer,
    request: dict,
    headers: dict[str, str],
    content_type: str = ARROW_STREAM,
) -> httpx.Response:
    return httpx.post(
        f"{server_.url}/-/civicflow/portal/load",
        params=request["params"],
        content=request["content"],
        headers={**headers, "content-type": content_type},
        timeout=30,
    )


def publisher_headers(server_: DatasetteServer, table: str) -> dict[str, str]:
    return {"authorization": f"Bearer {server_.token_for(table)}"}


def drop_staging(server_: DatasetteServer, table: str, staging: str, run_id: str = "test") -> None:
    response = httpx.post(
        f"{server_.url}/-/civicflow/portal/discard",
        json={"table": table, "staging": staging, "run_id": run_id},
        headers=publisher_headers(server_, table),
        timeout=30,
    )
    assert response.status_code == 200, response.text


def staging_rows(server_: DatasetteServer, table: str) -> dict[str, int]:
    """Rows per staging table of ``table``, as the publisher (only) may see them."""
    response = httpx.get(
        f"{server_.url}/-/civicflow/portal/staging/{table}",
        headers=publisher_headers(server_, table),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {s["staging"]: s["rows"] for s in response.json()["staging"]}


def registered_staging(server_: DatasetteServer, table: str, run_id: str = "test") -> str:
    """A staging table for ``table`` made the way a publish makes one (prepare)."""
    live = httpx.get(f"{server_.url}/-/civicflow/portal/versions/{table}", timeout=30)
    response = httpx.post(
        f"{server_.url}/-/civicflow/portal/prepare",
        json={
            "table": table,
            "run_id": run_id,
            "columns": [["id", "integer"], ["label", "text"]],
            "primary_key": ["id"],
            "base": live.json()["serial"] if live.status_code == 200 else None,
        },
        headers=publisher_headers(server_, table),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["staging"])


def test_load_writes_only_this_runs_staging_tables(portal, datasette_server) -> None:
    table = unique_table()
    publish(portal, table, sample_frame(30, "first"))
    before = live_state(datasette_server, table)
    headers = publisher_headers(datasette_server, table)
    intruder = [[999_999, "intruder"]]
    mine = registered_staging(datasette_server, table)
    theirs = registered_staging(datasette_server, table, run_id="other-run")
    refused = {
        "the live table": (table, "test", 400),
        "a bookkeeping table": ("_civicflow_versions", "test", 400),
        "an unregistered staging name": (f"_civicflow_stage_{table}_000000000000", "test", 409),
        "another run's staging table": (theirs, "test", 403),
        "a staging table, claiming another run": (mine, "other-run", 403),
    }
    try:
        for what, (target, run_id, status) in refused.items():
            request = load_request(table, target, intruder, run_id=run_id)
            response = post_load(datasette_server, request, headers)
            assert response.status_code == status, (what, response.text)
            assert target in response.json()["errors"][0], (what, response.text)
        assert live_state(datasette_server, table) == before
        assert portal.current_version(table) is not None
        check_staging_loads(datasette_server, table, mine, headers)
        assert staging_rows(datasette_server, table)[theirs] == 0
    finally:
        drop_staging(datasette_server, table, mine)
        drop_staging(datasette_server, table, theirs, run_id="other-run")
    assert live_state(datasette_server, table) == before


def check_staging_loads(
    datasette_server: DatasetteServer, table: str, staging: str, headers: dict[str, str]
) -> None:
    """A registered staging table takes a batch; a bad batch is refused whole, naming
    the row or the column."""
    good = post_load(datasette_server, load_request(table, staging, [[1, "a"], [2, None]]), headers)
    assert good.status_code == 200, good.text
    bad_rows = {
        "duplicate key": ([[5, "c"], [1, "again"]], ("id", "label"), "row 1 of this batch"),
        "text in the integer column": ([["6", "d"]], ("id", "label"), "id (string cannot go"),
        "a nested value": ([[7, ["not", "a", "scalar"]]], ("id", "label"), "label (list<item"),
        "an unknown column": ([[8, "e"]], ("id", "nope"), "'nope'"),
    }
    for what, (rows, columns, message) in bad_rows.items():
        request = load_request(table, staging, rows, columns)
        response = post_load(datasette_server, request, headers)
        assert response.status_code == 400, (what, response.text)
        assert message in response.json()["errors"][0], (what, response.text)
    assert staging_rows(datasette_server, table)[staging] == 2


def test_a_corrupt_truncated_or_json_body_is_refused_and_the_live_table_is_untouched(
    portal, datasette_server
) -> None:
    table = unique_table()
    publish(portal, table, sample_frame(40, "first"))
    before = (live_state(datasette_server, table), portal.current_version(table))
    headers = publisher_headers(datasette_server, table)
    staging = registered_staging(datasette_server, table)
    rows = [[i, f"row {i}"] for i in range(1, 2_001)]
    good = load_request(table, staging, rows)
    # Cut at a batch boundary, a stream reads as a shorter one: the row count tells.
    first_batch_only = arrow_body(("id", "label"), rows[:1_000])[:-8]  # no end marker
    not_utf8 = pa.table(
        {"id": [1], "label": pa.array([b"\xff\xfe"], pa.binary()).view(pa.string())}
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, not_utf8.schema) as writer:
        writer.write_table(not_utf8)
    bodies = {
        "cut in the middle": (
            good["content"][: len(good["content"]) // 2],
            400,
            "not a valid Arrow",
        ),
        "cut after a whole batch": (
            first_batch_only,
            400,
            "holds 1000 rows, the request says 2000",
        ),
        "not Arrow at all": (b"\x00garbage" * 100, 400, "not a valid Arrow IPC stream"),
        "empty": (b"", 400, "not a valid Arrow IPC stream"),
        "text that is not UTF-8": (sink.getvalue().to_pybytes(), 400, "not a valid Arrow IPC"),
    }
    try:
        for what, (content, status, message) in bodies.items():
            response = post_load(datasette_server, {**good, "content": content}, headers)
            assert response.status_code == status, (what, response.text)
            error = response.json()["errors"][0]
            assert message in error and "batch not stored" in error, (what, error)
        json_rows = post_load(datasette_server, good, headers, content_type="application/json")
        assert json_rows.status_code == 415 and ARROW_STREAM in json_rows.text, json_rows.text
        assert staging_rows(datasette_server, table)[staging] == 0
        assert (live_state(datasette_server, table), portal.current_version(table)) == before
    finally:
        drop_staging(datasette_server, table, staging)
    result = publish(portal, table, sample_frame(2_500, "second"), "run-2")
    assert result.changed and live_state(datasette_server, table)[:2] == (2_500, ["second"])


def test_a_resident_token_cannot_publish_and_errors_never_show_the_token(
    portal_env, datasette_server, monkeypatch
) -> None:
    table = unique_table()
    publish(get_portal("datasette", portal_env), table, sample_frame(40, "first"))
    resident = server.create_token(datasette_server.secrets.secret, actor_id="resident")
    # A publisher given a token instead of the secret uses it as it is.
    monkeypatch.delenv(server.SECRET_ENV)
    monkeypatch.setenv(server.TOKEN_ENV, resident)
    settings = load_settings()
    with pytest.raises(PortalError) as refused:
        publish(get_portal("datasette", settings), table, sample_frame(60, "second"))
    assert "HTTP 403" in str(refused.value) and "civicflow-publish" in str(refused.value)
    assert resident not in str(refused.value)
    assert datasette_server.secrets.secret not in str(refused.value)
    assert live_state(datasette_server, table)[0] == 40


def test_an_exception_after_the_first_batch_leaves_the_old_version_live(
    portal, datasette_server
) -> None:
    table = unique_table()
    publish(portal, table, sample_frame(1_500, "first"), "run-1")
    before = live_state(datasette_server, table)
    old_version = portal.current_version(table)

    def fail_after_first_batch(done: int, total: int) -> None:
        raise RuntimeError(f"injected failure after {done} of {total} rows")

    portal.on_batch = fail_after_first_batch
    with pytest.raises(RuntimeError, match="injected failure after 1000 of 3000 rows"):
        publish(portal, table, sample_frame(3_000, "second", seed=3), "run-2")

    assert live_state(datasette_server, table) == before
    assert portal.current_version(table) == old_version
    assert (
        staging_tables(datasette_server, table) == []
    )  # the failed publish dropped its staging table

    portal.on_batch = None
    result = publish(portal, table, sample_frame(3_000, "second", seed=3), "run-3")
    assert result.changed and live_state(datasette_server, table)[:2] == (3_000, ["second"])


def wait_for_lease_expiry(portal: DatasettePortal, table: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(s["expired"] for s in portal.staging(table)):
        assert time.monotonic() < deadline, portal.staging(table)
        time.sleep(0.2)


def test_server_killed_mid_upload_keeps_the_old_version_and_a_later_publish_cleans_up(
    datasette_factory, tmp_path: Path, monkeypatch, caplog
) -> None:
    private = datasette_factory()
    settings = point_civicflow_at(private, tmp_path / "client-var", monkeypatch)
    portal = get_portal("datasette", settings)
    assert isinstance(portal, DatasettePortal)
    portal.batch_rows = 1_000
    portal.lease_seconds = 2
    table = "kill_test"
    publish(portal, table, sample_frame(2_000, "first"), "run-1")
    before = live_state(private, table)
    old_version = portal.current_version(table)

    def kill_after_two_batches(done: int, total: int) -> None:
        if done == 2_000:
            private.kill()

    portal.on_batch = kill_after_two_batches
    with pytest.raises(PortalError, match="portal unreachable"):
        publish(portal, table, sample_frame(5_000, "second", seed=5), "run-2")

    private.start()
    assert live_state(private, table) == before
    assert portal.current_version(table) == old_version
    stale = portal.staging(table)  # what the dead run left, as the publisher sees it
    assert [(s["run_id"], s["rows"]) for s in stale] == [("run-2", 2_000)]
    # Residents can neither list it nor read it.
    listing = httpx.get(f"{private.url}/portal.json", timeout=30).json()["tables"]
    assert stale[0]["staging"] not in {t["name"] for t in listing}
    read = httpx.get(
        f"{private.url}/portal/-/query.json",
        params={"sql": f"select count(*) from {stale[0]['staging']}"},
        timeout=30,
    )
    assert read.status_code == 400 and "not authorized" in read.text

    wait_for_lease_expiry(portal, table)
    portal.on_batch = None
    with caplog.at_level(logging.WARNING, logger="civicflow.portals.datasette"):
        result = publish(portal, table, sample_frame(5_000, "second", seed=5), "run-3")
    assert result.changed and live_state(private, table)[:2] == (5_000, ["second"])
    assert f"reclaimed staging table {stale[0]['staging']} of run run-2" in caplog.text
    assert staging_tables(private) == [] and portal.staging(table) == []


def test_server_killed_at_any_moment_leaves_one_complete_version(
    datasette_factory, tmp_path: Path, monkeypatch
) -> None:
    """SIGKILL while a publish runs in another thread, most likely inside a request."""
    private = datasette_factory()
    settings = point_civicflow_at(private, tmp_path / "client-var", monkeypatch)
    portal = get_portal("datasette", settings)
    assert isinstance(portal, DatasettePortal)
    portal.batch_rows = 1_000
    portal.lease_seconds = 2
    table = "kill_anywhere"
    publish(portal, table, sample_frame(3_000, "first"), "run-1")
    uploading = threading.Event()
    portal.on_batch = lambda done, total: uploading.set() if done >= 3_000 else None
    failure: list[BaseException] = []

    def run() -> None:
        try:
            publish(portal, table, sample_frame(20_000, "second", seed=2), "run-2")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert uploading.wait(60)
    time.sleep(0.02)  # into the next insert request
    private.kill()
    worker.join(60)
    assert len(failure) == 1 and isinstance(failure[0], PortalError), failure

    private.start()
    n, labels, _ = live_state(private, table)
    assert (n, labels) == (3_000, ["first"])
    wait_for_lease_expiry(portal, table)
    portal.on_batch = None
    result = publish(portal, table, sample_frame(20_000, "second", seed=2), "run-3")
    assert result.changed and live_state(private, table)[:2] == (20_000, ["second"])
    assert staging_tables(private) == []


@pytest.mark.parametrize(
    ("before", "after"),
    [(4_000, 9_000), pytest.param(100_000, 99_000, marks=pytest.mark.slow, id="100k")],
)
def test_a_reader_sees_the_old_or_the_new_version_never_a_mix(
    portal, datasette_server, before: int, after: int
) -> None:
    table = unique_table()
    publish(portal, table, sample_frame(before, "first"), "run-1")
    seen: list[tuple[int, list[str]]] = []
    errors: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.get(
                    f"{datasette_server.url}/portal/-/query.json",
                    params={
                        "sql": f"select count(*) as n, group_concat(distinct label) as labels from {table}",
                        "_shape": "objects",
                    },
                )
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                row = response.json()["rows"][0]
                seen.append((row["n"], sorted(row["labels"].split(","))))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        publish(portal, table, sample_frame(after, "second", seed=9), "run-2")
    finally:
        stop.set()
        reader.join()
    seen.append(live_state(datasette_server, table)[:2])

    assert errors == []
    assert set(map(repr, seen)) <= {repr((before, ["first"])), repr((after, ["second"]))}
    assert seen[0] == (before, ["first"]) and seen[-1] == (after, ["second"])
    assert len(seen) > 5  # the reader really ran during the upload


def test_frame_columns_must_match_the_fields(portal) -> None:
    frame = sample_frame(5, "first")[["label", "id", "amount", "created", "day", "open", "note"]]
    with pytest.raises(PortalError, match="frame columns do not match"):
        publish(portal, unique_table(), frame)


def test_duplicate_primary_key_is_refused_with_datasettes_reason(portal, datasette_server) -> None:
    table = unique_table()
    frame = sample_frame(10, "first")
    frame.loc[3, "id"] = 1
    with pytest.raises(PortalError, match=r"HTTP 400: UNIQUE constraint failed"):
        publish(portal, table, frame)
    assert table not in datasette_server.tables()
    assert portal.current_version(table) is None


def test_metadata_survives_restarts_even_without_the_internal_database(
    datasette_factory, tmp_path: Path, monkeypatch
) -> None:
    private = datasette_factory()
    settings = point_civicflow_at(private, tmp_path / "client-var", monkeypatch)
    portal = get_portal("datasette", settings)
    assert isinstance(portal, DatasettePortal)
    table = "metadata_test"
    publish(portal, table, sample_frame(20, "first"))
    published_metadata = portal.table_metadata(table)
    assert published_metadata["title"] == sample_metadata().title

    private.restart()
    assert portal.table_metadata(table) == published_metadata

    private.stop()
    server.internal_path(private.settings).unlink()  # the plugin restores it from portal.db
    private.start()
    assert portal.table_metadata(table) == published_metadata


def test_instance_title_and_scorecard_link(datasette_server) -> None:
    site = server.scorecard_dir(datasette_server.settings)
    (site / "index.html").write_text("<h1>scorecard test page</h1>")
    # the home page is the residents' catalog (civicflow.catalog), linking the scorecard
    home = httpx.get(datasette_server.url + "/", timeout=30).text
    assert "<h1>City of Los Angeles open data</h1>" in home and 'href="/scorecard/"' in home
    card = httpx.get(datasette_server.url + "/scorecard/", follow_redirects=True, timeout=30)
    assert card.status_code == 200 and "scorecard test page" in card.text
    # the Spanish catalog links /scorecard/?lang=es: the Spanish page
    (site / "index.es.html").write_text("<h1>página de prueba</h1>")
    es = httpx.get(datasette_server.url + "/scorecard/?lang=es", follow_redirects=True, timeout=30)
    assert es.status_code == 200 and "página de prueba" in es.text


def test_the_secret_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path, var_dir=tmp_path / "var", env={})
    stale = server.secrets_dir(settings) / "datasette_token"
    stale.parent.mkdir(parents=True)
    stale.write_text("dstok_a-long-lived-token-from-an-earlier-version\n")
    first = server.ensure_secrets(settings)
    path = server.secrets_dir(settings) / "datasette_secret"
    assert path.stat().st_mode & 0o777 == 0o600 and path.read_text().strip() == first.secret
    assert server.ensure_secrets(settings) == first
    assert first.secret not in repr(first)
    assert not stale.exists()  # no standing publisher token is kept


def test_each_publish_token_is_restricted_to_its_table_and_expires(tmp_path: Path) -> None:
    env = {server.SECRET_ENV: "a secret from the environment"}
    settings = Settings(project_dir=tmp_path, var_dir=tmp_path / "var", env=env)
    token = server.publish_token(settings, "parking_citations")
    assert token is not None
    payload = server.decode_token(token, env[server.SECRET_ENV])
    assert payload is not None and payload["a"] == server.PUBLISHER
    assert payload["d"] == server.TOKEN_TTL_S <= server.MAX_TOKEN_TTL_S
    (allowed,) = payload["_r"]["r"]["portal"].values()  # one table, one action
    assert payload["_r"] == {"r": {"portal": {"parking_citations": allowed}}}
    assert allowed in (["cfp"], [server.PUBLISH_ACTION])  # abbreviated or not
    # Without the secret, a token given in the environment is used as it is.
    given = Settings(
        project_dir=tmp_path, var_dir=tmp_path / "other", env={server.TOKEN_ENV: "dstok_given"}
    )
    assert server.publish_token(given, "parking_citations") == "dstok_given"


def test_missing_credentials_are_a_clear_portal_error(tmp_path: Path, datasette_server) -> None:
    settings = Settings(
        project_dir=tmp_path, var_dir=tmp_path / "var", portal_url=datasette_server.url, env={}
    )
    with pytest.raises(PortalError, match="no publisher credentials.*DATASETTE_SECRET"):
        publish(get_portal("datasette", settings), unique_table(), sample_frame(3, "first"))


def test_unreachable_portal_is_a_portal_error(tmp_path: Path) -> None:
    from tests.fixtures.portal import free_port

    settings = Settings(
        project_dir=tmp_path,
        var_dir=tmp_path / "var",
        portal_url=f"http://127.0.0.1:{free_port()}",
        env={},
    )
    with pytest.raises(PortalError, match="portal unreachable"):
        get_portal("datasette", settings).current_version("anything")


def test_an_empty_frame_publishes_an_empty_table_with_its_columns(portal, datasette_server) -> None:
    table = unique_table()
    result = publish(portal, table, sample_frame(0, "none"))
    assert result.changed and result.rows == 0
    assert datasette_server.row_count(table) == 0
    columns = [
        r["name"] for r in datasette_server.query(f"select name from pragma_table_info('{table}')")
    ]
    assert columns == [f.name for f in SAMPLE_FIELDS]


# -- the read-only live route (plans for publish --dry-run) ------------------------------


def test_the_live_route_serves_published_tables_only_never_staging(
    portal, datasette_server
) -> None:
    table = unique_table()
    frame = sample_frame(120, "first")
    publish(portal, table, frame, "run-1")
    staging = registered_staging(datasette_server, table)
    url = f"{datasette_server.url}/-/civicflow/portal/live"
    try:
        post_load(
            datasette_server,
            load_request(table, staging, [[1, "staged, unpublished"]]),
            publisher_headers(datasette_server, table),
        ).raise_for_status()
        for private in (staging, "_civicflow_versions", "_civicflow_staging"):
            for headers in ({}, publisher_headers(datasette_server, table)):
                response = httpx.get(f"{url}/{private}", params={"rows": "1"}, headers=headers)
                assert response.status_code == 400, (private, response.text)
                assert "staged" not in response.text
        missing = httpx.get(f"{url}/{unique_table('never')}", timeout=30)
        assert missing.status_code == 404 and "no published version" in missing.text
    finally:
        drop_staging(datasette_server, table, staging)

    state = portal.live_state(table, with_rows=True)  # anonymous, like any resident
    assert state.version == portal.current_version(table)
    assert state.rows is not None and state.rows.num_rows == 120
    assert state.rows.column("label").unique().to_pylist() == ["first"]
    assert state.columns == [(f.name, SQL_TYPES.get(f.type, "text")) for f in SAMPLE_FIELDS]
    assert state.metadata == dataclasses.asdict(sample_metadata())
    assert portal.live_state(table, with_rows=False).rows is None


def test_a_plan_during_a_publish_reads_one_version_never_a_mix(portal, datasette_server) -> None:
    """The version record and the rows of a plan come from one snapshot, even while
    another run swaps a new version in."""
    table = unique_table()
    first, second = sample_frame(3_000, "first"), sample_frame(6_000, "second", seed=6)
    publish(portal, table, first, "run-1")
    versions = {
        published.content_version(first): (3_000, ["first"]),
        published.content_version(second): (6_000, ["second"]),
    }
    seen: list[str] = []
    mixed: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            state = portal.live_state(table, with_rows=True)
            assert state.version is not None and state.rows is not None
            labels = sorted(state.rows.column("label").unique().to_pylist())
            got = (state.rows.num_rows, labels)
            if versions.get(state.version.data_version or "") != got:
                mixed.append(f"{state.version.run_id}: {got}")
            seen.append(state.version.run_id or "")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        publish(portal, table, second, "run-2")
        time.sleep(0.3)
    finally:
        stop.set()
        reader.join()
    assert mixed == []
    assert seen[0] == "run-1" and seen[-1] == "run-2" and len(seen) > 3


def test_live_read_keeps_one_snapshot_while_a_swap_commits_between_its_statements(
    tmp_path: Path,
) -> None:
    """The race the test above can rarely hit, made certain: another connection swaps a
    new version in right after the version record was read, before the rows are."""
    path = tmp_path / "portal.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("pragma journal_mode = wal")

    def version(run_id: str, rows: list[list], base: int | None) -> None:
        columns = [("id", "integer"), ("label", "text")]
        writer.execute("begin immediate")
        staging = store.prepare(writer, "t", run_id, columns, ["id"], base, 300)["staging"]
        batch = pa.table({"id": [r[0] for r in rows], "label": [r[1] for r in rows]})
        store.load(writer, "t", staging, run_id, batch)
        versions = (f"v-{run_id}", f"d-{run_id}")
        store.swap(writer, "t", staging, run_id, len(rows), versions, base, {"title": run_id})
        writer.execute("commit")

    version("run-1", [[1, "first"], [2, "first"]], None)
    reader = sqlite3.connect(path)
    swapped: list[str] = []

    def swap_once(statement: str) -> None:
        if "pragma_table_info" in statement and not swapped:
            swapped.append(statement)
            version("run-2", [[1, "second"], [2, "second"], [3, "second"]], 1)

    reader.set_trace_callback(swap_once)
    body = live_read.live_table(reader, "t", with_rows=True)
    reader.set_trace_callback(None)
    assert swapped and body is not None
    data = pa.ipc.open_stream(body).read_all()
    header = json.loads((data.schema.metadata or {})[live_read.HEADER_KEY])
    assert header["version"]["run_id"] == "run-1" and header["metadata"] == {"title": "run-1"}
    assert data.column("label").to_pylist() == ["first", "first"]
    again = pa.ipc.open_stream(live_read.live_table(reader, "t", with_rows=True)).read_all()
    assert again.column("label").to_pylist() == ["second"] * 3


# -- the Arrow batches a publish sends -----------------------------------------------------


def _json_rows_of_earlier_releases(frame: pd.DataFrame, fields: list[FieldSpec]) -> list[list]:
    """What the JSON load of earlier releases sent for ``frame`` (its code, kept here as
    the reference): dates as text, booleans as text, pandas ``to_json`` for the rest."""
    converted, date_unit = {}, "s"
    for f in fields:
        column = frame[f.name]
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            if f.type == "date":
                converted[f.name] = pc.strftime(
                    pa.array(column, from_pandas=True), format="%Y-%m-%d"
                ).to_pandas()
            else:
                present = column.dropna()
                if (present != present.dt.floor("s")).any():
                    date_unit = "ms"
        elif pd.api.types.is_bool_dtype(column.dtype):
            converted[f.name] = pa.array(column, from_pandas=True).cast(pa.string()).to_pandas()
    wire = frame[[f.name for f in fields]]
    wire = wire.assign(**{n: v.set_axis(wire.index) for n, v in converted.items()})
    text = wire.to_json(orient="values", date_format="iso", date_unit=date_unit, force_ascii=False)
    return json.loads(text)


def _stored(rows_or_batch, fields: list[FieldSpec]) -> list[tuple]:
    """Values and SQLite storage classes once loaded into a staging table."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    columns = [(f.name, SQL_TYPES.get(f.type, "text")) for f in fields]
    staging = store.prepare(conn, "t", "run", columns, [], None, 300)["staging"]
    names = [f.name for f in fields]
    if isinstance(rows_or_batch, list):
        marks = ", ".join("?" * len(names))
        conn.executemany(f"insert into {staging} values ({marks})", rows_or_batch)
    else:
        store.load(conn, "t", staging, "run", rows_or_batch)
    typed = ", ".join(f"{n}, typeof({n})" for n in names)
    return conn.execute(f"select {typed} from {staging} order by rowid").fetchall()


@pytest.mark.parametrize("fraction", [False, True], ids=["whole-seconds", "sub-second"])
def test_the_arrow_batches_store_exactly_what_the_json_rows_stored(fraction: bool) -> None:
    when = pd.Series(
        pd.to_datetime(
            ["2024-03-10 01:59:59", None, "1969-12-31 23:59:59.9995", "2024-11-03 01:30:00"],
            format="ISO8601",
        )
    )
    if not fraction:
        when = when.dt.floor("s").astype("datetime64[s]")
    fields = [
        FieldSpec(name="naive", type="datetime", description="Naive times."),
        FieldSpec(name="zoned", type="datetime", description="Zoned times."),
        FieldSpec(name="day", type="date", description="Days of zoned times."),
        FieldSpec(name="plain_day", type="date", description="Days of naive times."),
        FieldSpec(name="flag", type="boolean", description="Nullable booleans."),
        FieldSpec(name="bit", type="boolean", description="Plain booleans."),
        FieldSpec(name="count", type="integer", description="Nullable integers."),
        FieldSpec(name="whole", type="integer", description="Integers held as floats."),
        FieldSpec(name="amount", type="number", description="Floats with NaN."),
        FieldSpec(name="text", type="string", description="Arrow-backed text."),
        FieldSpec(name="objects", type="string", description="Python strings."),
        FieldSpec(name="point", type="geopoint", description="Coordinates as text."),
    ]
    frame = pd.DataFrame(
        {
            "naive": when,
            "zoned": when.dt.tz_localize(
                "America/Los_Angeles", ambiguous="NaT", nonexistent="shift_forward"
            ),
            "day": when.dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"),
            "plain_day": when,
            "flag": pd.array([True, None, False, True], dtype="boolean"),
            "bit": [True, False, True, False],
            "count": pd.array([1, None, -(2**62), 7], dtype="Int64"),
            "whole": [1.0, np.nan, 3.0, 4.0],
            "amount": [1.5, np.nan, -0.25, 1e300],
            "text": pd.Series(['Él dijo "hola"', None, "", "a,b"], dtype="str"),
            "objects": pd.Series(["x", None, "ü", "\n"], dtype=object),
            "point": ["(34.073, -118.267)", None, "(0.0, 0.0)", "(1, 2)"],
        }
    )
    unit = "ms" if fraction else "s"
    assert datasette_module._date_unit(frame, fields) == unit
    batch = datasette_module.wire_batch(frame, fields, unit)
    assert _stored(batch, fields) == _stored(_json_rows_of_earlier_releases(frame, fields), fields)


def test_a_batch_over_the_body_limit_is_split_into_bodies_that_fit(monkeypatch) -> None:
    frame = sample_frame(1_000, "first")
    whole = [body for _, _, body in datasette_module.load_bodies(frame, SAMPLE_FIELDS, 1_000)]
    assert len(whole) == 1
    monkeypatch.setattr(server, "MAX_POST_BODY_BYTES", len(whole[0]) // 5)
    parts = list(datasette_module.load_bodies(frame, SAMPLE_FIELDS, 1_000))
    assert len(parts) >= 5 and all(len(b) <= len(whole[0]) // 5 for _, _, b in parts)
    assert [done for done, _, _ in parts] == list(np.cumsum([rows for _, rows, _ in parts]))
    tables = [pa.ipc.open_stream(body).read_all() for _, _, body in parts]
    assert [t.num_rows for t in tables] == [rows for _, rows, _ in parts]
    assert pa.concat_tables(tables).equals(pa.ipc.open_stream(whole[0]).read_all())


# -- indexes for filters and facets ---------------------------------------------------------

INDEXED_FIELDS = [
    f.model_copy(update={"index": {"label": ["day"], "open": True}.get(f.name, False)})
    for f in SAMPLE_FIELDS
]


def _publish_indexed(portal, table, frame, run_id, fields=INDEXED_FIELDS):
    return portal.publish(
        table,
        frame,
        fields=fields,
        primary_key=["id"],
        version=published.content_version(frame),
        run_id=run_id,
        metadata=sample_metadata(),
    )


def _live_indexes(server_: DatasetteServer, table: str) -> list[list[str]]:
    response = httpx.get(f"{server_.url}/-/civicflow/portal/versions/{table}", timeout=30)
    return sorted(response.json()["indexes"])


def test_a_publish_indexes_the_fields_marked_for_filters_and_facets(
    portal, datasette_server
) -> None:
    table = unique_table()
    frame = sample_frame(3_000, "first")
    _publish_indexed(portal, table, frame, "run-1")
    assert _live_indexes(datasette_server, table) == [["label", "day", "id"], ["open", "id"]]
    with sqlite3.connect(f"file:{datasette_server.db_path}?mode=ro", uri=True) as conn:
        plan = conn.execute(
            f"explain query plan select * from {table} where label = 'first' and day = '2024-02-01'"
        ).fetchall()
    assert f"USING INDEX idx_{table}_label_day_id (label=? AND day=?)" in plan[-1][-1], plan
    # A spec marking other fields changes the indexes, not the version (nothing re-sent).
    version = portal.current_version(table)
    fewer = [f.model_copy(update={"index": f.name == "open"}) for f in SAMPLE_FIELDS]
    again = _publish_indexed(portal, table, frame, "run-2", fewer)
    assert not again.changed and portal.current_version(table) == version
    assert _live_indexes(datasette_server, table) == [["open", "id"]]
    # A change set keeps them in step too.
    changed = frame.iloc[:10].assign(label="changed")
    changes = RowChanges(upserts=changed, deletes=frame.iloc[:0][["id"]])
    done = portal.apply_changes(
        table,
        changes,
        fields=INDEXED_FIELDS,
        primary_key=["id"],
        version="v-changes",
        run_id="run-3",
        metadata=sample_metadata(),
    )
    assert done.upserted == 10
    assert _live_indexes(datasette_server, table) == [["label", "day", "id"], ["open", "id"]]


def test_a_reader_never_sees_the_new_table_without_its_indexes(portal, datasette_server) -> None:
    table = unique_table()
    _publish_indexed(portal, table, sample_frame(4_000, "first"), "run-1")
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    sql = (
        f"select (select count(*) from {table}) as n, (select count(*) from"
        f" pragma_index_list('{table}') where origin = 'c') as indexes"
    )

    def poll() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                response = client.get(
                    f"{datasette_server.url}/portal/-/query.json",
                    params={"sql": sql, "_shape": "objects"},
                )
                assert response.status_code == 200, response.text
                row = response.json()["rows"][0]
                seen.append((row["n"], row["indexes"]))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        _publish_indexed(portal, table, sample_frame(9_000, "second", seed=4), "run-2")
    finally:
        stop.set()
        reader.join()
    assert set(seen) <= {(4_000, 2), (9_000, 2)} and len(seen) > 5, set(seen)
