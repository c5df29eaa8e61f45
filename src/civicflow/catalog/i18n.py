"""English and Spanish for the catalog: interface strings in gettext message catalogs.

The interface is written in English in the templates and in ``pages`` (``_("...")``);
the Spanish catalog is ``locales/es/LC_MESSAGES/messages.po``, read with Babel and
compiled in memory when first needed (no ``.mo`` is shipped, so the ``.po`` is the
only copy to keep up to date). A page's language comes from ``?lang=`` (``en`` unless
``es`` is asked for); its links carry the choice on. Dataset titles and descriptions
come from the spec's ``title_es``/``description_es``, English (with a note) without.
"""

from __future__ import annotations

import io
import re
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LANGUAGES = ("en", "es")
DEFAULT = "en"
#: each language's name in that language (the language switch)
NAMES = {"en": "English", "es": "Español"}

PACKAGE_DIR = Path(__file__).resolve().parent
LOCALES_DIR = PACKAGE_DIR / "locales"
TEMPLATES_DIR = PACKAGE_DIR / "templates"
#: files whose ``_("...")`` / ``N_("...")`` calls are the interface strings
SOURCES = (PACKAGE_DIR / "pages.py",)


def N_(message: str) -> str:
    """Marks a string for translation where it is defined; translated where shown."""
    return message


def po_path(lang: str) -> Path:
    return LOCALES_DIR / lang / "LC_MESSAGES" / "messages.po"


def language(value: str | None) -> str:
    """The page language for a ``?lang=`` value: a supported one, else English."""
    return value if value in LANGUAGES else DEFAULT


@cache
def translations(lang: str) -> NullTranslations:
    """The interface strings of ``lang`` (English: the strings as written)."""
    path = po_path(lang)
    if lang == DEFAULT or not path.is_file():
        return NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def gettext(lang: str) -> Any:
    """The ``_`` function for pages in ``lang``."""
    return translations(lang).gettext


def translated_msgids(lang: str) -> dict[str, str]:
    """msgid -> translation of the catalog of ``lang`` (empty translations included)."""
    with po_path(lang).open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    return {
        str(m.id): str(m.string or "")
        for m in catalog
        if m.id and isinstance(m.id, str) and not m.fuzzy
    }


_CALL = re.compile(r"""\bN?_\(\s*(?P<q>["'])(?P<text>(?:\\.|(?!(?P=q)).)*)(?P=q)\s*[,)]""", re.S)


def _unescape(text: str, quote: str) -> str:
    return text.replace("\\" + quote, quote).replace("\\\\", "\\")


def interface_msgids() -> set[str]:
    """Every interface string: the ``_("...")`` calls of the templates and of ``pages``."""
    files = [*sorted(TEMPLATES_DIR.rglob("*.html")), *SOURCES]
    found: set[str] = set()
    for path in files:
        for match in _CALL.finditer(path.read_text(encoding="utf-8")):
            found.add(_unescape(match.group("text"), match.group("q")))
    return found


def untranslated(lang: str = "es") -> list[str]:
    """Interface strings with no translation in ``lang``'s catalog (should be none)."""
    done = {k for k, v in translated_msgids(lang).items() if v.strip()}
    return sorted(interface_msgids() - done)
