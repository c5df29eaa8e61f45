"""pytest fixtures: the Socrata test server on a free loopback port, run by uvicorn in a thread.

``socrata_server`` is one server per session; tests create datasets with fresh four-by-four
ids, so they do not see each other's rows. ``socrata`` hands a test that server with its
throttle cleared. ``socrata_tls`` is the same over HTTPS with a certificate made for the
session (socrata-py builds only ``https://`` URLs); ``socratapy_auth`` makes socrata-py's
``Authorization`` for it, trusting that session's CA.
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
from tests.socrata.tls import TlsFiles, make_tls_files

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
    app: SocrataApp, port: int = 0, timeout: float = 15, tls: TlsFiles | None = None
) -> tuple[uvicorn.Server, threading.Thread, int]:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` (0: a free one) in a daemon thread,
    over TLS when ``tls`` is given."""
    sock = socket.socket()
    # Accepted connections inherit TCP_NODELAY: without it a keep-alive client (sodapy's
    # requests session) waits ~40 ms of delayed ACK on every request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the same port after stop()
    sock.bind(("127.0.0.1", port))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app.asgi,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )
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
    tls: TlsFiles | None = None

    @property
    def domain(self) -> str:
        """What sodapy takes as ``domain`` (with ``session_adapter`` prefix ``http://``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.domain}"

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

    def throttle(self, requests: int, retry_after: int = 1, **which: Any) -> None:
        """The next ``requests`` answer 429 (``status``, ``path``, ``method``: see Throttle)."""
        self.app.throttle.set(requests, retry_after, **which)

    def start(self) -> SocrataServer:
        self.server, self.thread, self.port = serve(self.app, self.port, tls=self.tls)
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=1)
            # A TLS connection a client left open holds a graceful shutdown until the
            # peer's close_notify, which may never come: stop waiting for it.
            self.server.force_exit = True
            self.thread.join(timeout=10)
        self.server = self.thread = None


def start_server(app: SocrataApp | None = None, tls: TlsFiles | None = None) -> SocrataServer:
    return SocrataServer(app or default_app(), port=0, tls=tls).start()


def socratapy_auth(
    server: SocrataServer, username: str = KEY_ID, password: str = KEY_SECRET
) -> Any:
    """socrata-py's ``Authorization`` for ``server`` (TLS), trusting its CA: ``verify`` is
    handed to requests as is, and requests takes a CA bundle path there."""
    from socrata.authorization import Authorization

    if server.tls is None:
        raise ValueError("socrata-py speaks only https: start the server with tls")
    auth = Authorization(server.domain, username=username, password=password)
    auth.verify = str(server.tls.ca)
    return auth


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


@pytest.fixture(scope="session")
def socrata_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SocrataServer]:
    server = start_server(tls=make_tls_files(tmp_path_factory.mktemp("socrata-tls")))
    yield server
    server.stop()


@pytest.fixture
def socrata_tls(socrata_tls_server: SocrataServer) -> Iterator[SocrataServer]:
    socrata_tls_server.throttle(0)
    yield socrata_tls_server
    socrata_tls_server.throttle(0)
