"""The catalog in Spanish: every interface string has a translation in the message
catalog, ``?lang=es`` renders Spanish pages with ``<html lang="es">`` and keeps the
language across links, and dataset text falls back to English with a visible note."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from civicflow.catalog import i18n
from tests.test_catalog_pages import Catalog, headings, publish_catalog, section, text_of

# 311 has title_es/description_es; neighborhood councils do not
DATASETS = ("la311_service_requests", "neighborhood_councils")


@pytest.fixture(scope="module")
def catalog(datasette_server, tmp_path_factory) -> Iterator[Catalog]:
    yield from publish_catalog(datasette_server, tmp_path_factory, DATASETS)


def test_every_interface_string_has_a_spanish_translation() -> None:
    msgids = i18n.interface_msgids()
    # the extraction sees the templates and pages.py, not an empty set
    assert {"Skip to main content", "Data dictionary", "Available in English only"} <= msgids
    assert "daily" in msgids  # N_() labels defined in pages.py
    missing = i18n.untranslated("es")
    assert missing == [], f"interface strings without a Spanish translation: {missing}"


def assert_placeholders_kept(po_path: Path, msgids: set[str]) -> None:
    """Every translation in ``po_path`` keeps its msgid's %(name)s placeholders, and the
    catalog translates at least as many strings as the interface uses."""
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale="es")
    placeholder = re.compile(r"%\((\w+)\)s")
    checked = 0
    for message in catalog:
        if message.id and message.string:
            ids = sorted(placeholder.findall(str(message.id)))
            assert ids == sorted(placeholder.findall(str(message.string))), message.id
            checked += 1
    assert checked >= len(msgids)


def test_spanish_translations_keep_their_placeholders() -> None:
    assert_placeholders_kept(i18n.po_path("es"), i18n.interface_msgids())


def test_spanish_home_page(catalog) -> None:
    page = catalog.page("/", lang="es")
    assert '<html lang="es">' in page
    assert (1, "Datos abiertos de la Ciudad de Los Ángeles") in headings(page)
    assert "Saltar al contenido principal" in page
    assert "Buscar conjuntos de datos" in page
    spec = catalog.specs["la311_service_requests"]
    assert spec.title_es and html.escape(spec.title_es, quote=False) in page
    # links keep the language; the switch leads back to English
    assert 'href="/datasets/la311_service_requests?lang=es"' in page
    assert 'href="/?lang=en"' in page
    assert '<input type="hidden" name="lang" value="es">' in page
    # a search in Spanish stays Spanish, and the switch keeps the query
    results = catalog.page("/", q="graffiti", lang="es")
    assert "coinciden con «graffiti»" in text_of(results)
    assert 'href="/?q=graffiti&amp;lang=en"' in results


def test_spanish_dataset_page_with_spanish_title(catalog) -> None:
    spec = catalog.specs["la311_service_requests"]
    page = catalog.page("/datasets/la311_service_requests", lang="es")
    assert '<html lang="es">' in page
    assert spec.title_es and spec.description_es
    assert f'<h1 lang="es">{html.escape(spec.title_es, quote=False)}</h1>' in page
    assert " ".join(spec.description_es.split()) in text_of(page)
    assert "Disponible solo en inglés" not in page
    for heading in ("Diccionario de datos", "Historial de versiones", "Privacidad", "Descargar"):
        assert (2, heading) in headings(page)
    assert "Actualizado" in text_of(section(page, "freshness"))
    assert "diaria" in text_of(section(page, "about"))
    # numbers in Spanish form, spec text marked as English
    assert "9.999" in text_of(section(page, "about"))
    assert "público" in text_of(section(page, "about"))
    assert '<td lang="en">Service request number assigned by MyLA311.</td>' in page
    english = catalog.page("/datasets/la311_service_requests")
    assert f'<h1 lang="en">{html.escape(spec.title, quote=False)}</h1>' in english


def test_spanish_falls_back_to_english_with_a_note(catalog) -> None:
    spec = catalog.specs["neighborhood_councils"]
    assert spec.title_es is None
    page = catalog.page("/datasets/neighborhood_councils", lang="es")
    assert '<html lang="es">' in page
    assert f'<h1 lang="en">{html.escape(spec.title, quote=False)}</h1>' in page
    assert '<p class="note">Disponible solo en inglés</p>' in page
    home = catalog.page("/", lang="es")
    entry = home[home.index('href="/datasets/neighborhood_councils?lang=es"') :]
    assert "(Disponible solo en inglés)" in entry[: entry.index("</li>")]


def test_spanish_404(catalog) -> None:
    response = catalog.get("/datasets/no_such_table", lang="es")
    assert response.status_code == 404
    assert '<html lang="es">' in response.text
    assert "Conjunto de datos no encontrado" in response.text


def test_unknown_language_is_english(catalog) -> None:
    page = catalog.page("/", lang="xx")
    assert '<html lang="en">' in page
    assert "Skip to main content" in page
