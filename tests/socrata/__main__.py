"""Run the Socrata test server as a process: ``python -m tests.socrata --port 8002``.

For pointing a client (sodapy, or ``civicflow publish --portal socrata``) at it by hand.
The app token and the writer's key id/secret come from the environment
(SOCRATA_TEST_APP_TOKEN, SOCRATA_TEST_KEY_ID, SOCRATA_TEST_KEY_SECRET), else the test
defaults in tests/socrata/fixtures.py; they are never printed.
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from tests.socrata import fixtures
from tests.socrata.app import SocrataApp


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.socrata", description=__doc__)
    parser.add_argument("--port", type=int, default=8002)
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
    print(f"Socrata test server on http://127.0.0.1:{args.port} (domain 127.0.0.1:{args.port})")
    uvicorn.run(app.asgi, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
