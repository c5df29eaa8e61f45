"""Socrata datasets as a source: SODA 2.1 pages of CSV, pulled with sodapy's session.

sodapy 2.2.0 sets up the connection (domain, ``X-App-Token`` header, HTTP Basic for a
private dataset); the pages are read as CSV bytes rather than with ``Socrata.get_all``,
which turns every value into a Python object. Paging is sodapy's (and Socrata's,
https://dev.socrata.com/docs/paging): ``$limit``/``$offset`` in a stable ``$order``
ending in ``:id``, until a page comes back short. The raw copy is the first page's
header and every page's rows, byte for byte as the portal sent them.

The dataset's own column types (``X-SODA2-Types``, https://dev.socrata.com/docs/datatypes)
are checked against the spec's declared types before a row is kept. Reading turns the
values Socrata writes into the forms the shared casting reads (floating timestamps lose
their milliseconds, points ``POINT (lon lat)`` become ``(lat, lon)``); the casting and
the checks are then those of any source.

Failures name the domain, the dataset and what failed (never a credential): 404 is a
missing dataset, 401/403 name the setting to fix, 429 is retried after ``Retry-After``
and 5xx or a dropped connection with backoff, within a bounded total time; any other 4xx
is not retried.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import requests
from sodapy import Socrata
from sodapy.utils import format_new_api_request

from civicflow.http_retry import retry_after
from civicflow.settings import Settings
from civicflow.sources.base import ExtractError, register_source
from civicflow.sources.csv import CsvReader
from civicflow.spec.models import CsvSource, DatasetSpec, SocrataSource

log = logging.getLogger(__name__)

KEY_ID_ENV = "CIVICFLOW_SOCRATA_KEY_ID"
KEY_SECRET_ENV = "CIVICFLOW_SOCRATA_KEY_SECRET"  # noqa: S105  (a variable's name, not a secret)

# X-SODA2-Types name -> spec types its values can be declared as. Text can hold anything
# (the casting reports what does not parse); other types only what their values can be.
_TEXT_ONLY = {"string"}
COMPATIBLE: dict[str, set[str]] = {
    "text": {"string", "integer", "number", "boolean", "date", "datetime", "geopoint"},
    "number": {"integer", "number", "string"},
    "double": {"integer", "number", "string"},
    "money": {"number", "string"},
    "percent": {"number", "string"},
    "boolean": {"boolean", "string"},
    "checkbox": {"boolean", "string"},
    "floating_timestamp": {"date", "datetime", "string"},
    "calendar_date": {"date", "datetime", "string"},
    "fixed_timestamp": {"date", "datetime", "string"},
    "date": {"date", "datetime", "string"},
    "point": {"geopoint", "string"},
}
_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_ISO_TIMESTAMP = r"^\s*(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?Z?\s*$"
_WKT_POINT = r"^\s*POINT\s*\(\s*(\S+)\s+(\S+)\s*\)\s*$"


@dataclass(frozen=True)
class RetryPolicy:
    """How long a pull keeps trying: every wait fits in ``total_seconds`` or it gives up."""

    total_seconds: float = 120.0
    first_backoff: float = 0.5
    max_backoff: float = 30.0
    request_timeout: float = 60.0


RETRY = RetryPolicy()


def describe(source: SocrataSource) -> str:
    """How errors name the dataset: public (the spec says as much), no credential."""
    return f"Socrata dataset {source.dataset} on {source.domain}"


# -- the connection ---------------------------------------------------------------------


def connect(source: SocrataSource, settings: Settings, timeout: float) -> Socrata:
    """A sodapy client with the app token and, when both are set, the key id/secret."""
    scheme, sep, host = source.domain.rpartition("://")
    scheme = scheme if sep else "https"
    key_id, key_secret = settings.secret(KEY_ID_ENV), settings.secret(KEY_SECRET_ENV)
    if bool(key_id) != bool(key_secret):
        raise ExtractError(
            f"{describe(source)}: {KEY_ID_ENV} and {KEY_SECRET_ENV} must be set together"
        )
    adapter = {"prefix": f"{scheme}://", "adapter": requests.adapters.HTTPAdapter()}
    return Socrata(
        host,
        settings.secret(source.app_token_env),
        username=key_id,
        password=key_secret,
        session_adapter=adapter,
        timeout=timeout,
    )


def _error_code(response: requests.Response) -> tuple[str, str]:
    """Socrata's error ``code`` (public if it looks like one) and the body (private)."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:2000]
    code = str(body.get("code") or body.get("errorCode") or "") if isinstance(body, dict) else ""
    return (code if _CODE.match(code) else ""), json.dumps(body)[:2000]


def refused(source: SocrataSource, response: requests.Response) -> ExtractError:
    """The error for a status that is not retried, naming what to fix."""
    status = response.status_code
    code, body = _error_code(response)
    what = f"{describe(source)}: HTTP {status}" + (f" {code}" if code else "")
    if status == 404:
        hint = "not found: check source.dataset and source.domain"
    elif status == 401:
        hint = f"credentials refused: check {KEY_ID_ENV} and {KEY_SECRET_ENV}"
    elif status == 403 and "app_token" in (code + body).lower():
        hint = f"app token refused: check {source.app_token_env}"
    elif status == 403:
        hint = (
            f"not allowed to read: a private dataset needs {KEY_ID_ENV} and "
            f"{KEY_SECRET_ENV} of a user who may read it"
        )
    elif status == 400:
        hint = "query refused: check source.where, source.select and source.order"
    else:
        hint = "request refused"
    return ExtractError(
        f"{what}: {hint} (Socrata's message is in the run report)",
        detail=f"HTTP {status}: {body}",
    )


def get(
    client: Socrata,
    source: SocrataSource,
    path: str,
    params: dict[str, Any],
    policy: RetryPolicy = RETRY,
) -> requests.Response:
    """GET with retries: 429 after Retry-After, 5xx and dropped connections with backoff."""
    url = f"{client.uri_prefix}{client.domain}{path}"
    deadline = time.monotonic() + policy.total_seconds
    backoff = policy.first_backoff
    attempt = 0
    while True:
        attempt += 1
        detail = None
        try:
            response = client.session.get(url, params=params, timeout=client.timeout)
        except requests.RequestException as exc:
            # The message may carry the URL and query: the report keeps it, the reason not.
            problem, wait, detail = f"no response ({type(exc).__name__})", backoff, str(exc)
        else:
            if response.status_code == 200:
                return response
            if response.status_code != 429 and response.status_code < 500:
                raise refused(source, response)
            problem = f"HTTP {response.status_code}"
            asked = retry_after(response) if response.status_code == 429 else None
            wait = backoff if asked is None else asked
        if time.monotonic() + wait > deadline:
            raise ExtractError(
                f"{describe(source)}: {problem} after {attempt} attempt(s); gave up "
                f"rather than wait {wait:g} s more (retry budget {policy.total_seconds:g} s)",
                detail=detail,
            )
        log.warning("%s: %s, retrying in %.1f s", describe(source), problem, wait)
        time.sleep(wait)
        backoff = min(backoff * 2, policy.max_backoff)


# -- paging ---------------------------------------------------------------------------


def query(source: SocrataSource, offset: int) -> dict[str, Any]:
    """One page's SoQL parameters; ``:id`` ends the order so pages never overlap."""
    order = source.order
    if ":id" not in re.split(r"[\s,]+", order):
        order = f"{order},:id"
    params: dict[str, Any] = {"$order": order, "$limit": source.page_size, "$offset": offset}
    if source.where:
        params["$where"] = source.where
    if source.select:
        params["$select"] = ",".join(source.select)
    return params


def soda2_columns(source: SocrataSource, response: requests.Response) -> dict[str, str]:
    """Field name -> SODA 2 type, from the X-SODA2-Fields/Types headers."""
    try:
        fields = json.loads(response.headers["X-SODA2-Fields"])
        types = json.loads(response.headers["X-SODA2-Types"])
    except (KeyError, ValueError):
        raise ExtractError(
            f"{describe(source)}: the response has no X-SODA2-Fields/X-SODA2-Types headers "
            "(is source.domain a Socrata portal?)"
        ) from None
    return dict(zip(fields, types, strict=True))


def check_types(spec: DatasetSpec, source: SocrataSource, columns: dict[str, str]) -> None:
    """Every spec field on a Socrata column is declared as a type that column can hold."""
    wrong = [
        f"{f.name} is declared {f.type} but {f.source_name} is {columns[f.source_name]}"
        for f in spec.fields
        if f.source_name in columns
        and str(f.type) not in COMPATIBLE.get(columns[f.source_name], _TEXT_ONLY)
    ]
    if wrong:
        raise ExtractError(f"{describe(source)}: column types differ: {'; '.join(wrong)}")


def count_rows(source: SocrataSource, body: bytes, fields: list[str], page: int) -> int:
    """Rows in one CSV page (Arrow's parser: quoted newlines count right)."""
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=fields, skip_rows=1),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(fields, pa.string())),
        )
    except pa.ArrowInvalid as exc:
        raise ExtractError(
            f"{describe(source)}: page {page} is not readable CSV (the parser's message is in the run report)",
            detail=str(exc),
        ) from None
    return table.num_rows


def pull_pages(
    spec: DatasetSpec, settings: Settings, policy: RetryPolicy = RETRY
) -> Iterator[bytes]:
    """The raw copy's bytes: the first page whole, later pages without their header."""
    source = spec.source
    assert isinstance(source, SocrataSource)
    path = format_new_api_request(dataid=source.dataset, content_type="csv")
    first: dict[str, str] | None = None
    modified = None
    offset = page = 0
    with connect(source, settings, policy.request_timeout) as client:
        while True:
            page += 1
            response = get(client, source, path, query(source, offset), policy)
            columns = soda2_columns(source, response)
            stamp = response.headers.get("X-SODA2-Truth-Last-Modified")
            if first is None:
                check_types(spec, source, columns)
                first, modified = columns, stamp
            elif columns != first or stamp != modified:
                # Offsets into a changed dataset skip or repeat rows: start again instead.
                raise ExtractError(
                    f"{describe(source)}: the dataset changed while it was read (page {page}); run again"
                )
            body = response.content
            rows = count_rows(source, body, list(columns), page)
            if body and not body.endswith(b"\n"):
                body += b"\n"
            yield body if page == 1 else body.partition(b"\n")[2]
            offset += rows
            if rows < source.page_size:
                log.info("%s: pulled %s rows in %d page(s)", describe(source), f"{offset:,}", page)
                return


# -- reading the raw copy --------------------------------------------------------------


def socrata_forms(spec: DatasetSpec, table: pa.Table) -> pa.Table:
    """Socrata's written forms of dates and points, as the shared casting reads them."""
    done: set[str] = set()
    for f in spec.fields:
        name = f.source_name
        if name not in table.column_names or name in done:
            continue
        if f.type in ("date", "datetime"):
            pattern, replacement = _ISO_TIMESTAMP, r"\1"
        elif f.type == "geopoint":
            pattern, replacement = _WKT_POINT, r"(\2, \1)"
        else:
            continue
        values = pc.replace_substring_regex(table[name], pattern=pattern, replacement=replacement)
        table = table.set_column(table.column_names.index(name), name, values)
        done.add(name)
    return table


@register_source("socrata")
class SocrataReader:
    suffix = ".csv"

    def pull(
        self, spec: DatasetSpec, settings: Settings, since: str | None = None
    ) -> Iterator[bytes]:
        # Incremental filtering happens after typing (extract): a SoQL literal for the
        # cursor would depend on its Socrata type.
        return pull_pages(spec, settings)

    def read(self, spec: DatasetSpec, raw_path: Path) -> pa.Table:
        # The raw copy is Socrata's CSV: the CSV reader's checks (encoding, ragged rows,
        # empty result) apply as they are.
        as_csv = spec.model_copy(update={"source": CsvSource(kind="csv", path=str(raw_path))})
        return socrata_forms(spec, CsvReader().read(as_csv, raw_path))
