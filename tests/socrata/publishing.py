"""State of the Dataset Management API (DSMAPI): revisions, sources, schemas, apply jobs.

The resources and the fields kept are the ones socrata-py 1.2.0 reads (its revisions.py,
sources.py, input_schema.py, output_schema.py, job.py); their meaning follows Socrata's
"Dataset Management API" docs (https://dev.socrata.com/publishers/dsmapi and
https://socratapublishing.docs.apiary.io): a revision is a change to one dataset, opened on
it and applied as a whole; a source holds an uploaded file, sent in numbered chunks that may
arrive in any order and concurrently, then committed; committing parses it into an input
schema with one output schema (columns typed, ``error_count``); applying runs a job (a
"task set") that swaps the dataset's rows and schema in at once.

Choices of this server (not in the docs): a committed source is parsed before the commit
answers (so schemas are complete at once); an apply job runs in a thread after
``apply_delay`` seconds, so clients do poll it; rows with an error are left out on apply, as
the DSMAPI does with rows that fail their transforms; a dataset created through a revision
is private until a revision or ``setPermission`` makes it public.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.socrata import outputs
from tests.socrata.outputs import OutputColumn
from tests.socrata.store import Column, Dataset, RowError, Store

_IDS = itertools.count(1)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


@dataclass
class OutputSchema:
    id: int
    input_schema_id: int
    columns: list[OutputColumn]
    converted: outputs.Converted
    created_at: str = field(default_factory=now_iso)

    @property
    def error_count(self) -> int:
        # Every value that did not convert: the sum of the per-column counts.
        return sum(c.error_count for c in self.columns)


@dataclass
class InputSchema:
    id: int
    source_id: int
    header: list[str]
    rows: list[list[str]]
    output_schemas: list[OutputSchema] = field(default_factory=list)


@dataclass
class Source:
    id: int
    fourfour: str
    revision_seq: int
    source_type: dict[str, Any]
    parse_options: dict[str, Any]
    content_type: str | None = None
    chunks: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # seq -> (offset, bytes)
    schemas: list[InputSchema] = field(default_factory=list)
    finished_at: str | None = None
    failed_at: str | None = None
    failure: str | None = None
    created_at: str = field(default_factory=now_iso)


@dataclass
class TaskSet:
    """An apply job: socrata-py's ``Job`` polls ``status`` and ``finished_at``."""

    id: int
    fourfour: str
    revision_seq: int
    output_schema_id: int | None
    status: str = "initializing"
    finished_at: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)


@dataclass
class Revision:
    id: int
    fourfour: str
    revision_seq: int
    action: dict[str, Any]
    metadata: dict[str, Any]
    creates_dataset: bool = False
    output_schema_id: int | None = None
    closed_at: str | None = None
    discarded: bool = False
    task_sets: list[TaskSet] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)

    @property
    def is_open(self) -> bool:
        """Neither applied nor discarded: still waiting on the dataset."""
        return self.closed_at is None


class PublishingError(ValueError):
    """A request the DSMAPI refuses (400); the message says what to fix."""


class Publishing:
    """All revisions and sources of one test server, over its ``Store``."""

    def __init__(self, store: Store, *, chunk_size: int = 4 * 1024 * 1024) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.revisions: dict[tuple[str, int], Revision] = {}
        self.sources: dict[int, Source] = {}
        self.chunk_size = chunk_size  # "preferred_chunk_size" answered on initiate
        self.parallelism = 4  # "preferred_upload_parallelism"
        self.apply_delay = 0.05  # seconds an apply job stays in progress
        #: the next this many applies start their job but answer 502, as a gateway that
        #: lost the answer would: the client cannot tell from the answer that it applied
        self.lose_apply_answers = 0

    # -- revisions --------------------------------------------------------------------

    def open_revision(
        self, fourfour: str | None, action: dict[str, Any], metadata: dict[str, Any]
    ) -> Revision:
        """A revision on ``fourfour``, or with None a new (private, empty) dataset and its first one."""
        creates = fourfour is None
        if fourfour is None:
            name = str(metadata.get("name") or "Untitled dataset")
            fourfour = self.store.create([], name=name, published=False).id
            dataset = self.store.get(fourfour)
            assert dataset is not None
            dataset.public = False
        with self.lock:
            seq = sum(1 for key in self.revisions if key[0] == fourfour)
            revision = Revision(next(_IDS), fourfour, seq, action, dict(metadata), creates)
            self.revisions[(fourfour, seq)] = revision
        return revision

    def revision(self, fourfour: str, seq: int) -> Revision | None:
        with self.lock:
            return self.revisions.get((fourfour, seq))

    def revisions_of(self, fourfour: str) -> list[Revision]:
        """Every revision opened on ``fourfour``, in order."""
        with self.lock:
            found = [r for (f, _), r in self.revisions.items() if f == fourfour]
        return sorted(found, key=lambda r: r.revision_seq)

    def open_revisions(self, fourfour: str) -> list[Revision]:
        """The revisions on ``fourfour`` neither applied nor discarded."""
        return [r for r in self.revisions_of(fourfour) if r.is_open]

    def discard(self, revision: Revision) -> None:
        """DELETE of a revision: an open one is closed unapplied; an applied one stays."""
        with self.lock:
            if revision.closed_at is None:
                revision.closed_at, revision.discarded = now_iso(), True

    def update_revision(self, revision: Revision, body: dict[str, Any]) -> None:
        if isinstance(body.get("metadata"), dict):
            revision.metadata.update(body["metadata"])
        if "output_schema_id" in body:
            revision.output_schema_id = body["output_schema_id"]

    # -- sources ----------------------------------------------------------------------

    def create_source(self, revision: Revision, body: dict[str, Any]) -> Source:
        source_type = body.get("source_type")
        if not isinstance(source_type, dict) or source_type.get("type") != "upload":
            raise PublishingError("only upload sources are supported by the test server")
        source = Source(
            next(_IDS),
            revision.fourfour,
            revision.revision_seq,
            source_type,
            {"parse_source": True, "header_count": 1, **(body.get("parse_options") or {})},
        )
        with self.lock:
            self.sources[source.id] = source
            revision.sources.append(source)
        return source

    def source(self, source_id: int) -> Source | None:
        with self.lock:
            return self.sources.get(source_id)

    def add_chunk(self, source: Source, seq: int, offset: int, data: bytes) -> None:
        # Chunks come from a pool of threads: keep each by number, order them on commit.
        with self.lock:
            if source.finished_at is not None:
                raise PublishingError(f"source {source.id} is already committed")
            source.chunks[seq] = (offset, data)

    def commit(self, source: Source, last_seq: int, total_bytes: int) -> None:
        """Assemble the chunks 0..``last_seq`` by byte offset, then parse and type them."""
        with self.lock:
            chunks = dict(source.chunks)
        data = _assemble(chunks, last_seq, total_bytes)
        try:
            header, rows = outputs.parse_csv(data)
            schema = InputSchema(next(_IDS), source.id, header, rows)
            schema.output_schemas.append(self._first_output(source, schema))
        except (RowError, UnicodeDecodeError, outputs.TransformError) as exc:
            source.failed_at, source.failure = now_iso(), str(exc)
            return
        with self.lock:
            source.schemas.append(schema)
            source.chunks.clear()
            source.finished_at = now_iso()

    def _first_output(self, source: Source, schema: InputSchema) -> OutputSchema:
        dataset = self.store.get(source.fourfour)
        known = {c.field_name: c.data_type for c in dataset.columns} if dataset else {}
        columns = []
        for position, header in enumerate(schema.header, start=1):
            name = outputs.field_name(header)
            at = position - 1
            guessed = known.get(name) or outputs.guess_type(
                [r[at] if at < len(r) else "" for r in schema.rows]
            )
            columns.append(OutputColumn(name, header, name, guessed, position))
        if dataset and dataset.row_identifier:
            for column in columns:
                column.is_primary_key = column.field_name == dataset.row_identifier
        return self._output(schema, columns)

    def _output(self, schema: InputSchema, columns: list[OutputColumn]) -> OutputSchema:
        converted = outputs.convert(schema.header, schema.rows, columns)
        return OutputSchema(next(_IDS), schema.id, columns, converted)

    def transform(self, schema: InputSchema, body: dict[str, Any]) -> OutputSchema:
        """A new output schema from ``output_columns`` (socrata-py's ``OutputSchema.run``)."""
        specs = body.get("output_columns")
        if not isinstance(specs, list) or not specs:
            raise PublishingError("output_columns (a non-empty list) is required")
        columns = [_output_column(spec, n) for n, spec in enumerate(specs, start=1)]
        output = self._output(schema, columns)
        with self.lock:
            schema.output_schemas.append(output)
        return output

    def output_schema(
        self, output_schema_id: int
    ) -> tuple[Source, InputSchema, OutputSchema] | None:
        with self.lock:
            for source in self.sources.values():
                for schema in source.schemas:
                    for output in schema.output_schemas:
                        if output.id == output_schema_id:
                            return source, schema, output
        return None

    # -- apply --------------------------------------------------------------------------

    def apply(self, revision: Revision, output_schema_id: int | None) -> TaskSet:
        if revision.discarded:
            raise PublishingError(f"revision {revision.revision_seq} was discarded")
        if revision.closed_at is not None:
            raise PublishingError(f"revision {revision.revision_seq} is already applied")
        chosen = output_schema_id or revision.output_schema_id
        found = self.output_schema(int(chosen)) if chosen is not None else None
        if chosen is not None and found is None:
            raise PublishingError(f"no output schema {chosen}")
        job = TaskSet(next(_IDS), revision.fourfour, revision.revision_seq, chosen)
        with self.lock:
            revision.task_sets.append(job)
            revision.output_schema_id = chosen
            revision.closed_at = now_iso()
        output = found[2] if found else None
        threading.Thread(target=self._run, args=(revision, output, job), daemon=True).start()
        return job

    def _run(self, revision: Revision, output: OutputSchema | None, job: TaskSet) -> None:
        job.status = "in_progress"
        time.sleep(self.apply_delay)
        try:
            dataset = self.store.get(revision.fourfour)
            if dataset is None:
                raise RowError(f"dataset {revision.fourfour} no longer exists")
            if output is not None:
                self._swap_rows(dataset, revision, output)
            self._apply_metadata(dataset, revision)
            job.status = "successful"
        except RowError as exc:
            job.log.append({"stage": "failure", "details": {"message": str(exc)}})
            job.status = "failure"
        job.finished_at = now_iso()

    def _swap_rows(self, dataset: Dataset, revision: Revision, output: OutputSchema) -> None:
        """The new rows (and columns) built aside, then swapped in under the store's lock."""
        columns = _dataset_columns(dataset, output.columns)
        key = next((c.field_name for c in output.columns if c.is_primary_key), None)
        rows = output.converted.good_rows
        if revision.action.get("type") == "replace" or revision.creates_dataset:
            # The converted rows are in SODA 2 form already: no second conversion.
            records = Store.records_of(Dataset(dataset.id, dataset.name, columns, key), rows)
            with self.store.lock:
                dataset.columns, dataset.row_identifier = columns, key
                dataset.records = records
                dataset.rows_updated_at = int(time.time())
            return
        if revision.action.get("type") == "delete":
            rows = [{**r, ":deleted": True} for r in rows]
        self.store.upsert(dataset, rows)

    def _apply_metadata(self, dataset: Dataset, revision: Revision) -> None:
        metadata = dict(revision.metadata)
        permission = revision.action.get("permission")
        with self.store.lock:
            if "name" in metadata:
                dataset.name = str(metadata.pop("name"))
            custom = metadata.pop("metadata", None)
            dataset.view.update(metadata)
            if isinstance(custom, dict):
                dataset.view["metadata"] = {**dataset.view.get("metadata", {}), **custom}
            if permission in ("public", "private"):
                dataset.public = permission == "public"
            dataset.published = True


def _assemble(chunks: dict[int, tuple[int, bytes]], last_seq: int, total_bytes: int) -> bytes:
    missing = [seq for seq in range(last_seq + 1) if seq not in chunks]
    if missing:
        raise PublishingError(f"cannot commit: chunks {missing[:10]} were never uploaded")
    ordered = sorted((chunks[seq] for seq in range(last_seq + 1)), key=lambda c: c[0])
    offset = 0
    for start, data in ordered:
        if start != offset:
            raise PublishingError(f"cannot commit: a gap or overlap at byte {offset}")
        offset += len(data)
    if offset != total_bytes:
        raise PublishingError(f"cannot commit: {offset} bytes uploaded, {total_bytes} committed")
    return b"".join(data for _, data in ordered)


def _output_column(spec: Any, position: int) -> OutputColumn:
    if not isinstance(spec, dict) or not spec.get("field_name"):
        raise PublishingError(f"output column {position}: an object with a field_name expected")
    transform = spec.get("transform") or {}
    input_field, soql_type = outputs.parse_expression(str(transform.get("transform_expr", "")))
    return OutputColumn(
        field_name=str(spec["field_name"]),
        display_name=str(spec.get("display_name") or spec["field_name"]),
        input_field=input_field,
        soql_type=soql_type,
        position=int(spec.get("position") or position),
        description=str(spec.get("description") or ""),
        is_primary_key=bool(spec.get("is_primary_key")),
    )


def _dataset_columns(dataset: Dataset, columns: list[OutputColumn]) -> list[Column]:
    """The dataset's columns after apply; a column that stays keeps its id."""
    ids = {c.field_name: c.id for c in dataset.columns}
    out = []
    for c in sorted(columns, key=lambda c: c.position):
        column = Column(c.field_name, c.soql_type, name=c.display_name, description=c.description)
        column.id = ids.get(c.field_name, column.id)
        out.append(column)
    return out
