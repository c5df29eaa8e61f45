"""Gettext message catalogs for any part of civicflow: a domain is one ``.po`` file.

The interface is written in English (``_("...")`` where a string is shown, ``N_("...")``
where it is defined); each other language's strings live in
``<locales>/<lang>/LC_MESSAGES/<domain>.po``, read with Babel and compiled in memory
when first needed (no ``.mo`` is shipped, so the ``.po`` is the only copy to keep up to
date). ``msgids`` finds the interface strings of a domain's source files, so a test
can list those without a translation. Only Babel is imported here: the catalog and the
scorecard both build on it without importing each other.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LANGUAGES = ("en", "es")
DEFAULT = "en"
#: each language's name in that language (the language switch)
NAMES = {"en": "English", "es": "Español"}


def N_(message: str) -> str:
    """Marks a string for translation where it is defined; translated where shown."""
    return message


def language(value: str | None) -> str:
    """A supported language code, else English."""
    return value if value in LANGUAGES else DEFAULT


def po_path(locales: Path, domain: str, lang: str) -> Path:
    return locales / lang / "LC_MESSAGES" / f"{domain}.po"


@cache
def translations(locales: Path, domain: str, lang: str) -> NullTranslations:
    """The strings of ``domain`` in ``lang`` (English, or no catalog: as written)."""
    path = po_path(locales, domain, lang)
    if lang == DEFAULT or not path.is_file():
        return NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=domain)


def translated_msgids(locales: Path, domain: str, lang: str) -> dict[str, str]:
    """msgid -> translation in ``domain``'s catalog of ``lang`` (empty ones included)."""
    with po_path(locales, domain, lang).open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    return {
        str(m.id): str(m.string or "")
        for m in catalog
        if m.id and isinstance(m.id, str) and not m.fuzzy
    }


_CALL = re.compile(r"""\bN?_\(\s*(?P<q>["'])(?P<text>(?:\\.|(?!(?P=q)).)*)(?P=q)\s*[,)]""", re.S)


def _unescape(text: str, quote: str) -> str:
    return text.replace("\\" + quote, quote).replace("\\\\", "\\")


def msgids(files: Iterable[Path]) -> set[str]:
    """Every ``_("...")`` / ``N_("...")`` string literal in ``files`` (also ``x._("...")``)."""
    found: set[str] = set()
    for path in files:
        for match in _CALL.finditer(path.read_text(encoding="utf-8")):
            found.add(_unescape(match.group("text"), match.group("q")))
    return found


def untranslated(locales: Path, domain: str, files: Iterable[Path], lang: str) -> list[str]:
    """Strings used in ``files`` with no translation in ``domain``'s ``lang`` catalog."""
    done = {k for k, v in translated_msgids(locales, domain, lang).items() if v.strip()}
    return sorted(msgids(files) - done)
