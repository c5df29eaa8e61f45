"""The local open-data portal: a Datasette server written only through its HTTP API.

A publish creates a hidden staging table with Datasette's ``/-/create``, fills it
through the civicflow plugin's ``/-/civicflow/<db>/load`` and then asks the plugin
to swap it into place in one transaction (see datasette_plugin.py). Readers
therefore see the old version or the new one, never a mix; a publish that dies half
way leaves only a staging table, which the next publish of that table drops.

Rows go through ``load`` rather than Datasette's ``/-/insert`` for speed: ``/-/insert``
(sqlite-utils, Python per value) stored 13-19k rows/s of the 33-column LA 311 table,
so a 1M-row publish spent 73 s uploading. ``load`` takes each batch as plain JSON
arrays, written here by pandas in one vectorised ``to_json`` call, and stores it with
one ``executemany`` (numbers: benchmarks/bench_portal.py).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasette.utils import escape_sqlite, tilde_encode

from civicflow.portals import server
from civicflow.portals.base import (
    ATOMIC_REPLACE,
    METADATA,
    QUERY,
    PortalError,
    PublishedVersion,
    PublishResult,
    TableMetadata,
    register_portal,
)
from civicflow.settings import Settings
from civicflow.spec.models import FieldSpec

log = logging.getLogger("civicflow.portals.datasette")

#: Datasette column type per declared field type; everything else is stored as text
SQL_TYPES = {"integer": "integer", "number": "float"}
#: rows per load request (the server's max_insert_rows must allow it)
DEFAULT_BATCH_ROWS = 5_000
PROGRESS_EVERY_S = 5.0


@register_portal("datasette")
class DatasettePortal:
    """Publishes to the Datasette at ``settings.portal_url`` with the publisher token."""

    kind: ClassVar[str] = "datasette"
    capabilities: ClassVar[frozenset[str]] = frozenset({ATOMIC_REPLACE, METADATA, QUERY})

    def __init__(
        self,
        settings: Settings,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        timeout: float = 120.0,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        if not 0 < batch_rows <= server.MAX_INSERT_ROWS:
            raise ValueError(f"batch_rows must be 1..{server.MAX_INSERT_ROWS}, got {batch_rows}")
        self.settings = settings
        self.url = settings.portal_url.rstrip("/")
        self.database = settings.portal_database
        self.batch_rows = batch_rows
        self.timeout = timeout
        #: called with (rows stored, rows total) after each batch reaches the staging table
        self.on_batch = on_batch

    # -- reading ------------------------------------------------------------------

    def current_version(self, table: str) -> PublishedVersion | None:
        with self._client() as client:
            response = _send(
                client,
                "GET",
                f"/-/civicflow/{self.database}/versions/{tilde_encode(table)}",
                allow={404},
            )
        if response.status_code == 404:
            return None
        data = response.json()
        return PublishedVersion(
            table=data["table"],
            version=data["version"],
            rows=int(data["rows"]),
            run_id=data.get("run_id"),
            published_at=data.get("published_at"),
        )

    def table_url(self, table: str) -> str:
        return f"{self.url}/{self.database}/{tilde_encode(table)}"

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a read-only SQL query, as a resident would get them (first page: 1,000 rows)."""
        with self._client() as client:
            response = _send(
                client,
                "GET",
                f"/{self.database}/-/query.json",
                params={"sql": sql, "_shape": "objects"},
            )
        rows: list[dict[str, Any]] = response.json()["rows"]
        return rows

    def row_count(self, table: str) -> int:
        return int(self.query(f"select count(*) as n from {escape_sqlite(table)}")[0]["n"])

    def table_metadata(self, table: str) -> dict[str, Any]:
        """The table's metadata as Datasette serves it (title, description, columns, ...)."""
        with self._client() as client:
            response = _send(
                client,
                "GET",
                f"/{self.database}/{tilde_encode(table)}.json",
                params={"_extra": "metadata", "_size": "0"},
            )
        metadata: dict[str, Any] = response.json()["metadata"]
        return metadata

    # -- publishing ---------------------------------------------------------------

    def publish(
        self,
        table: str,
        frame: pd.DataFrame,
        *,
        fields: list[FieldSpec],
        primary_key: list[str],
        version: str,
        run_id: str,
        metadata: TableMetadata,
    ) -> PublishResult:
        _check_frame(table, frame, fields, primary_key)
        live = self.current_version(table)
        if live is not None and live.version == version:
            log.info("%s: portal already holds version %s…; nothing written", table, version[:12])
            return PublishResult(
                table, version, live.rows, changed=False, url=self.table_url(table)
            )
        wire, date_unit = wire_frame(frame, fields)
        with self._client(write=True) as client:
            prepared = _send(
                client,
                "POST",
                f"/-/civicflow/{self.database}/prepare",
                json={"table": table, "run_id": run_id},
            ).json()
            staging = prepared["staging"]
            if prepared["dropped"]:
                log.warning(
                    "%s: dropped %d staging table(s) left by unfinished publishes: %s",
                    table,
                    len(prepared["dropped"]),
                    ", ".join(prepared["dropped"]),
                )
            try:
                self._create(client, staging, fields, primary_key)
                self._upload(client, table, staging, wire, date_unit)
                swapped = _send(
                    client,
                    "POST",
                    f"/-/civicflow/{self.database}/swap",
                    json={
                        "table": table,
                        "staging": staging,
                        "expected_rows": len(frame),
                        "version": version,
                        "run_id": run_id,
                        "metadata": _metadata_payload(metadata),
                    },
                ).json()
            except Exception:
                self._discard(client, staging)
                raise
        log.info("%s: version %s… live with %s rows", table, version[:12], f"{swapped['rows']:,}")
        return PublishResult(
            table, version, int(swapped["rows"]), changed=True, url=self.table_url(table)
        )

    def _create(
        self, client: httpx.Client, staging: str, fields: list[FieldSpec], primary_key: list[str]
    ) -> None:
        body: dict[str, Any] = {
            "table": staging,
            "columns": [{"name": f.name, "type": SQL_TYPES.get(f.type, "text")} for f in fields],
        }
        if len(primary_key) == 1:
            body["pk"] = primary_key[0]
        elif primary_key:
            body["pks"] = primary_key
        _send(client, "POST", f"/{self.database}/-/create", json=body)

    def _upload(
        self, client: httpx.Client, table: str, staging: str, wire: pd.DataFrame, date_unit: str
    ) -> None:
        path = f"/-/civicflow/{self.database}/load"
        total = len(wire)
        started = last_log = time.monotonic()
        # Interim progress for people watching a terminal; CI logs get only the summary.
        show_progress = os.environ.get("CI", "").lower() not in ("1", "true")
        batches = _batches(staging, wire, self.batch_rows, date_unit)
        # The next batch is serialised while the portal stores this one (two processes).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="civicflow-batch") as pool:
            pending = pool.submit(next, batches, None)
            while (batch := pending.result()) is not None:
                pending = pool.submit(next, batches, None)
                done, body = batch
                _send(
                    client, "POST", path, content=body, headers={"content-type": "application/json"}
                )
                if self.on_batch is not None:
                    self.on_batch(done, total)
                now = time.monotonic()
                if show_progress and now - last_log >= PROGRESS_EVERY_S:
                    last_log = now
                    log.info(
                        "%s: uploaded %s/%s rows (%s rows/s)",
                        table,
                        f"{done:,}",
                        f"{total:,}",
                        f"{done / (now - started):,.0f}",
                    )
        elapsed = time.monotonic() - started
        log.info(
            "%s: uploaded %s rows in %.1f s (%s rows/s)",
            table,
            f"{total:,}",
            elapsed,
            f"{total / max(elapsed, 1e-9):,.0f}",
        )

    def _discard(self, client: httpx.Client, staging: str) -> None:
        """Best effort after a failed publish; the next publish drops what is left anyway."""
        try:
            _send(
                client,
                "POST",
                f"/{self.database}/{tilde_encode(staging)}/-/drop",
                json={"confirm": True},
                allow={404},
            )
        except PortalError as exc:
            log.warning("could not drop staging table %s (the next publish will): %s", staging, exc)

    # -- plumbing -----------------------------------------------------------------

    @contextmanager
    def _client(self, *, write: bool = False) -> Iterator[httpx.Client]:
        headers = {"authorization": f"Bearer {self._token()}"} if write else {}
        with httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout) as client:
            yield client

    def _token(self) -> str:
        token = server.read_token(self.settings)
        if token is None:
            raise PortalError(
                f"no publisher token for {self.url}: set {server.TOKEN_ENV} or start the portal with "
                f"`civicflow portal serve` (it writes {server.secrets_dir(self.settings) / 'datasette_token'})"
            )
        return token


def wire_frame(frame: pd.DataFrame, fields: list[FieldSpec]) -> tuple[pd.DataFrame, str]:
    """The frame as it goes over the wire, and the timestamp unit for ``to_json``.

    Dates become ``YYYY-MM-DD`` and booleans ``true``/``false`` text (Arrow, vectorised);
    datetimes stay for ``to_json`` to write as ISO 8601, to the second unless some
    value carries a fraction of a second.
    """
    converted: dict[str, Any] = {}
    date_unit = "s"
    for f in fields:
        column = frame[f.name]
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            if f.type == "date":
                converted[f.name] = pc.strftime(
                    pa.array(column, from_pandas=True), format="%Y-%m-%d"
                ).to_pandas()
            else:
                present = column.dropna()
                if (present != present.dt.floor("s")).any():
                    date_unit = "ms"
        elif pd.api.types.is_bool_dtype(column.dtype):
            converted[f.name] = pa.array(column, from_pandas=True).cast(pa.string()).to_pandas()
    wire = frame[[f.name for f in fields]]
    if converted:
        wire = wire.assign(
            **{name: values.set_axis(wire.index) for name, values in converted.items()}
        )
    return wire, date_unit


def _batches(
    staging: str, wire: pd.DataFrame, size: int, date_unit: str
) -> Iterator[tuple[int, bytes]]:
    """Load bodies of ``size`` rows each, as positional arrays; NaN/NaT/NA become null."""
    head = json.dumps({"table": staging, "columns": list(wire.columns)})[:-1].encode()
    for start in range(0, len(wire), size):
        chunk = wire.iloc[start : start + size]
        rows = chunk.to_json(
            orient="values", date_format="iso", date_unit=date_unit, force_ascii=False
        )
        yield start + len(chunk), head + b',"rows":' + rows.encode("utf-8") + b"}"


def _check_frame(
    table: str, frame: pd.DataFrame, fields: list[FieldSpec], primary_key: list[str]
) -> None:
    names = [f.name for f in fields]
    if list(frame.columns) != names:
        missing = [n for n in names if n not in frame.columns]
        extra = [str(c) for c in frame.columns if c not in names]
        raise PortalError(
            f"{table}: frame columns do not match the published fields "
            f"(missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}; "
            "or a different order)"
        )
    unknown = [k for k in primary_key if k not in names]
    if unknown:
        raise PortalError(f"{table}: primary key names {', '.join(unknown)}, not published fields")


def _metadata_payload(metadata: TableMetadata) -> dict[str, Any]:
    return {
        "title": metadata.title,
        "description": metadata.description,
        "license": metadata.license,
        "source": metadata.source,
        "source_url": metadata.source_url,
        "columns": dict(metadata.columns),
        "extra": dict(metadata.extra),
    }


def _send(
    client: httpx.Client, method: str, path: str, *, allow: Collection[int] = (), **kwargs: Any
) -> httpx.Response:
    """One request; a failure becomes PortalError with the status and Datasette's message."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        # httpx messages name the URL, never the headers, so the token cannot leak here.
        raise PortalError(f"{method} {client.base_url}{path}: portal unreachable: {exc}") from exc
    if response.status_code >= 400 and response.status_code not in allow:
        raise PortalError(f"{method} {path}: HTTP {response.status_code}: {_error_text(response)}")
    return response


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except json.JSONDecodeError:
        return response.text[:500].strip() or response.reason_phrase
    if isinstance(data, dict):
        errors = data.get("errors") or ([data["error"]] if data.get("error") else None)
        if errors:
            return "; ".join(str(e) for e in errors)
    return json.dumps(data)[:500]
