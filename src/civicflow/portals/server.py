"""Run the local Datasette portal: secrets, config, and the server process.

Prefect-free helpers for ``civicflow portal serve``, ``civicflow run`` and the test
fixtures. Everything the server keeps lives under ``settings.var_dir``: the portal
database, Datasette's internal database (table metadata), the generated config and,
when the environment does not provide it, the signing secret.

The publisher holds no standing token. Each publish mints its own from the secret
(:func:`mint_token`): signed by Datasette's token API, restricted to the
``civicflow-publish`` action on the one table it publishes, and expiring after
``TOKEN_TTL_S``. The server grants the publisher nothing else (no Datasette write
action), and caps every signed token's life at ``MAX_TOKEN_TTL_S``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import itsdangerous
import yaml

from civicflow.privatefs import private_dir, write_private
from civicflow.settings import Settings

log = logging.getLogger("civicflow.portals.server")

SECRET_ENV = "DATASETTE_SECRET"
#: a token minted elsewhere, for a publisher that is not given the secret
TOKEN_ENV = "CIVICFLOW_DATASETTE_TOKEN"
PUBLISHER = "publisher"
#: the plugin's action (see datasette_plugin.py): the publisher's only permission
PUBLISH_ACTION = "civicflow-publish"
#: life of the token one publish mints (a 1,000,000-row publish uploads in ~20 s)
TOKEN_TTL_S = 900
#: the server refuses any signed token older than this, whatever it claims
MAX_TOKEN_TTL_S = 3600
TITLE = "City of Los Angeles open data (civicflow)"
#: rows per load request the server accepts; the publisher's batches must fit
MAX_INSERT_ROWS = 100_000
#: threads Datasette runs SQL on (see write_config)
SQL_THREADS = 6
#: largest request body: a load batch of 50,000 LA 311 rows as Arrow is about 25 MB, and
#: the publisher splits any batch that would not fit
MAX_POST_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class PortalSecrets:
    """The signing secret. Never log it."""

    secret: str = field(repr=False)


def secrets_dir(settings: Settings) -> Path:
    return settings.var_dir / "secrets"


def database_path(settings: Settings) -> Path:
    return settings.var_dir / f"{settings.portal_database}.db"


def internal_path(settings: Settings) -> Path:
    return settings.var_dir / "internal.db"


def scorecard_dir(settings: Settings) -> Path:
    return settings.site_dir / "scorecard"


def log_path(settings: Settings) -> Path:
    return settings.var_dir / "logs" / "portal.log"


def ensure_secrets(settings: Settings) -> PortalSecrets:
    """The secret from the environment, else from var/secrets/ (generated once, 0600).

    A long-lived ``datasette_token`` left there by earlier versions is deleted: the
    publisher mints a short-lived token per publish instead.
    """
    secret = settings.secret(SECRET_ENV) or _read_or_create(
        secrets_dir(settings) / "datasette_secret", lambda: secrets.token_hex(32)
    )
    (secrets_dir(settings) / "datasette_token").unlink(missing_ok=True)
    return PortalSecrets(secret=secret)


def read_secret(settings: Settings) -> str | None:
    """The signing secret from the environment or var/secrets/, without creating one."""
    secret = settings.secret(SECRET_ENV)
    if secret is None:
        path = secrets_dir(settings) / "datasette_secret"
        secret = path.read_text().strip() if path.is_file() else None
    return secret or None


def publish_token(settings: Settings, table: str) -> str | None:
    """The token one publish of ``table`` uses: minted from the secret, else TOKEN_ENV."""
    secret = read_secret(settings)
    if secret is not None:
        return mint_token(secret, database=settings.portal_database, table=table)
    return settings.secret(TOKEN_ENV)


def mint_token(
    secret: str,
    *,
    database: str,
    table: str,
    expires_after: int | None = None,
    actor_id: str = PUBLISHER,
) -> str:
    """A publisher token allowed only ``civicflow-publish`` on ``database/table``, expiring
    after ``expires_after`` seconds (default ``TOKEN_TTL_S``)."""
    from datasette.tokens import TokenRestrictions

    restrictions = TokenRestrictions().allow_resource(database, table, PUBLISH_ACTION)
    life = TOKEN_TTL_S if expires_after is None else expires_after
    return create_token(secret, actor_id, expires_after=life, restrictions=restrictions)


def create_token(
    secret: str,
    actor_id: str = PUBLISHER,
    *,
    expires_after: int | None = None,
    restrictions: Any = None,
) -> str:
    """A signed ``dstok_`` token for ``actor_id``, made by Datasette's own token API."""
    from datasette.app import Datasette

    async def make() -> str:
        ds = Datasette(secret=secret)
        try:
            return await ds.create_token(
                actor_id, expires_after=expires_after, restrictions=restrictions
            )
        finally:
            ds.close()

    # A fresh thread owns its own event loop, so this works inside async callers too.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, make()).result()


def decode_token(token: str, secret: str) -> dict[str, Any] | None:
    """The signed payload of a ``dstok_`` token (actor, time, life, restrictions), or None."""
    if not token.startswith("dstok_"):
        return None
    try:
        decoded = itsdangerous.URLSafeSerializer(secret, "token").loads(token[len("dstok_") :])
    except itsdangerous.BadSignature:
        return None
    return decoded if isinstance(decoded, dict) else None


def _read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The value stored at ``path``; else ``make()`` stored there with mode 0600.

    Written to a private temporary file and hard-linked into place, so two processes
    starting at once agree on one value and nobody reads a half-written file.
    """
    private_dir(path.parent)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(make() + "\n")
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; use its value
        finally:
            tmp.unlink(missing_ok=True)
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty; delete it to generate a new value")
    return value


def write_config(settings: Settings) -> Path:
    """var/datasette.yaml (permissions, settings) and var/metadata.yaml (instance title)."""
    config = {
        # The publisher's only permission. No actor is granted any Datasette write
        # action (insert-row, create-table, drop-table, execute-write-sql ...), so live
        # and bookkeeping tables refuse direct writes from every token.
        "permissions": {PUBLISH_ACTION: {"id": PUBLISHER}},
        "settings": {
            "max_signed_tokens_ttl": MAX_TOKEN_TTL_S,
            "max_insert_rows": MAX_INSERT_ROWS,
            "max_post_body_bytes": MAX_POST_BODY_BYTES,
            # count(*) and digests over a million rows take longer than the 1 s default
            "sql_time_limit_ms": 5000,
            # Queries wait for a free SQL thread: with 3 (the default) a few slow ones
            # (an export, a count over many rows) hold up every indexed lookup behind
            # them. The threads share the GIL, so more than this buys nothing.
            "num_sql_threads": SQL_THREADS,
            # Suggested facets try a facet query per column on every table page (up
            # to 50 ms each): 0.4-1 s per page of a million-row table, most of them
            # timing out. Facets stay one click away (each column's menu), and facet
            # counts on the columns a spec indexes come from the index.
            "suggest_facets": False,
        },
    }
    metadata = {
        "title": TITLE,
        "description_html": (
            "Open data published by the City of Los Angeles through civicflow: every table "
            "passed its quality and privacy checks before it went live. "
            'See the <a href="/scorecard/">open-data performance scorecard</a>.'
        ),
    }
    path = write_private(
        settings.var_dir / "datasette.yaml", yaml.safe_dump(config, sort_keys=False)
    )
    write_private(settings.var_dir / "metadata.yaml", yaml.safe_dump(metadata, sort_keys=False))
    return path


def _prepare_database(path: Path) -> None:
    """Create the portal database in WAL mode: readers never wait for a publish."""
    private_dir(path.parent)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def serve_command(settings: Settings, port: int) -> list[str]:
    """The ``datasette serve`` command line (the secret travels in the environment).

    ``--template-dir`` loads civicflow's copies of the Datasette templates it makes
    accessible (labels, landmarks, contrast): civicflow/catalog/datasette_templates/.
    """
    import civicflow.catalog

    config = write_config(settings)
    scorecard = scorecard_dir(settings)
    scorecard.mkdir(parents=True, exist_ok=True)
    templates = Path(civicflow.catalog.__file__).parent / "datasette_templates"
    return [
        sys.executable,
        "-m",
        "datasette",
        "serve",
        str(database_path(settings)),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(config),
        "--metadata",
        str(settings.var_dir / "metadata.yaml"),
        "--internal",
        str(internal_path(settings)),
        "--static",
        f"scorecard:{scorecard}",
        "--template-dir",
        str(templates),
    ]


def start(settings: Settings, port: int, *, quiet: bool = True) -> subprocess.Popen[bytes]:
    """Start Datasette in the background; quiet sends its output to var/logs/portal.log."""
    keys = ensure_secrets(settings)
    _prepare_database(database_path(settings))
    command = serve_command(settings, port)
    env = {**os.environ, SECRET_ENV: keys.secret}
    if not quiet:
        return subprocess.Popen(command, env=env)
    log_file = log_path(settings)
    private_dir(log_file.parent)
    with log_file.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def is_up(url: str) -> bool:
    """Whether a Datasette answers at ``url``."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/-/versions.json", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def wait_until_up(url: str, timeout: float, *, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until the portal answers; fail early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_up(url):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"portal server exited with code {proc.returncode} before {url} came up"
            )
        time.sleep(0.1)
    raise TimeoutError(f"portal at {url} did not come up within {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Stop the server: SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
