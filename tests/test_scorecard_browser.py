"""The scorecard page in real headless Chromium (Debian's package) over HTTP.

No console errors, no request to any other host, every chart present with its text
table, readable at 375 px wide (no horizontal overflow, chart text not shrunk below
legibility), in English (``index.html``) and Spanish (``index.es.html``), and the language
switch leads from each to the other. Screenshots are saved under test-artifacts/
(git-ignored).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from civicflow.metrics import scorecard as sc
from civicflow.metrics.charts import FONT, WIDTH
from civicflow.settings import Settings
from tests.test_metrics_kpis import SOURCES, publish_parquet

PROJECT = Path(__file__).resolve().parents[1]
ARTIFACTS = PROJECT / "test-artifacts"
#: each language's page, its h1, and how a screenshot is named
PAGES = {
    "en": ("index.html", "Performance scorecard"),
    "es": ("index.es.html", "Indicadores de desempeño"),
}
SHOT = {"en": "scorecard-{width}.png", "es": "scorecard-es-{width}.png"}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[str, sc.Scorecard]]:
    """A scorecard computed from the bundled data, served by a plain HTTP server on loopback."""
    settings = Settings(project_dir=PROJECT, var_dir=tmp_path_factory.mktemp("browser") / "var")
    for dataset_id in SOURCES:
        publish_parquet(settings, dataset_id)
    loaded = sc.load(settings)
    results = sc.compute_kpis(settings, loaded)
    card = sc.build(settings, loaded, results)
    sc.write_site(settings, card)
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(settings.site_dir))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/scorecard/", card
    finally:
        server.shutdown()
        server.server_close()


def _open(browser: Any, url: str, width: int) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url, wait_until="networkidle")
    return page, errors, requests


def _expected_charts(card: sc.Scorecard) -> int:
    return sum(1 + len(r.breakdowns) for r in card.results if r.series)


@pytest.mark.parametrize("lang", ["en", "es"])
def test_page_loads_clean_with_every_chart_and_its_table(site, browser, lang: str) -> None:
    url, card = site
    name, h1 = PAGES[lang]
    # the folder's own URL serves the English page
    page, errors, requests = _open(browser, url if lang == "en" else url + name, 1280)
    try:
        assert errors == []
        origin = url.split("/scorecard/")[0]
        assert requests and all(r.startswith(origin) for r in requests), requests
        assert page.evaluate("document.documentElement.lang") == lang
        assert page.locator("h1").inner_text() == h1
        level = page.locator(".level-name")
        assert level.get_attribute("data-level") == card.certification.level
        if lang == "en":
            assert level.inner_text() == card.certification.level
        figures = page.locator("figure.chart")
        assert figures.count() == _expected_charts(card) >= 5
        for i in range(figures.count()):
            fig = figures.nth(i)
            svg = fig.locator("svg.chart-svg")
            assert svg.count() == 1 and svg.is_visible()
            box = svg.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 50
            assert fig.locator("svg title").count() >= 1
            table = fig.locator("table")
            assert table.count() == 1 and table.locator("tbody tr").count() >= 1
            fig.locator("summary").click()  # the text alternative opens and is readable
            assert table.is_visible()
        # at least five KPIs show a chart by council district
        assert page.locator('figure.chart[data-chart$="-by-cd"]').count() >= 5
        for r in card.results:
            article = page.locator(f'article[data-kpi="{r.kpi.id}"]')
            assert article.count() == 1
            if r.source is not None:
                assert article.locator(f'a[href="/portal/{r.kpi.dataset}"]').count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / SHOT[lang].format(width=1280)), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("lang", ["en", "es"])
def test_readable_at_375_px(site, browser, lang: str) -> None:
    url, card = site
    page, errors, _ = _open(browser, url + PAGES[lang][0], 375)
    try:
        assert errors == []
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= 375, f"page overflows horizontally: {scroll_width}px"
        # nothing sticks out past the right edge (tables scroll inside their own box)
        overflowing = page.evaluate(
            """() => [...document.querySelectorAll('body *')]
                .filter(e => !e.closest('.table-wrap') && e.getBoundingClientRect().right > window.innerWidth + 0.5)
                .map(e => e.tagName + '.' + e.className)"""
        )
        assert overflowing == []
        assert float(page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")) >= 16
        # chart text scales with the chart: it must stay at a legible size on a phone
        widths = page.evaluate(
            "[...document.querySelectorAll('svg.chart-svg')].map(s => s.getBoundingClientRect().width)"
        )
        assert len(widths) == _expected_charts(card)
        assert min(widths) * FONT / WIDTH >= 11, (
            f"chart text renders at {min(widths) * FONT / WIDTH:.1f}px"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / SHOT[lang].format(width=375)), full_page=True)
    finally:
        page.close()


def test_the_language_switch_leads_both_ways(site, browser) -> None:
    url, _ = site
    page, errors, _ = _open(browser, url, 1280)
    try:
        switch = page.get_by_role("navigation", name="Language").get_by_role("link", name="Español")
        assert switch.get_attribute("hreflang") == "es" and switch.get_attribute("lang") == "es"
        switch.click()
        page.wait_for_load_state("networkidle")
        assert page.url == url + "index.es.html"
        assert page.evaluate("document.documentElement.lang") == "es"
        assert page.locator("h1").inner_text() == PAGES["es"][1]
        current = page.get_by_role("navigation", name="Idioma").locator("[aria-current=true]")
        assert current.inner_text() == "Español"
        back = page.get_by_role("navigation", name="Idioma").get_by_role("link", name="English")
        assert back.get_attribute("hreflang") == "en"
        back.click()
        page.wait_for_load_state("networkidle")
        assert page.url == url + "index.html"
        assert page.evaluate("document.documentElement.lang") == "en"
        assert page.locator("h1").inner_text() == PAGES["en"][1]
        assert errors == []
    finally:
        page.close()
