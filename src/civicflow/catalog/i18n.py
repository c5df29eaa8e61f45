"""English and Spanish for the catalog: interface strings in gettext message catalogs.

The interface is written in English in the templates and in ``pages`` (``_("...")``);
the Spanish catalog is ``locales/es/LC_MESSAGES/messages.po``, read with Babel and
compiled in memory when first needed (no ``.mo`` is shipped, so the ``.po`` is the
only copy to keep up to date). A page's language comes from ``?lang=`` (``en`` unless
``es`` is asked for); its links carry the choice on. Dataset titles and descriptions
come from the spec's ``title_es``/``description_es``, English (with a note) without.
The gettext machinery is ``civicflow.i18n_core``'s (the scorecard uses it too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babel.support import NullTranslations

from civicflow import i18n_core
from civicflow.i18n_core import DEFAULT, LANGUAGES, N_, NAMES, language

__all__ = [
    "DEFAULT",
    "LANGUAGES",
    "NAMES",
    "N_",
    "gettext",
    "interface_msgids",
    "language",
    "po_path",
    "translated_msgids",
    "translations",
    "untranslated",
]

DOMAIN = "messages"
PACKAGE_DIR = Path(__file__).resolve().parent
LOCALES_DIR = PACKAGE_DIR / "locales"
TEMPLATES_DIR = PACKAGE_DIR / "templates"
#: files whose ``_("...")`` / ``N_("...")`` calls are the interface strings
SOURCES = (PACKAGE_DIR / "pages.py",)


def po_path(lang: str) -> Path:
    return i18n_core.po_path(LOCALES_DIR, DOMAIN, lang)


def translations(lang: str) -> NullTranslations:
    """The interface strings of ``lang`` (English: the strings as written)."""
    return i18n_core.translations(LOCALES_DIR, DOMAIN, lang)


def gettext(lang: str) -> Any:
    """The ``_`` function for pages in ``lang``."""
    return translations(lang).gettext


def translated_msgids(lang: str) -> dict[str, str]:
    """msgid -> translation of the catalog of ``lang`` (empty translations included)."""
    return i18n_core.translated_msgids(LOCALES_DIR, DOMAIN, lang)


def _files() -> list[Path]:
    return [*sorted(TEMPLATES_DIR.rglob("*.html")), *SOURCES]


def interface_msgids() -> set[str]:
    """Every interface string: the ``_("...")`` calls of the templates and of ``pages``."""
    return i18n_core.msgids(_files())


def untranslated(lang: str = "es") -> list[str]:
    """Interface strings with no translation in ``lang``'s catalog (should be none)."""
    return i18n_core.untranslated(LOCALES_DIR, DOMAIN, _files(), lang)
