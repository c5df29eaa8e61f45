"""Issue 8 item 7: two publishes of one table at once, against the real portal.

Before: the second run's ``prepare`` dropped the first run's staging table as "dead"
and the first then failed with a misleading 403. Now staging tables are leased to
their run (only expired leases are reclaimed) and the swap compares the live version
with the one the run started from: one run publishes, the other is refused naming it,
and readers see a complete version throughout.
"""

from __future__ import annotations

import logging
import threading

import httpx
import pandas as pd
import pytest

from civicflow.portals import PortalConflict, get_portal
from civicflow.portals.datasette import DatasettePortal
from civicflow.settings import Settings
from tests.fixtures.portal import DatasetteServer, sample_frame, unique_table
from tests.test_portal_datasette import live_state, publish, registered_staging, staging_tables


def _portal(settings: Settings) -> DatasettePortal:
    portal = get_portal("datasette", settings)
    assert isinstance(portal, DatasettePortal)
    portal.batch_rows = 1_000
    return portal


class Reader(threading.Thread):
    """Polls the live table as a resident while publishes run; records what it saw."""

    def __init__(self, server_: DatasetteServer, table: str) -> None:
        super().__init__()
        self.server, self.table = server_, table
        self.seen: set[tuple[int, tuple[str, ...]]] = set()
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        sql = f"select count(*) as n, group_concat(distinct label) as labels from {self.table}"
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                response = client.get(
                    f"{self.server.url}/portal/-/query.json",
                    params={"sql": sql, "_shape": "objects"},
                )
                if response.status_code != 200:
                    self.errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                row = response.json()["rows"][0]
                self.seen.add((row["n"], tuple(sorted(row["labels"].split(",")))))


def _race(
    settings: Settings, table: str, winner_frame: pd.DataFrame, loser_frame: pd.DataFrame
) -> dict[str, object]:
    """Two runs upload at once; the winner swaps while the loser is still uploading."""
    winner, loser = _portal(settings), _portal(settings)
    both_uploading = threading.Barrier(2, timeout=60)
    winner_done = threading.Event()
    outcomes: dict[str, object] = {}

    def first_batch_then(wait: threading.Event | None):
        def on_batch(done: int, total: int) -> None:
            if done == 1_000:
                both_uploading.wait()  # both runs hold a staging table now
                if wait is not None:
                    assert wait.wait(60)

        return on_batch

    winner.on_batch = first_batch_then(None)
    loser.on_batch = first_batch_then(winner_done)

    def run(name: str, portal: DatasettePortal, frame: pd.DataFrame) -> None:
        try:
            outcomes[name] = publish(portal, table, frame, name)
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            outcomes[name] = exc
        finally:
            if name == "run-winner":
                winner_done.set()

    threads = [
        threading.Thread(target=run, args=("run-winner", winner, winner_frame)),
        threading.Thread(target=run, args=("run-loser", loser, loser_frame)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return outcomes


def test_two_publishes_at_once_one_publishes_the_other_is_refused_naming_it(
    portal_env: Settings, datasette_server: DatasetteServer, caplog
) -> None:
    table = unique_table()
    publish(_portal(portal_env), table, sample_frame(3_000, "first"), "run-1")
    reader = Reader(datasette_server, table)
    reader.start()
    with caplog.at_level(logging.WARNING, logger="civicflow.portals.datasette"):
        outcomes = _race(
            portal_env,
            table,
            sample_frame(5_000, "winner", seed=1),
            sample_frame(5_000, "loser", seed=2),
        )
    reader.stop.set()
    reader.join()

    published = outcomes["run-winner"]
    refused = outcomes["run-loser"]
    assert getattr(published, "changed", None) is True, published
    assert isinstance(refused, PortalConflict), refused
    assert refused.other_run == "run-winner" and "run-winner" in str(refused)
    assert "the live table is unchanged" in str(refused)
    # Neither run broke the other's upload, and each saw the other at prepare.
    assert "is also publishing this table" in caplog.text
    # Never a half state: readers saw the old version or the winner's, complete.
    assert reader.errors == []
    assert reader.seen <= {(3_000, ("first",)), (5_000, ("winner",))}
    assert (5_000, ("winner",)) in reader.seen
    assert live_state(datasette_server, table)[:2] == (5_000, ["winner"])
    live = _portal(portal_env).current_version(table)
    assert live is not None and live.run_id == "run-winner"
    assert [s for s in staging_tables(datasette_server) if table in s] == []


def test_two_publishes_of_the_same_data_at_once_end_published_and_unchanged(
    portal_env: Settings, datasette_server: DatasetteServer
) -> None:
    """The hourly and nightly runs of one unchanged source: no refusal, one version."""
    table = unique_table()
    publish(_portal(portal_env), table, sample_frame(3_000, "first"), "run-1")
    same = sample_frame(4_000, "same", seed=3)
    outcomes = _race(portal_env, table, same, same.copy())
    changed = {name: getattr(o, "changed", o) for name, o in outcomes.items()}
    assert changed == {"run-winner": True, "run-loser": False}
    history = datasette_server.query(
        f"select run_id from _civicflow_versions where table_name = '{table}' order by id"
    )
    assert [h["run_id"] for h in history] == ["run-1", "run-winner"]
    assert [s for s in staging_tables(datasette_server) if table in s] == []


def test_a_live_runs_staging_is_never_reclaimed_and_its_late_swap_is_refused(
    portal_env: Settings, datasette_server: DatasetteServer
) -> None:
    """The old failure, replayed: a slow run's staging must survive a faster run."""
    table = unique_table()
    portal = _portal(portal_env)
    publish(portal, table, sample_frame(100, "first"), "run-1")
    started_from = portal.current_version(table)
    slow = registered_staging(datasette_server, table, run_id="run-slow")  # lease: 300 s

    publish(portal, table, sample_frame(200, "fast", seed=1), "run-fast")

    assert [s["staging"] for s in portal.staging(table)] == [slow]  # not dropped as dead
    assert started_from is not None
    response = httpx.post(
        f"{datasette_server.url}/-/civicflow/portal/swap",
        json={
            "table": table,
            "staging": slow,
            "run_id": "run-slow",
            "expected_rows": 0,
            "version": "v",
            "data_version": "d",
            "base": started_from.serial,
        },
        headers={"authorization": f"Bearer {datasette_server.token_for(table)}"},
        timeout=30,
    )
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["other_run"] == "run-fast" and "run-fast" in body["errors"][0]
    assert live_state(datasette_server, table)[:2] == (200, ["fast"])


@pytest.mark.parametrize("lease", [0, 3601, "300"])
def test_a_lease_must_be_a_sane_number_of_seconds(
    datasette_server: DatasetteServer, lease: object
) -> None:
    table = unique_table()
    response = httpx.post(
        f"{datasette_server.url}/-/civicflow/portal/prepare",
        json={"table": table, "run_id": "r", "columns": [["a", "text"]], "lease_seconds": lease},
        headers={"authorization": f"Bearer {datasette_server.token_for(table)}"},
        timeout=30,
    )
    assert response.status_code == 400 and "lease_seconds" in response.text
