"""The catalog pages on a real Datasette portal, over bundled datasets published by the
real pipeline: the home page by department and category, search, the dataset page
(dictionary in spec order, freshness, quality, privacy note, history, downloads,
preview) and the 404 for an unknown table."""

from __future__ import annotations

import html
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from babel.numbers import format_decimal

from civicflow.ledger import Ledger
from civicflow.pipeline import run_dataset
from civicflow.settings import Settings, load_settings
from civicflow.spec import DatasetSpec, find_dataset
from tests.fixtures.portal import point_civicflow_at

PROJECT = Path(__file__).resolve().parents[1]
LA311_CSV = (
    PROJECT / "data" / "la311_service_requests" / "MyLA311_Service_Request_Data_2017_Subset.csv"
)
#: bundled datasets from four departments and three categories; neighborhood_councils
#: has no Spanish title (the fallback note) and no update schedule
CATALOG = ("la311_service_requests", "parking_citations", "neighborhood_councils")


@dataclass
class Catalog:
    url: str
    settings: Settings
    specs: dict[str, DatasetSpec]

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=60)

    def page(self, path: str, **params: str) -> str:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text[:500]
        assert response.headers["content-type"].startswith("text/html")
        return response.text


def publish_catalog(datasette_server, tmp_path_factory, ids=CATALOG) -> Iterator[Catalog]:
    """Publish ``ids`` through ``run_dataset`` into the session portal."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in datasette_server.env.items():
            mp.setenv(key, value)
        mp.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
        mp.setenv("CIVICFLOW_VAR_DIR", str(tmp_path_factory.mktemp("catalog") / "var"))
        mp.setenv("CIVICFLOW_HASH_KEY", secrets.token_hex(32))  # parking_citations hashes VINs
        settings = load_settings()
        specs = {}
        for dataset_id in ids:
            outcome = run_dataset(settings, dataset_id)
            assert outcome.outcome in ("published", "unchanged"), outcome.reason
            specs[dataset_id] = find_dataset(settings.datasets_dir, dataset_id)
        yield Catalog(datasette_server.url, settings, specs)


@pytest.fixture(scope="module")
def catalog(datasette_server, tmp_path_factory) -> Iterator[Catalog]:
    yield from publish_catalog(datasette_server, tmp_path_factory)


def text_of(page: str) -> str:
    """The page's text, tags removed and entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def section(page: str, anchor: str) -> str:
    """The markup from the h2 with ``id=anchor`` to the next h2."""
    start = page.index(f'<h2 id="{anchor}"')
    end = page.find("<h2", start + 1)
    return page[start : end if end != -1 else len(page)]


def headings(page: str) -> list[tuple[int, str]]:
    return [
        (int(level), text_of(inner).strip())
        for level, inner in re.findall(r"<h([1-6])[^>]*>(.*?)</h\1>", page, re.S)
    ]


def test_home_lists_every_dataset_under_its_department_and_category(catalog) -> None:
    page = catalog.page("/")
    assert '<html lang="en">' in page
    heads = headings(page)
    assert [h for h in heads if h[0] == 1] == [(1, "City of Los Angeles open data")]
    for dataset_id, spec in catalog.specs.items():
        assert f'href="/datasets/{dataset_id}"' in page
        assert html.escape(spec.title, quote=False) in page
        # the dataset sits under its department's h2 and its category's h3
        dept = next(i for i, h in enumerate(heads) if h == (2, spec.department))
        after = heads[dept + 1 :]
        end = next((i for i, h in enumerate(after) if h[0] == 2), len(after))
        assert (3, f"Category: {spec.category}") in after[:end]
        block = page[page.index(f">{html.escape(spec.department, quote=False)}</h2>") :]
        block = block[: block.find("<h2", 1)] if "<h2" in block[1:] else block
        assert f'href="/datasets/{dataset_id}"' in block
    # headings never skip a level
    levels = [level for level, _ in heads]
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False))
    assert 'href="/scorecard/"' in page and 'href="/data.json"' in page
    assert re.search(r'<label for="q">[^<]+</label>\s*<input type="search" id="q" name="q"', page)
    assert '<main id="main"' in page and 'href="#main"' in page


def test_search_by_tag_by_column_description_and_nonsense(catalog) -> None:
    # "graffiti" is a tag of the 311 requests only
    page = catalog.page("/", q="graffiti")
    assert 'href="/datasets/la311_service_requests"' in page
    assert 'href="/datasets/parking_citations"' not in page
    assert re.search(r"\d+ of \d+ datasets match “graffiti”", text_of(page))
    # "chalk-marked" is only in the description of parking_citations.marked_time
    page = catalog.page("/", q="chalk-marked")
    assert 'href="/datasets/parking_citations"' in page
    assert 'href="/datasets/la311_service_requests"' not in page
    assert "column descriptions" in text_of(page)
    page = catalog.page("/", q="zzqx-no-such-thing")
    assert 'href="/datasets/' not in page
    assert "No dataset matches “zzqx-no-such-thing”." in text_of(page)
    # the query is shown escaped, never as markup
    page = catalog.page("/", q="<script>alert(1)</script>")
    assert "<script>alert(1)</script>" not in page


def test_dataset_page_about_freshness_quality_and_downloads(catalog) -> None:
    spec = catalog.specs["la311_service_requests"]
    page = catalog.page("/datasets/la311_service_requests")
    text = text_of(page)
    assert [h for h in headings(page) if h[0] == 1] == [(1, spec.title)]
    about = text_of(section(page, "about"))
    for value in (spec.department, spec.license, spec.steward.name, "daily", "9,999"):
        assert value in about
    assert f'href="mailto:{spec.steward.email}"' in page
    assert spec.provenance and " ".join(spec.provenance.split()) in about
    # published moments ago, daily: fresh, and the page says on what basis
    fresh = text_of(section(page, "freshness"))
    assert "Fresh" in fresh and "Stale" not in fresh
    assert "Based on when the live version was published" in fresh and "2 days" in fresh
    quality = text_of(section(page, "quality"))
    assert re.search(r"passed all \d+ critical checks", quality), quality
    assert "Warnings:" in quality
    downloads = section(page, "downloads")
    for href in (
        "/-/download/la311_service_requests.csv",
        "/-/download/la311_service_requests.csv?bom=1",
        "/-/download/la311_service_requests.json",
        "/-/download/la311_service_requests.geojson",
        "/-/download/la311_service_requests.parquet",
        "/-/download/la311_service_requests/datapackage.json",
        "/-/dcat/la311_service_requests.jsonld",
    ):
        assert f'href="{href}"' in downloads
    assert "Filter, sort and facet all 9,999 rows" in text
    assert 'href="/portal/la311_service_requests"' in page


def test_dictionary_in_spec_order_with_empty_shares_and_examples(catalog) -> None:
    spec = catalog.specs["la311_service_requests"]
    dictionary = section(page := catalog.page("/datasets/la311_service_requests"), "dictionary")
    names = re.findall(r'<th scope="row"><code>([^<]+)</code></th>', dictionary)
    published = [f.name for f in spec.published_fields()]
    assert names == published  # the spec's order, not alphabetical
    assert "house_number" not in names  # dropped by the privacy rules
    assert "<caption" in dictionary and 'tabindex="0"' in dictionary
    # the share of empty values matches the published table
    rows = httpx.get(
        f"{catalog.url}/portal/-/query.json",
        params={
            "sql": "select count(*) as n, sum(mobile_os is null or mobile_os = '') as e"
            " from la311_service_requests",
            "_shape": "objects",
        },
        timeout=30,
    ).json()["rows"][0]
    share = rows["e"] / rows["n"]
    row = re.search(r"<code>mobile_os</code></th>(.*?)</tr>", dictionary, re.S)
    assert row is not None
    shown = re.findall(r'<td class="num">([^<]+)</td>', row.group(1))[0]
    assert shown.endswith("%") and abs(float(shown[:-1]) - share * 100) <= 0.05, (shown, share)
    assert 0 < share < 1
    # example values come from the published (rounded) coordinates
    lat = re.search(r"<code>latitude</code></th>(.*?)</tr>", dictionary, re.S)
    assert lat is not None
    examples = re.findall(r"<td><code>([^<]+)</code>", lat.group(1))
    assert examples and all(len(e.split(".")[-1]) <= 3 for e in examples)
    assert "degrees" in text_of(lat.group(1))
    assert "Reported location, to the hundred block" in text_of(dictionary)
    assert "Preview" in text_of(page)


def test_privacy_note_gives_the_specs_reasons(catalog) -> None:
    spec = catalog.specs["la311_service_requests"]
    privacy = text_of(section(catalog.page("/datasets/la311_service_requests"), "privacy"))
    for f in spec.fields:
        if f.privacy:
            assert " ".join(f.privacy.reason.split()) in privacy, f.name
            assert f.name in privacy
    assert "house_number : not published" in privacy
    assert "address : generalised (to the hundred block)" in privacy
    assert spec.privacy.review is not None
    assert f"Privacy review: {spec.privacy.review.reviewed_by}, {spec.privacy.review.date}" in (
        privacy
    )


def test_history_lists_each_version_with_its_rows(catalog) -> None:
    history = section(catalog.page("/datasets/parking_citations"), "history")
    versions = httpx.get(
        f"{catalog.url}/portal/-/query.json",
        params={
            "sql": "select rows, published_at from _civicflow_versions"
            " where table_name = 'parking_citations' order by id desc",
            "_shape": "objects",
        },
        timeout=30,
    ).json()["rows"]
    body = history[history.index("<tbody>") :]
    shown = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    assert len(shown) == len(versions) >= 1
    for tr, version in zip(shown, versions, strict=True):
        assert f'datetime="{version["published_at"]}"' in tr
        assert f"{version['rows']:,}" in text_of(tr)
    assert "first version" in text_of(shown[-1])
    assert "(live)" in text_of(shown[0])


def test_dataset_without_coordinates_or_schedule(catalog) -> None:
    page = catalog.page("/datasets/neighborhood_councils")
    # centroid latitude/longitude: GeoJSON is offered
    assert 'href="/-/download/neighborhood_councils.geojson"' in page
    fresh = text_of(section(page, "freshness"))
    assert "No update schedule" in fresh and "irregular" in fresh


def test_unknown_table_is_a_404_page(catalog) -> None:
    response = catalog.get("/datasets/no_such_table")
    assert response.status_code == 404
    assert "Dataset not found" in response.text
    assert "no_such_table" in text_of(response.text)
    assert '<html lang="en">' in response.text
    # a bookkeeping table is not a dataset
    assert catalog.get("/datasets/_civicflow_versions").status_code == 404


def _portal_rows(catalog: Catalog, sql: str) -> list[dict]:
    response = httpx.get(
        f"{catalog.url}/portal/-/query.json", params={"sql": sql, "_shape": "objects"}, timeout=30
    )
    response.raise_for_status()
    rows: list[dict] = response.json()["rows"]
    return rows


def test_quality_status_is_the_publishing_runs_counts_only(catalog) -> None:
    (row,) = _portal_rows(
        catalog,
        "select metadata from _civicflow_metadata where table_name = 'la311_service_requests'",
    )
    quality = json.loads(row["metadata"])["extra"]["quality"]
    assert set(quality) == {
        "critical_passed",
        "critical_failed",
        "warning_passed",
        "warning_failed",
    }
    assert all(isinstance(v, int) for v in quality.values())
    # The session's portal is shared: another module may have published these same rows
    # first, and this module's run then ended "unchanged" with the same checks counted.
    last = Ledger(catalog.settings.ledger_path).last("la311_service_requests")
    assert last is not None and last.outcome in ("published", "unchanged")
    assert quality == {k: getattr(last, k) for k in quality}
    shown = text_of(section(catalog.page("/datasets/la311_service_requests"), "quality"))
    assert f"passed all {quality['critical_passed']} critical checks" in shown
    assert f"Warnings: {quality['warning_passed']} passed, {quality['warning_failed']} failed" in (
        shown
    )


def test_a_rejected_run_shows_none_of_its_values(catalog, tmp_path) -> None:
    before = catalog.page("/datasets/la311_service_requests")
    frame = pd.read_csv(LA311_CSV, dtype=str, keep_default_na=False)
    frame.loc[[9, 19], "Status"] = "Lost-RAWVALUE-7731"  # outside the observed set: critical
    frame.loc[5, "RequestType"] = "Secret-RAWVALUE-7731"
    variant = tmp_path / "variant.csv"
    frame.to_csv(variant, index=False)
    outcome = run_dataset(catalog.settings, "la311_service_requests", variant)
    assert outcome.outcome == "rejected", outcome.reason
    after = catalog.page("/datasets/la311_service_requests")
    assert "RAWVALUE" not in after
    assert "RAWVALUE" not in catalog.page("/")
    assert 'href="/datasets/' not in catalog.page("/", q="RAWVALUE-7731")  # echoes the query only
    assert section(after, "history") == section(before, "history")
    assert section(after, "quality") == section(before, "quality")


def test_every_download_link_on_the_page_answers(catalog) -> None:
    downloads = section(catalog.page("/datasets/parking_citations"), "downloads")
    links = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', downloads)]
    served = [h for h in links if h.startswith("/-/download/")]
    assert len(served) == 6  # CSV, CSV with BOM, JSON, GeoJSON, Parquet, Data Package
    for href in served:
        with httpx.stream("GET", catalog.url + href, timeout=120) as response:
            assert response.status_code == 200, href
            assert next(response.iter_bytes(), b""), href


# -- the version history's changes and checks, and empty shares counted at publish -----


def _history_rows(page: str) -> list[list[str]]:
    """The history table's rows as cell texts: published, rows, change in rows, added,
    changed, deleted, checks passed, version."""
    history = section(page, "history")
    body = history[history.index("<tbody>") : history.index("</tbody>")]
    return [
        [text_of(cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
        for tr in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def _checks(record) -> str:
    passed = record.critical_passed + record.warning_passed
    total = passed + record.critical_failed + record.warning_failed
    assert total > 0
    return f"{passed:,} of {total:,}"


def _live_metadata(portal) -> dict:
    (row,) = portal.query(
        "select metadata from _civicflow_metadata where table_name = 'la311_service_requests'"
    )
    return json.loads(row["metadata"])


def _versions(portal) -> list[dict]:
    return portal.query(
        "select version, run_id, data_version from _civicflow_versions"
        " where table_name = 'la311_service_requests' order by id desc"
    )


def _legacy_publish(settings: Settings, spec: DatasetSpec) -> None:
    """Publish the bundled rows as a civicflow from before the history did: no summaries
    and no empty counts in the metadata (the portal adapter's own publish)."""
    from civicflow.pipeline import dictionary, extract_stage, protect_stage
    from civicflow.portals import TableMetadata, get_portal
    from civicflow.published import content_version

    ext = extract_stage(spec, settings, "20200101T000000Z-legacy", None)
    frame = protect_stage(spec, ext.frame, settings, "20200101T000000Z-legacy").frame
    get_portal("datasette", settings).publish(
        spec.table,
        frame,
        fields=spec.published_fields(),
        primary_key=list(spec.primary_key),
        version=content_version(frame),
        run_id="20200101T000000Z-legacy",
        metadata=TableMetadata(
            title=spec.title, description=spec.description, extra={"dictionary": dictionary(spec)}
        ),
    )


def _edit(path: Path) -> tuple[pd.DataFrame, dict[str, int]]:
    """The 311 rows with 5 deleted, some statuses changed and 3 added; the exact counts."""
    rows = pd.read_csv(LA311_CSV, dtype=str, keep_default_na=False)
    added = rows.iloc[20:23].assign(SRNumber=[f"1-99999999{i}" for i in range(3)])
    status = rows["Status"].iloc[10:17]
    rows.loc[rows.index[10:17], "Status"] = "Cancelled"
    edited = pd.concat([rows.iloc[5:], added], ignore_index=True)
    edited.to_csv(path, index=False)
    counts = {"added": 3, "changed": int((status != "Cancelled").sum()), "deleted": 5}
    assert counts["changed"] > 0
    return edited, counts


def test_history_shows_rows_added_changed_deleted_and_checks_per_version(
    datasette_factory, tmp_path, monkeypatch
) -> None:
    portal = datasette_factory()
    settings = point_civicflow_at(portal, tmp_path / "var", monkeypatch)
    spec = find_dataset(settings.datasets_dir, "la311_service_requests")
    url = f"{portal.url}/datasets/la311_service_requests"

    # 1. a version published before summaries existed: "—", and the scan for empties
    _legacy_publish(settings, spec)
    page = httpx.get(url, timeout=60).text
    (legacy,) = _history_rows(page)
    assert legacy[3:7] == ["— not recorded"] * 4
    assert "A dash (—) means not recorded" in text_of(section(page, "history"))
    scanned = _dictionary_empties(page)

    # 2. the same rows through the pipeline: a new version (summaries and empty counts
    # are new metadata) that changed no row; its checks are the run's
    first = run_dataset(settings, "la311_service_requests")
    assert first.outcome == "published" and first.result is not None, first.reason
    assert first.result.change == "metadata"
    page = httpx.get(url, timeout=60).text
    now, legacy = _history_rows(page)
    assert now[3:7] == ["0", "0", "0", _checks(first.record)]
    assert legacy[3:7] == ["— not recorded"] * 4
    # the dictionary's empty counts came with the metadata, and agree with the table
    fields = _live_metadata(portal)["extra"]["dictionary"]
    for f in fields:
        (row,) = portal.query(
            f'select sum("{f["name"]}" is null or "{f["name"]}" = \'\') as e'
            " from la311_service_requests"
        )
        assert f["empty"] == row["e"], f["name"]
    assert _dictionary_empties(page) == scanned

    # 3. rows deleted, changed and added: counted exactly, against the kept copy
    edited_csv = tmp_path / "edited.csv"
    edited, counts = _edit(edited_csv)
    second = run_dataset(settings, "la311_service_requests", edited_csv)
    assert second.outcome == "published" and second.result is not None, second.reason
    assert second.result.change == "data"
    page = httpx.get(url, timeout=60).text
    rows = _history_rows(page)
    assert len(rows) == 3 == len(_versions(portal))
    assert rows[0][1] == f"{len(edited):,}" and rows[0][2] == "−2"
    assert rows[0][3:7] == [
        str(counts["added"]),
        str(counts["changed"]),
        str(counts["deleted"]),
        _checks(second.record),
    ]
    assert rows[1][3:7] == ["0", "0", "0", _checks(first.record)]  # kept in the history
    assert "(live)" in rows[0][7]
    summaries = Ledger(settings.ledger_path).versions("la311_service_requests")
    assert [(s.run_id, s.added, s.changed, s.deleted) for s in summaries] == [
        (second.record.run_id, counts["added"], counts["changed"], counts["deleted"]),
        (first.record.run_id, 0, 0, 0),
    ]
    assert summaries[0].portal_version == _versions(portal)[0]["version"]

    # 4. the same rows again, from a file with other bytes (so the run reaches the
    # portal): unchanged, the live version and its metadata exactly as they were
    metadata, versions = _live_metadata(portal), _versions(portal)
    crlf = tmp_path / "edited-crlf.csv"
    edited.to_csv(crlf, index=False, lineterminator="\r\n")
    again = run_dataset(settings, "la311_service_requests", crlf)
    assert again.outcome == "unchanged", again.reason
    assert again.reason == "portal already holds this exact version"  # not the input key
    assert (_live_metadata(portal), _versions(portal)) == (metadata, versions)
    assert len(Ledger(settings.ledger_path).versions("la311_service_requests")) == 2

    # 5. from another machine's var dir (no ledger, no kept copies): still unchanged,
    # the live metadata is read from the portal
    elsewhere = point_civicflow_at(portal, tmp_path / "elsewhere", monkeypatch)
    there = run_dataset(elsewhere, "la311_service_requests", crlf)
    assert there.outcome == "unchanged", there.reason
    assert there.reason == "portal already holds this exact version"
    assert (_live_metadata(portal), _versions(portal)) == (metadata, versions)

    # the page in Spanish says the same
    es = _history_rows(httpx.get(url, params={"lang": "es"}, timeout=60).text)
    passed, total = _checks(second.record).split(" of ")
    assert es[0][6] == f"{format_decimal(int(passed.replace(',', '')), locale='es')} de " + (
        format_decimal(int(total.replace(",", "")), locale="es")
    )
    assert es[-1][3] == "— no registrado"


def _dictionary_empties(page: str) -> dict[str, str]:
    dictionary = section(page, "dictionary")
    return {
        name: cells[-1]
        for name, cells in (
            (m.group(1), re.findall(r'<td class="num">([^<]*)</td>', m.group(2)))
            for m in re.finditer(r"<code>([^<]+)</code></th>(.*?)</tr>", dictionary, re.S)
        )
    }


def test_empty_shares_come_from_the_metadata_without_a_scan(tmp_path) -> None:
    """The profile reads only the first rows when the publish counted the empty values;
    a table published before that is scanned once, in one query."""
    import sqlite3

    from civicflow.catalog.pages import profile

    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("create table t (a text, b integer)")
    conn.executemany("insert into t values (?, ?)", [("x", 1), ("", None), (None, 3)] * 500)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)

    counted = profile(conn, "t", ["a", "b"], (1_500, {"a": 1_000, "b": 500}))
    assert (counted.total, counted.empty) == (1_500, {"a": 1_000, "b": 500})
    assert counted.examples == {"a": ["x"], "b": ["1", "3"]} and len(counted.preview) == 10
    assert not [s for s in statements if "sum(" in s]  # no scan of the table

    scanned = profile(conn, "t", ["a", "b"])
    assert (scanned.total, scanned.empty) == (1_500, {"a": 1_000, "b": 500})
    assert len([s for s in statements if "sum(" in s]) == 1


def test_versions_join_their_summaries_by_run_and_rows() -> None:
    from civicflow.catalog.entries import Changes, Version, with_changes

    versions = [
        Version("v4", 10, "run-rollback", "2026-11-04", "d1"),  # restores d1: not its summary
        Version("v3", 10, "run-3", "2026-11-03", "d3"),
        Version("v2", 12, "run-2", "2026-11-02", "d2"),
        Version("v1", 10, "run-1", "2026-11-01", "d1"),
        Version("v0", 10, None, "2026-10-01", None),  # before run ids were recorded
    ]
    history = [
        {
            "run_id": "run-3",
            "data_version": "d3",
            "added": 2,
            "changed": None,
            "deleted": 4,
            "checks_passed": 5,
            "checks_total": 6,
        },
        {
            "run_id": "run-2",
            "data_version": "d2",
            "added": None,
            "changed": None,
            "deleted": None,
            "checks_passed": 6,
            "checks_total": 6,
        },
        {
            "run_id": "run-1",
            "data_version": "d1",
            "added": 10,
            "changed": 0,
            "deleted": 0,
            "checks_passed": 6,
            "checks_total": 6,
        },
        {"run_id": "run-x", "data_version": "dx", "added": "3", "changed": -1},  # ignored
        "not a summary",
    ]
    joined = {v.version: v.changes for v in with_changes(versions, history)}
    assert joined["v4"] is None and joined["v0"] is None
    assert joined["v3"] == Changes(2, None, 4, 5, 6)
    assert joined["v3"].keyless and joined["v3"].complete  # no key: "changed" is not counted
    assert joined["v2"] is not None and not joined["v2"].keyless and not joined["v2"].complete
    assert joined["v1"] == Changes(10, 0, 0, 6, 6) and joined["v1"].complete
    assert with_changes(versions, None) == versions  # published before summaries


def test_history_of_a_table_without_a_key_counts_rows_in_and_out(
    datasette_factory, tmp_path, monkeypatch
) -> None:
    portal = datasette_factory()
    settings = point_civicflow_at(portal, tmp_path / "var", monkeypatch)
    spec = find_dataset(settings.datasets_dir, "lax_passenger_traffic")
    keyless = spec.model_copy(update={"primary_key": []})
    assert run_dataset(settings, spec.id, spec=keyless).outcome == "published"

    source = PROJECT / "data" / "lax_passenger_traffic" / "lax_passenger_traffic_by_terminal.csv"
    rows = pd.read_csv(source, dtype=str, keep_default_na=False)
    rows.loc[rows.index[100:104], "Passenger_Count"] = "12345"  # 4 rows changed
    added = rows.iloc[200:202].assign(Passenger_Count="7")  # 2 more rows
    edited = pd.concat([rows.drop(index=rows.index[300:303]), added], ignore_index=True)
    path = tmp_path / "lax.csv"
    edited.to_csv(path, index=False)
    outcome = run_dataset(settings, spec.id, path, spec=keyless)
    assert outcome.outcome == "published", outcome.reason

    page = httpx.get(f"{portal.url}/datasets/{spec.id}", timeout=60).text
    newest, first = _history_rows(page)
    # without a key a changed row is one deleted and one added; "changed" is not counted
    assert newest[3:7] == ["6", "— not counted: no primary key", "7", _checks(outcome.record)]
    assert first[3:6] == ["3,630", "— not counted: no primary key", "0"]
    history = text_of(section(page, "history"))
    assert "a row that changed counts as one deleted and one added" in history
    assert "A dash (—) means not recorded" not in history  # every count is known
