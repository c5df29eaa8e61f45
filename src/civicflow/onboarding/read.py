"""Read what ``spec init --source`` names into the all-text table every source kind produces.

The target picks the kind: a file by its suffix (.csv, .xlsx, .geojson/.json), an
http(s) URL, or a ``postgresql://`` URL. The table is read by the registered source
kind itself (``civicflow.sources.get_source``) through a transient spec, so the draft
sees exactly what a run will. A PostgreSQL URL's password is used for this one read
and never written anywhere: the drafted source names environment variables instead.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
from pydantic import ValidationError

from civicflow.settings import Settings
from civicflow.sources import ExtractError, RemoteSource, get_source
from civicflow.spec.models import DatasetSpec, PostgresSource

_SUFFIX_KIND = {".csv": "csv", ".xlsx": "excel", ".xlsm": "excel", ".geojson": "geojson"}
_SUFFIX_KIND[".json"] = "geojson"
_SECRET_PARAM = re.compile(r"(?i)token|key|secret|passw|signature|auth")
_URL_FORMAT = {".csv": "csv", ".json": "json", ".geojson": "geojson"}


@dataclass
class ReadOptions:
    """What a target cannot say by itself."""

    sheet: str | None = None
    header_row: int = 1
    #: Excel: rows at the bottom of the sheet to skip (blank line, totals, notes)
    footer_rows: int = 0
    table: str | None = None
    query: str | None = None
    format: str | None = None


@dataclass
class SourceTable:
    """A source read for drafting: its rows as text and the spec's ``source`` mapping."""

    table: pa.Table
    source: dict[str, Any]
    #: what was read, safe to print and to write in the spec (no password)
    origin: str
    title: str
    #: comment lines for the source (environment variables to set, ...)
    notes: list[str] = field(default_factory=list)


def _transient(dataset_id: str, source: dict[str, Any]) -> DatasetSpec:
    """A spec good enough for a source kind to read with (metadata are placeholders)."""
    try:
        return _validate_transient(dataset_id, source)
    except ValidationError as exc:
        wrong = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
        )
        raise ExtractError(f"the source cannot be read as given: {wrong}") from None


def _validate_transient(dataset_id: str, source: dict[str, Any]) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "id": dataset_id,
            "title": "draft",
            "description": "transient spec for drafting",
            "department": "draft",
            "steward": {"name": "draft", "email": "draft@example.org"},
            "license": "CC0-1.0",
            "update_frequency": "irregular",
            "category": "draft",
            "source": source,
            "fields": [{"name": "draft", "type": "string", "description": "draft"}],
        }
    )


def _first_sheet(path: Path) -> str:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise ExtractError(f"{path}: not an .xlsx workbook", detail=str(exc)) from None
    try:
        return str(workbook.sheetnames[0])
    finally:
        workbook.close()


def _file_source(path: Path, settings: Settings, options: ReadOptions) -> dict[str, Any]:
    kind = _SUFFIX_KIND.get(path.suffix.lower())
    if kind is None:
        raise ExtractError(
            f"{path}: cannot tell the source kind from the suffix "
            f"(known: {', '.join(sorted(_SUFFIX_KIND))}, an http(s) or postgresql:// URL)"
        )
    if not path.is_file():
        raise ExtractError(f"{path}: source file not found")
    try:
        shown = str(path.resolve().relative_to(settings.project_dir.resolve()))
    except ValueError:
        shown = str(path.resolve())
    source: dict[str, Any] = {"kind": kind, "path": shown}
    if kind == "excel":
        source["sheet"] = options.sheet or _first_sheet(path)
        if options.header_row != 1:
            source["header_row"] = options.header_row
        if options.footer_rows:
            source["footer_rows"] = options.footer_rows
    return source


def _http_source(url: str, options: ReadOptions) -> dict[str, Any]:
    parts = urlsplit(url)
    secret = [k for k, _ in parse_qsl(parts.query) if _SECRET_PARAM.search(k)]
    if parts.password or parts.username or secret:
        # The URL goes into the spec, a committed file: no credential may ride in it.
        raise ExtractError(
            "the URL carries credentials (user info or a token/key parameter); "
            "a spec is committed, so give a URL that needs none"
        )
    suffix = Path(parts.path).suffix.lower()
    fmt = options.format or _URL_FORMAT.get(suffix)
    if fmt is None:
        raise ExtractError(
            "cannot tell the format from the URL: pass --format csv, json or geojson"
        )
    return {"kind": "http", "url": url, "format": fmt}


def _postgres(
    url: str, options: ReadOptions, settings: Settings
) -> tuple[dict[str, Any], Settings, str]:
    """The source mapping, settings holding the connection for this read, and the URL
    to put in the environment (without the password)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    table = options.table or query.pop("table", None)
    if (table is None) == (options.query is None):
        raise ExtractError(
            "a postgresql:// source needs a table (--table or ?table= in the URL) or --query"
        )
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host
    netloc += f":{parts.port}" if parts.port else ""
    clean = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))
    source: dict[str, Any] = {"kind": "postgres"}
    source.update({"table": table} if table else {"query": options.query})
    spec_source = PostgresSource.model_validate(source)
    env = {**settings.env, spec_source.connection_env: clean}
    if parts.password:
        env[spec_source.password_env] = parts.password
    return source, dataclasses.replace(settings, env=env), clean


def _read(
    dataset_id: str, source: dict[str, Any], settings: Settings, path: Path | None
) -> pa.Table:
    spec = _transient(dataset_id, source)
    reader = get_source(spec.source.kind)
    if path is not None:
        return reader.read(spec, path)
    if not isinstance(reader, RemoteSource):
        raise ExtractError(f"source kind {spec.source.kind} reads a file, not a URL")
    # The pull goes to a private scratch folder: nothing of the draft's lands in var/.
    with tempfile.TemporaryDirectory(prefix="civicflow-init-") as scratch:
        local = dataclasses.replace(settings, var_dir=Path(scratch) / "var")
        raw = Path(scratch) / f"pulled{reader.suffix}"
        with raw.open("wb") as out:
            for chunk in reader.pull(spec, local):
                out.write(chunk)
        return reader.read(spec, raw)


def read_target(
    dataset_id: str, target: str, settings: Settings, options: ReadOptions | None = None
) -> SourceTable:
    """Read ``target`` (a path or URL) for drafting ``dataset_id``'s spec."""
    options = options or ReadOptions()
    scheme = urlsplit(target).scheme.lower()
    if scheme in ("http", "https"):
        source = _http_source(target, options)
        title = Path(urlsplit(target).path).stem
        return SourceTable(_read(dataset_id, source, settings, None), source, target, title)
    if scheme in ("postgresql", "postgres"):
        source, local, clean = _postgres(target, options, settings)
        table = _read(dataset_id, source, local, None)
        env = PostgresSource.model_validate(source)
        notes = [
            f"Set {env.connection_env}={clean} (no password in it)",
            f"and the password in {env.password_env}; neither goes in this file.",
        ]
        what = source.get("table") or "a query"
        return SourceTable(table, source, f"{clean} ({what})", str(what), notes)
    path = Path(target)
    if not path.is_absolute():
        path = Path.cwd() / path
    source = _file_source(path, settings, options)
    return SourceTable(_read(dataset_id, source, settings, path), source, source["path"], path.stem)
