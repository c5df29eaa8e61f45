"""HTTP sources against a real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread).

The server answers each path from a script of replies (the last one repeats): 304 on
matching validators, 500 then 200, a body cut short of its Content-Length, a wrong
content type, a 404, a body over ``max_bytes``. Downloads go through ``extract`` as a
run pulls them; one test publishes a CSV URL to a real Datasette portal.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from civicflow.pipeline import run_dataset
from civicflow.settings import Settings, load_settings
from civicflow.sources import ExtractError, SourceUnchanged, extract
from civicflow.sources.http import (
    RetryPolicy,
    commit_http_validators,
    download,
    forget_http_validators,
    public_url,
    state_path,
)
from civicflow.spec.models import DatasetSpec

PROJECT = Path(__file__).resolve().parents[1]
TOKEN = "s3cr3t-t0ken-in-the-query"
CSV_BODY = b"id,name,opened\n1,pothole,2024-05-01T08:00:00\n2,graffiti,2024-05-02T09:30:00\n"
FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "integer", "description": "Request number.", "nullable": False},
    {"name": "name", "type": "string", "description": "What was requested."},
    {"name": "opened", "type": "datetime", "description": "When it was opened."},
]
FAST = RetryPolicy(first_backoff=0.05, max_backoff=0.2, max_wait=5)


# -- the test server --------------------------------------------------------------------------


@dataclass
class Reply:
    """One answer. ``length`` overrides Content-Length (None: the body's; -1: none, the
    body ends when the connection closes)."""

    status: int = 200
    body: bytes = CSV_BODY
    content_type: str | None = "text/csv; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None


@dataclass
class Resource:
    """A file with validators: answers 304 when the request's validators match."""

    body: bytes
    content_type: str = "text/csv"
    etag: str | None = '"v1"'
    last_modified: str | None = "Wed, 01 May 2024 08:00:00 GMT"

    def reply(self, headers: Any) -> Reply:
        matches = (self.etag and headers.get("If-None-Match") == self.etag) or (
            not self.etag
            and self.last_modified
            and headers.get("If-Modified-Since") == self.last_modified
        )
        extra = {"ETag": self.etag, "Last-Modified": self.last_modified}
        extra = {k: v for k, v in extra.items() if v}
        if matches:
            return Reply(status=304, body=b"", content_type=None, headers=extra)
        return Reply(body=self.body, content_type=self.content_type, headers=extra)


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes: dict[str, list[Reply] | Resource] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def reply_for(self, path: str, headers: Any) -> Reply:
        route = self.routes.get(path)
        if isinstance(route, Resource):
            return route.reply(headers)
        if not route:
            return Reply(status=404, body=b"no such file", content_type="text/plain")
        return route.pop(0) if len(route) > 1 else route[0]

    def hits(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.requests if urlsplit(p).path == path]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileServer

    def do_GET(self) -> None:
        self.server.requests.append((self.path, dict(self.headers)))
        reply = self.server.reply_for(urlsplit(self.path).path, self.headers)
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.length != -1:
            length = len(reply.body) if reply.length is None else reply.length
            self.send_header("Content-Length", str(length))
        if reply.length is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def server() -> Iterator[FileServer]:
    httpd = FileServer()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CIVICFLOW_PROJECT_DIR", str(PROJECT))
    monkeypatch.setenv("CIVICFLOW_VAR_DIR", str(tmp_path / "var"))
    return load_settings()


def make_spec(url: str, fields: list[dict[str, Any]] = FIELDS, **source: Any) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "id": "requests_http",
            "title": "Service requests",
            "description": "Service requests, downloaded from the department's server.",
            "department": "Public Works",
            "steward": {"name": "Steward", "email": "steward@lacity.example"},
            "license": "CC0-1.0",
            "update_frequency": "daily",
            "category": "Service Requests",
            "source": {"kind": "http", "url": url, "format": "csv", "retries": 2, **source},
            "fields": fields,
        }
    )


def pull(spec: DatasetSpec, settings: Settings, run_id: str = "run-1") -> Any:
    return extract(spec, settings, run_id)


def unreadable(spec: DatasetSpec, settings: Settings) -> ExtractError:
    """A download that succeeded but cannot be read (the raw copy stays, for the report)."""
    with pytest.raises(ExtractError) as caught:
        pull(spec, settings)
    return caught.value


def refused(spec: DatasetSpec, settings: Settings) -> ExtractError:
    with pytest.raises(ExtractError) as caught:
        pull(spec, settings)
    error = caught.value
    assert TOKEN not in str(error) and TOKEN not in (error.detail or "")
    assert not list((settings.raw_dir / spec.id).glob("*")), "nothing is kept of a refused pull"
    return error


# -- formats -----------------------------------------------------------------------------------


def test_a_csv_url_is_downloaded_into_the_raw_copy_and_typed(
    server: FileServer, settings: Settings
) -> None:
    server.routes["/requests.csv"] = [Reply()]
    ext = pull(make_spec(f"{server.base}/requests.csv"), settings)
    assert ext.raw_path.name == "run-1.body"
    assert ext.raw_path.read_bytes() == CSV_BODY
    assert ext.frame["id"].tolist() == [1, 2]
    assert str(ext.frame.loc[2, "opened"]) == "2024-05-02 09:30:00"
    assert server.hits("/requests.csv")[0]["Accept"].startswith("text/csv")


def test_json_records_nested_values_become_json_text(
    server: FileServer, settings: Settings
) -> None:
    records = [
        {"id": 1, "name": "pothole", "opened": "2024-05-01T08:00:00", "tags": ["road", "urgent"]},
        {"id": 2.0, "name": None, "opened": "2024-05-02T09:30:00", "extra": {"a": 1}},
    ]
    server.routes["/a.json"] = [
        Reply(body=json.dumps(records).encode(), content_type="application/json")
    ]
    server.routes["/b.json"] = [
        Reply(
            body=json.dumps({"result": {"records": records}}).encode(),
            content_type="application/vnd.api+json",
        )
    ]
    fields = [*FIELDS, {"name": "tags", "type": "string", "description": "Tags as JSON."}]
    plain = pull(make_spec(f"{server.base}/a.json", fields, format="json"), settings)
    nested = pull(
        make_spec(f"{server.base}/b.json", fields, format="json", records="result.records"),
        settings,
        "run-2",
    )
    for ext in (plain, nested):
        assert ext.raw.column_names == ["id", "name", "opened", "tags", "extra"]
        assert ext.raw.column("id").to_pylist() == ["1", "2"]  # 2.0 is the whole number 2
        assert ext.raw.column("tags").to_pylist() == ['["road","urgent"]', None]
        assert ext.raw.column("extra").to_pylist() == [None, '{"a":1}']
        assert ext.frame["id"].tolist() == [1, 2]


def test_json_shapes_that_are_not_records_are_named(server: FileServer, settings: Settings) -> None:
    server.routes["/obj.json"] = [Reply(body=b'{"data": []}', content_type="application/json")]
    server.routes["/mixed.json"] = [Reply(body=b'[{"id": 1}, 7]', content_type="application/json")]
    error = unreadable(make_spec(f"{server.base}/obj.json", format="json"), settings)
    assert "the JSON document is an object; set source.records" in str(error)
    assert error.detail is not None and error.detail.endswith("top-level keys: 'data'")
    error = unreadable(
        make_spec(f"{server.base}/obj.json", format="json", records="rows"), settings
    )
    assert "no 'rows' in the JSON document (source.records)" in str(error)
    error = unreadable(make_spec(f"{server.base}/mixed.json", format="json"), settings)
    assert "row 2 (record 2) is not a JSON object" in str(error)


def test_geojson_features_become_rows_with_centroids(
    server: FileServer, settings: Settings
) -> None:
    collection = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"id": 1, "name": "Council 1"},
                "geometry": {"type": "Point", "coordinates": [-118.25, 34.05]},
            }
        ],
    }
    server.routes["/nc.geojson"] = [
        Reply(body=json.dumps(collection).encode(), content_type="application/geo+json")
    ]
    fields = [
        {"name": "id", "type": "integer", "description": "Council number."},
        {"name": "name", "type": "string", "description": "Council name."},
        {
            "name": "centroid_latitude",
            "type": "number",
            "description": "Centre latitude.",
            "semantic": "latitude",
            "precision": 3,
        },
    ]
    ext = pull(make_spec(f"{server.base}/nc.geojson", fields, format="geojson"), settings)
    assert ext.raw.column("centroid_latitude").to_pylist() == ["34.05"]
    assert ext.frame["id"].tolist() == [1]


# -- ETag / Last-Modified ------------------------------------------------------------------------


def test_an_unchanged_file_is_not_downloaded_again_once_its_run_is_committed(
    server: FileServer, settings: Settings
) -> None:
    server.routes["/requests.csv"] = Resource(CSV_BODY)
    spec = make_spec(f"{server.base}/requests.csv")
    pull(spec, settings)
    assert "If-None-Match" not in server.hits("/requests.csv")[0]
    assert state_path(settings, spec, pending=True).is_file()
    assert commit_http_validators(settings, spec)
    state = json.loads(state_path(settings, spec).read_text())
    assert (state["etag"], state["last_modified"]) == ('"v1"', "Wed, 01 May 2024 08:00:00 GMT")
    assert "127.0.0.1" not in json.dumps(state)  # validators, not the URL

    with pytest.raises(SourceUnchanged, match=r"not modified .* \(HTTP 304\)"):
        pull(spec, settings, "run-2")
    second = server.hits("/requests.csv")[1]
    assert second["If-None-Match"] == '"v1"'
    assert second["If-Modified-Since"] == "Wed, 01 May 2024 08:00:00 GMT"
    assert not (settings.raw_dir / spec.id / "run-2.body").exists()

    server.routes["/requests.csv"] = Resource(
        CSV_BODY + b"3,tree,2024-05-03T10:00:00\n", etag='"v2"'
    )
    assert pull(spec, settings, "run-3").rows == 3


def test_the_extract_carries_the_servers_last_modified_for_freshness(
    server: FileServer, settings: Settings
) -> None:
    server.routes["/requests.csv"] = Resource(CSV_BODY)
    assert pull(make_spec(f"{server.base}/requests.csv"), settings).source_modified == (
        "2024-05-01T08:00:00+00:00"
    )
    server.routes["/silent.csv"] = Resource(CSV_BODY, last_modified=None)
    assert pull(make_spec(f"{server.base}/silent.csv"), settings, "run-2").source_modified is None


def test_a_download_whose_run_was_not_committed_is_downloaded_again(
    server: FileServer, settings: Settings
) -> None:
    server.routes["/requests.csv"] = Resource(CSV_BODY)
    spec = make_spec(f"{server.base}/requests.csv")
    pull(spec, settings)  # say this run is rejected: the pipeline commits nothing
    assert pull(spec, settings, "run-2").rows == 2
    assert "If-None-Match" not in server.hits("/requests.csv")[1]


def test_last_modified_alone_is_sent_back(server: FileServer, settings: Settings) -> None:
    server.routes["/requests.csv"] = Resource(CSV_BODY, etag=None)
    spec = make_spec(f"{server.base}/requests.csv")
    pull(spec, settings)
    commit_http_validators(settings, spec)
    with pytest.raises(SourceUnchanged):
        pull(spec, settings, "run-2")
    assert "If-None-Match" not in server.hits("/requests.csv")[1]


def test_a_spec_edit_downloads_again_and_forget_drops_the_validators(
    server: FileServer, settings: Settings
) -> None:
    server.routes["/requests.csv"] = Resource(CSV_BODY)
    spec = make_spec(f"{server.base}/requests.csv")
    pull(spec, settings)
    commit_http_validators(settings, spec)
    edited = spec.model_copy(update={"title": "Service requests (renamed)"})
    assert pull(edited, settings, "run-2").rows == 2  # the published output may differ
    commit_http_validators(settings, edited)
    forget_http_validators(settings, edited)
    assert pull(edited, settings, "run-3").rows == 2
    assert "If-None-Match" not in server.hits("/requests.csv")[2]


# -- retries ---------------------------------------------------------------------------------------


def test_a_server_error_is_retried_then_the_file_downloaded(
    server: FileServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    server.routes["/requests.csv"] = [
        Reply(status=500, body=b"oops", content_type="text/plain"),
        Reply(status=503, body=b"busy", content_type="text/plain", headers={"Retry-After": "1"}),
        Reply(),
    ]
    with caplog.at_level(logging.WARNING, logger="civicflow.sources.http"):
        assert pull(make_spec(f"{server.base}/requests.csv"), settings).rows == 2
    assert len(server.hits("/requests.csv")) == 3
    waits = [r.getMessage() for r in caplog.records]
    assert "HTTP 500, retrying in 0.5 s" in waits[0]
    assert "HTTP 503, retrying in 1.0 s" in waits[1]  # Retry-After honoured


def test_server_errors_past_the_retries_give_up_naming_the_url_without_its_query(
    server: FileServer, settings: Settings
) -> None:
    server.routes["/requests.csv"] = [
        Reply(status=502, body=b"bad gateway", content_type="text/plain")
    ]
    spec = make_spec(f"{server.base}/requests.csv?token={TOKEN}", retries=1)
    chunks = download(spec, settings, FAST)
    with pytest.raises(ExtractError) as caught:
        b"".join(chunks)
    assert str(caught.value) == (
        f"{server.base}/requests.csv: HTTP 502 after 2 attempt(s) (source.retries 1)"
    )
    assert len(server.hits("/requests.csv")) == 2


def test_a_retry_after_longer_than_civicflow_waits_gives_up_at_once(
    server: FileServer, settings: Settings
) -> None:
    server.routes["/requests.csv"] = [
        Reply(status=503, body=b"", content_type=None, headers={"Retry-After": "3600"})
    ]
    error = refused(make_spec(f"{server.base}/requests.csv"), settings)
    assert "asks to retry after 3600 s" in str(error)
    assert len(server.hits("/requests.csv")) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429])
def test_client_errors_are_never_retried(
    server: FileServer, settings: Settings, status: int
) -> None:
    server.routes["/requests.csv"] = [
        Reply(status=status, body=b"denied: " + TOKEN.encode(), content_type="text/plain")
    ]
    error = refused(make_spec(f"{server.base}/requests.csv?token={TOKEN}"), settings)
    assert str(error).startswith(f"{server.base}/requests.csv: HTTP {status}")
    assert len(server.hits("/requests.csv")) == 1
    assert error.detail is not None and "denied: …" in error.detail  # the body, token scrubbed


def test_a_connection_error_is_retried_then_named(settings: Settings) -> None:
    httpd = FileServer()  # bound, then closed: nothing listens on its port
    base = httpd.base
    httpd.server_close()
    spec = make_spec(f"{base}/requests.csv?token={TOKEN}", retries=2)
    with pytest.raises(ExtractError) as caught:
        b"".join(download(spec, settings, FAST))
    assert str(caught.value) == (
        f"{base}/requests.csv: no response (ConnectError) after 3 attempt(s) (source.retries 2)"
    )
    assert TOKEN not in (caught.value.detail or "")


# -- bodies refused ----------------------------------------------------------------------------------


def test_a_truncated_body_is_an_error_and_leaves_no_raw_copy(
    server: FileServer, settings: Settings
) -> None:
    server.routes["/requests.csv"] = [Reply(length=len(CSV_BODY) + 500)]
    error = refused(make_spec(f"{server.base}/requests.csv"), settings)
    assert "broke off after" in str(error) and "truncated" in str(error)
    assert len(server.hits("/requests.csv")) == 1


def test_a_wrong_content_type_names_the_url_and_the_type(
    server: FileServer, settings: Settings
) -> None:
    server.routes["/requests.csv"] = [
        Reply(body=b"<html>Please sign in</html>", content_type="text/html; charset=utf-8")
    ]
    error = refused(make_spec(f"{server.base}/requests.csv?token={TOKEN}"), settings)
    assert str(error).startswith(
        f"{server.base}/requests.csv: the server sent text/html, not csv (accepted: text/csv"
    )


def test_a_body_over_max_bytes_is_refused_not_truncated(
    server: FileServer, settings: Settings
) -> None:
    server.routes["/announced.csv"] = [Reply()]
    server.routes["/streamed.csv"] = [Reply(length=-1)]  # no Content-Length: counted as it comes
    limit = len(CSV_BODY) - 1
    error = refused(make_spec(f"{server.base}/announced.csv", max_bytes=limit), settings)
    assert f"the body is {len(CSV_BODY):,} bytes, over source.max_bytes ({limit:,})" in str(error)
    error = refused(make_spec(f"{server.base}/streamed.csv", max_bytes=limit), settings)
    assert f"grew over source.max_bytes ({limit:,} bytes); refused, not truncated" in str(error)
    assert (
        pull(make_spec(f"{server.base}/streamed.csv", max_bytes=len(CSV_BODY)), settings).rows == 2
    )


def test_an_empty_body_is_an_error(server: FileServer, settings: Settings) -> None:
    server.routes["/requests.csv"] = [Reply(body=b"")]
    assert "the server sent an empty body" in str(
        refused(make_spec(f"{server.base}/requests.csv"), settings)
    )


def test_a_gzip_body_is_checked_against_its_compressed_length_and_kept_decoded(
    server: FileServer, settings: Settings
) -> None:
    packed = gzip.compress(CSV_BODY)
    server.routes["/requests.csv"] = [Reply(body=packed, headers={"Content-Encoding": "gzip"})]
    server.routes["/cut.csv"] = [
        Reply(body=packed[:20], headers={"Content-Encoding": "gzip"}, length=len(packed))
    ]
    assert (
        pull(make_spec(f"{server.base}/requests.csv"), settings).raw_path.read_bytes() == CSV_BODY
    )
    with pytest.raises(ExtractError, match="truncated"):
        b"".join(download(make_spec(f"{server.base}/cut.csv"), settings))


def test_redirects_are_followed(server: FileServer, settings: Settings) -> None:
    server.routes["/latest.csv"] = [
        Reply(status=302, body=b"", content_type=None, headers={"Location": "/2024-05.csv"})
    ]
    server.routes["/2024-05.csv"] = [Reply()]
    assert pull(make_spec(f"{server.base}/latest.csv"), settings).rows == 2


def test_public_url_drops_user_query_and_fragment() -> None:
    assert (
        public_url("https://user:pw@data.example.org:8443/a/b.csv?token=x&y=1#frag")
        == "https://data.example.org:8443/a/b.csv"
    )


# -- end to end ---------------------------------------------------------------------------------------


def test_a_csv_url_publishes_to_the_portal(
    server: FileServer, portal_env: Settings, datasette_server: Any, tmp_path: Path
) -> None:
    server.routes["/requests.csv"] = Resource(CSV_BODY)
    spec = make_spec(f"{server.base}/requests.csv").model_copy(update={"id": "requests_http_e2e"})
    project = tmp_path / "project"
    (project / "expectations").mkdir(parents=True)
    suite = {
        "name": spec.id,
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "id"},
                "meta": {"severity": "critical", "why": "Every request has a number."},
            }
        ],
    }
    (project / "expectations" / f"{spec.id}.json").write_text(json.dumps(suite))
    settings = Settings(
        project_dir=project,
        var_dir=portal_env.var_dir,
        portal_url=portal_env.portal_url,
        env=portal_env.env,
    )
    outcome = run_dataset(settings, spec.id, spec=spec)
    assert outcome.outcome == "published", outcome.reason
    assert datasette_server.row_count(spec.id) == 2
    # published: the validators are committed, the next run asks with them and stops at 304
    assert state_path(settings, spec).is_file()
    again = run_dataset(settings, spec.id, spec=spec)
    assert again.outcome == "unchanged", again.reason
    assert "HTTP 304" in again.reason
    assert server.hits("/requests.csv")[1]["If-None-Match"] == '"v1"'
    assert datasette_server.row_count(spec.id) == 2
