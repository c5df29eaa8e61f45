"""Privacy end to end over the real Datasette portal: a spec that forgets a rule is
blocked with the column named and nothing written; the fixed spec publishes a table in
which the portal holds nothing the scan flags and no complainant detail at all."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from civicflow import published
from civicflow.ledger import Ledger
from civicflow.pipeline import run_dataset
from civicflow.privacy.scan import scan
from civicflow.settings import Settings
from civicflow.spec import find_dataset
from civicflow.spec.models import DatasetSpec, PortalTarget
from tests.fixtures.portal import DatasetteServer, unique_table

PROJECT = Path(__file__).resolve().parents[1]
PAGE = 1000  # Datasette returns at most max_returned_rows per query


def spec_on(settings: Settings, dataset: str, table: str, forget: str | None = None) -> DatasetSpec:
    spec = find_dataset(settings.datasets_dir, dataset)
    fields = [
        f.model_copy(update={"privacy": None}) if f.name == forget else f for f in spec.fields
    ]
    return spec.model_copy(update={"fields": fields, "portal": PortalTarget(table=table)})


def portal_rows(server: DatasetteServer, table: str, order: str) -> pd.DataFrame:
    """Every row of ``table`` as a resident downloads it, page by page."""
    total = server.row_count(table)
    pages = [
        server.query(f'select * from "{table}" order by {order} limit {PAGE} offset {k}')
        for k in range(0, total, PAGE)
    ]
    return pd.DataFrame([row for page in pages for row in page])


def column_descriptions(server: DatasetteServer, settings: Settings, table: str) -> dict[str, str]:
    response = httpx.get(
        f"{server.url}/{settings.portal_database}/{table}.json",
        params={"_extra": "metadata", "_size": "0"},
        timeout=30,
    )
    response.raise_for_status()
    return dict(response.json()["metadata"]["columns"])


def test_forgotten_redaction_is_blocked_with_the_column_named(
    portal_env: Settings, datasette_server: DatasetteServer
) -> None:
    table = unique_table("ce_forgot")
    spec = spec_on(portal_env, "code_enforcement_cases", table, forget="inspector_notes")
    outcome = run_dataset(portal_env, spec.id, spec=spec)
    assert outcome.outcome == "rejected"
    assert "inspector_notes" in outcome.reason and "BLOCKED" in outcome.reason
    assert table not in datasette_server.tables()
    assert published.latest(portal_env, spec.id) is None
    report = json.loads(outcome.privacy_report_path.read_text())
    assert report["blocked"] is True
    blocking = {(f["column"], f["detector"]) for f in report["findings"] if not f["allowed"]}
    assert {"phone", "email", "person_name"} <= {d for c, d in blocking if c == "inspector_notes"}
    assert {c for c, _ in blocking} == {"inspector_notes"}
    last = Ledger(portal_env.ledger_path).last(spec.id)
    assert last is not None and last.outcome == "rejected" and "inspector_notes" in last.reason


def test_fixed_spec_publishes_nothing_the_scan_flags(
    portal_env: Settings, datasette_server: DatasetteServer
) -> None:
    table = unique_table("ce_fixed")
    spec = spec_on(portal_env, "code_enforcement_cases", table)
    outcome = run_dataset(portal_env, spec.id, spec=spec)
    assert outcome.outcome == "published", outcome.reason

    source = pd.read_csv(PROJECT / spec.source.path, dtype=str)
    live = portal_rows(datasette_server, table, "case_number")
    assert len(live) == len(source) == 3000
    assert list(live.columns) == [f.name for f in spec.published_fields()]
    assert not {"complainant_name", "complainant_phone", "complainant_email"} & set(live.columns)

    # The scan, run on what the portal serves (typed back as the spec says), finds nothing.
    live.index = pd.RangeIndex(1, len(live) + 1, name="row")
    typed = live.astype({"council_district": "Int64"}).assign(
        date_opened=pd.to_datetime(live["date_opened"]),
        date_closed=pd.to_datetime(live["date_closed"]),
    )
    findings = scan(spec, typed)
    assert [f for f in findings if not f.allowed] == []

    # No complainant detail anywhere in the portal table, in any form the source gave it.
    everything = "\n".join(map(str, live.to_numpy().ravel()))
    for column in ("Complainant Name", "Complainant Phone", "Complainant Email"):
        leaked = [v for v in source[column].dropna().unique() if v in everything]
        assert leaked == [], f"{column} values on the portal: {leaked[:3]}"
    # Exact property addresses only survive where the number already is a hundred block.
    exact = source["Property Address"].str.split(",").str[0]
    exact = exact[~exact.str.match(r"^\d*00 ")]
    assert [a for a in exact.unique() if a in everything] == []


def test_allowance_reason_reaches_the_published_metadata(
    portal_env: Settings, datasette_server: DatasetteServer
) -> None:
    table = unique_table("nc_allow")
    spec = spec_on(portal_env, "neighborhood_councils", table)
    outcome = run_dataset(portal_env, spec.id, spec=spec)
    assert outcome.outcome == "published", outcome.reason
    reason = spec.field("email").pii_allow[0].reason
    assert reason in column_descriptions(datasette_server, portal_env, table)["email"]
    report = json.loads(outcome.privacy_report_path.read_text())
    assert any(
        a["column"] == "email" and a["reason"] == reason and a["findings"] > 0
        for a in report["allowances"]
    )


def test_311_publishes_blocks_and_100_m_coordinates_only(
    portal_env: Settings, datasette_server: DatasetteServer
) -> None:
    """Half the 311 requests are pickups at the requester's home: the portal holds no
    exact house number and no coordinate finer than the block (issue 8 item 4)."""
    table = unique_table("la311_block")
    spec = spec_on(portal_env, "la311_service_requests", table)
    outcome = run_dataset(portal_env, spec.id, spec=spec)
    assert outcome.outcome == "published", outcome.reason
    live = portal_rows(datasette_server, table, "sr_number")
    assert len(live) == 9999 and "house_number" not in live.columns
    source = pd.read_csv(PROJECT / spec.source.path, dtype=str)
    exact = source["Address"].str.split(",").str[0]
    exact = exact[exact.str.match(r"^\d+ ") & ~exact.str.match(r"^\d*00 ")]
    everything = "\n".join(map(str, live["address"].dropna()))
    assert len(exact) > 5000 and [a for a in exact.unique() if a + "," in everything] == []
    for name in ("latitude", "longitude"):
        values = live[name].dropna().astype(float)
        assert len(values) > 8000 and np.allclose(values, values.round(3))
    report = json.loads(outcome.privacy_report_path.read_text())
    assert report["finest_location"][0] == "address: hundred blocks"
    assert not [f for f in report["findings"] if not f["allowed"]]


def test_parking_citations_publish_in_degrees_without_vehicle_identifiers(
    portal_env: Settings,
    datasette_server: DatasetteServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = secrets.token_hex(24)
    settings = dataclasses.replace(portal_env, env={**portal_env.env, "CIVICFLOW_HASH_KEY": key})
    table = unique_table("parking")
    spec = spec_on(settings, "parking_citations", table)
    caplog.set_level(logging.DEBUG)
    outcome = run_dataset(settings, spec.id, spec=spec)
    assert outcome.outcome == "published", outcome.reason

    live = portal_rows(datasette_server, table, "ticket_number")
    assert len(live) == 9999
    assert "plate_expiry_date" not in live.columns
    assert live["vin"].isna().all() or live["vin"].dropna().str.fullmatch(r"[0-9a-f]{64}").all()
    lat, lon = live["latitude"].dropna().astype(float), live["longitude"].dropna().astype(float)
    assert len(lat) == 7626
    assert lat.between(33.70, 34.34).all() and lon.between(-118.67, -118.15).all()
    assert np.allclose(lat, lat.round(3)) and np.allclose(lon, lon.round(3))
    numbers = live["location"].str.extract(r"^(\d+) ")[0].dropna().astype(int)
    assert (numbers % 100 == 0).all()

    # The key is nowhere: not in logs, output, reports or the ledger.
    out, err = capsys.readouterr()
    files = [
        p.read_text(errors="replace")
        for p in portal_env.var_dir.rglob("*")
        if p.is_file() and p.suffix in (".json", ".log", ".txt")
    ]
    ledger = repr(Ledger(portal_env.ledger_path).runs(spec.id))
    assert all(key not in text for text in [caplog.text, out, err, ledger, *files])
