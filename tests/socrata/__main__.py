"""Run the Socrata test server as a process: ``python -m tests.socrata --port 8002``.

For pointing a client (sodapy, or ``civicflow publish --portal socrata``) at it by hand.
The app token and the writer's key id/secret come from the environment
(SOCRATA_TEST_APP_TOKEN, SOCRATA_TEST_KEY_ID, SOCRATA_TEST_KEY_SECRET), else the test
defaults in tests/socrata/fixtures.py; they are never printed. ``--tls DIR`` serves HTTPS
with a certificate made into DIR (socrata-py builds only ``https://`` URLs): point clients
at ``DIR/ca.pem`` (requests: ``REQUESTS_CA_BUNDLE=DIR/ca.pem``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn

from tests.socrata import fixtures
from tests.socrata.app import SocrataApp
from tests.socrata.tls import make_tls_files


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.socrata", description=__doc__)
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--tls", type=Path, metavar="DIR", help="serve HTTPS, CA in DIR/ca.pem")
    args = parser.parse_args()
    app = SocrataApp(
        app_tokens={os.environ.get("SOCRATA_TEST_APP_TOKEN", fixtures.APP_TOKEN)},
        users={
            os.environ.get("SOCRATA_TEST_KEY_ID", fixtures.KEY_ID): (
                os.environ.get("SOCRATA_TEST_KEY_SECRET", fixtures.KEY_SECRET),
                True,
            )
        },
    )
    tls = None
    if args.tls is not None:
        args.tls.mkdir(parents=True, exist_ok=True)
        tls = make_tls_files(args.tls)
    scheme = "https" if tls else "http"
    print(f"Socrata test server on {scheme}://127.0.0.1:{args.port} (domain 127.0.0.1:{args.port})")
    if tls:
        print(f"trust its certificate with the CA {tls.ca}")
    uvicorn.run(
        app.asgi,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )


if __name__ == "__main__":
    main()
