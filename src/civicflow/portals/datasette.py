"""The local open-data portal: a Datasette server written only through its HTTP API.

A publish mints a short-lived token allowed only to publish its one table, has the
civicflow plugin create a private staging table leased to its run (``prepare``),
fills it (``load``) and asks the plugin to swap it into place in one transaction
(``swap``; see datasette_plugin.py and publish_store.py). Readers therefore see the
old version or the new one, never a mix. A publish that dies half way leaves only a
staging table no reader can query, reclaimed once its lease expires. Two runs
publishing one table at once never break each other: the first to swap wins and the
other is refused (PortalConflict naming the winner), because each swap compares the
live version with the one its run started from.

A version covers the rows and the metadata: a new title or column description goes
live as a new version with the same rows (``relabel``), without uploading them again.

A change set (``apply_changes``) is staged the same way, rows to upsert and keys to
delete each in a leased staging table, then ``apply`` deletes by key and writes the
upserts into the live table in one transaction, with the same compare-and-swap.

Rows go through ``load`` rather than Datasette's ``/-/insert`` for speed: ``/-/insert``
(sqlite-utils, Python per value) stored 13-19k rows/s of the 33-column LA 311 table,
and JSON rows to ``load`` some 23-28k rows/s (1M rows: 36-43 s, most of it parsing
JSON into Python in the portal). Each batch now travels as an Arrow IPC stream
(``wire_batch``: columns typed as the portal stores them, dates and datetimes as the
ISO text residents read), made here while the portal stores the batch before, and the
portal hands the columns to one ``executemany`` (publish_store.load). Numbers:
benchmarks/bench_portal.py.

The fields a spec marks with ``index`` are indexed on the portal (``index_columns``):
built in the swap's transaction, kept in step by a change set, and fixed on a live
table whose spec marks other fields since (``reindex``), without a new version.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Collection, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import EllipsisType
from typing import Any, ClassVar

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasette.utils import escape_sqlite, tilde_encode

from civicflow.portals import server
from civicflow.portals.base import (
    PortalConflict,
    PortalError,
    PublishedVersion,
    PublishResult,
    RowChanges,
    TableMetadata,
    check_changes,
    nothing_to_apply,
    published_version,
    register_portal,
)
from civicflow.portals.diff import LiveState, make_plan
from civicflow.portals.plan import PublishPlan
from civicflow.progress import RowProgress
from civicflow.settings import Settings
from civicflow.spec.models import FieldSpec

log = logging.getLogger("civicflow.portals.datasette")

#: Datasette column type per declared field type; everything else is stored as text
SQL_TYPES = {"integer": "integer", "number": "float"}
#: rows per load request (the server's max_insert_rows must allow it); a batch whose
#: body would pass the server's body limit is split
DEFAULT_BATCH_ROWS = 50_000
ARROW_STREAM = "application/vnd.apache.arrow.stream"
#: Arrow type of each portal column type's values on the wire (text: any string type)
WIRE_TYPES = {"integer": pa.int64(), "float": pa.float64()}
#: a dead run's staging table is reclaimed this long after its last batch
DEFAULT_LEASE_S = 300


@register_portal("datasette")
class DatasettePortal:
    """Publishes to the Datasette at ``settings.portal_url`` with the publisher token."""

    kind: ClassVar[str] = "datasette"

    def __init__(
        self,
        settings: Settings,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        timeout: float = 120.0,
        on_batch: Callable[[int, int], None] | None = None,
        lease_seconds: int = DEFAULT_LEASE_S,
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
        #: how long the staging table outlives the run's last batch if the run dies
        self.lease_seconds = lease_seconds

    # -- reading ------------------------------------------------------------------

    def current_version(self, table: str) -> PublishedVersion | None:
        record = self._version_record(table)
        return None if record is None else _live(record)

    def _version_record(self, table: str) -> dict[str, Any] | None:
        """The live version as the portal answers it (with its ``indexes``), or None."""
        with self._client() as client:
            response = _send(
                client,
                "GET",
                f"/-/civicflow/{self.database}/versions/{tilde_encode(table)}",
                allow={404},
            )
        if response.status_code == 404:
            return None
        record: dict[str, Any] = response.json()
        return record

    def table_url(self, table: str) -> str:
        return f"{self.url}/{self.database}/{tilde_encode(table)}"

    def plan(
        self,
        table: str,
        frame: pd.DataFrame,
        *,
        fields: list[FieldSpec],
        primary_key: list[str],
        version: str,
        metadata: TableMetadata,
    ) -> PublishPlan:
        """What :meth:`publish` would change; reads the portal, writes nothing.

        The live rows are downloaded only when they may differ by key (a keyed table
        whose content hash changed); otherwise the version record says enough.
        """
        _check_frame(table, frame, fields, primary_key)
        live = self.live_state(table, with_rows=False)
        current = live.version
        if primary_key and current is not None and current.data_version != version:
            live = self.live_state(table, with_rows=True)
        return make_plan(
            table,
            frame,
            fields=fields,
            primary_key=primary_key,
            version=version,
            metadata=metadata,
            payload=_metadata_payload(metadata),
            live=live,
            portal_type=lambda f: SQL_TYPES.get(f.type, "text"),
        )

    def live_state(self, table: str, *, with_rows: bool) -> LiveState:
        """The live version, columns, metadata (and rows) from one snapshot, read-only."""
        route = f"/-/civicflow/{self.database}/live/{tilde_encode(table)}"
        with self._client() as client:
            response = _send(
                client, "GET", route, params={"rows": "1" if with_rows else "0"}, allow={404}
            )
        if response.status_code == 404:
            if self.current_version(table) is not None:
                raise PortalError(
                    f"{self.url} does not serve {route}: restart the portal with this civicflow"
                )
            return LiveState(None)
        data = pa.ipc.open_stream(response.content).read_all()
        header = json.loads((data.schema.metadata or {})[b"civicflow"])
        return LiveState(
            version=_live(header["version"]),
            columns=[(name, kind) for name, kind in header["columns"]],
            metadata=header["metadata"],
            rows=data if with_rows else None,
        )

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
        base: PublishedVersion | None | EllipsisType = ...,
    ) -> PublishResult:
        _check_frame(table, frame, fields, primary_key)
        target = published_version(version, metadata)
        record = self._version_record(table)
        live = None if record is None else _live(record)
        indexes = index_columns(fields, primary_key)
        if record is not None and live is not None and live.version == target:
            log.info("%s: portal already holds version %s…; nothing written", table, target[:12])
            self._keep_indexes(table, record, indexes)
            return self._result(table, live, changed=False)
        start = live if isinstance(base, EllipsisType) else base
        _check_base(table, run_id, start, live)
        step = _Upload(table, run_id, frame, fields, primary_key, _serial(start), indexes)
        try:
            return self._write(step, live, (target, version), _metadata_payload(metadata))
        except PortalConflict:
            # Another run won the race; if it published exactly this, we are done.
            now = self.current_version(table)
            if now is None or now.version != target:
                raise
            log.info(
                "%s: run %s published this same version meanwhile; nothing written",
                table,
                now.run_id,
            )
            return self._result(table, now, changed=False)

    def apply_changes(
        self,
        table: str,
        changes: RowChanges,
        *,
        fields: list[FieldSpec],
        primary_key: list[str],
        version: str,
        run_id: str,
        metadata: TableMetadata,
        base: PublishedVersion | None | EllipsisType = ...,
    ) -> PublishResult:
        """Stage the upserts and the delete keys (prepare/load, as a publish stages rows),
        then ``apply`` them to the live table in one transaction, compare-and-swap on
        ``base``. See :meth:`civicflow.portals.base.Portal.apply_changes`."""
        check_changes(table, changes, fields, primary_key)
        live = self.current_version(table)
        if live is None:
            raise PortalError(f"{table} is not on the portal: publish it in full first")
        _check_base(table, run_id, live if isinstance(base, EllipsisType) else base, live)
        if nothing_to_apply(live, changes, version, metadata):
            log.info("%s: no row or metadata changes; nothing written", table)
            return self._result(table, live, changed=False, counts=(0, 0))
        target = published_version(version, metadata)
        try:
            done = self._stage_and_apply(
                table,
                changes,
                fields,
                primary_key,
                run_id,
                live,
                {
                    "version": target,
                    "data_version": version,
                    "metadata": _metadata_payload(metadata),
                },
            )
        except PortalConflict:
            now = self.current_version(table)
            if now is None or now.version != target:
                raise
            return self._result(table, now, changed=False, counts=(0, 0))
        log.info(
            "%s: version %s… live: %s rows upserted, %s deleted, %s rows in all",
            table,
            target[:12],
            f"{done['upserted']:,}",
            f"{done['deleted']:,}",
            f"{done['rows']:,}",
        )
        change = "data" if len(changes) else "metadata"
        counts = (int(done["upserted"]), int(done["deleted"]))
        return self._result(table, _live(done), changed=True, change=change, counts=counts)

    def _stage_and_apply(
        self,
        table: str,
        changes: RowChanges,
        fields: list[FieldSpec],
        primary_key: list[str],
        run_id: str,
        live: PublishedVersion,
        record: dict[str, Any],
    ) -> dict[str, Any]:
        by_name = {f.name: f for f in fields}
        sides = {
            "upserts": (changes.upserts, fields),
            "deletes": (changes.deletes, [by_name[k] for k in primary_key]),
        }
        staged: dict[str, tuple[_Upload, str]] = {}
        with self._client(auth=self._auth(table)) as client:
            try:
                for side, (frame, side_fields) in sides.items():
                    if len(frame):
                        step = _Upload(table, run_id, frame, side_fields, primary_key, live.serial)
                        staged[side] = (step, self._prepare(client, step))
                        self._upload(client, step, staged[side][1])
                body: dict[str, Any] = {
                    "table": table,
                    "run_id": run_id,
                    "upserts": staged["upserts"][1] if "upserts" in staged else None,
                    "deletes": staged["deletes"][1] if "deletes" in staged else None,
                    "primary_key": primary_key,
                    "base": live.serial,
                    "indexes": index_columns(fields, primary_key),
                    **record,
                }
                done: dict[str, Any] = _send(client, "POST", self._route("apply"), json=body).json()
            except BaseException:
                for step, staging in staged.values():
                    self._discard(client, step, staging)
                raise
        return done

    def _write(
        self,
        step: _Upload,
        live: PublishedVersion | None,
        versions: tuple[str, str],
        metadata: dict[str, Any],
    ) -> PublishResult:
        """A new version: the live rows relabelled, or a full upload and swap."""
        target, version = versions
        with self._client(auth=self._auth(step.table)) as client:
            if live is not None and live.data_version == version:
                # Same rows, new metadata: a new version without uploading a row.
                body: dict[str, Any] = {
                    "table": step.table,
                    "run_id": step.run_id,
                    "version": target,
                    "data_version": version,
                    "base": step.base,
                    "metadata": metadata,
                }
                done = _send(client, "POST", self._route("relabel"), json=body).json()
                log.info("%s: metadata of version %s… live", step.table, target[:12])
                record = self._version_record(step.table)
                if record is not None:
                    self._keep_indexes(step.table, record, step.indexes)
                return self._result(step.table, _live(done), changed=True, change="metadata")
            done = self._upload_and_swap(client, step, versions, metadata)
        log.info("%s: version %s… live with %s rows", step.table, target[:12], f"{done['rows']:,}")
        return self._result(step.table, _live(done), changed=True, change="data")

    def _keep_indexes(self, table: str, record: dict[str, Any], indexes: list[list[str]]) -> None:
        """Make the live table's indexes ``indexes`` when the spec changed them since
        (no new version: an index changes how fast the portal answers, not what)."""
        have = record.get("indexes")
        if have is None or sorted(have) == sorted(indexes):
            return  # in step (or a portal too old to say)
        with self._client(auth=self._auth(table)) as client:
            body = {"table": table, "indexes": indexes}
            done = _send(client, "POST", self._route("reindex"), json=body).json()
        log.info(
            "%s: indexes now %s (built %s, dropped %s)",
            table,
            done["indexes"] or "none",
            done["created"] or "none",
            done["dropped"] or "none",
        )

    def staging(self, table: str) -> list[dict[str, Any]]:
        """This table's staging tables (run, lease, rows), as only a publisher may see them."""
        with self._client(auth=self._auth(table)) as client:
            response = _send(client, "GET", self._route(f"staging/{tilde_encode(table)}"))
        found: list[dict[str, Any]] = response.json()["staging"]
        return found

    def _upload_and_swap(
        self,
        client: httpx.Client,
        step: _Upload,
        versions: tuple[str, str],
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        staging = self._prepare(client, step)
        try:
            self._upload(client, step, staging)
            return self._swap(client, step, staging, len(step.frame), versions, metadata)
        except BaseException:
            self._discard(client, step, staging)
            raise

    def _swap(
        self,
        client: httpx.Client,
        step: _Upload,
        staging: str,
        rows: int,
        versions: tuple[str, str],
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "table": step.table,
            "staging": staging,
            "run_id": step.run_id,
            "expected_rows": rows,
            "version": versions[0],
            "data_version": versions[1],
            "base": step.base,
            "metadata": metadata,
            "indexes": step.indexes,
        }
        swapped: dict[str, Any] = _send(client, "POST", self._route("swap"), json=body).json()
        return swapped

    def stage(
        self,
        table: str,
        *,
        fields: list[FieldSpec],
        primary_key: list[str],
        run_id: str,
        base: PublishedVersion | None,
        date_unit: str | None = None,
    ) -> DatasetteStage:
        """See :meth:`civicflow.portals.base.StagingPortal.stage`."""
        live = self.current_version(table)
        _check_base(table, run_id, base, live)
        indexes = index_columns(fields, primary_key)
        empty = pd.DataFrame(columns=[f.name for f in fields])
        step = _Upload(table, run_id, empty, fields, primary_key, _serial(base), indexes)
        return DatasetteStage(self, step, date_unit)

    def _prepare(self, client: httpx.Client, step: _Upload) -> str:
        columns = [[f.name, SQL_TYPES.get(f.type, "text")] for f in step.fields]
        body: dict[str, Any] = {
            "table": step.table,
            "run_id": step.run_id,
            "columns": columns,
            "primary_key": step.primary_key,
            "base": step.base,
            "lease_seconds": self.lease_seconds,
        }
        prepared = _send(client, "POST", self._route("prepare"), json=body).json()
        for gone in prepared["reclaimed"]:
            log.warning(
                "%s: reclaimed staging table %s of run %s (its lease expired at %s: the run died)",
                step.table,
                gone["staging"],
                gone["run_id"],
                gone["lease_expired_at"],
            )
        for other in [c for c in prepared["concurrent"] if c["run_id"] != step.run_id]:
            log.warning(
                "%s: run %s is also publishing this table (lease until %s); the first to "
                "swap wins and the other is refused",
                step.table,
                other["run_id"],
                other["lease_expires_at"],
            )
        return str(prepared["staging"])

    def _upload(self, client: httpx.Client, step: _Upload, staging: str) -> None:
        total = len(step.frame)
        progress = RowProgress(log, step.table, "uploaded", total)
        batches = load_bodies(step.frame, step.fields, self.batch_rows)
        # The next batch is converted while the portal stores this one (two processes).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="civicflow-batch") as pool:
            pending = pool.submit(next, batches, None)
            while (batch := pending.result()) is not None:
                pending = pool.submit(next, batches, None)
                done, rows, body = batch
                self._load_body(client, step, staging, rows, body)
                if self.on_batch is not None:
                    self.on_batch(done, total)
                progress.step(done)
        progress.finish(total)

    def _load_body(
        self, client: httpx.Client, step: _Upload, staging: str, rows: int, body: bytes
    ) -> None:
        query = {"table": step.table, "staging": staging, "run_id": step.run_id, "rows": str(rows)}
        _send(
            client,
            "POST",
            self._route("load"),
            params=query,
            content=body,
            headers={"content-type": ARROW_STREAM},
        )

    def _discard(self, client: httpx.Client, step: _Upload, staging: str) -> None:
        """Best effort after a failed publish; its lease expires anyway if this fails."""
        body = {"table": step.table, "staging": staging, "run_id": step.run_id}
        try:
            _send(client, "POST", self._route("discard"), json=body)
        except PortalError as exc:
            log.warning(
                "could not drop staging table %s (reclaimed when its lease expires): %s",
                staging,
                exc,
            )

    def _result(
        self,
        table: str,
        live: PublishedVersion,
        *,
        changed: bool,
        change: str | None = None,
        counts: tuple[int, int] | None = None,
    ) -> PublishResult:
        return PublishResult(
            table,
            live.version,
            live.rows,
            changed=changed,
            url=self.table_url(table),
            change=change,
            published_at=live.published_at,
            run_id=live.run_id,
            upserted=None if counts is None else counts[0],
            deleted=None if counts is None else counts[1],
        )

    # -- plumbing -----------------------------------------------------------------

    def _route(self, step: str) -> str:
        return f"/-/civicflow/{self.database}/{step}"

    @contextmanager
    def _client(self, *, auth: httpx.Auth | None = None) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.url, auth=auth, timeout=self.timeout) as client:
            yield client

    def _auth(self, table: str) -> _PublishAuth:
        return _PublishAuth(lambda: self._token(table), server.TOKEN_TTL_S / 2)

    def _token(self, table: str) -> str:
        token = server.publish_token(self.settings, table)
        if token is None:
            raise PortalError(
                f"no publisher credentials for {self.url}: set {server.SECRET_ENV} (the portal's "
                f"signing secret; each publish mints a short-lived token from it) or "
                f"{server.TOKEN_ENV}, or start the portal with `civicflow portal serve` (it writes "
                f"{server.secrets_dir(self.settings) / 'datasette_secret'})"
            )
        return token


class DatasetteStage:
    """Rows staged batch by batch on the portal (prepare once, a load per body), then
    swapped in as one new version or discarded: see ``StagedRows``. One HTTP client for
    the whole upload; the staging table's lease is renewed by every load."""

    def __init__(self, portal: DatasettePortal, step: _Upload, date_unit: str | None) -> None:
        self.portal, self.step, self.date_unit = portal, step, date_unit
        self._client = httpx.Client(
            base_url=portal.url, auth=portal._auth(step.table), timeout=portal.timeout
        )
        self._progress: RowProgress | None = None
        try:
            self.staging = portal._prepare(self._client, step)
        except BaseException:
            self._client.close()
            raise
        self._rows = 0
        self._complete = True
        self._open = True

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def complete(self) -> bool:
        return self._complete

    def load(self, batch: pd.DataFrame) -> None:
        if not self._complete:
            return
        unit = _date_unit(batch, self.step.fields)
        if self.date_unit is None:
            self.date_unit = unit
        elif unit == "ms" and self.date_unit == "s":
            # rows before were written to the second: these cannot join them
            self._complete = False
            return
        _check_frame(self.step.table, batch, self.step.fields, self.step.primary_key)
        table = wire_batch(batch, self.step.fields, self.date_unit)
        for offset in range(0, table.num_rows, self.portal.batch_rows):
            for body, rows in _fitting(table.slice(offset, self.portal.batch_rows)):
                self.portal._load_body(self._client, self.step, self.staging, rows, body)
                self._rows += rows
        self._progress = self._progress or RowProgress(log, self.step.table, "uploaded")
        self._progress.step(self._rows)

    def swap(self, *, version: str, metadata: TableMetadata) -> PublishResult:
        if not self._complete:
            raise PortalError(f"{self.step.table}: the staged rows are incomplete: stage again")
        portal, step = self.portal, self.step
        target = published_version(version, metadata)
        try:
            if self._progress is not None:
                self._progress.finish(self._rows)
            done = portal._swap(
                self._client,
                step,
                self.staging,
                self._rows,
                (target, version),
                _metadata_payload(metadata),
            )
        except PortalConflict:
            self.discard()
            now = portal.current_version(step.table)
            if now is None or now.version != target:
                raise
            return portal._result(step.table, now, changed=False)
        except BaseException:
            self.discard()
            raise
        self._close()
        log.info("%s: version %s… live with %s rows", step.table, target[:12], f"{done['rows']:,}")
        return portal._result(step.table, _live(done), changed=True, change="data")

    def discard(self) -> None:
        if self._open:
            self.portal._discard(self._client, self.step, self.staging)
            self._close()

    def _close(self) -> None:
        self._open = False
        self._client.close()


class _PublishAuth(httpx.Auth):
    """Bearer auth with the publish token, minted again at half its life.

    A very long upload (many millions of rows on a slow link) outlives one token.
    """

    def __init__(self, mint: Callable[[], str], refresh_after_s: float) -> None:
        self._mint, self._refresh_after_s = mint, refresh_after_s
        self._token, self._minted = mint(), time.monotonic()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if time.monotonic() - self._minted > self._refresh_after_s:
            self._token, self._minted = self._mint(), time.monotonic()
        request.headers["authorization"] = f"Bearer {self._token}"
        yield request


@dataclass(frozen=True)
class _Upload:
    """One run's upload of one table: what prepare, load and swap need."""

    table: str
    run_id: str
    frame: pd.DataFrame
    fields: list[FieldSpec]
    primary_key: list[str]
    base: int | None
    #: the indexes the live table should have (index_columns)
    indexes: list[list[str]] = dataclasses.field(default_factory=list)


def index_columns(fields: list[FieldSpec], primary_key: list[str]) -> list[list[str]]:
    """The indexes the fields ask for (``index: true``: the column alone; a list: the
    column, then those), each followed by the primary key: Datasette pages a filtered
    table in key order, so ``where request_type = ? and cd = ? order by sr_number limit
    101`` reads 101 index entries instead of sorting every match. One the primary key's
    own index already serves is left out."""
    out: list[list[str]] = []
    for f in fields:
        if f.index is True:
            columns = [f.name]
        elif isinstance(f.index, list) and f.index:
            columns = [f.name, *f.index]
        else:
            continue
        columns += [k for k in primary_key if k not in columns]
        if columns != primary_key[: len(columns)] and columns not in out:
            out.append(columns)
    return out


def _serial(version: PublishedVersion | None) -> int | None:
    return None if version is None else version.serial


def _check_base(
    table: str, run_id: str, start: PublishedVersion | None, live: PublishedVersion | None
) -> None:
    """Refuse early when the live version is no longer the one the run started from."""
    if _serial(start) == _serial(live):
        return
    if live is None:
        raise PortalConflict(f"{table}: the live table run {run_id} started from is gone")
    raise PortalConflict(
        f"{table}: the live version changed since run {run_id} began: run {live.run_id} "
        f"published version {live.version[:12]}… at {live.published_at}; run {run_id} "
        "refused, the live table is unchanged",
        live.run_id,
    )


def _live(data: dict[str, Any]) -> PublishedVersion:
    return PublishedVersion(
        table=data["table"],
        version=data["version"],
        rows=int(data["rows"]),
        run_id=data.get("run_id"),
        published_at=data.get("published_at"),
        data_version=data.get("data_version"),
        serial=data.get("serial"),
    )


def load_bodies(
    frame: pd.DataFrame, fields: list[FieldSpec], size: int
) -> Iterator[tuple[int, int, bytes]]:
    """(rows done, rows in this body, body): Arrow IPC streams of ``size`` rows or fewer,
    halved until each fits the portal's body limit."""
    date_unit = _date_unit(frame, fields)
    for offset in range(0, len(frame), size):
        chunk = frame.iloc[offset : offset + size]
        batch = wire_batch(chunk, fields, date_unit)
        done = offset
        for body, rows in _fitting(batch):
            done += rows
            yield done, rows, body


def _fitting(batch: pa.Table) -> Iterator[tuple[bytes, int]]:
    body = _ipc(batch)
    if len(body) <= server.MAX_POST_BODY_BYTES or batch.num_rows <= 1:
        yield body, batch.num_rows
        return
    half = batch.num_rows // 2
    yield from _fitting(batch.slice(0, half))
    yield from _fitting(batch.slice(half))


def _ipc(batch: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_table(batch)
    return bytes(sink.getvalue().to_pybytes())


def wire_batch(frame: pd.DataFrame, fields: list[FieldSpec], date_unit: str) -> pa.Table:
    """The rows as the portal stores them, one Arrow column per field (vectorised).

    Integers go as int64 and numbers as float64 (NaN and NA as null); everything else
    as text: dates ``YYYY-MM-DD``, datetimes ISO 8601 to the second, or the millisecond
    when ``date_unit`` is ``ms`` (zoned ones in UTC with ``Z``), booleans
    ``true``/``false``: exactly what the JSON rows of earlier releases stored.
    """
    arrays = [_chunked(wire_array(frame[f.name], f, date_unit)) for f in fields]
    return pa.Table.from_arrays(arrays, names=[f.name for f in fields])


def _chunked(values: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    # pandas' Arrow-backed columns may come in several chunks
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def wire_array(column: pd.Series, field: FieldSpec, date_unit: str) -> pa.Array | pa.ChunkedArray:
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        when = pa.array(column, from_pandas=True)
        if field.type == "date":
            return when.cast(pa.date32()).cast(pa.string())  # the day where it happened
        return _iso_text(when, date_unit)
    if pd.api.types.is_bool_dtype(column.dtype):
        return pa.array(column, from_pandas=True).cast(pa.string())
    try:
        values = pa.array(column, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed Python objects: their text
        values = pa.array(column.map(str).where(column.notna(), None), type=pa.string())
    kind = values.type
    target = WIRE_TYPES.get(SQL_TYPES.get(field.type, "text"))
    if target is not None:
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
            raise PortalError(f"{field.name}: {kind} values in a {field.type} field")
        try:
            return values.cast(target)
        except pa.ArrowInvalid as exc:
            raise PortalError(f"{field.name}: values that are not {field.type}s: {exc}") from exc
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return values
    if pa.types.is_timestamp(kind):
        return _iso_text(values, date_unit)
    return values.cast(pa.string())


def _iso_text(when: pa.Array | pa.ChunkedArray, date_unit: str) -> pa.Array | pa.ChunkedArray:
    """ISO 8601 text of timestamps, floored to ``date_unit``; zoned ones in UTC with Z."""
    kind = when.type
    zone = "UTC" if kind.tz is not None else None
    if zone is not None:
        when = when.cast(pa.timestamp(kind.unit, zone))
    if _UNITS.index(kind.unit) > _UNITS.index(date_unit):
        when = pc.floor_temporal(when, unit="second" if date_unit == "s" else "millisecond")
    text = when.cast(pa.timestamp(date_unit, zone)).cast(pa.string())
    return pc.replace_substring(text, " ", "T", max_replacements=1)


_UNITS = ("s", "ms", "us", "ns")


def _date_unit(frame: pd.DataFrame, fields: list[FieldSpec]) -> str:
    """``ms`` when some datetime carries a fraction of a second, else ``s`` (one unit for
    every column and batch, as earlier releases wrote them)."""
    for f in fields:
        column = frame[f.name]
        if f.type == "date" or not pd.api.types.is_datetime64_any_dtype(column.dtype):
            continue
        if column.dt.unit == "s":
            continue
        present = column.dropna()
        if (present != present.dt.floor("s")).any():
            return "ms"
    return "s"


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
        text = _error_text(response)
        if response.status_code == 409 and _field(response, "conflict"):
            # The plugin's message names the run that published in between.
            raise PortalConflict(text, _field(response, "other_run"))
        hint = ""
        if response.status_code in (401, 403):
            # Datasette says only "Invalid token signature": say which setting to check.
            hint = (
                f" (check {server.SECRET_ENV}: it must be the portal's signing secret; or "
                f"{server.TOKEN_ENV}: a token for this table with civicflow-publish)"
            )
        raise PortalError(
            f"{method} {path}: HTTP {response.status_code}: {text}{hint}",
            status=response.status_code,
        )
    return response


def _field(response: httpx.Response, key: str) -> Any:
    try:
        data = response.json()
    except json.JSONDecodeError:
        return None
    return data.get(key) if isinstance(data, dict) else None


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
