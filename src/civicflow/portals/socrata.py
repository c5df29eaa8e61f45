"""The Socrata portal adapter: datasets created and replaced through a DSMAPI revision.

Every new version (rows or metadata) goes out as one socrata-py revision: the CSV is
written here (Arrow, vectorised), uploaded, typed by an output schema built from the
spec, refused while the schema counts conversion errors, then applied; the apply job
swaps rows and metadata in together, so a reader never sees a replace half done. A
revision that fails before its apply job succeeds is discarded (best effort), so none is
left open on the dataset; the apply itself is sent once (:meth:`SocrataPortal._apply`).

The version record (version, data version, run id, rows, serial) travels in the
revision's view metadata (``metadata.civicflow``), so :meth:`current_version` reads
what is live from the portal itself (over sodapy, like the permission that makes a
new dataset public: socrata_soda.py).

A change set (:meth:`apply_changes`) that fits one chunk (``chunk_rows``, 10,000 as
Socrata's DataSync sends) goes as ONE sodapy upsert by row identifier, deletes as
rows with ``":deleted": true``, which Socrata applies whole; then the version record
is updated in the view metadata. A larger change set, a composite key, a key both
deleted and upserted (a row moved to the end: the order of one upsert's rows is not
documented), or a schema or column-description change goes as a replace revision of
the live rows with the changes merged in, atomic like any publish. Either way a row
upserted under a live key keeps its place (Socrata updates it in place) and new rows
come last. The dataset's four-by-four id is civicflow state,
kept privately under ``var/socrata/<host>/<table>.json``.

Compare-and-swap: Socrata has no conditional apply, so the live version is compared
with ``base`` before the upload and again just before the apply; the window left is
the apply itself (documented, not hidden). A change set sent as an upsert is checked
once, before the upsert; the upsert and the version record are two requests, so a
failure between them leaves the rows changed under the old record, and the next run's
change set (idempotent by key) applies again and records the version.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import EllipsisType
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlparse

import pandas as pd
import pyarrow as pa
import requests
from requests.auth import HTTPBasicAuth

from civicflow.http_retry import retry_after
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
from civicflow.portals.socrata_soda import Busy, Missing, soda_call, soda_client
from civicflow.portals.socrata_wire import (
    as_pairs,
    json_rows,
    merge_changes,
    read_csv,
    table_csv,
    wire_table,
    write_csv,
)
from civicflow.privatefs import write_private
from civicflow.settings import Settings
from civicflow.spec.models import FieldSpec

log = logging.getLogger("civicflow.portals.socrata")

DOMAIN_ENV = "CIVICFLOW_SOCRATA_DOMAIN"
KEY_ID_ENV = "CIVICFLOW_SOCRATA_KEY_ID"
KEY_SECRET_ENV = "CIVICFLOW_SOCRATA_KEY_SECRET"  # noqa: S105  (a variable's name)
APP_TOKEN_ENV = "CIVICFLOW_SOCRATA_APP_TOKEN"  # noqa: S105  (a variable's name)
#: a CA bundle to trust (a portal behind a private CA; the test server)
CA_BUNDLE_ENV = "CIVICFLOW_SOCRATA_CA_BUNDLE"

#: Socrata column type per declared field type (DSMAPI transform output types)
SOCRATA_TYPES = {
    "integer": "number",
    "number": "number",
    "boolean": "checkbox",
    "date": "calendar_date",
    "datetime": "calendar_date",
    "geopoint": "point",
    "url": "url",
}
#: the transform function producing each Socrata type (text needs none)
TRANSFORMS = {
    "number": "to_number",
    "checkbox": "to_boolean",
    "calendar_date": "to_floating_timestamp",
    "point": "to_point",
    "url": "to_url",
}
PAGE_ROWS = 50_000
#: rows a change set may hold to go as one upsert request (Socrata's DataSync chunk)
CHUNK_ROWS = 10_000
T = TypeVar("T")
POLL = {"sleeptime": 0.05, "timeout": 600}


def socrata_type(f: FieldSpec) -> str:
    return SOCRATA_TYPES.get(str(f.type), "text")


def column_type(socrata: str, declared: str | None) -> str:
    """The type a plan compares: Socrata's, with the declared type when it says more
    (an integer and a number are both Socrata numbers; a retype between them matters)."""
    return f"{socrata} ({declared})" if declared and declared != socrata else socrata


def plan_type(f: FieldSpec) -> str:
    return column_type(socrata_type(f), str(f.type))


@register_portal("socrata")
class SocrataPortal:
    """Publishes to the Socrata domain in ``CIVICFLOW_SOCRATA_DOMAIN`` with the user's keys."""

    kind: ClassVar[str] = "socrata"

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float = 60.0,
        retry_seconds: float = 120.0,
        first_backoff: float = 0.5,
        on_step: Callable[[str], None] | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        self.settings = settings
        #: a change set up to this many rows goes as one upsert; a larger one as a revision
        self.chunk_rows = chunk_rows
        #: called with each publish step as it finishes ("revision", "uploaded", "applied")
        self.on_step = on_step or (lambda step: None)
        #: the total time a publish keeps retrying 429s, 5xx and dropped connections
        self.retry_seconds = retry_seconds
        self.first_backoff = first_backoff
        domain = settings.env.get(DOMAIN_ENV, "").strip().rstrip("/")
        if not domain:
            raise PortalError(
                f"{DOMAIN_ENV} is not set: the Socrata domain, e.g. https://data.lacity.org"
            )
        if "://" not in domain:
            domain = f"https://{domain}"
        parsed = urlparse(domain)
        loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
        if parsed.scheme != "https" and not loopback:
            raise PortalError(f"{DOMAIN_ENV}: https is required for {parsed.hostname}")
        self.url = domain
        self.host = parsed.netloc
        self.timeout = timeout
        self.verify: str | bool = settings.env.get(CA_BUNDLE_ENV) or True

    # -- credentials (read at use, never stored on the object, never logged) ----------

    def _keys(self) -> tuple[str, str]:
        key_id, secret = self.settings.secret(KEY_ID_ENV), self.settings.secret(KEY_SECRET_ENV)
        if not key_id or not secret:
            raise PortalError(
                f"{KEY_ID_ENV} and {KEY_SECRET_ENV} must be set to publish to Socrata"
            )
        return key_id, secret

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.auth = self._keys()
        token = self.settings.secret(APP_TOKEN_ENV)
        if token:
            session.headers["X-App-Token"] = token
        return session

    def _get(self, session: requests.Session, path: str, **params: Any) -> requests.Response:
        """One read, retried on 429 (after ``Retry-After``), 5xx and dropped connections."""
        return self.retry(lambda: self._get_once(session, path, params))

    def _get_once(
        self, session: requests.Session, path: str, params: dict[str, Any]
    ) -> requests.Response:
        # verify per request: REQUESTS_CA_BUNDLE in the environment beats session.verify
        response = session.get(
            f"{self.url}{path}", params=params, timeout=self.timeout, verify=self.verify
        )
        if response.status_code == 429 or response.status_code >= 500:
            raise Busy(response.status_code, retry_after(response))
        if response.status_code in (401, 403):
            raise PortalError(
                f"{self.url}: HTTP {response.status_code}: credentials refused: check "
                f"{KEY_ID_ENV} and {KEY_SECRET_ENV}"
            )
        return response

    # -- state: the four-by-four id per table ----------------------------------------

    def _state_path(self, table: str) -> Any:
        return self.settings.var_dir / "socrata" / self.host.replace(":", "_") / f"{table}.json"

    def fourfour(self, table: str) -> str | None:
        path = self._state_path(table)
        if not path.is_file():
            return None
        return str(json.loads(path.read_text())["fourfour"])

    def _remember(self, table: str, fourfour: str) -> None:
        write_private(self._state_path(table), json.dumps({"fourfour": fourfour}))

    # -- reading ----------------------------------------------------------------------

    def view(self, table: str) -> dict[str, Any] | None:
        """The dataset's view document (sodapy ``get_metadata``), None if it is gone."""
        fourfour = self.fourfour(table)
        if fourfour is None:
            return None
        try:
            view: dict[str, Any] = self._soda(
                lambda client: client.get_metadata(fourfour), "read the dataset"
            )
        except Missing:
            return None
        return view

    def _soda(self, call: Callable[[Any], T], what: str) -> T:
        """One sodapy call with a fresh client, retried as every request is."""
        client = soda_client(
            self.url,
            self.host,
            app_token=self.settings.secret(APP_TOKEN_ENV) or None,
            keys=self._keys(),
            verify=self.verify,
            timeout=self.timeout,
        )
        credentials = f"{KEY_ID_ENV} and {KEY_SECRET_ENV}"
        try:
            return self.retry(
                lambda: soda_call(lambda: call(client), what, credentials=credentials)
            )
        finally:
            client.close()

    def current_version(self, table: str) -> PublishedVersion | None:
        return _live(table, self.view(table))

    def table_url(self, table: str) -> str:
        fourfour = self.fourfour(table)
        return f"{self.url}/d/{fourfour}" if fourfour else f"{self.url}/browse?q={table}"

    def live_rows(self, fourfour: str, fields: list[str]) -> pa.Table:
        """Every live row over SODA, paged by ``$limit``/``$offset`` in ``:id`` order, as text."""
        pages = []
        with self._session() as session:
            offset = 0
            while True:
                params = {"$limit": PAGE_ROWS, "$offset": offset, "$order": ":id"}
                response = self._get(session, f"/resource/{fourfour}.csv", **params)
                _check(response, "read the live rows")
                page = read_csv(response.content, fields)
                pages.append(page)
                if page.num_rows < PAGE_ROWS:
                    break
                offset += PAGE_ROWS
        return pa.concat_tables(pages)

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
        view = self.view(table)
        current = _live(table, view)
        live = LiveState(None)
        if view is not None and current is not None:
            declared = view["metadata"]["civicflow"].get("types", {})
            columns = [
                (c["fieldName"], column_type(c["dataTypeName"], declared.get(c["fieldName"])))
                for c in view.get("columns", [])
            ]
            rows = None
            if primary_key and current.data_version != version:
                rows = as_pairs(self.live_rows(view["id"], [n for n, _ in columns]), fields)
            stored = view.get("metadata", {}).get("civicflow", {}).get("metadata")
            live = LiveState(current, columns, stored, rows)
        return make_plan(
            table,
            frame,
            fields=fields,
            primary_key=primary_key,
            version=version,
            metadata=metadata,
            payload=_payload(metadata),
            live=live,
            portal_type=plan_type,
        )

    # -- publishing -------------------------------------------------------------------

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
        target = published_version(version, metadata)
        view = self.view(table)
        live = _live(table, view)
        _check_base(table, live, base)
        if live is not None and live.version == target:
            return PublishResult(
                table,
                target,
                live.rows,
                False,
                self.table_url(table),
                None,
                live.published_at,
                live.run_id,
            )
        published_at = datetime.now(UTC).isoformat(timespec="seconds")
        record = {
            "version": target,
            "data_version": version,
            "run_id": run_id,
            "rows": len(frame),
            "published_at": published_at,
            "serial": (live.serial or 0) + 1 if live else 1,
            "metadata": _payload(metadata),
            "types": {f.name: str(f.type) for f in fields},
        }
        # Same rows, same columns: only the view metadata changes, nothing is uploaded.
        stored = (view or {}).get("metadata", {}).get("civicflow", {})
        relabel = (
            live is not None
            and live.data_version == version
            and stored.get("types") == {f.name: str(f.type) for f in fields}
            and (stored.get("metadata") or {}).get("columns") == dict(metadata.columns)
        )
        self._revise(
            table,
            None if relabel else write_csv(frame, fields),
            fields,
            primary_key,
            _view_metadata(metadata, record),
            base,
            live,
        )
        change = "data" if live is None or live.data_version != version else "metadata"
        return PublishResult(
            table, target, len(frame), True, self.table_url(table), change, published_at, run_id
        )

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
        """One upsert request when the change set fits a chunk and the dataset's row
        identifier is the key, else a replace revision of live rows ⊕ changes.
        See :meth:`civicflow.portals.base.Portal.apply_changes`."""
        check_changes(table, changes, fields, primary_key)
        view = self.view(table)
        live = _live(table, view)
        if view is None or live is None:
            raise PortalError(f"{table} is not on the portal: publish it in full first")
        _check_base(table, live, base)
        if nothing_to_apply(live, changes, version, metadata):
            log.info("%s: no row or metadata changes; nothing written", table)
            url = self.table_url(table)
            unchanged = (live.published_at, live.run_id, 0, 0)
            return PublishResult(table, live.version, live.rows, False, url, None, *unchanged)
        record: dict[str, Any] = {
            "version": published_version(version, metadata),
            "data_version": version,
            "run_id": run_id,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "serial": (live.serial or 0) + 1,
            "metadata": _payload(metadata),
            "types": {f.name: str(f.type) for f in fields},
        }
        self.on_step("changes")
        step = _ChangeSet(table, view, changes, fields, primary_key, metadata, record)
        if self._fits_one_upsert(step):
            counts = self._upsert(step, live)
        else:
            counts = self._revise_with(step, base)
        log.info(
            "%s: version %s… live: %s rows upserted, %s deleted, %s rows in all",
            table,
            str(record["version"])[:12],
            f"{counts[0]:,}",
            f"{counts[1]:,}",
            f"{record['rows']:,}",
        )
        return PublishResult(
            table,
            str(record["version"]),
            int(record["rows"]),
            True,
            self.table_url(table),
            "data" if len(changes) else "metadata",
            str(record["published_at"]),
            run_id,
            *counts,
        )

    def _fits_one_upsert(self, step: _ChangeSet) -> bool:
        """Rows only (same columns, types and column descriptions), keyed by the dataset's
        row identifier, no more than one chunk of rows, and no key both deleted and
        upserted."""
        view, fields, primary_key = step.view, step.fields, step.primary_key
        stored = view["metadata"]["civicflow"]
        ids = {c["fieldName"]: c.get("id") for c in view.get("columns", [])}
        keyed = len(primary_key) == 1 and ids.get(primary_key[0]) is not None
        return (
            keyed
            and view.get("rowIdentifierColumnId") == ids[primary_key[0]]
            and len(step.changes) <= self.chunk_rows
            and stored.get("types") == {f.name: str(f.type) for f in fields}
            and list(ids) == [f.name for f in fields]
            and (stored.get("metadata") or {}).get("columns") == dict(step.metadata.columns)
            and not _moves_rows(step.changes, [f for f in fields if f.name in primary_key])
        )

    def _upsert(self, step: _ChangeSet, live: PublishedVersion) -> tuple[int, int]:
        """ONE upsert request (Socrata applies it whole), then the version record.

        Retrying the upsert is safe: it writes rows by key, and deleting an absent key
        is no error. If the portal fails between the two requests the rows are in and
        the old record stays; the next run's change set applies again and records it.
        """
        table, changes, fields, record = step.table, step.changes, step.fields, step.record
        fourfour = str(step.view["id"])
        key_fields = [f for f in fields if f.name in step.primary_key]
        rows = json_rows(wire_table(changes.upserts, fields)) if len(changes.upserts) else []
        gone = json_rows(wire_table(changes.deletes, key_fields)) if len(changes.deletes) else []
        payload = [*rows, *({**row, ":deleted": True} for row in gone)]
        done: dict[str, Any] = {}
        if payload:
            done = self._soda(lambda c: c.upsert(fourfour, payload), "upsert the changed rows")
        if int(done.get("Errors", 0) or 0):
            raise PortalError(
                f"{table}: Socrata refused {done['Errors']} rows of the change set; the version "
                "record is unchanged (the next run applies the change set again)"
            )
        self.on_step("upserted")
        created, deleted = int(done.get("Rows Created", 0)), int(done.get("Rows Deleted", 0))
        record["rows"] = live.rows + created - deleted
        update = _view_metadata(step.metadata, record)
        update["metadata"] = {**step.view.get("metadata", {}), **update["metadata"]}
        self._soda(lambda c: c.update_metadata(fourfour, update), "record the new version")
        return created + int(done.get("Rows Updated", 0)), deleted

    def _revise_with(
        self, step: _ChangeSet, base: PublishedVersion | None | EllipsisType
    ) -> tuple[int, int]:
        """A replace revision of the live rows with the changes merged in (by key)."""
        table, view, changes, fields = step.table, step.view, step.changes, step.fields
        names = [f.name for f in fields]
        live_rows = self.live_rows(str(view["id"]), [c["fieldName"] for c in view["columns"]])
        missing = [n for n in names if n not in live_rows.column_names]
        if missing:
            # A new column: the live rows have no value for it (empty cells).
            nulls = {n: pa.nulls(live_rows.num_rows, pa.string()) for n in missing}
            for name, column in nulls.items():
                live_rows = live_rows.append_column(name, column)
        key_fields = [f for f in fields if f.name in step.primary_key]
        merged, deleted = merge_changes(
            live_rows,
            wire_table(changes.upserts, fields),
            wire_table(changes.deletes, key_fields),
            step.primary_key,
        )
        step.record["rows"] = merged.num_rows
        self._revise(
            table,
            table_csv(merged),
            fields,
            step.primary_key,
            _view_metadata(step.metadata, step.record),
            base,
            _live(table, view),
        )
        return len(changes.upserts), deleted

    def _revise(
        self,
        table: str,
        data: bytes | None,
        fields: list[FieldSpec],
        primary_key: list[str],
        view_metadata: dict[str, Any],
        base: PublishedVersion | None | EllipsisType,
        live: PublishedVersion | None,
    ) -> None:
        """One revision: upload, type, check, apply, wait. Rows and metadata go live together.

        ``data`` (the upload CSV) None: a metadata-only revision (the rows stay). A revision
        that fails before its apply job succeeded (a conflict, values that do not convert, a
        refusal, an outage, a failed job) is discarded, so none is left open on the portal;
        if the discard fails too, a warning says so and the first error is raised."""
        from socrata import Socrata
        from socrata.http import UnexpectedResponseException

        publisher = Socrata(self._authorization())
        opened = _Opened()
        try:
            try:
                self._revise_steps(
                    publisher, opened, table, data, fields, primary_key, view_metadata, base, live
                )
            except UnexpectedResponseException as exc:
                raise _refusal(exc) from None
            except requests.RequestException as exc:
                raise PortalError(
                    f"{self.url}: portal unreachable ({type(exc).__name__})"
                ) from None
        except BaseException:
            if opened.revision is not None and not opened.applied:
                self._discard(table, opened.revision)
            raise

    def _revise_steps(
        self,
        publisher: Any,
        opened: _Opened,
        table: str,
        data: bytes | None,
        fields: list[FieldSpec],
        primary_key: list[str],
        view_metadata: dict[str, Any],
        base: PublishedVersion | None | EllipsisType,
        live: PublishedVersion | None,
    ) -> None:
        retry = self.retry
        fourfour = self.fourfour(table)
        created = fourfour is None
        if fourfour is None:
            revision = retry(lambda: publisher.new(view_metadata))
            opened.revision = revision
            fourfour = str(revision.attributes["fourfour"])
            self._remember(table, fourfour)
        else:
            revisions = retry(lambda: publisher.views.lookup(fourfour).revisions)
            revision = retry(lambda: revisions.create_replace_revision(metadata=view_metadata))
            opened.revision = revision
        self.on_step("revision")
        output = None
        if data is not None:
            output = self._upload(revision, table, data, fields, primary_key)
        self.on_step("uploaded")
        # The last moment to notice another run: right before the swap.
        _check_base(table, self.current_version(table), live if base is ... else base)
        _check_job(table, self._apply(revision, output))
        opened.applied = True
        self.on_step("applied")
        if created:
            # A dataset made by a revision is private; residents read it from now on.
            made = str(fourfour)
            self._soda(lambda c: c.set_permission(made, "public"), "make the dataset public")

    def _apply(self, revision: Any, output: Any) -> str | None:
        """The revision applied once; the final status of its apply job.

        socrata-py's ``apply`` is two requests: the PUT that starts the job, then a read of
        the revision. A 429, a 5xx or a dropped connection in either does not say whether
        Socrata started the job, and a second apply of an applied revision is refused: so
        before sending it again the revision is read (retried like any read), and if it
        holds an apply job that job is followed instead. The window left is a PUT still
        being processed when the revision is read (it is then refused as applied)."""
        from socrata.http import UnexpectedResponseException

        def send() -> Any:
            try:
                return revision.apply(output_schema=output)
            except UnexpectedResponseException as exc:
                if exc.status != 429 and exc.status < 500:
                    raise  # refused: nothing was applied
                failure: Exception = exc
            except (Busy, requests.ConnectionError, requests.Timeout) as exc:
                failure = exc
            if _apply_jobs(self.retry(lambda: revision.show())):
                return None  # applied after all: followed through the revision below
            raise failure

        job = self.retry(send)
        if job is not None:
            # Only the polling is retried: reading a job's status twice changes nothing.
            return str(self.retry(lambda: job.wait_for_finish(**POLL)).attributes.get("status"))
        return self._wait_for_apply(revision)

    def _wait_for_apply(self, revision: Any) -> str | None:
        """The status of the revision's apply job once it ended, read from the revision."""
        deadline = time.monotonic() + POLL["timeout"]
        while True:
            job = _apply_jobs(revision)[-1]
            if job.get("finished_at") or job.get("status") in ("successful", "failure"):
                return str(job.get("status"))
            if time.monotonic() > deadline:
                return str(job.get("status"))
            time.sleep(POLL["sleeptime"])
            self.retry(lambda: revision.show())

    def _discard(self, table: str, revision: Any) -> None:
        """Best effort: one DELETE of the open revision; a failure is logged, never raised
        (the caller raises the error that made the revision useless)."""
        from socrata.http import UnexpectedResponseException

        seq = revision.attributes.get("revision_seq")
        try:
            revision.discard()
        except UnexpectedResponseException as exc:
            failure = f"HTTP {exc.status}"
        except Busy as exc:
            failure = f"HTTP {exc.status}"
        except Exception as exc:  # noqa: BLE001  (best effort: any failure is only logged)
            failure = type(exc).__name__
        else:
            log.info("%s: revision %s discarded; nothing was applied", table, seq)
            return
        # Status or exception type only: messages may quote the request or the portal's body.
        log.warning(
            "%s: could not discard Socrata revision %s of %s (%s); it stays open until "
            "discarded on the portal",
            table,
            seq,
            revision.attributes.get("fourfour"),
            failure,
        )

    def _upload(
        self,
        revision: Any,
        table: str,
        data: bytes,
        fields: list[FieldSpec],
        primary_key: list[str],
    ) -> Any:
        """The rows uploaded into ``revision`` and typed from the spec; refused while any
        value does not convert (the error names the columns)."""
        retry = self.retry
        source = retry(lambda: revision.create_upload(f"{table}.csv").csv(io.BytesIO(data)))
        output = retry(lambda: source.get_latest_input_schema().get_latest_output_schema())
        typed = retry(lambda: _typed(output, fields, primary_key))
        output = retry(lambda: typed.wait_for_finish(**POLL))
        _refuse_errors(table, output)
        return output

    def retry(self, step: Callable[[], T]) -> T:
        """``step`` again after a 429, a 5xx or a dropped connection, with backoff, within
        ``self.retry_seconds`` in all; other refusals (4xx) at once."""
        from socrata.http import UnexpectedResponseException

        deadline = time.monotonic() + self.retry_seconds
        wait = self.first_backoff
        while True:
            try:
                return step()
            except UnexpectedResponseException as exc:
                if exc.status != 429 and exc.status < 500:
                    raise
                failure: Exception = exc
                # A JSON answer's headers are gone (socrata-py keeps only the body); a JSON
                # 429 is raised as Busy by the authorization's hook (_Answers), with them.
                asked = retry_after(exc.body) if hasattr(exc.body, "headers") else None
                pause = asked if asked is not None else wait
            except Busy as exc:
                failure = PortalError(f"{self.url}: HTTP {exc.status}: still refused after retries")
                pause = exc.retry_after if exc.retry_after is not None else wait
            except requests.exceptions.SSLError:
                # A certificate problem does not heal by waiting: say what to check now.
                raise PortalError(
                    f"{self.url}: TLS certificate not trusted; check the domain, or set "
                    f"{CA_BUNDLE_ENV} to the portal's CA bundle"
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure = PortalError(f"{self.url}: portal unreachable ({type(exc).__name__})")
                pause = wait
            if time.monotonic() + pause > deadline:
                raise failure from None
            log.info("Socrata busy or unreachable; retrying in %.1f s", pause)
            time.sleep(pause)
            wait = min(wait * 2, 30.0)

    def _authorization(self) -> Any:
        from socrata.authorization import Authorization

        key_id, secret = self._keys()
        auth = Authorization(self.host, username=key_id, password=secret)
        auth.verify = self.verify
        auth.basic = _Answers(key_id, secret)
        return auth


# -- helpers ------------------------------------------------------------------------------


class _Answers(HTTPBasicAuth):
    """socrata-py's HTTP Basic auth, plus a look at every answer: a 429 is raised as
    :class:`Busy` with its ``Retry-After``, which socrata-py would drop (it keeps only the
    JSON body of a refusal). socrata-py retries nothing on a 429 itself, so nothing of its
    own is skipped; the adapter's ``retry`` waits as asked."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request = super().__call__(request)
        request.register_hook("response", _raise_throttled)
        return request


def _raise_throttled(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    if response.status_code == 429:
        response.close()
        raise Busy(429, retry_after(response))
    return response


@dataclass
class _Opened:
    """The revision a publish opened, and whether its apply job succeeded."""

    revision: Any = None
    applied: bool = False


def _apply_jobs(revision: Any) -> list[dict[str, Any]]:
    """The apply jobs (task sets) the revision shows."""
    jobs = revision.attributes.get("task_sets") or []
    return [j for j in jobs if isinstance(j, dict)]


@dataclass(frozen=True)
class _ChangeSet:
    """One apply_changes call: what the upsert and the revision paths need."""

    table: str
    view: dict[str, Any]
    changes: RowChanges
    fields: list[FieldSpec]
    primary_key: list[str]
    metadata: TableMetadata
    #: the version record to store (``rows`` is filled in once known)
    record: dict[str, Any]


def _moves_rows(changes: RowChanges, key_fields: list[FieldSpec]) -> bool:
    """Whether a key is both deleted and upserted (compared as Socrata text)."""
    if not len(changes.deletes) or not len(changes.upserts):
        return False
    gone = wire_table(changes.deletes, key_fields)
    written = wire_table(changes.upserts[[f.name for f in key_fields]], key_fields)
    return bool(gone.join(written, [f.name for f in key_fields], join_type="inner").num_rows)


def _typed(output: Any, fields: list[FieldSpec], primary_key: list[str]) -> Any:
    """The output schema with each column's type and description from the spec."""
    for f in fields:
        kind = socrata_type(f)
        expr = f"`{f.name}`" if kind == "text" else f"{TRANSFORMS[kind]}(`{f.name}`)"
        output = output.change_column_transform(f.name).to(expr)
        output = output.change_column_metadata(f.name, "description").to(f.description or "")
    output = output.run()
    if len(primary_key) == 1:
        output = output.set_row_id(primary_key[0])
    return output


def _refuse_errors(table: str, output: Any) -> None:
    if not output.attributes.get("error_count"):
        return
    bad = [
        f"{c['field_name']} ({c['transform'].get('error_count', 0):,})"
        for c in output.attributes["output_columns"]
        if c.get("transform", {}).get("error_count")
    ]
    raise PortalError(
        f"{table}: Socrata could not convert values in columns {', '.join(bad)}; "
        "nothing was applied"
    )


def _refusal(exc: Any) -> PortalError:
    """socrata-py's error as PortalError: status and Socrata's code, never the request."""
    body = exc.body if isinstance(exc.body, dict) else {}
    code = str(body.get("code", ""))[:64]
    if exc.status in (401, 403):
        return PortalError(
            f"Socrata refused the credentials (HTTP {exc.status} {code}): check "
            f"{KEY_ID_ENV} and {KEY_SECRET_ENV}"
        )
    return PortalError(f"Socrata refused a publishing request: HTTP {exc.status} {code}")


def _check_job(table: str, status: str | None) -> None:
    if status != "successful":
        raise PortalError(f"{table}: the Socrata apply job ended {status!r}; the old version stays")


def _check(response: requests.Response, what: str) -> None:
    if response.status_code >= 400:
        raise PortalError(f"could not {what}: HTTP {response.status_code}")


def _check_base(
    table: str, live: PublishedVersion | None, base: PublishedVersion | None | EllipsisType
) -> None:
    if base is ...:
        return

    def key(v: PublishedVersion | None) -> tuple[str | None, int | None]:
        return (v.version, v.serial) if v else (None, None)

    if key(live) == key(base):
        return
    other = live.run_id if live else None
    raise PortalConflict(
        f"{table}: run {other} published since this run began; nothing was changed",
        other_run=other,
    )


def _payload(metadata: TableMetadata) -> dict[str, Any]:
    return {
        "title": metadata.title,
        "description": metadata.description,
        "license": metadata.license,
        "source": metadata.source,
        "source_url": metadata.source_url,
        "columns": dict(metadata.columns),
        "extra": dict(metadata.extra),
    }


def _view_metadata(metadata: TableMetadata, record: dict[str, Any]) -> dict[str, Any]:
    """The revision's view metadata: Socrata's own fields, custom fields, the version record."""
    extra = metadata.extra
    custom = {k: str(extra[k]) for k in ("department", "steward", "frequency") if k in extra}
    tags = extra.get("tags")
    return {
        "name": metadata.title,
        "description": metadata.description,
        "licenseId": metadata.license,
        "attribution": metadata.source,
        "attributionLink": metadata.source_url,
        "category": extra.get("category"),
        "tags": list(tags) if isinstance(tags, list | tuple) else [],
        "metadata": {"custom_fields": {"civicflow": custom}, "civicflow": record},
    }


def _live(table: str, view: dict[str, Any] | None) -> PublishedVersion | None:
    record = (view or {}).get("metadata", {}).get("civicflow")
    if not record:
        return None
    return PublishedVersion(
        table=table,
        version=record["version"],
        rows=int(record["rows"]),
        run_id=record.get("run_id"),
        published_at=record.get("published_at"),
        data_version=record.get("data_version"),
        serial=record.get("serial"),
    )
