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


@dataclass
class SocrataServer:
    app: SocrataApp
    port: int
    server: uvicorn.Server
    thread: threading.Thread

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

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(app: SocrataApp | None = None, timeout: float = 15) -> SocrataServer:
    app = app or SocrataApp(
        app_tokens={APP_TOKEN},
        users={KEY_ID: (KEY_SECRET, True), READER_ID: (READER_SECRET, False)},
    )
    sock = socket.socket()
    # Accepted connections inherit TCP_NODELAY: without it a keep-alive client (sodapy's
    # requests session) waits ~40 ms of delayed ACK on every request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app.asgi, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Socrata test server did not start")
        time.sleep(0.02)
    return SocrataServer(app, port, server, thread)


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
