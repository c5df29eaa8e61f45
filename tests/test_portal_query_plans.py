"""What the portal asks SQLite for a filtered table query and a streamed export.

A published table with the indexes its spec marks, on the session's real Datasette
server: the exact statements Datasette runs for a filtered JSON page (rows, next page,
count) are captured with Datasette's own tracer and planned by SQLite on the portal
database; every one must search the filter's index (the count from the index alone)
and none may scan the table or sort. Exports stream whole, at ``_size=max`` pages, in
chunks, and queue behind one another without losing a row.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
import threading
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from datasette.app import Datasette
from datasette.tracer import capture_traces
from datasette.views import table_extras

from civicflow import published
from civicflow.portals import datasette_plugin, get_portal, server
from civicflow.portals.datasette import DatasettePortal
from tests.fixtures.portal import (
    SAMPLE_FIELDS,
    DatasetteServer,
    point_civicflow_at,
    sample_frame,
    sample_metadata,
    unique_table,
)

#: rows; label "a" on 80 % of them (more than Datasette counts), "b" and "c" on 10 % each
ROWS = 14_000
FIELDS = [
    f.model_copy(update={"index": {"label": ["day"], "open": True}.get(f.name, False)})
    for f in SAMPLE_FIELDS
]


@pytest.fixture(scope="module")
def table(datasette_server: DatasetteServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A published table of ROWS rows, indexed on (label, day) and (open)."""
    monkeypatch = pytest.MonkeyPatch()
    try:
        settings = point_civicflow_at(
            datasette_server, tmp_path_factory.mktemp("plans") / "var", monkeypatch
        )
        portal = get_portal("datasette", settings)
        assert isinstance(portal, DatasettePortal)
        frame = sample_frame(ROWS, "a")
        i = np.arange(ROWS)
        frame["label"] = np.where(i % 10 == 1, "b", np.where(i % 10 == 2, "c", "a"))
        name = unique_table()
        portal.publish(
            name,
            frame,
            fields=FIELDS,
            primary_key=["id"],
            version=published.content_version(frame),
            run_id="plans",
            metadata=sample_metadata(),
        )
    finally:
        monkeypatch.undo()
    return name


def _busiest_day(server: DatasetteServer, table: str, label: str) -> tuple[str, int]:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
        day, n = conn.execute(
            f"select day, count(*) from {table} where label = ? and day is not null"
            " group by day order by 2 desc, 1 limit 1",
            [label],
        ).fetchone()
    return str(day), int(n)


def _traced_sql(server: DatasetteServer, path: str) -> list[tuple[str, Any]]:
    """Every SQL statement a real Datasette with the portal's plugin and settings runs
    on the portal database to answer ``path`` (Datasette's tracer)."""
    config = _server_settings(server)

    async def run() -> list[dict[str, Any]]:
        ds = Datasette([str(server.db_path)], settings=config, internal=None)
        await ds.invoke_startup()
        await ds.client.get(path)  # schema caches warm: only the answer's own SQL below
        traces: list[dict[str, Any]] = []
        with capture_traces(traces):
            response = await ds.client.get(path)
        assert response.status_code == 200, response.text
        ds.close()
        return traces

    traces = asyncio.run(run())
    return [
        (t["sql"], t.get("params"))
        for t in traces
        if t.get("type") == "sql" and t.get("database") == "portal"
    ]


def _server_settings(server: DatasetteServer) -> dict[str, Any]:
    """The settings the portal server runs with (server.write_config)."""
    return yaml.safe_load((server.var_dir / "datasette.yaml").read_text())["settings"]


def _plan(server: DatasetteServer, sql: str, params: Any) -> list[str]:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
        return [str(r[-1]) for r in conn.execute(f"explain query plan {sql}", params or {})]


def _on_table(sql: str, table: str) -> bool:
    return f"from {table} " in sql.lower() or f"from [{table}]" in sql.lower()


def test_a_filtered_page_its_next_page_and_count_search_the_filter_index(
    datasette_server: DatasetteServer, table: str
) -> None:
    day, n = _busiest_day(datasette_server, table, "b")
    assert n > 5  # a page of 5 rows, then another
    base = f"/portal/{table}.json?label=b&day={day}&_size=5&_extra=count"
    first = httpx.get(datasette_server.url + base, timeout=30).json()
    assert first["count"] == n and len(first["rows"]) == 5 and first["next"]
    paths = [base, f"{base}&_next={first['next']}"]
    index = f"idx_{table}_label_day_id"
    seen = []
    for path in paths:
        statements = [(s, p) for s, p in _traced_sql(datasette_server, path) if _on_table(s, table)]
        assert statements, f"no statement on {table} traced for {path}"
        for sql, params in statements:
            plan = _plan(datasette_server, sql, params)
            seen.append((sql, plan))
            assert any(
                f"USING COVERING INDEX {index}" in p or f"USING INDEX {index}" in p for p in plan
            ), (sql, plan)
            assert not any(p.startswith(f"SCAN {table}") for p in plan), (sql, plan)
            assert not any("TEMP B-TREE" in p for p in plan), (sql, plan)
    counts = [(s, p) for s, p in seen if s.lower().startswith("select count(*)")]
    assert counts, "the page's count was not traced"
    for sql, plan in counts:
        # The count reads the index alone, never the rows.
        assert any(f"USING COVERING INDEX {index}" in p for p in plan), (sql, plan)
    # The next page seeks in the index past the last key (keyset pagination).
    assert any("(id > :p" in sql and any("id>?" in p for p in plan) for sql, plan in seen), seen


def test_the_count_is_datasettes_count_and_says_when_it_stopped(
    datasette_server: DatasetteServer, table: str
) -> None:
    assert getattr(table_extras.CountExtra.resolve, "civicflow", False)
    with sqlite3.connect(f"file:{datasette_server.db_path}?mode=ro", uri=True) as conn:
        by_label = dict(conn.execute(f"select label, count(*) from {table} group by label"))
    assert by_label["a"] > 10_001 > by_label["b"]
    for label, expected in [("a", 10_001), ("b", by_label["b"]), ("zzz", 0)]:
        body = httpx.get(
            f"{datasette_server.url}/portal/{table}.json",
            params=[("label", label), ("_size", "1"), ("_extra", "count,count_truncated")],
            timeout=30,
        ).json()
        assert body["count"] == expected, (label, body)
        assert body["count_truncated"] is (label == "a"), (label, body)


def test_a_streamed_export_pages_at_max_returned_rows_and_holds_every_row(
    datasette_server: DatasetteServer, table: str
) -> None:
    path = f"/portal/{table}.csv?label=a&_stream=on"
    traced = [(s, p) for s, p in _traced_sql(datasette_server, path) if _on_table(s, table)]
    pages = {(s, repr(sorted((p or {}).items()))) for s, p in traced}  # the view reads page 1 twice
    rows_queries = [s for s, _ in pages if not s.lower().startswith("select count(*)")]
    settings = httpx.get(f"{datasette_server.url}/-/settings.json", timeout=30).json()
    page = settings["max_returned_rows"]
    assert page > settings["default_page_size"]
    # 11,200 rows in pages of max_returned_rows (+ 1 to see if there is more), never at
    # the default page size
    assert len(rows_queries) == -(-by_label_a(datasette_server, table) // page)
    assert all(s.rstrip().endswith(f"limit {page + 1}") for s in rows_queries), rows_queries
    response = httpx.get(datasette_server.url + path, timeout=60)
    assert response.status_code == 200
    got = list(csv.reader(io.StringIO(response.text)))
    with sqlite3.connect(f"file:{datasette_server.db_path}?mode=ro", uri=True) as conn:
        ids = [r[0] for r in conn.execute(f"select id from {table} where label = 'a' order by id")]
    assert got[0][:2] == ["id", "label"]
    assert [int(r[0]) for r in got[1:]] == ids
    # An export asking for its own page size keeps it.
    assert datasette_plugin.with_stream_page_size(
        {"type": "http", "path": path, "query_string": b"label=a&_stream=on&_size=10"}
    )["query_string"].endswith(b"_size=10")


def by_label_a(server: DatasetteServer, table: str) -> int:
    with sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True) as conn:
        return int(conn.execute(f"select count(*) from {table} where label = 'a'").fetchone()[0])


def test_the_portal_runs_with_its_read_settings(datasette_server: DatasetteServer) -> None:
    settings = httpx.get(f"{datasette_server.url}/-/settings.json", timeout=30).json()
    assert settings["num_sql_threads"] == server.SQL_THREADS
    assert settings["suggest_facets"] is False  # no facet query per column per page
    assert settings["sql_time_limit_ms"] == 5000
    assert settings["allow_csv_stream"] is True


def test_exports_at_once_queue_and_each_arrives_whole(
    datasette_server: DatasetteServer, table: str
) -> None:
    paths = [f"/portal/{table}.csv?label={label}&_stream=on" for label in "abcab"]
    bodies: dict[int, bytes] = {}

    def fetch(n: int) -> None:
        bodies[n] = httpx.get(datasette_server.url + paths[n], timeout=120).content

    threads = [threading.Thread(target=fetch, args=(n,)) for n in range(len(paths))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with sqlite3.connect(f"file:{datasette_server.db_path}?mode=ro", uri=True) as conn:
        by_label = dict(conn.execute(f"select label, count(*) from {table} group by label"))
    for n, path in enumerate(paths):
        label = path.split("label=")[1][0]
        lines = list(csv.reader(io.StringIO(bodies[n].decode())))
        assert len(lines) == by_label[label] + 1, path
        assert {r[1] for r in lines[1:]} == {label}


def test_only_streamed_table_exports_are_treated_as_exports() -> None:
    def scope(path: str, query: str) -> dict[str, Any]:
        return {"type": "http", "path": path, "query_string": query.encode()}

    export = datasette_plugin.is_streamed_export
    assert export(scope("/portal/t.csv", "a=1&_stream=on"))
    assert export(scope("/portal/t.csv", "_stream=1&_size=5"))
    assert not export(scope("/portal/t.csv", "a=1"))  # one page, not a stream
    assert not export(scope("/portal/t.json", "_stream=on"))
    assert not export(scope("/-/download/t.csv", "_stream=on"))
    assert not export(scope("/portal/-/query.csv", "sql=select+1&_stream=on"))
    added = datasette_plugin.with_stream_page_size(scope("/portal/t.csv", "a=1&_stream=on"))
    assert added["query_string"] == b"a=1&_stream=on&_size=max"


def test_chunked_send_joins_small_body_messages_in_order_and_loses_nothing() -> None:
    sent: list[dict[str, Any]] = []
    pauses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def pause() -> None:
        pauses.append(len(sent))

    async def run() -> None:
        chunked = datasette_plugin.chunked_send(send, 10, pause)
        await chunked({"type": "http.response.start", "status": 200, "headers": []})
        for n in range(7):
            await chunked({"type": "http.response.body", "body": b"%d234" % n, "more_body": True})
        await chunked({"type": "http.response.body", "body": b"end"})

    asyncio.run(run())
    assert sent[0]["type"] == "http.response.start"
    bodies = [m["body"] for m in sent[1:]]
    assert b"".join(bodies) == b"".join(b"%d234" % n for n in range(7)) + b"end"
    # 4-byte messages go out three at a time (at least 10 bytes), the rest with the end
    assert [len(b) for b in bodies] == [12, 12, 7]
    assert [m.get("more_body", False) for m in sent[1:]] == [True, True, False]
    assert pauses == [2, 3]  # after each chunk, never after the last message


def test_an_export_waits_between_chunks_while_interactive_requests_are_in_flight() -> None:
    exports = datasette_plugin.Exports(slots=1, max_pause_s=3600)

    async def run() -> None:
        exports.interactive = 1
        waiting = asyncio.ensure_future(exports.between_chunks())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiting.done()  # held while the interactive request runs
        exports.interactive = 0
        await asyncio.wait_for(waiting, 60)
        # Nothing interactive in flight: an export only yields once.
        await asyncio.wait_for(exports.between_chunks(), 60)

    asyncio.run(run())

    bounded = datasette_plugin.Exports(slots=1, max_pause_s=0)

    async def starved() -> None:
        bounded.interactive = 5
        await asyncio.wait_for(bounded.between_chunks(), 60)  # never held past its bound

    asyncio.run(starved())
