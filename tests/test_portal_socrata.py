"""What only the Socrata adapter does, against the Socrata test server over TLS.

The shared behaviour (publish, re-publish, metadata, compare-and-swap, plan) is in
tests/test_portal_contract.py; here: settings and credentials, the four-by-four id as
private state, values that do not convert refused before anything is applied, and a
replace a concurrent reader sees whole.
"""

from __future__ import annotations

import dataclasses
import logging
import stat
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

from civicflow import published
from civicflow.portals import PortalConflict, PortalError, RowChanges, get_portal
from civicflow.portals.socrata import SocrataPortal
from civicflow.settings import Settings
from civicflow.spec.models import FieldSpec
from tests.fixtures.portal import (
    PROJECT_DIR,
    SAMPLE_FIELDS,
    sample_frame,
    sample_metadata,
    unique_table,
)
from tests.socrata.fixtures import KEY_ID, KEY_SECRET, SocrataServer, start_server
from tests.socrata.tls import make_tls_files


def _env(server: SocrataServer, **overrides: str) -> dict[str, str]:
    assert server.tls is not None
    env = {
        "CIVICFLOW_SOCRATA_DOMAIN": server.url,
        "CIVICFLOW_SOCRATA_KEY_ID": KEY_ID,
        "CIVICFLOW_SOCRATA_KEY_SECRET": KEY_SECRET,
        "CIVICFLOW_SOCRATA_CA_BUNDLE": str(server.tls.ca),
    }
    return {**env, **overrides}


def _portal(server: SocrataServer, var_dir: Path, **overrides: str) -> SocrataPortal:
    settings = Settings(project_dir=PROJECT_DIR, var_dir=var_dir, env=_env(server, **overrides))
    portal = get_portal("socrata", settings)
    assert isinstance(portal, SocrataPortal)
    return portal


def _publish(portal: SocrataPortal, table: str, frame: pd.DataFrame, run_id: str, fields=None):
    return portal.publish(
        table,
        frame,
        fields=fields or SAMPLE_FIELDS,
        primary_key=["id"],
        version=published.content_version(frame),
        run_id=run_id,
        metadata=sample_metadata(),
    )


def _statuses(server: SocrataServer, fourfour: str) -> list[str]:
    assert server.tls is not None
    response = requests.get(
        f"{server.url}/resource/{fourfour}.json",
        params={"$select": "label", "$limit": "1000000"},
        auth=(KEY_ID, KEY_SECRET),
        verify=str(server.tls.ca),
        timeout=30,
    )
    response.raise_for_status()
    return [r["label"] for r in response.json()]


def test_a_missing_domain_names_the_setting(tmp_path: Path) -> None:
    settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path / "var", env={})
    with pytest.raises(PortalError, match="CIVICFLOW_SOCRATA_DOMAIN"):
        get_portal("socrata", settings)


def test_plain_http_is_refused_off_loopback(tmp_path: Path) -> None:
    env = {"CIVICFLOW_SOCRATA_DOMAIN": "http://data.example.org"}
    settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path / "var", env=env)
    with pytest.raises(PortalError, match="https is required"):
        get_portal("socrata", settings)


def test_bad_credentials_name_the_settings_and_never_echo_the_secret(
    socrata_tls: SocrataServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-secret-5e1f9a"
    portal = _portal(socrata_tls, tmp_path / "var", CIVICFLOW_SOCRATA_KEY_SECRET=wrong)
    with caplog.at_level(logging.DEBUG), pytest.raises(PortalError) as refused:
        _publish(portal, unique_table("cred"), sample_frame(5, "first"), "run-1")
    assert caplog.records and wrong not in caplog.text  # requests/urllib3 debug lines too
    message = str(refused.value)
    assert "HTTP 401" in message
    assert "CIVICFLOW_SOCRATA_KEY_ID" in message and "CIVICFLOW_SOCRATA_KEY_SECRET" in message
    assert wrong not in message and KEY_ID not in message


def test_missing_keys_name_both_settings(socrata_tls: SocrataServer, tmp_path: Path) -> None:
    portal = _portal(socrata_tls, tmp_path / "var", CIVICFLOW_SOCRATA_KEY_SECRET="")
    with pytest.raises(PortalError, match="CIVICFLOW_SOCRATA_KEY_SECRET must be set"):
        _publish(portal, unique_table("cred"), sample_frame(5, "first"), "run-1")


def test_the_four_by_four_is_recorded_as_private_state_after_creation(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    var_dir = tmp_path / "var"
    portal = _portal(socrata_tls, var_dir)
    table = unique_table("state")
    assert portal.fourfour(table) is None
    _publish(portal, table, sample_frame(20, "first"), "run-1")

    states = list((var_dir / "socrata").rglob(f"{table}.json"))
    assert len(states) == 1
    assert stat.S_IMODE(states[0].stat().st_mode) == 0o600
    fourfour = portal.fourfour(table)
    assert fourfour is not None and len(fourfour) == 9 and fourfour[4] == "-"
    assert portal.table_url(table) == f"{socrata_tls.url}/d/{fourfour}"
    # A second adapter over the same var dir finds the dataset: no new one is created.
    again = _portal(socrata_tls, var_dir)
    result = _publish(again, table, sample_frame(20, "second", seed=1), "run-2")
    assert again.fourfour(table) == fourfour and result.changed is True
    assert set(_statuses(socrata_tls, fourfour)) == {"second"}


def test_values_that_do_not_convert_are_refused_naming_the_column(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("bad")
    fields = [*SAMPLE_FIELDS, FieldSpec(name="where", type="geopoint", description="A point.")]
    good = sample_frame(10, "first").assign(where="POINT (-118.2 34.05)")
    _publish(portal, table, good, "run-1", fields)
    live = portal.current_version(table)
    canary = "nowhere-CANARY-33"
    bad = sample_frame(10, "second").assign(where=[canary] * 3 + ["POINT (-118.2 34.05)"] * 7)
    with pytest.raises(PortalError, match=r"columns where \(3\)") as refused:
        _publish(portal, table, bad, "run-2", fields)
    assert canary not in str(refused.value)
    assert portal.current_version(table) == live  # nothing was applied
    fourfour = portal.fourfour(table)
    assert fourfour is not None and set(_statuses(socrata_tls, fourfour)) == {"first"}


@pytest.mark.parametrize(
    ("before", "after"),
    [(3_000, 2_500), pytest.param(100_000, 99_000, marks=pytest.mark.slow, id="100k")],
)
def test_a_concurrent_reader_sees_the_old_rows_or_the_new_never_a_mix(
    socrata_tls: SocrataServer, tmp_path: Path, before: int, after: int
) -> None:
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("atomic")
    _publish(portal, table, sample_frame(before, "old"), "run-1")
    fourfour = portal.fourfour(table)
    assert fourfour is not None
    seen: list[tuple[int, frozenset[str]]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            labels = _statuses(socrata_tls, fourfour)
            seen.append((len(labels), frozenset(labels)))

    publishing = socrata_tls.app.publishing
    saved = publishing.apply_delay
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        publishing.apply_delay = 0.3  # the reader runs before, during and after the apply
        _publish(portal, table, sample_frame(after, "new", seed=1), "run-2")
    finally:
        publishing.apply_delay = saved
        stop.set()
        thread.join(timeout=60)

    old, new = (before, frozenset({"old"})), (after, frozenset({"new"}))
    assert set(seen) <= {old, new}, set(seen)
    assert old in seen
    assert (len(_statuses(socrata_tls, fourfour)), portal.current_version(table).run_id) == (  # type: ignore[union-attr]
        after,
        "run-2",
    )


def test_a_new_dataset_is_readable_by_residents(socrata_tls: SocrataServer, tmp_path: Path) -> None:
    """A dataset made by a revision starts private; the adapter makes it public."""
    assert socrata_tls.tls is not None
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("public")
    _publish(portal, table, sample_frame(12, "first"), "run-1")
    anonymous = requests.get(
        f"{socrata_tls.url}/resource/{portal.fourfour(table)}.json",
        verify=str(socrata_tls.tls.ca),
        timeout=30,
    )
    assert anonymous.status_code == 200 and len(anonymous.json()) == 12


def test_throttled_requests_are_retried_after_retry_after(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("throttle")
    socrata_tls.throttle(3, retry_after=0)
    result = _publish(portal, table, sample_frame(30, "first"), "run-1")
    assert result.changed is True
    assert socrata_tls.app.throttle.remaining == 0  # every 429 was met and retried
    live = portal.current_version(table)
    assert live is not None and (live.rows, live.run_id) == (30, "run-1")


def test_retries_stop_within_the_time_budget_and_say_so(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path / "var", env=_env(socrata_tls))
    portal = SocrataPortal(settings, retry_seconds=1.0, first_backoff=0.2)
    socrata_tls.throttle(10_000, retry_after=0)
    try:
        with pytest.raises(PortalError, match="HTTP 429"):
            _publish(portal, unique_table("budget"), sample_frame(5, "first"), "run-1")
    finally:
        socrata_tls.throttle(0)


def test_points_in_civicflow_form_become_socrata_points_and_plan_as_unchanged(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    """Found publishing the LA 311 data: "(lat, lon)" text is not a Socrata point (every
    location was a conversion error); it is sent as WKT, longitude first."""
    assert socrata_tls.tls is not None
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("point")
    fields = [*SAMPLE_FIELDS, FieldSpec(name="where", type="geopoint", description="A point.")]
    frame = sample_frame(8, "first").assign(where="(34.052, -118.244)")
    _publish(portal, table, frame, "run-1", fields)
    row = requests.get(
        f"{socrata_tls.url}/resource/{portal.fourfour(table)}.json",
        params={"$limit": "1"},
        verify=str(socrata_tls.tls.ca),
        timeout=30,
    ).json()[0]
    assert row["where"] == {"type": "Point", "coordinates": [-118.244, 34.052]}
    edited = frame.copy()
    edited.loc[edited.index[2], "label"] = "edited"
    plan = portal.plan(
        table,
        edited,
        fields=fields,
        primary_key=["id"],
        version=published.content_version(edited),
        metadata=sample_metadata(),
    )
    assert (plan.rows.added, plan.rows.updated, plan.rows.deleted) == (0, 1, 0)


def test_a_portal_down_mid_publish_leaves_the_old_version_and_the_next_run_finishes(
    tmp_path: Path,
) -> None:
    """The server stops after the upload, before the apply: the open revision is never
    applied, readers keep the old rows, and the next run publishes the new version."""
    server = start_server(tls=make_tls_files(tmp_path))
    try:
        settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path / "var", env=_env(server))
        table = unique_table("outage")
        SocrataPortal(settings).publish(
            table,
            first := sample_frame(40, "old"),
            fields=SAMPLE_FIELDS,
            primary_key=["id"],
            version=published.content_version(first),
            run_id="run-1",
            metadata=sample_metadata(),
        )

        def go_down(step: str) -> None:
            if step == "uploaded":
                server.stop()

        failing = SocrataPortal(settings, retry_seconds=1.0, first_backoff=0.2, on_step=go_down)
        second = sample_frame(25, "new", seed=1)
        with pytest.raises(PortalError, match="unreachable"):
            _publish(failing, table, second, "run-2")
        server.start()  # the same port, the same datasets
        portal = SocrataPortal(settings)
        live = portal.current_version(table)
        fourfour = portal.fourfour(table)
        assert live is not None and (live.run_id, live.rows) == ("run-1", 40)
        assert fourfour is not None and _statuses(server, fourfour) == ["old"] * 40

        result = _publish(portal, table, second, "run-3")
        assert result.changed is True
        assert _statuses(server, fourfour) == ["new"] * 25
    finally:
        server.stop()


def test_dataset_metadata_reaches_socratas_own_fields(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    """Category, tags, attribution and the custom department/steward/frequency fields."""
    assert socrata_tls.tls is not None
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("meta")
    extra = {
        "department": "Sanitation",
        "steward": "Open data team",
        "frequency": "daily",
        "category": "City Services",
        "tags": ["311", "requests"],
    }
    metadata = dataclasses.replace(sample_metadata(), extra=extra)
    frame = sample_frame(6, "first")
    portal.publish(
        table,
        frame,
        fields=SAMPLE_FIELDS,
        primary_key=["id"],
        version=published.content_version(frame),
        run_id="run-1",
        metadata=metadata,
    )
    view = requests.get(
        f"{socrata_tls.url}/api/views/{portal.fourfour(table)}.json",
        verify=str(socrata_tls.tls.ca),
        timeout=30,
    ).json()
    assert (view["category"], view["tags"]) == ("City Services", ["311", "requests"])
    assert (view["attribution"], view["attributionLink"]) == (
        "Test department",
        "https://example.org/source",
    )
    assert view["metadata"]["custom_fields"]["civicflow"] == {
        "department": "Sanitation",
        "steward": "Open data team",
        "frequency": "daily",
    }
    assert view["rowIdentifierColumnId"] == next(
        c["id"] for c in view["columns"] if c["fieldName"] == "id"
    )
    types = {c["fieldName"]: c["dataTypeName"] for c in view["columns"]}
    assert types == {
        "id": "number",
        "label": "text",
        "amount": "number",
        "created": "calendar_date",
        "day": "calendar_date",
        "open": "checkbox",
        "note": "text",
    }


def test_an_untrusted_certificate_names_the_ca_setting_without_waiting(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    portal = _portal(socrata_tls, tmp_path / "var", CIVICFLOW_SOCRATA_CA_BUNDLE="")
    started = time.monotonic()
    with pytest.raises(PortalError, match="CIVICFLOW_SOCRATA_CA_BUNDLE"):
        _publish(portal, unique_table("tls"), sample_frame(3, "first"), "run-1")
    assert time.monotonic() - started < portal.retry_seconds / 4  # not retried


def test_a_title_edit_alone_uploads_no_rows(socrata_tls: SocrataServer, tmp_path: Path) -> None:
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("relabel")
    frame = sample_frame(30, "first")
    _publish(portal, table, frame, "run-1")
    sources = len(socrata_tls.app.publishing.sources)
    result = portal.publish(
        table,
        frame,
        fields=SAMPLE_FIELDS,
        primary_key=["id"],
        version=published.content_version(frame),
        run_id="run-2",
        metadata=dataclasses.replace(sample_metadata(), title="New title"),
    )
    assert (result.changed, result.change) == (True, "metadata")
    assert len(socrata_tls.app.publishing.sources) == sources  # nothing uploaded
    live = portal.current_version(table)
    assert live is not None and (live.run_id, live.rows) == ("run-2", 30)
    fourfour = portal.fourfour(table)
    assert fourfour is not None and _statuses(socrata_tls, fourfour) == ["first"] * 30


# -- apply_changes: one sodapy upsert for a chunk, a replace revision beyond ------------


def _system_ids(server: SocrataServer, fourfour: str) -> dict[str, str]:
    """id -> Socrata's internal row id (``:id``): a row rewritten by a replace gets a new one."""
    assert server.tls is not None
    response = requests.get(
        f"{server.url}/resource/{fourfour}.json",
        params={"$select": ":id, id", "$limit": "1000000"},
        auth=(KEY_ID, KEY_SECRET),
        verify=str(server.tls.ca),
        timeout=30,
    )
    response.raise_for_status()
    return {r["id"]: r[":id"] for r in response.json()}


def _change_set(first: pd.DataFrame) -> tuple[RowChanges, pd.DataFrame]:
    """ids 1..5 deleted, 11..20 relabelled, 5 new ids; and the whole table after."""
    changed = first[first["id"].between(11, 20)].assign(label="changed")
    new = sample_frame(5, "new", seed=7).assign(id=lambda f: f["id"] + 500)
    upserts = pd.concat([changed, new], ignore_index=True)
    deletes = pd.DataFrame({"id": pd.array(range(1, 6), dtype="Int64")})
    kept = first[~first["id"].between(1, 5) & ~first["id"].between(11, 20)]
    return RowChanges(upserts, deletes), pd.concat([kept, upserts], ignore_index=True)


def _apply(portal: SocrataPortal, table: str, changes: RowChanges, after: pd.DataFrame, run: str):
    return portal.apply_changes(
        table,
        changes,
        fields=SAMPLE_FIELDS,
        primary_key=["id"],
        version=published.content_version(after),
        run_id=run,
        metadata=sample_metadata(),
    )


def _labels_by_id(server: SocrataServer, fourfour: str) -> dict[str, str]:
    assert server.tls is not None
    response = requests.get(
        f"{server.url}/resource/{fourfour}.json",
        params={"$select": "id, label", "$limit": "1000000"},
        auth=(KEY_ID, KEY_SECRET),
        verify=str(server.tls.ca),
        timeout=30,
    )
    response.raise_for_status()
    return {r["id"]: r["label"] for r in response.json()}


def test_a_change_set_within_a_chunk_is_one_upsert_that_leaves_other_rows_alone(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("upsert")
    first = sample_frame(100, "first")
    _publish(portal, table, first, "run-1")
    fourfour = portal.fourfour(table)
    assert fourfour is not None
    ids_before = _system_ids(socrata_tls, fourfour)
    changes, after = _change_set(first)
    socrata_tls.throttle(2, retry_after=0)  # the upsert (or the view read) is throttled first
    result = _apply(portal, table, changes, after, "run-2")
    assert socrata_tls.app.throttle.remaining == 0
    assert (result.upserted, result.deleted, result.rows) == (15, 5, 100)
    ids_after = _system_ids(socrata_tls, fourfour)
    # Every row that stayed keeps its Socrata row id: it was updated in place or untouched.
    kept = {k: v for k, v in ids_before.items() if int(k) > 5}
    assert {k: ids_after[k] for k in kept} == kept
    labels = _labels_by_id(socrata_tls, fourfour)
    expected = {str(i): str(label) for i, label in zip(after["id"], after["label"], strict=True)}
    assert labels == expected
    live = portal.current_version(table)
    assert live is not None and (live.rows, live.run_id) == (100, "run-2")
    assert live.data_version == published.content_version(after)


def test_a_change_set_beyond_a_chunk_is_a_replace_revision_of_live_rows_and_changes(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path / "var", env=_env(socrata_tls))
    portal = SocrataPortal(settings, chunk_rows=10)  # 20 changes do not fit
    table = unique_table("revise")
    first = sample_frame(100, "first")
    _publish(portal, table, first, "run-1")
    fourfour = portal.fourfour(table)
    assert fourfour is not None
    ids_before = _system_ids(socrata_tls, fourfour)
    changes, after = _change_set(first)
    result = _apply(portal, table, changes, after, "run-2")
    assert (result.upserted, result.deleted, result.rows) == (15, 5, 100)
    ids_after = _system_ids(socrata_tls, fourfour)
    assert not set(ids_after.values()) & set(ids_before.values())  # every row was replaced
    expected = {str(i): str(label) for i, label in zip(after["id"], after["label"], strict=True)}
    assert _labels_by_id(socrata_tls, fourfour) == expected
    plan = portal.plan(
        table,
        after,
        fields=SAMPLE_FIELDS,
        primary_key=["id"],
        version="compare-the-rows",
        metadata=sample_metadata(),
    )
    assert (plan.rows.added, plan.rows.updated, plan.rows.deleted) == (0, 0, 0)
    live = portal.current_version(table)
    assert live is not None and (live.rows, live.run_id) == (100, "run-2")


# -- revisions left open: a failed publish discards the revision it opened ----------------


def _open_revisions(server: SocrataServer, portal: SocrataPortal, table: str) -> list[int]:
    fourfour = portal.fourfour(table)
    assert fourfour is not None
    return [r.revision_seq for r in server.app.publishing.open_revisions(fourfour)]


def _discarded(server: SocrataServer, portal: SocrataPortal, table: str) -> list[int]:
    fourfour = portal.fourfour(table)
    assert fourfour is not None
    revisions = server.app.publishing.revisions_of(fourfour)
    return [r.revision_seq for r in revisions if r.discarded]


def test_a_publish_refused_for_values_that_do_not_convert_leaves_no_open_revision(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("discard")
    fields = [*SAMPLE_FIELDS, FieldSpec(name="where", type="geopoint", description="A point.")]
    _publish(portal, table, sample_frame(10, "first").assign(where="POINT (1 2)"), "run-1", fields)
    live = portal.current_version(table)
    bad = sample_frame(10, "second").assign(where="nowhere")
    with pytest.raises(PortalError, match=r"columns where \(10\)"):
        _publish(portal, table, bad, "run-2", fields)
    assert _open_revisions(socrata_tls, portal, table) == []
    assert _discarded(socrata_tls, portal, table) == [1]  # the refused one, not applied
    assert portal.current_version(table) == live


def test_a_conflict_found_before_the_apply_discards_the_revision(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    """Another run publishes while this one uploads: the check before the apply refuses,
    and this run's revision is discarded, not left open on the dataset."""
    settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path / "var", env=_env(socrata_tls))
    table = unique_table("discard")
    other = SocrataPortal(settings)
    _publish(other, table, sample_frame(20, "first"), "run-1")

    def another_run_publishes(step: str) -> None:
        if step == "uploaded":
            _publish(other, table, sample_frame(15, "other", seed=2), "run-other")

    portal = SocrataPortal(settings, on_step=another_run_publishes)
    with pytest.raises(PortalConflict, match="run-other") as refused:
        _publish(portal, table, sample_frame(30, "mine", seed=1), "run-2")
    assert refused.value.other_run == "run-other"
    assert _open_revisions(socrata_tls, portal, table) == []
    assert _discarded(socrata_tls, portal, table) == [1]  # seq 2 is the other run's, applied
    live = portal.current_version(table)
    fourfour = portal.fourfour(table)
    assert live is not None and (live.run_id, live.rows) == ("run-other", 15)
    assert fourfour is not None and set(_statuses(socrata_tls, fourfour)) == {"other"}


def test_a_discard_that_fails_is_a_warning_and_the_first_error_stands(
    socrata_tls: SocrataServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("discard")
    fields = [*SAMPLE_FIELDS, FieldSpec(name="where", type="geopoint", description="A point.")]
    _publish(portal, table, sample_frame(10, "first").assign(where="POINT (1 2)"), "run-1", fields)
    socrata_tls.throttle(1, status=500, path="/api/publishing/v1/revision/", method="DELETE")
    bad = sample_frame(10, "second").assign(where="nowhere")
    with caplog.at_level(logging.DEBUG), pytest.raises(PortalError) as refused:
        _publish(portal, table, bad, "run-2", fields)
    assert "could not convert values in columns where (10)" in str(refused.value)
    assert socrata_tls.app.throttle.matched == 1  # one DELETE, refused
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not discard Socrata revision 1" in w and "HTTP 500" in w for w in warnings)
    assert KEY_SECRET not in caplog.text
    assert _open_revisions(socrata_tls, portal, table) == [1]  # said, not hidden


# -- retries: Retry-After through socrata-py, no second send of a refusal or an apply -----


@pytest.mark.parametrize(
    ("path", "method", "message"),
    [
        ("/api/views/", "GET", "could not read the dataset: HTTP 400"),  # sodapy
        ("/api/publishing/v1/revision/", "POST", "refused a publishing request: HTTP 400"),
    ],
    ids=["sodapy", "socrata-py"],
)
def test_a_refusal_other_than_429_is_not_sent_again(
    socrata_tls: SocrataServer, tmp_path: Path, path: str, method: str, message: str
) -> None:
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("refused")
    _publish(portal, table, sample_frame(10, "first"), "run-1")
    live = portal.current_version(table)
    socrata_tls.throttle(1_000, status=400, path=path, method=method)
    try:
        with pytest.raises(PortalError, match=message):
            _publish(portal, table, sample_frame(10, "second", seed=1), "run-2")
        assert socrata_tls.app.throttle.matched == 1
    finally:
        socrata_tls.throttle(0)
    assert portal.current_version(table) == live
    assert _open_revisions(socrata_tls, portal, table) == []


def test_a_429_to_socrata_py_waits_as_retry_after_asks(
    socrata_tls: SocrataServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """socrata-py keeps only a refusal's JSON body: its Retry-After is read from the answer."""
    settings = Settings(project_dir=PROJECT_DIR, var_dir=tmp_path / "var", env=_env(socrata_tls))
    portal = SocrataPortal(settings, first_backoff=0.01)
    table = unique_table("retry-after")
    socrata_tls.throttle(2, retry_after=1, path="/api/publishing/v1/")
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="civicflow.portals.socrata"):
        result = _publish(portal, table, sample_frame(10, "first"), "run-1")
    assert result.changed is True
    assert socrata_tls.app.throttle.remaining == 0
    pauses = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert pauses == ["Socrata busy or unreachable; retrying in 1.0 s"] * 2
    assert time.monotonic() - started >= 2.0


def test_an_apply_whose_answer_is_lost_is_followed_not_sent_twice(
    socrata_tls: SocrataServer, tmp_path: Path
) -> None:
    """The apply starts its job but the answer is a 502: the revision shows the job, so
    the adapter follows it rather than applying again (which Socrata refuses)."""
    portal = _portal(socrata_tls, tmp_path / "var")
    table = unique_table("lost")
    _publish(portal, table, sample_frame(10, "first"), "run-1")
    socrata_tls.app.publishing.lose_apply_answers = 1
    try:
        result = _publish(portal, table, sample_frame(12, "second", seed=1), "run-2")
    finally:
        socrata_tls.app.publishing.lose_apply_answers = 0
    assert result.changed is True
    fourfour = portal.fourfour(table)
    assert fourfour is not None
    revisions = socrata_tls.app.publishing.revisions_of(fourfour)
    assert [len(r.task_sets) for r in revisions] == [1, 1]  # each applied once
    assert [j.status for j in revisions[1].task_sets] == ["successful"]
    live = portal.current_version(table)
    assert live is not None and (live.run_id, live.rows) == ("run-2", 12)
    assert _statuses(socrata_tls, fourfour) == ["second"] * 12
