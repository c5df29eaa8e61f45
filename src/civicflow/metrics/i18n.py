"""The scorecard in English and Spanish: its own gettext domain and locale formatting.

Interface strings are written in English in ``site`` and ``charts`` (``tr._()`` calls,
``N_()`` marks); their Spanish is ``locales/es/LC_MESSAGES/scorecard.po`` (the
``scorecard`` domain, apart from the catalog's ``messages.po``), compiled in memory
when first needed. Numbers, periods and times come out in the page's locale through
Babel; English keeps exactly the forms the page has always shown. KPI and criterion
text comes from ``metrics/`` (``title_es``, ``description_es``, ...), in English with
a note where a Spanish field is missing.

Each language is one static file in the same folder, so every relative link (the CSV
and JSON downloads) works from both: ``index.html`` (English) and ``index.es.html``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from pathlib import Path

from babel import Locale
from babel.dates import format_date as _babel_date
from babel.dates import format_datetime
from babel.numbers import format_decimal as _babel_decimal

from civicflow import i18n_core
from civicflow.i18n_core import DEFAULT, LANGUAGES, N_, NAMES
from civicflow.metrics.compute import axis_label, period_label

DOMAIN = "scorecard"
PACKAGE_DIR = Path(__file__).resolve().parent
LOCALES_DIR = PACKAGE_DIR / "locales"
#: files whose ``_()`` / ``N_()`` calls (string literals) are the scorecard's interface strings
SOURCES = (PACKAGE_DIR / "site.py", PACKAGE_DIR / "charts.py", PACKAGE_DIR / "i18n.py")
#: the page of each language, side by side in the scorecard folder
PAGES = {"en": "index.html", "es": "index.es.html"}

__all__ = ["DEFAULT", "LANGUAGES", "N_", "NAMES", "PAGES", "Tr", "number", "untranslated"]

#: the Spanish of the default ``below_levels`` (a config may give its own ``below_levels_es``)
NOT_YET_CERTIFIED = N_("Not yet certified")


def po_path(lang: str) -> Path:
    return i18n_core.po_path(LOCALES_DIR, DOMAIN, lang)


def interface_msgids() -> set[str]:
    return i18n_core.msgids(SOURCES)


def untranslated(lang: str = "es") -> list[str]:
    """Scorecard strings with no translation in ``lang``'s catalog (should be none)."""
    return i18n_core.untranslated(LOCALES_DIR, DOMAIN, SOURCES, lang)


def _pattern(decimals: int) -> str:
    return "#,##0" + ("." + "0" * decimals if decimals else "")


# A page formats thousands of numbers and dates (every point of every trend, in the
# chart and its table): Babel parses the locale name on every call unless given a
# Locale, and a day's name is asked for several times per page, so both are cached.
@cache
def _locale(lang: str) -> Locale:
    return Locale.parse(lang)


def _format_decimal(value: float, pattern: str, locale: str) -> str:
    return str(_babel_decimal(value, pattern, locale=_locale(locale)))


@lru_cache(maxsize=65536)
def _format_date(day: date, pattern: str, locale: str) -> str:
    return str(_babel_date(day, pattern, locale=_locale(locale)))


def number(value: float, decimals: int, lang: str = DEFAULT) -> str:
    """``value`` with ``decimals`` decimals and grouped thousands, in ``lang``'s form."""
    if lang == DEFAULT:
        return f"{value:,.{decimals}f}"
    return _format_decimal(value, _pattern(decimals), lang)


def compact(value: float, lang: str = DEFAULT) -> str:
    """A short axis label: 2.5k, 3M (Spanish 2,5 mil, 3 M)."""
    magnitude = abs(value)
    if lang == DEFAULT:
        if magnitude >= 1_000_000:
            return f"{value / 1_000_000:g}M"
        if magnitude >= 1_000:
            return f"{value / 1_000:g}k"
        return f"{value:g}"
    if magnitude >= 1_000_000:
        return _format_decimal(value / 1_000_000, "#,##0.##", lang) + "\u00a0M"
    if magnitude >= 1_000:
        return _format_decimal(value / 1_000, "#,##0.##", lang) + "\u00a0mil"
    return _format_decimal(value, "#,##0.####", lang)


@dataclass(frozen=True)
class Tr:
    """One page language: its strings, numbers, periods and times."""

    lang: str = DEFAULT

    def _(self, message: str) -> str:
        text: str = i18n_core.translations(LOCALES_DIR, DOMAIN, self.lang).gettext(message)
        return text

    @property
    def english(self) -> bool:
        return self.lang == DEFAULT

    def number(self, value: float, decimals: int) -> str:
        return number(value, decimals, self.lang)

    def integer(self, value: int) -> str:
        return number(value, 0, self.lang)

    def compact(self, value: float) -> str:
        return compact(value, self.lang)

    def period(self, period: date, grain: str) -> str:
        """The period's name: 2017-12-27, week of 2017-12-25, Dec 2017, 2017 Q4, 2017."""
        if self.english:
            return period_label(period, grain)
        if grain == "day":
            return str(_format_date(period, "d MMM y", self.lang))
        if grain == "week":
            return self._("week of %(date)s") % {"date": _format_date(period, "d MMM y", self.lang)}
        if grain == "month":
            return str(_format_date(period, "LLL y", self.lang))
        if grain == "quarter":
            return str(_format_date(period, "QQQ y", self.lang))
        return str(period.year)

    def axis(self, period: date, grain: str) -> str:
        """A shorter period name for chart axes."""
        if self.english:
            return axis_label(period, grain)
        if grain in ("day", "week"):
            return str(_format_date(period, "d MMM", self.lang))
        return self.period(period, grain)

    def grain(self, grain: str) -> str:
        return self._(GRAINS.get(grain, grain))

    def when(self, moment: datetime) -> str:
        """A time in UTC: 2024-05-01 13:05 UTC (Spanish: 1 may 2024, 13:05 UTC)."""
        if self.english:
            return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return str(
            format_datetime(moment, "d MMM y, HH:mm 'UTC'", tzinfo=UTC, locale=_locale(self.lang))
        )

    def when_iso(self, iso: str) -> str:
        try:
            moment = datetime.fromisoformat(iso)
        except ValueError:
            return iso
        return self.when(moment if moment.tzinfo else moment.replace(tzinfo=UTC))

    def pick(self, english: str, spanish: str | None) -> tuple[str, str]:
        """Text from ``metrics/`` for this page: (text, language it is in)."""
        if not self.english and spanish:
            return spanish, self.lang
        return english, DEFAULT

    def page(self) -> str:
        return PAGES[self.lang]


#: the period grains as the page names them ("trend by day")
GRAINS = {
    "day": N_("day"),
    "week": N_("week"),
    "month": N_("month"),
    "quarter": N_("quarter"),
    "year": N_("year"),
}
