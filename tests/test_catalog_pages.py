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

from civicflow.ledger import Ledger
from civicflow.pipeline import run_dataset
from civicflow.settings import Settings, load_settings
from civicflow.spec import DatasetSpec, find_dataset

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
