"""``civicflow portal``: the local Datasette portal residents browse."""

from __future__ import annotations

import typer

from civicflow.settings import load_settings


def register(app: typer.Typer) -> None:
    portal_app = typer.Typer(help="The local open-data portal (Datasette).", no_args_is_help=True)
    app.add_typer(portal_app, name="portal")

    @portal_app.command("serve")
    def serve(
        port: int = typer.Option(8001, "--port", help="Port to listen on (127.0.0.1)."),
    ) -> None:
        """Serve var/portal.db until Ctrl-C; only civicflow's publish steps can write it."""
        import signal

        from civicflow.portals import server

        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt  # so the finally below stops Datasette too

        signal.signal(signal.SIGTERM, on_term)
        settings = load_settings()
        proc = server.start(settings, port, quiet=False)
        try:
            server.wait_until_up(f"http://127.0.0.1:{port}", timeout=60)
            typer.echo(f"portal: http://127.0.0.1:{port}/  (Ctrl-C to stop)")
            proc.wait()
        except KeyboardInterrupt:
            typer.echo("stopping portal")
        finally:
            server.stop(proc)
