"""A CSV, JSON or GeoJSON file behind a URL, downloaded again only when it changed.

The body is streamed with httpx into the run's raw copy (``.body``; ``read`` then
dispatches on ``source.format`` to the CSV or GeoJSON reader, or reads JSON records
here). What a download refuses rather than keeps:

- a body over ``max_bytes`` (refused from ``Content-Length`` or as it grows, never
  truncated), a body shorter than its ``Content-Length`` (the connection broke off),
  an empty body;
- a content type that is not the format's (an HTML login or error page served
  with 200 instead of the CSV);
- any 4xx (never retried); 5xx answers and connection errors are retried
  ``retries`` times with backoff, after ``Retry-After`` when the server sends one.
  A body that breaks off half-way is not retried (its first bytes are already in
  the raw copy): the next run downloads it again.

Conditional requests: a full download writes the response's ``ETag`` and
``Last-Modified`` to ``var/state/http/<id>.pending.json``; the pipeline commits them
(``commit_http_validators``) once the run published or found the portal unchanged, so
a rejected run's download is fetched again next time. A committed state sends
``If-None-Match``/``If-Modified-Since``, and a 304 answer raises ``SourceUnchanged``.
The state holds a fingerprint of the URL, the spec and its suite: after an edit of
either the file is downloaded again (the published output may differ).

Messages name the URL without its query string, user or fragment (a query may carry a
token); the state file holds only a hash of the URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from civicflow.http_retry import retry_after
from civicflow.privatefs import write_private
from civicflow.settings import Settings
from civicflow.sources.base import ExtractError, SourceUnchanged, register_source
from civicflow.sources.csv import CsvReader
from civicflow.sources.geojson import GeoJsonReader
from civicflow.spec.models import CsvSource, DatasetSpec, GeoJsonSource, HttpSource

log = logging.getLogger(__name__)

_GENERIC = ("application/octet-stream", "binary/octet-stream", "text/plain")
#: content types accepted per format (plus _GENERIC, any ``+json`` for JSON, and none at all)
ACCEPTED: dict[str, tuple[str, ...]] = {
    "csv": (
        "text/csv",
        "application/csv",
        "text/x-csv",
        "application/x-csv",
        "text/comma-separated-values",
        "application/vnd.ms-excel",  # what some servers call every .csv
    ),
    "json": ("application/json", "text/json"),
    "geojson": (
        "application/geo+json",
        "application/vnd.geo+json",
        "application/json",
        "text/json",
    ),
}
_ACCEPT_HEADER = {
    "csv": "text/csv, */*;q=0.1",
    "json": "application/json, */*;q=0.1",
    "geojson": "application/geo+json, application/json;q=0.9, */*;q=0.1",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between retries; a ``Retry-After`` longer than ``max_wait`` gives up at once."""

    first_backoff: float = 0.5
    max_backoff: float = 30.0
    max_wait: float = 120.0


RETRY = RetryPolicy()


def public_url(url: str) -> str:
    """The URL as messages may show it: no user, password, query string or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _scrub(text: str, url: str) -> str:
    """A library's message for the private report, with the URL's secrets taken out."""
    parts = urlsplit(url)
    values = [v for _, v in parse_qsl(parts.query) if len(v) >= 6]  # tokens, not flags
    for secret in (url, parts.query, parts.password or "", *values):
        if secret:
            text = text.replace(secret, "…")
    return text


# -- conditional-request state ------------------------------------------------------------


def state_path(settings: Settings, spec: DatasetSpec, *, pending: bool = False) -> Path:
    name = f"{spec.id}.pending.json" if pending else f"{spec.id}.json"
    return settings.var_dir / "state" / "http" / name


def fingerprint(spec: DatasetSpec, settings: Settings) -> str:
    """What the validators hold for: the URL, the spec and its suite (an edit of either
    may change the published output of the same file)."""
    digest = hashlib.sha256(spec.model_dump_json().encode())
    suite = settings.expectations_dir / f"{spec.expectation_suite or spec.id}.json"
    if suite.is_file():
        digest.update(suite.read_bytes())
    return digest.hexdigest()


def conditional_headers(spec: DatasetSpec, settings: Settings) -> dict[str, str]:
    """If-None-Match / If-Modified-Since from the committed state, if it still applies."""
    path = state_path(settings, spec)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint(spec, settings):
        return {}
    headers = {}
    if isinstance(state.get("etag"), str):
        headers["If-None-Match"] = state["etag"]
    if isinstance(state.get("last_modified"), str):
        headers["If-Modified-Since"] = state["last_modified"]
    return headers


def _save_pending(spec: DatasetSpec, settings: Settings, response: httpx.Response) -> None:
    state = {
        "fingerprint": fingerprint(spec, settings),
        "etag": response.headers.get("ETag"),
        "last_modified": response.headers.get("Last-Modified"),
        "downloaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    settings.private_dir(state_path(settings, spec).parent)
    write_private(state_path(settings, spec, pending=True), json.dumps(state, indent=2))


def pending_last_modified(settings: Settings, spec: DatasetSpec) -> datetime | None:
    """The Last-Modified the last download answered with (None: not sent, unreadable)."""
    try:
        state = json.loads(state_path(settings, spec, pending=True).read_text())
        stamp = parsedate_to_datetime(state["last_modified"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def commit_http_validators(settings: Settings, spec: DatasetSpec) -> bool:
    """Make the last download's validators the ones sent next time (call it after a run
    that published or found the portal unchanged). False when there is nothing to
    commit; a no-op for any other source kind."""
    pending = state_path(settings, spec, pending=True)
    if not isinstance(spec.source, HttpSource) or not pending.is_file():
        return False
    os.replace(pending, state_path(settings, spec))
    return True


def forget_http_validators(settings: Settings, spec: DatasetSpec) -> None:
    """Drop the stored validators: the next pull downloads the file whatever it holds."""
    for pending in (False, True):
        state_path(settings, spec, pending=pending).unlink(missing_ok=True)


# -- the download ----------------------------------------------------------------------


def _send(
    client: httpx.Client, source: HttpSource, headers: dict[str, str], policy: RetryPolicy
) -> httpx.Response:
    """The streamed response to a GET, after retrying 5xx answers and connection errors."""
    where = public_url(source.url)
    backoff = policy.first_backoff
    for attempt in range(1, source.retries + 2):
        detail = None
        try:
            response = client.send(
                client.build_request("GET", source.url, headers=headers), stream=True
            )
        except httpx.TransportError as exc:
            problem, wait = f"no response ({type(exc).__name__})", backoff
            detail = _scrub(f"{type(exc).__name__}: {exc}", source.url)
        else:
            if response.status_code < 500:
                return response
            response.close()
            problem = f"HTTP {response.status_code}"
            asked = retry_after(response)
            if asked is not None and asked > policy.max_wait:
                raise ExtractError(
                    f"{where}: {problem}; the server asks to retry after {asked:g} s, longer "
                    f"than civicflow waits ({policy.max_wait:g} s): run again later"
                )
            wait = backoff if asked is None else asked
        if attempt > source.retries:
            raise ExtractError(
                f"{where}: {problem} after {attempt} attempt(s) (source.retries {source.retries})",
                detail=detail,
            )
        log.warning("%s: %s, retrying in %.1f s", where, problem, wait)
        time.sleep(wait)
        backoff = min(backoff * 2, policy.max_backoff)
    raise AssertionError("unreachable: the loop returns or raises")


_HINTS = {
    401: "access refused: the URL needs credentials civicflow does not send",
    403: "access refused",
    404: "not found: check source.url",
    410: "gone: the file was removed; check source.url",
    429: "throttled by the server (4xx answers are not retried): run again later",
}


def refused(source: HttpSource, response: httpx.Response) -> ExtractError:
    """The error for a 4xx (or other non-200) answer, naming the URL and status."""
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= 2000:
            break
    status = response.status_code
    hint = _HINTS.get(status, "request refused (not retried)")
    return ExtractError(
        f"{public_url(source.url)}: HTTP {status}: {hint}",
        detail=_scrub(f"HTTP {status}: {body[:2000].decode('utf-8', 'replace')}", source.url),
    )


def check_response(source: HttpSource, response: httpx.Response, conditional: bool) -> None:
    """A 200 with the right content type and an acceptable size, or an error (304 raises
    SourceUnchanged)."""
    where = public_url(source.url)
    if response.status_code == 304 and conditional:
        raise SourceUnchanged(f"{where}: not modified since the last published download (HTTP 304)")
    if response.status_code != 200:
        raise refused(source, response)
    final = response.url
    if final.scheme == "http" and final.host not in ("127.0.0.1", "localhost", "::1"):
        raise ExtractError(f"{where}: redirected to plain http on another host; refused")
    mime = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    accepted = ACCEPTED[source.format] + _GENERIC
    if mime and mime not in accepted and not (source.format != "csv" and mime.endswith("+json")):
        shown = mime if len(mime) < 80 and mime.isprintable() else "an unusual content type"
        raise ExtractError(
            f"{where}: the server sent {shown}, not {source.format} (accepted: "
            f"{', '.join(ACCEPTED[source.format])}); the URL may lead to a web page "
            "rather than the file"
        )
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > source.max_bytes:
        raise ExtractError(
            f"{where}: the body is {int(length):,} bytes, over source.max_bytes "
            f"({source.max_bytes:,}); refused, not truncated"
        )


def body_chunks(source: HttpSource, response: httpx.Response) -> Iterator[bytes]:
    """The (decoded) body in chunks; over ``max_bytes``, broken off or empty is an error."""
    where = public_url(source.url)
    size = 0
    try:
        for chunk in response.iter_bytes(1 << 20):
            size += len(chunk)
            if size > source.max_bytes:
                raise ExtractError(
                    f"{where}: the body grew over source.max_bytes ({source.max_bytes:,} "
                    "bytes); refused, not truncated"
                )
            yield chunk
    except httpx.RequestError as exc:
        raise ExtractError(
            f"{where}: the download broke off after {size:,} bytes of the body "
            f"({type(exc).__name__}); the body is truncated, nothing is kept",
            detail=_scrub(f"{type(exc).__name__}: {exc}", source.url),
        ) from None
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and response.num_bytes_downloaded != int(length):
        raise ExtractError(
            f"{where}: truncated body: {response.num_bytes_downloaded:,} of the "
            f"{int(length):,} bytes its Content-Length announced"
        )
    if size == 0:
        raise ExtractError(f"{where}: the server sent an empty body")


def download(spec: DatasetSpec, settings: Settings, policy: RetryPolicy = RETRY) -> Iterator[bytes]:
    """The raw copy's bytes; validators of a full download are left pending (see above)."""
    source = spec.source
    assert isinstance(source, HttpSource)
    conditional = conditional_headers(spec, settings)
    # A new pull supersedes an uncommitted one: after a 304 the pipeline's commit must
    # not promote the validators of a download that was never published.
    state_path(settings, spec, pending=True).unlink(missing_ok=True)
    headers = {"Accept": _ACCEPT_HEADER[source.format], "User-Agent": "civicflow", **conditional}
    started = time.monotonic()
    with httpx.Client(timeout=httpx.Timeout(source.timeout_s), follow_redirects=True) as client:
        try:
            response = _send(client, source, headers, policy)
        except httpx.RequestError as exc:  # a redirect loop, an unusable URL
            raise ExtractError(
                f"{public_url(source.url)}: request failed ({type(exc).__name__})",
                detail=_scrub(str(exc), source.url),
            ) from None
        try:
            check_response(source, response, bool(conditional))
            yield from body_chunks(source, response)
            _save_pending(spec, settings, response)
        finally:
            response.close()
    log.info(
        "%s: downloaded %s bytes in %.1f s",
        public_url(source.url),
        f"{response.num_bytes_downloaded:,}",
        time.monotonic() - started,
    )


# -- reading the raw copy -----------------------------------------------------------------


def _json_text(value: Any) -> str | None:
    """A JSON value as the text the shared casting reads; nested values as JSON text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_records(path: Path, key: str | None) -> list[Any]:
    """The document's list of records: the document itself, or the list under ``key``
    (a key of the top-level object, or a dotted path such as ``result.records``)."""
    try:
        doc = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ExtractError(
            f"{path}: not valid UTF-8 (JSON must be) at byte offset {exc.start}"
        ) from None
    except json.JSONDecodeError as exc:
        raise ExtractError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if key is not None:
        for part in [key] if isinstance(doc, dict) and key in doc else key.split("."):
            if not isinstance(doc, dict) or part not in doc:
                raise ExtractError(f"{path}: no {key!r} in the JSON document (source.records)")
            doc = doc[part]
    elif isinstance(doc, dict):
        raise ExtractError(
            f"{path}: the JSON document is an object; set source.records to the key of its "
            "list of records",
            detail=f"top-level keys: {', '.join(repr(k) for k in list(doc)[:50])}",
        )
    if not isinstance(doc, list):
        raise ExtractError(f"{path}: the records are not a JSON list")
    if not doc:
        raise ExtractError(f"{path}: the JSON list of records is empty (no data rows)")
    bad = next((i for i, rec in enumerate(doc, 1) if not isinstance(rec, dict)), None)
    if bad is not None:
        raise ExtractError(f"{path}: row {bad} (record {bad}) is not a JSON object")
    return doc


def _column(records: list[dict[str, Any]], key: str) -> pa.Array:
    values: Iterable[Any] = (rec.get(key) for rec in records)
    return pa.array(
        [v if v is None or v.__class__ is str else _json_text(v) for v in values], pa.string()
    )


def read_json(source: HttpSource, raw_path: Path) -> pa.Table:
    """Records become rows, their keys columns (in the order first seen)."""
    records = json_records(raw_path, source.records)
    keys = list(dict.fromkeys(k for rec in records for k in rec))
    nulls = pa.array(source.null_values, pa.string())
    columns = {}
    for key in keys:
        values = _column(records, key)
        columns[key] = pc.if_else(pc.is_in(values, value_set=nulls), None, values)
    return pa.table(columns)


@register_source("http")
class HttpReader:
    suffix = ".body"

    def pull(
        self, spec: DatasetSpec, settings: Settings, since: str | None = None
    ) -> Iterator[bytes]:
        # A file behind a URL cannot be asked for newer rows: extract filters after typing.
        return download(spec, settings)

    def read(self, spec: DatasetSpec, raw_path: Path) -> pa.Table:
        source = spec.source
        assert isinstance(source, HttpSource)
        if source.format == "csv":
            as_csv = CsvSource(
                kind="csv",
                path=str(raw_path),
                encoding=source.encoding,
                delimiter=source.delimiter,
                timestamp_formats=source.timestamp_formats,
                null_values=source.null_values,
            )
            return CsvReader().read(spec.model_copy(update={"source": as_csv}), raw_path)
        if source.format == "geojson":
            as_geojson = GeoJsonSource(kind="geojson", path=str(raw_path), geometry=source.geometry)
            return GeoJsonReader().read(spec.model_copy(update={"source": as_geojson}), raw_path)
        return read_json(source, raw_path)
