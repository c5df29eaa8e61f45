"""Accessibility of the resident-facing pages, in real headless Chromium (Debian's package)
over a real Datasette portal with the bundled datasets published and the scorecard built.

For every page, in each language it offers (English, and Spanish via ``?lang=es``; the
static scorecard has a file per language, ``index.html`` and ``index.es.html``), at
1280 px and at 375 px wide: axe-core (the npm registry's package, installed into the
venv by ``make test``'s setup) finds no serious or critical violation, the page does not
overflow horizontally, and ``<html lang>`` names the language shown. A keyboard-only walk
(Tab presses, nothing else) over a dataset page reaches every download link, each with a
visible focus indicator. Screenshots and each page's full axe result are written under
test-artifacts/accessibility/ (git-ignored).

Datasette's own pages (database, table, row and query) are served through civicflow's template
overrides in civicflow/catalog/datasette_templates/ (labels, landmarks, contrast).
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from civicflow.metrics import scorecard as sc
from civicflow.pipeline import run_dataset
from civicflow.settings import load_settings
from tests.fixtures.portal import DatasetteServer

PROJECT = Path(__file__).resolve().parents[1]
ARTIFACTS = PROJECT / "test-artifacts" / "accessibility"
#: axe-core from the npm registry, installed into the venv (see the Makefile's test setup)
AXE_VERSION = "4.14.1"
AXE_JS = Path(sys.prefix) / "node" / "node_modules" / "axe-core" / "axe.min.js"
AXE_INSTALL = f"npm install --prefix {Path(sys.prefix) / 'node'} axe-core@{AXE_VERSION}"
#: what a violation must not be
BLOCKING = ("serious", "critical")
#: every bundled dataset with a file source (code_enforcement_case_status reads PostgreSQL;
#: performance_metrics is the scorecard's own output)
DATASETS = (
    "la311_service_requests",
    "code_enforcement_cases",
    "lax_passenger_traffic",
    "lax_passenger_workbook",
    "neighborhood_councils",
    "parking_citations",
)
DATASET = "la311_service_requests"
WIDTHS = (1280, 375)
#: screenshots stop here (a 100-row Datasette table at 375 px is ~150,000 px tall)
MAX_SHOT_PX = 8000
#: (name, path, languages the page offers); a path per language where the language is in
#: the file name rather than in ``?lang=``
PAGES: tuple[tuple[str, str | Mapping[str, str], tuple[str, ...]], ...] = (
    ("catalog-home", "/", ("en", "es")),
    ("catalog-dataset", f"/datasets/{DATASET}", ("en", "es")),
    ("datasette-database", "/portal", ("en",)),
    # 25 rows: the same template and controls as Datasette's default 100, a quarter of the
    # cells for axe to walk (each of these pages took ~15 s at 100 rows)
    ("datasette-table", f"/portal/{DATASET}?_size=25", ("en",)),
    # filter rows, a selected facet value and sorting each add controls of their own
    (
        "datasette-table-filtered",
        f"/portal/{DATASET}?cd=13&_sort=created_date&_facet=status&status=Closed&_size=25",
        ("en",),
    ),
    ("datasette-row", f"/portal/{DATASET}/1-870704831", ("en",)),
    ("datasette-query", f"/portal/-/query?sql=select+*+from+{DATASET}+limit+5", ("en",)),
    (
        "scorecard",
        {"en": "/scorecard/index.html", "es": "/scorecard/index.es.html"},
        ("en", "es"),
    ),
)
CASES = [
    pytest.param(path, lang, width, id=f"{name}-{lang}-{width}")
    for name, path, languages in PAGES
    for lang in languages
    for width in WIDTHS
]


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatasetteServer]:
    """A portal of its own with every file-sourced bundled dataset published through the
    real flow and the scorecard built from them, all in one var dir as ``civicflow run``
    keeps it."""
    var_dir = tmp_path_factory.mktemp("accessibility") / "var"
    server = DatasetteServer(var_dir=var_dir).start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in server.env.items():
                mp.setenv(key, value)
            mp.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
            mp.setenv("CIVICFLOW_VAR_DIR", str(var_dir))
            mp.setenv("CIVICFLOW_HASH_KEY", secrets.token_hex(32))  # parking_citations hashes VINs
            settings = load_settings()
            for dataset_id in DATASETS:
                outcome = run_dataset(settings, dataset_id)
                assert outcome.outcome == "published", (dataset_id, outcome.reason)
            loaded = sc.load(settings)
            card = sc.build(settings, loaded, sc.compute_kpis(settings, loaded))
            sc.write_site(settings, card)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def axe_source() -> str:
    assert AXE_JS.is_file(), f"axe-core is needed: {AXE_INSTALL}"
    return AXE_JS.read_text(encoding="utf-8")


def _url(portal: DatasetteServer, path: str | Mapping[str, str], lang: str) -> str:
    if not isinstance(path, str):
        return portal.url + path[lang]
    if lang == "en":
        return portal.url + path
    return f"{portal.url}{path}{'&' if '?' in path else '?'}lang={lang}"


def _open(browser: Any, url: str, width: int) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(url, wait_until="networkidle")
    assert response is not None and response.status == 200, (url, response and response.status)
    return page, errors


def _axe(page: Any, source: str) -> dict[str, Any]:
    """axe-core's full result for the page as it stands (all rules axe runs by default)."""
    page.evaluate(source)
    result: dict[str, Any] = page.evaluate("() => axe.run(document)")
    assert result["testEngine"]["version"] == AXE_VERSION, result["testEngine"]
    return result


def _describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])} node(s)): "
        + "; ".join(
            f"{' '.join(map(str, n['target']))} -> {n['failureSummary']!r}" for n in v["nodes"][:5]
        )
        for v in violations
    )


#: the innermost elements reaching past the viewport (what makes a page overflow)
_WIDER_THAN = """(width) => [...document.querySelectorAll('*')]
  .map(e => [e, Math.max(e.getBoundingClientRect().right, e.scrollWidth)])
  .filter(([e, r]) => r > width + 1)
  .sort((a, b) => b[1] - a[1])
  .slice(0, 6)
  .map(([e, r]) => `${e.tagName.toLowerCase()}.${e.className} ${Math.round(r)}px`)"""


def _artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


@pytest.mark.parametrize(("path", "lang", "width"), CASES)
def test_no_serious_or_critical_axe_violation(
    portal, browser, axe_source, request, path: str | Mapping[str, str], lang: str, width: int
) -> None:
    url = _url(portal, path, lang)
    page, errors = _open(browser, url, width)
    try:
        assert page.evaluate("document.documentElement.lang") == lang
        result = _axe(page, axe_source)
        stem = request.node.callspec.id
        height = min(page.evaluate("document.documentElement.scrollHeight"), MAX_SHOT_PX)
        page.screenshot(
            path=str(_artifact(f"{stem}.png")),
            full_page=True,
            clip={"x": 0, "y": 0, "width": width, "height": height},
        )
        summary = {
            "url": url,
            "width": width,
            "axe": result["testEngine"]["version"],
            "violations": [
                {
                    "id": v["id"],
                    "impact": v["impact"],
                    "help": v["help"],
                    "targets": [n["target"] for n in v["nodes"]],
                }
                for v in result["violations"]
            ],
            "passes": len(result["passes"]),
            "incomplete": [v["id"] for v in result["incomplete"]],
        }
        _artifact(f"{stem}.axe.json").write_text(json.dumps(summary, indent=2) + "\n")
        blocking = [v for v in result["violations"] if v["impact"] in BLOCKING]
        assert blocking == [], f"{url} at {width}px:\n{_describe(blocking)}"
        assert result["passes"], "axe checked nothing"
        assert errors == [], errors
        if width <= 375:
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            wide = [] if scroll_width <= width else page.evaluate(_WIDER_THAN, width)
            assert scroll_width <= width, f"{url} overflows horizontally: {scroll_width}px {wide}"
    finally:
        page.close()


#: where the focus is after a key press: the element, its link, whether it shows focus
_FOCUSED = """() => {
    const e = document.activeElement;
    if (!e || e === document.body) return null;
    const s = getComputedStyle(e);
    const r = e.getBoundingClientRect();
    return {
        tag: e.tagName,
        href: e.getAttribute('href'),
        indicator: (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0)
            || s.boxShadow !== 'none',
        inView: r.bottom > 0 && r.top < window.innerHeight && r.width > 0 && r.height > 0,
    };
}"""


@pytest.mark.parametrize(("lang", "width"), [("en", 1280), ("es", 1280), ("en", 375), ("es", 375)])
def test_keyboard_alone_reaches_every_download_link(portal, browser, lang: str, width: int) -> None:
    url = _url(portal, f"/datasets/{DATASET}", lang)
    page, errors = _open(browser, url, width)
    try:
        downloads = page.evaluate(
            "[...document.querySelectorAll('a[href*=\"/-/download/\"]')].map(a => a.getAttribute('href'))"
        )
        # CSV, CSV with BOM, JSON, GeoJSON (the 311 table has coordinates), Parquet, Data Package
        assert len(downloads) >= 6, downloads
        reached: list[dict[str, Any]] = []
        shot = False
        for _ in range(400):
            page.keyboard.press("Tab")
            focused = page.evaluate(_FOCUSED)
            if focused is None or (reached and focused == reached[0]):
                break  # back at the start: the walk went round the whole page
            reached.append(focused)
            if focused["href"] == downloads[0] and not shot:
                shot = True  # what a keyboard user sees on the first download link
                page.screenshot(path=str(_artifact(f"keyboard-download-{lang}-{width}.png")))
        reached_downloads = [f for f in reached if f["href"] in downloads]
        assert sorted({f["href"] for f in reached_downloads}) == sorted(set(downloads)), (
            f"not reached by Tab: {sorted(set(downloads) - {f['href'] for f in reached})}"
        )
        for f in reached_downloads:
            assert f["indicator"], f"no visible focus indicator on {f['href']}"
            assert f["inView"], f"{f['href']} has focus but is scrolled out of view"
        assert errors == [], errors
    finally:
        page.close()
