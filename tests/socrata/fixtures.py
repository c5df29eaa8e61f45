"""pytest fixtures: the Socrata test server on a free loopback port, run by uvicorn in a thread.

``socrata_server`` is one server per session; tests create datasets with fresh four-by-four
ids, so they do not see each other's rows. ``socrata`` hands a test that server with its
throttle cleared.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from tests.socrata.app import SocrataApp
from tests.socrata.store import Dataset

APP_TOKEN = "test-app-token"
KEY_ID = "test-key-id"
KEY_SECRET = "test-key-secret"  # a test credential of this in-memory server only
READER_ID = "test-reader-id"
READER_SECRET = "test-reader-secret"


def default_app() -> SocrataApp:
    return SocrataApp(
        app_tokens={APP_TOKEN},
        users={KEY_ID: (KEY_SECRET, True), READER_ID: (READER_SECRET, False)},
    )


def serve(
    app: SocrataApp, port: int = 0, timeout: float = 15
) -> tuple[uvicorn.Server, threading.Thread, int]:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` (0: a free one) in a daemon thread."""
    sock = socket.socket()
    # Accepted connections inherit TCP_NODELAY: without it a keep-alive client (sodapy's
    # requests session) waits ~40 ms of delayed ACK on every request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the same port after stop()
    sock.bind(("127.0.0.1", port))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app.asgi, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the Socrata test server did not start on port {port}")
        time.sleep(0.02)
    return server, thread, port


@dataclass
class SocrataServer:
    """A running test server. ``stop()``/``start()`` take it down and bring it back on the
    same port with the same datasets: a portal outage, not a data loss."""

    app: SocrataApp
    port: int
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def domain(self) -> str:
        """What sodapy takes as ``domain`` (with ``session_adapter`` prefix ``http://``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.domain}"

    def create_dataset(
        self,
        columns: Iterable[tuple[str, str]],
        rows: Iterable[Mapping[str, Any]] = (),
        **kwargs: Any,
    ) -> Dataset:
        dataset = self.app.store.create(columns, **kwargs)
        rows = list(rows)
        if rows:
            self.app.store.replace(dataset, rows)
        return dataset

    def throttle(self, requests: int, retry_after: int = 1) -> None:
        self.app.throttle.set(requests, retry_after)

    def start(self) -> SocrataServer:
        self.server, self.thread, self.port = serve(self.app, self.port)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
        self.server = self.thread = None


def start_server(app: SocrataApp | None = None) -> SocrataServer:
    return SocrataServer(app or default_app(), port=0).start()


@pytest.fixture(scope="session")
def socrata_server() -> Iterator[SocrataServer]:
    server = start_server()
    yield server
    server.stop()


@pytest.fixture
def socrata(socrata_server: SocrataServer) -> Iterator[SocrataServer]:
    socrata_server.throttle(0)
    yield socrata_server
    socrata_server.throttle(0)
