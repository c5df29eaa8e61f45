"""A Socrata-compatible ASGI app for tests: SODA 2 rows, the /api/views document, writes.

Each behaviour follows a page of Socrata's developer documentation (cited where it is
implemented) and, where recordings of a real portal exist (tests/socrata/recorded/), the
recordings decide: content types, the X-SODA2-* headers, the two error shapes, the default
page of 1,000 rows and ``calendar_date`` showing as ``floating_timestamp`` in headers.

- Reads: ``GET /resource/{id}.json|.csv`` (https://dev.socrata.com/docs/endpoints/,
  https://dev.socrata.com/docs/queries/, https://dev.socrata.com/docs/paging/).
- Writes: ``POST /resource/{id}.json`` upsert, ``PUT`` replace, ``DELETE
  /resource/{id}/{row}.json`` (https://dev.socrata.com/publishers/soda-producer/upsert,
  .../replace, .../direct-row-manipulation). Bodies are read as JSON whatever the
  Content-Type (sodapy 2.2.0 sends none), or as CSV when it says text/csv.
- Views: ``GET/PUT/DELETE /api/views/{id}.json``, ``GET /api/views/{id}/files/{assetId}``, ``POST /api/views.json`` (create, as
  sodapy's ``create``), ``POST /api/views/{id}/publication.json``, ``PUT
  /api/views/{id}.json?method=setPermission`` (sodapy 2.2.0's calls; no recording).
- Auth (https://dev.socrata.com/docs/authentication/, https://dev.socrata.com/docs/app-tokens/,
  https://dev.socrata.com/docs/response-codes/): ``X-App-Token`` must be a known token when
  sent; writes need HTTP Basic with a known key id/secret: 401 for wrong ones, 403 for none
  or for a read-only user. The error codes of 400/401/403/429 are not in the recordings:
  they use the recorded shape ``{"code", "error": true, "message", "data"}``.
- Publishing: the Dataset Management API socrata-py calls (``/api/publishing/v1/...``),
  in ``dsmapi.py`` over the state in ``publishing.py``.
- Throttling: ``throttle(n, retry_after)`` (or ``POST /__test__/throttle``) makes the next
  ``n`` requests answer 429 with ``Retry-After``; ``throttle(n, status=400, path=...,
  method=...)`` refuses or fails the next ``n`` requests to one route instead (a test
  counts ``throttle.matched`` to see whether a client sent one again).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import threading
from collections.abc import Awaitable, Callable, Mapping
from email.utils import formatdate
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.socrata import soql
from tests.socrata.publishing import Publishing
from tests.socrata.store import Dataset, Query, RowError, Store, csv_cell
from tests.socrata.views import create_from_view_request, view_document

ROWS_JSON = "application/json;charset=utf-8"  # exactly as recorded on /resource
API_JSON = "application/json; charset=utf-8"  # as recorded on /api/views and on errors
CSV = "text/csv; charset=UTF-8"
DEFAULT_LIMIT = 1000  # https://dev.socrata.com/docs/paging/ and every recorded unpaged GET

Handler = Callable[[Request], Awaitable[Response]]


def error(
    status: int, code: str, message: str, data: dict[str, Any] | None = None, *, views: bool = False
) -> Response:
    """Socrata's JSON error, as recorded: on /api/views it also comes as X-Error-* headers."""
    body = {"code": code, "error": True, "message": message, "data": data or {}}
    headers = {"Content-Type": API_JSON}
    if views:
        headers.update({"X-Error-Code": code, "X-Error-Message": message})
    return Response(json.dumps(body, indent=2) + "\n", status, headers=headers)


class Throttle:
    """The next ``remaining`` requests get 429 with ``Retry-After: retry_after``.

    ``status`` other than 429 makes them a plain refusal or failure instead (a 400, a 503:
    no ``Retry-After``); ``path`` (a prefix) and ``method`` limit which requests count.
    ``seen`` counts every request, ``matched`` those ``path`` and ``method`` picked since
    the last ``set``: what a test counts to see whether a refusal was sent again.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.remaining = 0
        self.retry_after = 1
        self.status = 429
        self.path = "/"
        self.method: str | None = None
        self.seen = 0
        self.matched = 0

    def set(
        self,
        requests: int,
        retry_after: int = 1,
        *,
        status: int = 429,
        path: str = "/",
        method: str | None = None,
    ) -> None:
        with self.lock:
            self.remaining, self.retry_after = requests, retry_after
            self.status, self.path, self.method, self.matched = status, path, method, 0

    def take(self, path: str = "/", method: str = "GET") -> int | None:
        """The seconds of ``Retry-After`` when this request is to be refused, else None."""
        with self.lock:
            self.seen += 1
            if not path.startswith(self.path) or self.method not in (None, method):
                return None
            self.matched += 1
            if self.remaining <= 0:
                return None
            self.remaining -= 1
            return self.retry_after

    def refusal(self, retry_after: int) -> Response:
        if self.status == 429:
            response = error(429, "too_many_requests", "Too many requests")
            response.headers["Retry-After"] = str(retry_after)
            return response
        if self.status >= 500:
            return error(self.status, "internal_error", "The server is unavailable")
        return error(self.status, "invalid_request", "Refused by the test server's switch")


class SocrataApp:
    """The app and its knobs: ``store``, known ``app_tokens``, ``users`` (id -> (secret, can_write))."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        app_tokens: set[str] | None = None,
        users: dict[str, tuple[str, bool]] | None = None,
    ) -> None:
        self.store = store or Store()
        self.app_tokens = app_tokens or set()
        self.users = users or {}
        self.throttle = Throttle()
        self.publishing = Publishing(self.store)
        # Imported here: dsmapi builds on this module's error shapes and guards.
        from tests.socrata.dsmapi import Dsmapi

        self.asgi = Starlette(
            routes=[
                Route(
                    "/resource/{name}", self.guard(self.resource), methods=["GET", "POST", "PUT"]
                ),
                Route(
                    "/resource/{dataset_id}/{row}",
                    self.guard(self.resource_row),
                    methods=["DELETE"],
                ),
                Route("/api/views.json", self.guard(self.create_view), methods=["POST"]),
                Route("/api/views/{name}", self.guard(self.view), methods=["GET", "PUT", "DELETE"]),
                Route("/api/views/{dataset_id}/files/{asset_id}", self.guard(self.attachment)),
                Route(
                    "/api/views/{dataset_id}/publication.json",
                    self.guard(self.publish),
                    methods=["POST"],
                ),
                Route("/__test__/throttle", self.set_throttle, methods=["POST"]),
                *Dsmapi(self, self.publishing).routes(),
            ],
            middleware=[Middleware(GZipMiddleware, minimum_size=0)],
        )

    # -- cross-cutting: throttling and credentials --------------------------------------

    def guard(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            retry_after = self.throttle.take(request.url.path, request.method)
            if retry_after is not None:
                return self.throttle.refusal(retry_after)
            # https://dev.socrata.com/docs/app-tokens: a header, or the $$app_token parameter.
            token = request.headers.get("x-app-token") or request.query_params.get("$$app_token")
            if token is not None and token not in self.app_tokens:
                return error(403, "invalid_app_token", "Invalid app_token specified")
            return await handler(request)

        return guarded

    def user(self, request: Request) -> tuple[str, bool] | Response | None:
        """(key id, may write) for valid Basic credentials, a 401 for wrong ones, None for none."""
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            key_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return error(401, "authentication_required", "Invalid authorization header")
        known = self.users.get(key_id)
        if known is None or known[0] != secret:
            # Never echo the credentials: name only what went wrong.
            return error(401, "authentication_required", "Invalid username or password")
        return key_id, known[1]

    def writer(self, request: Request, views: bool = False) -> Response | None:
        """None when the request may write; else Socrata's 401/403."""
        user = self.user(request)
        if isinstance(user, Response):
            return user
        if user is None:
            return error(403, "permission_denied", "You must be logged in to write", views=views)
        if not user[1]:
            return error(
                403, "permission_denied", "You do not have permission to write", views=views
            )
        return None

    def readable(self, request: Request, dataset: Dataset) -> Response | None:
        if dataset.public and dataset.published:
            return None
        user = self.user(request)
        if isinstance(user, Response):
            return user
        if user is None:
            return error(
                403, "authentication_required", "You must be logged in to access this dataset"
            )
        return None

    async def set_throttle(self, request: Request) -> Response:
        body = await request.json()
        self.throttle.set(int(body.get("requests", 1)), int(body.get("retry_after", 1)))
        return Response(status_code=204)

    # -- /resource ------------------------------------------------------------------------

    async def resource(self, request: Request) -> Response:
        dataset_id, _, fmt = request.path_params["name"].rpartition(".")
        dataset = self.store.get(dataset_id)
        if dataset is None or fmt not in ("json", "csv"):
            return error(404, "dataset.missing", "Not found", {"id": dataset_id or fmt})
        if request.method == "GET":
            return await self.read_rows(request, dataset, fmt)
        denied = self.writer(request)
        if denied is not None:
            return denied
        return await self.write_rows(request, dataset)

    async def read_rows(self, request: Request, dataset: Dataset, fmt: str) -> Response:
        denied = self.readable(request, dataset)
        if denied is not None:
            return denied
        try:
            fields, rows = await run_in_threadpool(
                self.store.query, dataset, parse_query(request, dataset)
            )
        except (soql.SoqlError, ValueError) as exc:
            return error(400, "query.compiler.malformed", str(exc))
        headers = soda2_headers(dataset, fields)
        if fmt == "csv":
            headers["Content-Type"] = CSV
            return Response(rows_csv(fields, rows), headers=headers)
        headers["Content-Type"] = ROWS_JSON
        return Response(rows_json(rows), headers=headers)

    async def write_rows(self, request: Request, dataset: Dataset) -> Response:
        try:
            rows = await read_payload(request)
            # In a worker thread: reads go on being served while a large write runs, so a
            # concurrent reader really can observe a half-done write if the store allowed one.
            write = self.store.upsert if request.method == "POST" else self.store.replace
            result = await run_in_threadpool(write, dataset, rows)
        except RowError as exc:
            return error(400, "invalid_request", str(exc), {"id": dataset.id})
        return Response(json.dumps(result.body()), headers={"Content-Type": API_JSON})

    async def resource_row(self, request: Request) -> Response:
        dataset_id = request.path_params["dataset_id"]
        row_id = request.path_params["row"].rsplit(".", 1)[0]
        dataset = self.store.get(dataset_id)
        if dataset is None:
            return error(404, "dataset.missing", "Not found", {"id": dataset_id})
        denied = self.writer(request)
        if denied is not None:
            return denied
        if not self.store.delete_row(dataset, row_id):
            return error(404, "row.missing", "Row not found", {"id": dataset_id, "row": row_id})
        return Response(status_code=200)

    # -- /api/views -------------------------------------------------------------------------

    async def view(self, request: Request) -> Response:
        dataset_id = request.path_params["name"].removesuffix(".json")
        dataset = self.store.get(dataset_id)
        if dataset is None:
            return error(404, "not_found", "Not found", {"id": dataset_id}, views=True)
        if request.method == "GET":
            return self.readable(request, dataset) or view_response(dataset)
        denied = self.writer(request, views=True)
        if denied is not None:
            return denied
        if request.method == "DELETE":
            self.store.drop(dataset_id)
            return Response(status_code=200)
        if request.query_params.get("method") == "setPermission":
            dataset.public = request.query_params.get("value") == "public.read"
            return Response(status_code=200)
        update = await read_json(request)
        if not isinstance(update, dict):
            return error(400, "invalid_request", "a JSON object expected", views=True)
        with self.store.lock:
            dataset.view.update({k: v for k, v in update.items() if k not in ("id", "columns")})
            if "name" in update:
                dataset.name = str(update["name"])
        return view_response(dataset)

    async def attachment(self, request: Request) -> Response:
        """An attachment download as recorded: octet-stream, named in Content-disposition."""
        dataset = self.store.get(request.path_params["dataset_id"])
        found = dataset.attachments.get(request.path_params["asset_id"]) if dataset else None
        if dataset is None or found is None:
            return error(
                404, "not_found", "Not found", {"id": request.path_params["asset_id"]}, views=True
            )
        denied = self.readable(request, dataset)
        if denied is not None:
            return denied
        name, data = found
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-disposition": f"attachment; filename={name}",
        }
        return Response(data, headers=headers)

    async def create_view(self, request: Request) -> Response:
        denied = self.writer(request, views=True)
        if denied is not None:
            return denied
        try:
            dataset = create_from_view_request(self.store, await read_json(request))
        except (RowError, ValueError, KeyError, TypeError) as exc:
            return error(400, "invalid_request", f"cannot create the dataset: {exc}", views=True)
        return view_response(dataset)

    async def publish(self, request: Request) -> Response:
        dataset = self.store.get(request.path_params["dataset_id"])
        if dataset is None:
            return error(
                404, "not_found", "Not found", {"id": request.path_params["dataset_id"]}, views=True
            )
        denied = self.writer(request, views=True)
        if denied is not None:
            return denied
        dataset.published = True
        return view_response(dataset)


def view_response(dataset: Dataset) -> Response:
    return Response(
        json.dumps(view_document(dataset), indent=2), headers={"Content-Type": API_JSON}
    )


# SoQL parameters the test server does not implement: refused, never silently ignored.
UNSUPPORTED = ("$group", "$having", "$q", "$query", "$search")
KNOWN = (
    "$select",
    "$where",
    "$order",
    "$limit",
    "$offset",
    "$$exclude_system_fields",
    "$$app_token",
)


def parse_query(request: Request, dataset: Dataset) -> Query:
    params = request.query_params
    for name in params:
        if name in UNSUPPORTED or (name.startswith("$") and name not in KNOWN):
            raise soql.SoqlError(f"{name} is not supported by the Socrata test server")
    try:
        limit = int(params.get("$limit", DEFAULT_LIMIT))
        offset = int(params.get("$offset", 0))
    except ValueError:
        raise soql.SoqlError("$limit and $offset must be whole numbers") from None
    if limit < 0 or offset < 0:
        raise soql.SoqlError("$limit and $offset must not be negative")
    return Query(
        select=params.get("$select"),
        where=with_simple_filters(params.get("$where"), params, dataset),
        order=params.get("$order"),
        limit=limit,
        offset=offset,
        system_fields=params.get("$$exclude_system_fields", "true").lower() == "false",
    )


def with_simple_filters(
    where: str | None, params: Mapping[str, str], dataset: Dataset
) -> str | None:
    """``?field=value`` equality filters (https://dev.socrata.com/docs/filtering), ANDed
    into ``$where`` as quoted SoQL literals, so they go through the same parser."""
    parts = [f"({where})"] if where else []
    for name, value in params.items():
        if name.startswith("$"):
            continue
        if dataset.column(name) is None:
            raise soql.SoqlError(f"no such column: {name}")
        quoted = value.replace("'", "''")
        parts.append(f"{name} = '{quoted}'")
    return " AND ".join(parts) or None


def soda2_headers(dataset: Dataset, fields: list[str]) -> dict[str, str]:
    types = {c.field_name: c.soda2_type for c in dataset.columns}
    system = {
        ":id": "row_identifier",
        ":created_at": "fixed_timestamp",
        ":updated_at": "fixed_timestamp",
    }
    modified = formatdate(dataset.rows_updated_at, usegmt=True)
    return {
        "X-SODA2-Fields": json.dumps(fields, separators=(",", ":")),
        "X-SODA2-Types": json.dumps(
            [types.get(f) or system[f] for f in fields], separators=(",", ":")
        ),
        "X-SODA2-Data-Out-Of-Date": "false",
        "X-SODA2-Truth-Last-Modified": modified,
        "X-SODA2-Secondary-Last-Modified": modified,
        "Last-Modified": modified,
    }


def rows_json(rows: list[dict[str, Any]]) -> str:
    # Socrata streams one row per line with a leading comma; kept so byte-level readers agree.
    return "[" + "\n,".join(json.dumps(r, separators=(",", ":")) for r in rows) + "]\n"


def rows_csv(fields: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(fields)
    writer.writerows([csv_cell(r.get(f)) for f in fields] for r in rows)
    return out.getvalue()


async def read_json(request: Request) -> Any:
    body = await request.body()
    try:
        return json.loads(body) if body else None
    except ValueError as exc:
        raise RowError(f"the request body is not JSON: {exc}") from None


async def read_payload(request: Request) -> list[dict[str, Any]]:
    """Rows from a JSON array (or one object) or, for Content-Type text/csv, a CSV with a header."""
    if request.headers.get("content-type", "").startswith("text/csv"):
        text = (await request.body()).decode("utf-8")
        return [
            {k: (v if v != "" else None) for k, v in row.items()}
            for row in csv.DictReader(io.StringIO(text))
        ]
    payload = await read_json(request)
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list):
        raise RowError("the request body must be a JSON array of row objects")
    return payload
