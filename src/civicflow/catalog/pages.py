"""The catalog's HTML pages: the home page (datasets by department and category, search)
and one page per dataset (about, freshness, quality, downloads, dictionary, privacy,
history, preview), in English or Spanish (``?lang=es``).

Everything shown comes from the portal database (``entries``) and the published table
itself: example values and the preview are read from the first rows of the live table,
which passed the privacy guard; the share of empty values and each version's changes
come with the metadata the publish sent (a table published before they were counted is
scanned once for its empty values). Nothing here reads a source, a run report or a
rejected run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from babel.dates import format_datetime
from babel.numbers import format_decimal, format_percent
from datasette.resources import TableResource
from datasette.utils.asgi import Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from civicflow.catalog import i18n
from civicflow.catalog.entries import Entry, read_entries
from civicflow.catalog.i18n import N_
from civicflow.freshness import allowance

#: example values shown per column in the data dictionary
EXAMPLES = 3
#: example values are taken from this many first rows of the table
EXAMPLE_SCAN = 1000
#: longest example value shown (longer ones are cut, with an ellipsis)
EXAMPLE_CHARS = 60
PREVIEW_ROWS = 10

FREQUENCIES = {
    "daily": N_("daily"),
    "weekly": N_("weekly"),
    "monthly": N_("monthly"),
    "quarterly": N_("quarterly"),
    "annually": N_("annually"),
    "irregular": N_("irregular"),
    "static": N_("static (not updated)"),
}
ACCESS_LEVELS = {
    "public": N_("public"),
    "restricted public": N_("restricted public"),
    "non-public": N_("non-public"),
}
TYPES = {
    "string": N_("text"),
    "integer": N_("whole number"),
    "number": N_("number"),
    "boolean": N_("true/false"),
    "date": N_("date"),
    "datetime": N_("date and time"),
    "geopoint": N_("point (latitude, longitude)"),
    "geometry": N_("geometry"),
}
RULES = {
    "drop": N_("removed"),
    "hash": N_("replaced by a keyed hash"),
    "generalise": N_("generalised"),
    "redact": N_("redacted"),
}
METHODS = {
    "hundred_block": N_("to the hundred block"),
    "round": N_("rounded"),
    "grid": N_("snapped to a grid"),
    "truncate": N_("truncated"),
    "age_band": N_("grouped in age bands"),
    "zip5": N_("to the 5-digit ZIP code"),
}

_env = Environment(
    loader=FileSystemLoader(str(i18n.TEMPLATES_DIR)),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Page:
    """What every page shares: language, its ``_``, formatters and link builders."""

    datasette: Any
    request: Any
    lang: str

    @property
    def _(self) -> Callable[[str], str]:
        gettext: Callable[[str], str] = i18n.gettext(self.lang)
        return gettext

    def href(self, path: str, **params: str) -> str:
        """A catalog link that keeps the page's language."""
        if self.lang != i18n.DEFAULT:
            params = {**params, "lang": self.lang}
        query = urlencode({k: v for k, v in params.items() if v})
        url: str = self.datasette.urls.path(path)
        return url + ("?" + query if query else "")

    def switch(self, lang: str) -> str:
        """This page in ``lang`` (other query parameters kept)."""
        args = self.request.args
        kept = [(k, v) for k in args if k != "lang" for v in args.getlist(k)]
        return str(self.request.path) + "?" + urlencode([*kept, ("lang", lang)])

    def number(self, value: int | float) -> str:
        return str(format_decimal(value, locale=self.lang))

    def percent(self, share: float) -> str:
        return str(format_percent(share, "#,##0.#%", locale=self.lang))

    def empty_share(self, empty: int | None, total: int) -> str:
        """The share of empty values; a few empties in many rows are not shown as 0 %."""
        if empty is None or not total:
            return "—"
        share = empty / total
        if 0 < share < 0.0005:
            return "< " + self.percent(0.001)
        return self.percent(share)

    def when(self, text: str | None) -> str:
        moment = _parse_time(text or "")
        if moment is None:
            return text or ""
        return str(format_datetime(moment, "d MMM y, HH:mm 'UTC'", tzinfo=UTC, locale=self.lang))

    def context(self, **values: Any) -> dict[str, Any]:
        return {
            "_": self._,
            "lang": self.lang,
            "page": self,
            "languages": [(code, i18n.NAMES[code]) for code in i18n.LANGUAGES],
            # spec text (column descriptions, reasons) is English: marked so on other pages
            "en": Markup(' lang="en"') if self.lang != "en" else "",
            **values,
        }

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        html = _env.get_template(template).render(self.context(**values))
        return Response.html(html, status=status)


def _page(datasette: Any, request: Any) -> Page:
    return Page(datasette, request, i18n.language(request.args.get("lang")))


def _database(datasette: Any) -> Any:
    """The portal database (the one file database the server was started with)."""
    for name, db in datasette.databases.items():
        if name not in ("_internal", "_memory") and not getattr(db, "is_memory", False):
            return db
    return None


async def _entries(datasette: Any, request: Any) -> tuple[Any, list[Entry]]:
    """The portal database and the entries the visitor may see (Datasette's view-table)."""
    db = _database(datasette)
    if db is None:
        return None, []
    entries: list[Entry] = await db.execute_fn(read_entries)
    visible = []
    for entry in entries:
        resource = TableResource(database=db.name, table=entry.table)
        if await datasette.allowed(action="view-table", resource=resource, actor=request.actor):
            visible.append(entry)
    return db, visible


# -- what a page says about an entry -------------------------------------------------


def localized(entry: Entry, lang: str) -> dict[str, Any]:
    """Title and description in ``lang`` where the spec gives them; else English, flagged."""
    title_es, description_es = entry.get("title_es"), entry.get("description_es")
    if lang == "es":
        return {
            "title": title_es or entry.title,
            "title_lang": "es" if title_es else "en",
            "description": description_es or entry.description,
            "description_lang": "es" if description_es else "en",
            "fallback": not (title_es and description_es),
        }
    return {
        "title": entry.title,
        "title_lang": "en",
        "description": entry.description,
        "description_lang": "en",
        "fallback": False,
    }


def freshness(entry: Entry, now: datetime | None = None) -> dict[str, Any]:
    """Fresh or stale: the live version's publish time against the update frequency."""
    now = now or datetime.now(UTC)
    frequency = str(entry.get("update_frequency", "irregular"))
    published = _parse_time(entry.last_updated)
    allowed: timedelta | None = allowance(frequency)
    if published is None:
        state = "unknown"
    elif allowed is None:
        state = "unscheduled"
    else:
        state = "stale" if now - published > allowed else "fresh"
    return {
        "state": state,
        "frequency": frequency,
        "published": entry.last_updated,
        "allowed_days": None if allowed is None else allowed.days,
    }


def quality(entry: Entry) -> dict[str, int] | None:
    """The live version's validation counts (``extra.quality``), when the publish sent them."""
    counts = entry.get("quality")
    if not isinstance(counts, dict):
        return None
    keys = ("critical_passed", "critical_failed", "warning_passed", "warning_failed")
    try:
        return {k: int(counts.get(k, 0)) for k in keys}
    except (TypeError, ValueError):
        return None


def has_coordinates(entry: Entry) -> bool:
    """Whether the dataset has a GeoJSON download: coordinates or a point/geometry field."""
    names = {str(f.get("name", "")).lower() for f in entry.dictionary}
    types = {str(f.get("type") or "") for f in entry.dictionary}
    coordinates = any(n.endswith("latitude") for n in names) and any(
        n.endswith("longitude") for n in names
    )
    return coordinates or bool(types & {"geopoint", "geometry"})


def history(entry: Entry) -> list[dict[str, Any]]:
    """Each published version (newest first) with its change in rows from the one before
    and, where its publish recorded them, rows added, changed and deleted and the checks
    passed (``changes``; None: not recorded)."""
    out = []
    for i, version in enumerate(entry.versions):
        previous = entry.versions[i + 1] if i + 1 < len(entry.versions) else None
        out.append(
            {
                "version": version,
                "change": None if previous is None else version.rows - previous.rows,
                "changes": version.changes,
            }
        )
    return out


def _search_text(entry: Entry) -> dict[str, str]:
    """Where a search looks: titles, descriptions, tags, column names and descriptions."""
    columns = " ".join(
        f"{f.get('name', '')} {f.get('description') or ''}" for f in entry.dictionary
    )
    return {
        "title": f"{entry.title} {entry.get('title_es', '')}",
        "description": f"{entry.description} {entry.get('description_es', '')}",
        "tags": " ".join(str(t) for t in entry.get("tags", [])),
        "columns": columns,
    }


MATCHED_IN = {
    "title": N_("title"),
    "description": N_("description"),
    "tags": N_("tags"),
    "columns": N_("column descriptions"),
}


def search(entries: list[Entry], query: str) -> list[tuple[Entry, list[str]]]:
    """Entries where every word of ``query`` appears (case-insensitive), with where."""
    words = query.casefold().split()
    if not words:
        return [(e, []) for e in entries]
    found = []
    for entry in entries:
        texts = {k: v.casefold() for k, v in _search_text(entry).items()}
        if all(any(w in text for text in texts.values()) for w in words):
            where = [k for k, text in texts.items() if any(w in text for w in words)]
            found.append((entry, where))
    return found


def grouped(items: list[tuple[Entry, list[str]]]) -> list[tuple[str, list[tuple[str, list]]]]:
    """(department, [(category, [(entry, matched in)])]), each sorted by name."""
    departments: dict[str, dict[str, list[tuple[Entry, list[str]]]]] = {}
    for entry, where in items:
        department = entry.department or ""
        category = str(entry.get("category", ""))
        departments.setdefault(department, {}).setdefault(category, []).append((entry, where))
    return [
        (department, sorted(categories.items(), key=lambda kv: kv[0].casefold()))
        for department, categories in sorted(departments.items(), key=lambda kv: kv[0].casefold())
    ]


# -- what is read from the published table ---------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Per column of the live table: share of empty values and a few example values."""

    total: int
    empty: dict[str, int]
    examples: dict[str, list[str]]
    columns: list[str]
    preview: list[tuple[Any, ...]]


#: (table, live version) -> profile: a version's rows never change once live
_profiles: dict[tuple[str, str], Profile] = {}


def _example(value: Any) -> str:
    text = str(value)
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


def profile(
    conn: sqlite3.Connection,
    table: str,
    names: list[str],
    counted: tuple[int, dict[str, int]] | None = None,
) -> Profile:
    """Example values and the first rows for the dictionary's columns the table has, in
    its order, and the empty values: ``counted`` (rows, empty values per column) as the
    publish counted them, else scanned here in one query (``sum(col is null or col = '')``
    per column: seconds on a million rows, for tables published before they were counted)."""
    present = {row[1] for row in conn.execute(f"pragma table_info({_quote(table)})")}
    columns = [n for n in names if n in present]
    if counted is not None:
        total, empty = counted[0], {c: counted[1][c] for c in columns if c in counted[1]}
    else:
        sums = "".join(f", sum({_quote(c)} is null or {_quote(c)} = '')" for c in columns)
        counts = conn.execute(f"select count(*){sums} from {_quote(table)}").fetchone()
        total = int(counts[0])
        empty = {c: int(counts[i + 1] or 0) for i, c in enumerate(columns)}
    examples = {}
    for c in columns:
        # from the first rows only: a column with fewer distinct values than EXAMPLES
        # would otherwise be scanned whole (seconds on a million rows)
        rows = conn.execute(
            f"select distinct v from (select {_quote(c)} as v from {_quote(table)}"
            f" order by rowid limit {EXAMPLE_SCAN}) where v is not null and v != ''"
            f" limit {EXAMPLES}"
        ).fetchall()
        examples[c] = [_example(r[0]) for r in rows]
    preview: list[tuple[Any, ...]] = []
    if columns:
        selected = ", ".join(_quote(c) for c in columns)
        preview = [
            tuple(r)
            for r in conn.execute(
                f"select {selected} from {_quote(table)} order by rowid limit {PREVIEW_ROWS}"
            )
        ]
    return Profile(total, empty, examples, columns, preview)


async def _profile(db: Any, entry: Entry) -> Profile:
    key = (entry.table, entry.live.version)
    if key not in _profiles:
        names = [str(f.get("name")) for f in entry.dictionary]
        empty = entry.empty_counts
        counted = None if empty is None else (entry.rows, empty)
        _profiles[key] = await db.execute_fn(
            lambda conn: profile(conn, entry.table, names, counted)
        )
    return _profiles[key]


# -- the routes ------------------------------------------------------------------------


async def home_view(datasette: Any, request: Any) -> Response:
    page = _page(datasette, request)
    _db, entries = await _entries(datasette, request)
    query = (request.args.get("q") or "").strip()
    found = search(entries, query)
    return page.render(
        "home.html",
        query=query,
        total=len(entries),
        found=len(found),
        groups=grouped(found),
        localized=localized,
        matched_in=MATCHED_IN,
    )


async def dataset_view(datasette: Any, request: Any) -> Response:
    page = _page(datasette, request)
    table = request.url_vars["table"]
    db, entries = await _entries(datasette, request)
    entry = next((e for e in entries if e.table == table), None)
    if db is None or entry is None:
        return page.render("not_found.html", status=404, table=table)
    stats = await _profile(db, entry)
    versions = history(entry)
    fields = [
        {
            **f,
            "present": f.get("name") in stats.columns,
            "empty": stats.empty.get(str(f.get("name"))),
            "examples": stats.examples.get(str(f.get("name")), []),
        }
        for f in entry.dictionary
    ]
    return page.render(
        "dataset.html",
        entry=entry,
        text=localized(entry, page.lang),
        fields=fields,
        stats=stats,
        fresh=freshness(entry),
        quality=quality(entry),
        history=versions,
        unrecorded=any(v.changes is None or not v.changes.complete for v in entry.versions),
        keyless=any(v.changes is not None and v.changes.keyless for v in entry.versions),
        geojson=has_coordinates(entry),
        review=entry.get("privacy_review"),
        protected=[f for f in entry.dictionary if f.get("privacy")],
        dropped=entry.get("dropped_fields", []),
        table_url=datasette.urls.table(db.name, entry.table),
        frequencies=FREQUENCIES,
        access_levels=ACCESS_LEVELS,
        types=TYPES,
        rules=RULES,
        methods=METHODS,
    )


ROUTES: list[tuple[str, Any]] = [
    (r"^/$", home_view),
    (r"^/datasets/?$", home_view),
    (r"^/datasets/(?P<table>[^/]+)/?$", dataset_view),
]
