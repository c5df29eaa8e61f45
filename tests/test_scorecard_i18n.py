"""The scorecard in Spanish: every interface string of its own gettext domain has a
translation, ``index.es.html`` is Spanish (``<html lang="es">``, headings, statuses, level
names, chart text alternatives, numbers and dates in Spanish form), the two pages link to
each other, KPI and criterion text falls back to English with a visible note, and the
Spanish page shows no data the English one does not."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from babel.numbers import format_decimal

from civicflow.metrics import i18n
from civicflow.metrics import scorecard as sc
from civicflow.metrics.site import render_page
from civicflow.settings import Settings
from tests.test_catalog_i18n import assert_placeholders_kept
from tests.test_metrics_site import write_bundled_site

PROJECT = Path(__file__).resolve().parents[1]
CATALOG_PO = PROJECT / "src/civicflow/catalog/locales/es/LC_MESSAGES/messages.po"
LEVELS_ES = {
    "Silver": "Plata",
    "Gold": "Oro",
    "Platinum": "Platino",
    "Not yet certified": "Aún sin certificar",
}


def text_of(page: str) -> str:
    """The markup's text, tags removed and entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page))).strip()


def headings(page: str) -> list[tuple[int, str]]:
    return [
        (int(level), text_of(inner))
        for level, inner in re.findall(r"<h([1-6])[^>]*>(.*?)</h\1>", page, re.S)
    ]


def article(page: str, kpi_id: str) -> str:
    start = page.index(f'<article class="kpi" id="{kpi_id}"')
    return page[start : page.index("</article>", start)]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[sc.Loaded, sc.Scorecard, dict[str, Path]]:
    _, loaded, card, paths = write_bundled_site(tmp_path_factory.mktemp("i18n") / "var")
    return loaded, card, paths


def test_every_scorecard_string_has_a_spanish_translation() -> None:
    msgids = i18n.interface_msgids()
    # the extraction sees site.py, charts.py (chart text alternatives) and i18n.py
    assert {"Performance scorecard", "Certification", "On track", "Not met"} <= msgids
    assert {"%(n)s of %(total)s periods have a value", "no data"} <= msgids  # charts.py
    assert {"month", "week of %(date)s"} <= msgids  # i18n.py
    missing = i18n.untranslated("es")
    assert missing == [], f"scorecard strings without a Spanish translation: {missing}"


def test_spanish_translations_keep_their_placeholders() -> None:
    assert_placeholders_kept(i18n.po_path("es"), i18n.interface_msgids())


def test_the_scorecard_has_its_own_domain_beside_the_catalogs() -> None:
    path = i18n.po_path("es")
    assert path.name == "scorecard.po" and path.is_file()
    assert path.resolve() != CATALOG_PO.resolve()
    assert i18n.Tr("es")._("Performance scorecard") == "Indicadores de desempeño"
    assert i18n.Tr("en")._("Performance scorecard") == "Performance scorecard"


def test_both_pages_are_written_side_by_side(site) -> None:
    _, _, paths = site
    assert paths["html"].name == "index.html" and paths["html_es"].name == "index.es.html"
    assert paths["html"].parent == paths["html_es"].parent == paths["csv"].parent


def test_spanish_page(site) -> None:
    loaded, card, paths = site
    page = paths["html_es"].read_text()
    assert '<html lang="es">' in page
    assert "<title>Indicadores de desempeño</title>" in page
    heads = headings(page)
    assert heads[0] == (1, "Indicadores de desempeño")
    assert (2, "Certificación") in heads and (2, "Indicadores clave de desempeño") in heads
    for r in card.results:
        assert r.kpi.title_es, r.kpi.id  # every bundled KPI has its Spanish
        assert (3, r.kpi.title_es) in heads
        block = article(page, r.kpi.id)
        assert f'data-status="{r.status}"' in block
        status = {"on_track": "En la meta", "off_track": "Fuera de la meta"}.get(r.status)
        if status:
            assert f'<span class="pill {r.status}">{status}</span>' in block
        assert "Disponible solo en inglés" not in block
        assert r.kpi.description_es and text_of(r.kpi.description_es) in text_of(block)
        assert "Tabla de datos: evolución" in block
        # the chart's text alternative in Spanish
        assert "evolución por" in block and "períodos tienen valor" in block
        if r.current is not None and r.current.value is not None and r.has_value:
            decimals = "." + "0" * r.kpi.decimals if r.kpi.decimals else ""
            shown = format_decimal(r.current.value, "#,##0" + decimals, locale="es")
            assert f'<span class="value">{shown}\u00a0' in block
    # the certification level by its Spanish name; the English one stays as data
    cert = card.certification
    assert f'data-level="{cert.level}">{LEVELS_ES[cert.level]}</div>' in page
    for level in loaded.metrics.certification.levels:
        assert f">{LEVELS_ES[level.name]}</text>" in page  # the progress bar's ticks
    text = text_of(page)
    for words in (
        "Criterios cumplidos",
        "Todos los indicadores de un vistazo",
        "Práctica",
        "Código del estándar",
        "Evidencia",
        "Basado en Certificación What Works Cities",
        "Los valores calculados a partir de menos de",
    ):
        assert words in text, words
    # periods and numbers in Spanish form (the bundled 311 data ends on 31 Dec 2017)
    summary = page[page.index('id="kpis-h"') : page.index("<article")]
    assert "31 dic 2017" in summary and "2017-12-31" not in summary
    assert re.search(r"\d,\d\u00a0%", page)  # a decimal comma before the percent sign
    # text from the checks is English and marked so
    assert '<span lang="en">' in page
    assert "Los motivos y los detalles de la evidencia" in text


def test_english_page_stays_english(site) -> None:
    _, card, paths = site
    page = paths["html"].read_text()
    assert '<html lang="en">' in page
    assert headings(page)[0] == (1, "Performance scorecard")
    assert (2, "Certification") in headings(page)
    assert f'data-level="{card.certification.level}">{card.certification.level}</div>' in page
    for spanish in ("Indicadores", "evolución", "Cumplido", "Disponible solo en inglés"):
        assert spanish not in page
    assert ' lang="es"' in page  # only the switch's own "Español"
    assert page.count(' lang="es"') == 1


def test_the_language_switch_links_both_ways(site) -> None:
    _, _, paths = site
    en, es = paths["html"].read_text(), paths["html_es"].read_text()
    to_es = '<a href="index.es.html" lang="es" hreflang="es">Español</a>'
    to_en = '<a href="index.html" lang="en" hreflang="en">English</a>'
    assert to_es in en and to_en in es
    assert '<span lang="en" aria-current="true">English</span>' in en
    assert '<span lang="es" aria-current="true">Español</span>' in es
    assert '<nav class="languages" aria-label="Language">' in en
    assert '<nav class="languages" aria-label="Idioma">' in es
    for page in (en, es):
        assert '<link rel="alternate" hreflang="en" href="index.html">' in page
        assert '<link rel="alternate" hreflang="es" href="index.es.html">' in page
    # the portal link keeps the language; downloads are the same files
    assert '<a href="/?lang=es">Portal de datos abiertos</a>' in es
    assert '<a href="/">Open data portal</a>' in en
    for download in ('href="scorecard.csv"', 'href="scorecard.json"'):
        assert download in en and download in es


def test_spanish_falls_back_to_english_with_a_note(site) -> None:
    loaded, card, _ = site
    r = card.results[0]
    english_kpi = r.kpi.model_copy(update={"title_es": None, "description_es": None})
    criterion = card.certification.criteria[0]
    english_criterion = criterion.criterion.model_copy(update={"text_es": None})
    results = [type(r)(**{**vars(r), "kpi": english_kpi}), *card.results[1:]]
    criteria = [
        type(criterion)(**{**vars(criterion), "criterion": english_criterion}),
        *card.certification.criteria[1:],
    ]
    cert = type(card.certification)(**{**vars(card.certification), "criteria": criteria})
    fallback = type(card)(**{**vars(card), "results": results, "certification": cert})
    page = render_page(fallback, "es", sc.page_text(loaded))
    block = article(page, r.kpi.id)
    assert f'<h3 lang="en">{html.escape(r.kpi.title)}</h3>' in block
    assert '<p class="note">Disponible solo en inglés</p>' in block
    assert f'<p lang="en">{html.escape(r.kpi.description)}</p>' in block
    assert f'<span lang="en">{html.escape(criterion.criterion.text)}</span>' in page
    # the rest of the page is still Spanish
    assert '<html lang="es">' in page and (3, results[1].kpi.title_es) in headings(page)


def test_the_spanish_page_shows_no_data_the_english_one_does_not(site) -> None:
    _, card, paths = site
    en, es = paths["html"].read_text(), paths["html_es"].read_text()

    def marks(page: str, pattern: str) -> list[str]:
        return re.findall(pattern, page)

    for pattern in (r'data-kpi="[^"]*"', r'data-status="[^"]*"', r'data-chart="[^"]*"'):
        assert marks(en, pattern) == marks(es, pattern)
    assert marks(en, r'href="/portal/[^"]*"') == marks(es, r'href="/portal/[^"]*"')
    assert marks(en, r"<pre><code>.*?</code></pre>") == marks(es, r"<pre><code>.*?</code></pre>")
    # what the Spanish page shows in English (group names, owners, the checks' reasons and
    # evidence) is text the English page shows too
    english_text = text_of(en)
    for inner in re.findall(r'<span lang="en">(.*?)</span>', es, re.S):
        assert text_of(inner) in english_text, inner
    assert es.count("<tr>") == en.count("<tr>")


def test_the_bundled_metrics_files_are_in_spanish() -> None:
    """Every text of metrics/ the page shows has its Spanish (units that are symbols need none)."""
    metrics = sc.load(Settings(project_dir=PROJECT, var_dir=PROJECT / "var")).metrics
    for kpi in metrics.kpis.values():
        assert kpi.title_es and kpi.description_es, kpi.id
        assert kpi.unit_es or not kpi.unit.isalpha(), kpi.id
        assert all(d.title_es for d in kpi.dimensions), kpi.id
        assert kpi.target is None or kpi.target.source_es, kpi.id
    cert = metrics.certification
    assert cert.standard_es
    for c in cert.criteria:
        assert c.text_es and c.practice_es, c.id
        assert c.practice_area is None or c.practice_area_es, c.id
    # the level names are the scorecard's own strings (certification.yaml may give name_es)
    for name in [lv.name for lv in cert.levels] + [cert.below_levels]:
        assert i18n.Tr("es")._(name) == LEVELS_ES[name]


def test_a_levels_own_spanish_name_wins(site) -> None:
    loaded, card, _ = site
    cert = card.certification
    levels = [{**lv, "name_es": f"Nivel {i}"} for i, lv in enumerate(cert.levels)]
    renamed = type(card)(
        **{**vars(card), "certification": type(cert)(**{**vars(cert), "levels": levels})}
    )
    page = render_page(renamed, "es", sc.page_text(loaded))
    assert all(f">Nivel {i}</text>" in page for i in range(len(levels)))
    assert ">Plata</text>" not in page
