"""The Dataset Management API routes (``/api/publishing/v1/...``) that socrata-py 1.2.0 calls.

Every response is ``{"resource": ..., "links": ...}``: socrata-py follows ``links`` rather
than building paths (``Resource._define_operations``), and fills the templates
``{seq_num}``/``{byte_offset}`` (``Source.chunk``/``commit``), ``{input_schema_id}`` and
``{output_schema_id}`` (``ChildResourceSpec.build_children_from``). Paths follow
https://socratapublishing.docs.apiary.io and socrata-py's revisions.py/sources.py
(``/api/publishing/v1/revision/{fourfour}``, ``/api/publishing/v1/revision`` for a new
dataset); the task-set path of an apply job is this server's choice (socrata-py only follows
its ``show`` link). Each call needs a writer's HTTP Basic credentials, like SODA writes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.socrata.app import API_JSON, error, read_json
from tests.socrata.outputs import TransformError, expression
from tests.socrata.publishing import (
    InputSchema,
    OutputSchema,
    Publishing,
    PublishingError,
    Revision,
    Source,
    TaskSet,
)
from tests.socrata.store import RowError

if TYPE_CHECKING:
    from tests.socrata.app import SocrataApp

V1 = "/api/publishing/v1"
Handler = Callable[[Request], Awaitable[Response]]


def respond(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, headers={"Content-Type": API_JSON})


def not_found(what: str) -> Response:
    return error(404, "not_found", f"{what} not found")


# -- resource documents (the fields socrata-py reads) ----------------------------------------


def revision_doc(revision: Revision) -> dict[str, Any]:
    path = f"{V1}/revision/{revision.fourfour}/{revision.revision_seq}"
    return {
        "resource": {
            "id": revision.id,
            "fourfour": revision.fourfour,
            "revision_seq": revision.revision_seq,
            "action": revision.action,
            "metadata": revision.metadata,
            "output_schema_id": revision.output_schema_id,
            "closed_at": revision.closed_at,
            "created_at": revision.created_at,
            "task_sets": [job_doc(j)["resource"] for j in revision.task_sets],
            "is_parent": False,
        },
        "links": {
            "show": path,
            "update": path,
            "discard": path,
            "apply": f"{path}/apply",
            "create_source": f"{path}/source",
            "list_sources": f"{path}/source",
        },
    }


def job_doc(job: TaskSet) -> dict[str, Any]:
    return {
        "resource": {
            "id": job.id,
            "status": job.status,
            "finished_at": job.finished_at,
            "output_schema_id": job.output_schema_id,
            "log": job.log,
            "created_at": job.created_at,
        },
        "links": {"show": f"{V1}/revision/{job.fourfour}/{job.revision_seq}/task_set/{job.id}"},
    }


def output_links(
    source_id: int, input_schema_id: int | str, output_id: int | str
) -> dict[str, str]:
    path = f"{V1}/source/{source_id}/schema/{input_schema_id}/output/{output_id}"
    return {"show": path, "rows": f"{path}/rows", "schema_errors": f"{path}/schema_errors"}


def input_links(source_id: int, input_schema_id: int | str) -> dict[str, Any]:
    path = f"{V1}/source/{source_id}/schema/{input_schema_id}"
    return {
        "show": path,
        "transform": path,
        "latest_output": f"{path}/output/latest",
        "output_schema_links": output_links(source_id, input_schema_id, "{output_schema_id}"),
    }


def output_resource(output: OutputSchema) -> dict[str, Any]:
    return {
        "id": output.id,
        "input_schema_id": output.input_schema_id,
        "error_count": output.error_count,
        "total_rows": len(output.converted.rows),
        "created_at": output.created_at,
        "completed_at": output.created_at,  # converted before the answer: done at once
        "finished_at": output.created_at,
        "sort_bys": [],
        "output_columns": [
            {
                "id": output.id * 1000 + c.position,
                "field_name": c.field_name,
                "display_name": c.display_name,
                "description": c.description,
                "position": c.position,
                "is_primary_key": c.is_primary_key,
                "transform": {
                    "id": output.id * 1000 + c.position,
                    "transform_expr": expression(c.input_field, c.soql_type),
                    "output_soql_type": c.soql_type,
                    "error_count": c.error_count,
                    "completed_at": output.created_at,
                    "finished_at": output.created_at,
                    "failed_at": None,
                },
            }
            for c in output.columns
        ],
    }


def input_resource(schema: InputSchema) -> dict[str, Any]:
    return {
        "id": schema.id,
        "source_id": schema.source_id,
        "total_rows": len(schema.rows),
        "input_columns": [
            {"id": schema.id * 1000 + n, "field_name": h, "position": n}
            for n, h in enumerate(schema.header)
        ],
        "output_schemas": [output_resource(o) for o in schema.output_schemas],
    }


def source_doc(source: Source) -> dict[str, Any]:
    path = f"{V1}/source/{source.id}"
    return {
        "resource": {
            "id": source.id,
            "source_type": source.source_type,
            "parse_options": source.parse_options,
            "content_type": source.content_type,
            "schemas": [input_resource(s) for s in source.schemas],
            "finished_at": source.finished_at,
            "failed_at": source.failed_at,
            "failure_details": {"message": source.failure} if source.failure else None,
            "created_at": source.created_at,
            "revision": {"fourfour": source.fourfour, "revision_seq": source.revision_seq},
        },
        "links": {
            "show": path,
            "initiate": f"{path}/initiate",
            "chunk": f"{path}/chunk/{{seq_num}}/{{byte_offset}}",
            "commit": f"{path}/commit/{{seq_num}}/{{byte_offset}}",
            "input_schema_links": input_links(source.id, "{input_schema_id}"),
        },
    }


def rows_doc(output: OutputSchema, offset: int, limit: int, errors_only: bool) -> list[Any]:
    """socrata-py's ``OutputSchema.rows``/``schema_errors``: a header object, then
    ``{"row": [cell, ...]}`` with each cell ``{"ok": value}`` or ``{"error": {"message"}}``."""
    numbers = sorted(output.converted.errors) if errors_only else range(len(output.converted.rows))
    page = list(numbers)[offset : offset + limit]
    columns = sorted(output.columns, key=lambda c: c.position)
    body: list[Any] = [{"output_columns": output_resource(output)["output_columns"]}]
    for number in page:
        row, failed = output.converted.rows[number], output.converted.errors.get(number, {})
        body.append(
            {
                "row": [
                    {"error": {"message": failed[c.field_name]}}
                    if c.field_name in failed
                    else {"ok": row.get(c.field_name)}
                    for c in columns
                ]
            }
        )
    return body


# -- routes ----------------------------------------------------------------------------------


class Dsmapi:
    """Handlers over one ``Publishing`` state, guarded like the app's other writes."""

    def __init__(self, app: SocrataApp, publishing: Publishing) -> None:
        self.app = app
        self.publishing = publishing

    def routes(self) -> list[Route]:
        rev = f"{V1}/revision/{{fourfour}}/{{seq:int}}"
        src = f"{V1}/source/{{source_id:int}}"
        out = f"{src}/schema/{{input_id:int}}/output/{{output_id:int}}"
        table: list[tuple[str, Handler, list[str]]] = [
            (f"{V1}/revision", self.new_revision, ["POST"]),
            (f"{V1}/revision/{{fourfour}}", self.open_revision, ["POST"]),
            (rev, self.revision, ["GET", "PUT", "DELETE"]),
            (f"{rev}/apply", self.apply, ["PUT"]),
            (f"{rev}/source", self.revision_sources, ["GET", "POST"]),
            (f"{rev}/task_set/{{job_id:int}}", self.job, ["GET"]),
            (src, self.source, ["GET"]),
            (f"{src}/initiate", self.initiate, ["POST"]),
            (f"{src}/chunk/{{seq_num:int}}/{{byte_offset:int}}", self.chunk, ["POST"]),
            (f"{src}/commit/{{seq_num:int}}/{{byte_offset:int}}", self.commit, ["POST"]),
            (f"{src}/schema/{{input_id:int}}", self.input_schema, ["GET", "POST"]),
            (f"{src}/schema/{{input_id:int}}/output/latest", self.latest_output, ["GET"]),
            (out, self.output_schema, ["GET"]),
            (f"{out}/rows", self.output_rows, ["GET"]),
            (f"{out}/schema_errors", self.output_errors, ["GET"]),
        ]
        return [Route(p, self.app.guard(self.authorised(h)), methods=m) for p, h, m in table]

    def authorised(self, handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            denied = self.app.writer(request)
            if denied is not None:
                return denied
            try:
                return await handler(request)
            except (PublishingError, TransformError, RowError) as exc:
                return error(400, "invalid_request", str(exc))

        return checked

    # revisions

    async def new_revision(self, request: Request) -> Response:
        body = await _object(request)
        revision = self.publishing.open_revision(
            None, body.get("action") or {"type": "update"}, body.get("metadata") or {}
        )
        return respond(revision_doc(revision), 201)

    async def open_revision(self, request: Request) -> Response:
        fourfour = request.path_params["fourfour"]
        if self.app.store.get(fourfour) is None:
            return not_found(f"dataset {fourfour}")
        body = await _object(request)
        action = body.get("action") or {}
        if action.get("type") not in ("replace", "update", "delete"):
            raise PublishingError("action.type must be replace, update or delete")
        revision = self.publishing.open_revision(fourfour, action, body.get("metadata") or {})
        return respond(revision_doc(revision), 201)

    def _revision(self, request: Request) -> Revision | None:
        params = request.path_params
        return self.publishing.revision(params["fourfour"], params["seq"])

    async def revision(self, request: Request) -> Response:
        revision = self._revision(request)
        if revision is None:
            return not_found("revision")
        if request.method == "PUT":
            self.publishing.update_revision(revision, await _object(request))
        elif request.method == "DELETE":
            self.publishing.discard(revision)
        return respond(revision_doc(revision))

    async def apply(self, request: Request) -> Response:
        revision = self._revision(request)
        if revision is None:
            return not_found("revision")
        body = await _object(request)
        job = self.publishing.apply(revision, body.get("output_schema_id"))
        with self.publishing.lock:
            lose = self.publishing.lose_apply_answers > 0
            self.publishing.lose_apply_answers -= lose
        if lose:
            return error(502, "bad_gateway", "The apply answer was lost on the way")
        return respond(job_doc(job))

    async def job(self, request: Request) -> Response:
        revision = self._revision(request)
        jobs = [
            j
            for j in (revision.task_sets if revision else [])
            if j.id == request.path_params["job_id"]
        ]
        return respond(job_doc(jobs[0])) if jobs else not_found("task set")

    async def revision_sources(self, request: Request) -> Response:
        revision = self._revision(request)
        if revision is None:
            return not_found("revision")
        if request.method == "GET":
            return respond([source_doc(s) for s in revision.sources])
        source = self.publishing.create_source(revision, await _object(request))
        return respond(source_doc(source), 201)

    # sources

    def _source(self, request: Request) -> Source | None:
        return self.publishing.source(request.path_params["source_id"])

    async def source(self, request: Request) -> Response:
        source = self._source(request)
        return respond(source_doc(source)) if source else not_found("source")

    async def initiate(self, request: Request) -> Response:
        source = self._source(request)
        if source is None:
            return not_found("source")
        source.content_type = str((await _object(request)).get("content_type") or "text/csv")
        return respond(
            {
                "preferred_chunk_size": self.publishing.chunk_size,
                "preferred_upload_parallelism": self.publishing.parallelism,
            }
        )

    async def chunk(self, request: Request) -> Response:
        source = self._source(request)
        if source is None:
            return not_found("source")
        params = request.path_params
        data = await request.body()
        self.publishing.add_chunk(source, params["seq_num"], params["byte_offset"], data)
        return respond({"seq_num": params["seq_num"], "byte_offset": params["byte_offset"]})

    async def commit(self, request: Request) -> Response:
        source = self._source(request)
        if source is None:
            return not_found("source")
        params = request.path_params
        # Parsing a large file is slow Python: off the event loop, so reads go on.
        await run_in_threadpool(
            self.publishing.commit, source, params["seq_num"], params["byte_offset"]
        )
        return respond(source_doc(source))

    # schemas

    def _input(self, request: Request) -> tuple[Source, InputSchema] | None:
        source = self._source(request)
        schemas = [
            s for s in (source.schemas if source else []) if s.id == request.path_params["input_id"]
        ]
        return (source, schemas[0]) if source and schemas else None

    async def input_schema(self, request: Request) -> Response:
        found = self._input(request)
        if found is None:
            return not_found("input schema")
        source, schema = found
        if request.method == "POST":
            output = await run_in_threadpool(
                self.publishing.transform, schema, await _object(request)
            )
            return respond(self._output_doc(source, output), 201)
        links = input_links(source.id, schema.id)
        links["output_schema_links"] = output_links(source.id, schema.id, "{output_schema_id}")
        return respond({"resource": input_resource(schema), "links": links})

    def _output_doc(self, source: Source, output: OutputSchema) -> dict[str, Any]:
        return {
            "resource": output_resource(output),
            "links": output_links(source.id, output.input_schema_id, output.id),
        }

    async def latest_output(self, request: Request) -> Response:
        found = self._input(request)
        if found is None or not found[1].output_schemas:
            return not_found("output schema")
        return respond(self._output_doc(found[0], max(found[1].output_schemas, key=lambda o: o.id)))

    def _output(self, request: Request) -> tuple[Source, OutputSchema] | None:
        found = self._input(request)
        outputs = [
            o
            for o in (found[1].output_schemas if found else [])
            if o.id == request.path_params["output_id"]
        ]
        return (found[0], outputs[0]) if found and outputs else None

    async def output_schema(self, request: Request) -> Response:
        found = self._output(request)
        return respond(self._output_doc(*found)) if found else not_found("output schema")

    async def output_rows(self, request: Request, errors_only: bool = False) -> Response:
        found = self._output(request)
        if found is None:
            return not_found("output schema")
        offset = int(request.query_params.get("offset", 0))
        limit = int(request.query_params.get("limit", 500))
        return respond(rows_doc(found[1], offset, limit, errors_only))

    async def output_errors(self, request: Request) -> Response:
        return await self.output_rows(request, errors_only=True)


async def _object(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise PublishingError("the request body must be a JSON object")
    return body
