"""Issue 8 item 6: the publisher cannot forge, and staging tables are private.

Everything here goes over HTTP to the real Datasette server, with exactly the token a
publish mints for itself (``server.publish_token``): allowed ``civicflow-publish`` on
one table, expiring. Datasette's own write API must refuse it everywhere, so the only
way to change a live table or the version history is a complete staged swap.
"""

from __future__ import annotations

import httpx
import pytest

from civicflow.portals import get_portal, server
from civicflow.portals.datasette import DatasettePortal
from civicflow.settings import Settings
from tests.fixtures.portal import DatasetteServer, sample_frame, unique_table
from tests.test_portal_datasette import live_state, load_request, post_load, publish


def _history(server_: DatasetteServer, table: str) -> list[dict]:
    return server_.query(
        f"select id, version, rows, run_id, published_at from _civicflow_versions"
        f" where table_name = '{table}' order by id"
    )


def _forgeries(table: str) -> list[tuple[str, dict]]:
    """Direct writes a publisher could try with its token, instead of a staged swap."""
    row = {"id": 999_999, "label": "forged"}
    version = {"table_name": table, "version": "f" * 64, "rows": 1, "published_at": "now"}
    return [
        (f"/portal/{table}/-/insert", {"rows": [row]}),
        (f"/portal/{table}/-/upsert", {"rows": [row]}),
        (f"/portal/{table}/1/-/update", {"update": {"label": "forged"}}),
        (f"/portal/{table}/1/-/delete", {}),
        (f"/portal/{table}/-/alter", {"add_columns": [{"name": "forged"}]}),
        (f"/portal/{table}/-/drop", {"confirm": True}),
        ("/portal/-/create", {"table": table, "rows": [row], "replace": True, "pk": "id"}),
        ("/portal/-/create", {"table": "forged", "columns": [{"name": "a"}]}),
        ("/portal/_civicflow_versions/-/insert", {"rows": [version]}),
        ("/portal/_civicflow_versions/-/upsert", {"rows": [{"id": 1, **version}]}),
        ("/portal/_civicflow_metadata/-/insert", {"rows": [{"table_name": table}]}),
        ("/portal/_civicflow_staging/-/insert", {"rows": [{"name": "x"}]}),
        ("/portal/-/execute-write", {"sql": f"insert into {table} (id) values (999999)"}),
        ("/portal/-/execute-write", {"sql": "delete from _civicflow_versions"}),
        ("/portal/-/queries/store", {"name": "forged", "sql": "select 1"}),
        ("/-/create-token", {}),  # nor mint itself a broader token
    ]


def test_the_publishers_own_token_cannot_write_a_live_or_bookkeeping_table(
    portal_env: Settings, datasette_server: DatasetteServer
) -> None:
    table = unique_table()
    portal = get_portal("datasette", portal_env)
    publish(portal, table, sample_frame(20, "first"), "run-1")
    before = (live_state(datasette_server, table), _history(datasette_server, table))
    token = server.publish_token(portal_env, table)  # what the publish itself uses
    assert token is not None
    headers = {"authorization": f"Bearer {token}"}
    for path, body in _forgeries(table):
        response = httpx.post(datasette_server.url + path, json=body, headers=headers, timeout=30)
        assert response.status_code == 403, (path, response.status_code, response.text)
    assert (live_state(datasette_server, table), _history(datasette_server, table)) == before
    assert "forged" not in datasette_server.tables()
    # The plugin's own load step never writes a live or bookkeeping table either.
    for target in (table, "_civicflow_versions"):
        request = load_request(table, target, [[999_999, "forged"]], run_id="x")
        response = post_load(datasette_server, request, headers)
        assert response.status_code == 400 and target in response.text, response.text
    assert (live_state(datasette_server, table), _history(datasette_server, table)) == before


def test_the_server_grants_no_datasette_write_action_to_anyone(
    datasette_server: DatasetteServer,
) -> None:
    config = server.write_config(datasette_server.settings).read_text()
    for action in ("insert-row", "update-row", "delete-row", "create-table", "drop-table"):
        assert action not in config
    assert server.PUBLISH_ACTION in config and "max_signed_tokens_ttl" in config


def test_a_staging_table_is_private_not_just_hidden(
    portal_env: Settings, datasette_server: DatasetteServer
) -> None:
    """Rows in upload are readable by no resident, through any SQL or page."""
    table = unique_table()
    portal = get_portal("datasette", portal_env)
    assert isinstance(portal, DatasettePortal)
    publish(portal, table, sample_frame(10, "first"), "run-1")
    seen: dict[str, list[tuple[str, int]]] = {}

    def probe(done: int, total: int) -> None:
        staging = portal.staging(table)[0]["staging"]
        sqls = [
            f"select * from {staging}",
            f"select count(*) from {staging}",
            f"select label from {table} union all select label from {staging}",
            f"with s as (select * from {staging}) select note from s",
        ]
        seen["sql"] = [
            (sql, _anonymous(datasette_server, "/portal/-/query.json", sql=sql)) for sql in sqls
        ]
        seen["pages"] = [
            (path, _anonymous(datasette_server, path))
            for path in (f"/portal/{staging}.json", f"/portal/{staging}")
        ]
        listing = httpx.get(f"{datasette_server.url}/portal.json", timeout=30).json()["tables"]
        seen["listed"] = [(t["name"], 0) for t in listing if t["name"] == staging]
        seen["publisher"] = [(s["staging"], s["rows"]) for s in portal.staging(table)]

    portal.on_batch = probe
    publish(portal, table, sample_frame(10, "second", seed=1), "run-2")

    assert [status for _, status in seen["sql"]] == [400] * 4, seen["sql"]
    assert all(status == 403 for _, status in seen["pages"]), seen["pages"]
    assert seen["listed"] == []
    assert [rows for _, rows in seen["publisher"]] == [10]  # the publisher sees its upload
    assert live_state(datasette_server, table)[:2] == (10, ["second"])


def _anonymous(server_: DatasetteServer, path: str, **params: str) -> int:
    response = httpx.get(server_.url + path, params=params or None, timeout=30)
    assert "Él dijo" not in response.text, (path, params)  # no staged value ever shows
    return response.status_code


@pytest.mark.parametrize("step", ["staging", "prepare", "load", "reindex"])
def test_anonymous_callers_cannot_use_the_publish_steps(
    datasette_server: DatasetteServer, step: str
) -> None:
    url = f"{datasette_server.url}/-/civicflow/portal/{step}"
    if step == "staging":
        response = httpx.get(f"{url}/anything", timeout=30)
    elif step == "load":
        request = load_request("anything", "_civicflow_stage_anything_0", [[1, "x"]])
        response = post_load(datasette_server, request, {})
    else:
        body = {"table": "anything", "run_id": "x", "indexes": [["id"]]}
        response = httpx.post(url, json=body, timeout=30)
    assert response.status_code == 403, response.text


def test_an_upload_longer_than_a_token_life_mints_a_new_token(
    portal_env: Settings, datasette_server: DatasetteServer, monkeypatch
) -> None:
    """Short-lived tokens must not cut off a long publish half way."""
    import time

    monkeypatch.setattr(server, "TOKEN_TTL_S", 4)
    portal = get_portal("datasette", portal_env)
    assert isinstance(portal, DatasettePortal)
    portal.batch_rows = 100
    portal.on_batch = lambda done, total: time.sleep(0.5)  # 12 batches: 6 s > 4 s
    table = unique_table()
    result = publish(portal, table, sample_frame(1_200, "slow"), "run-slow")
    assert result.changed and live_state(datasette_server, table)[:2] == (1_200, ["slow"])
