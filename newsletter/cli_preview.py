"""`newsletter preview`: serve an issue to a browser on loopback, rebuilt on every save."""

from __future__ import annotations

import asyncio
import socket
import webbrowser
from pathlib import Path

import click
import uvicorn

from .cli_context import AppContext, issue_dir_argument, pass_app
from .config import is_loopback
from .content import wrong_issue_folder
from .hosts import allowed_hosts, check_name
from .listen import listen
from .preview import Preview, Snapshot, Targets, create_app

LOOPBACK = "127.0.0.1"
STOP_WITHIN = 3  # seconds, after Ctrl-C


class _Server(uvicorn.Server):
    """uvicorn, plus: Ctrl-C also ends the open event streams, which would otherwise keep
    the graceful shutdown waiting for ever."""

    def __init__(self, config: uvicorn.Config, preview: Preview):
        super().__init__(config)
        self.preview = preview
        self.loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        if self.loop is not None:
            # A signal handler interrupts the loop mid-step: hand the stop over, don't do it here.
            self.loop.call_soon_threadsafe(self.preview.stop)


def _report(snapshot: Snapshot, seconds: float) -> None:
    if snapshot.error:
        click.echo(snapshot.error, err=True)
    else:
        click.echo(f"built {snapshot.issue_id} in {seconds:.2f} s (build {snapshot.version})")


def _report_watch(targets: Targets) -> None:
    here = Path.cwd()
    names = [str(p.relative_to(here)) if p.is_relative_to(here) else str(p) for p in targets.all]
    click.echo(f"watching {', '.join(names)}")


@click.command()
@issue_dir_argument
@click.option(
    "--host",
    default=LOOPBACK,
    show_default=True,
    help="Address to listen on. Anything but loopback shows the unsent issue to your network.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests for this host name (repeatable). Addresses and localhost are "
    "always answered; any other name is refused, against DNS rebinding.",
)
@click.option("--no-open", is_flag=True, help="Do not open the page in the default browser.")
@pass_app
def preview(
    app: AppContext,
    issue_dir: Path,
    host: str,
    port: int,
    allow_hosts: tuple[str, ...],
    no_open: bool,
) -> None:
    """Preview ISSUE_DIR in a browser: each edition at desktop and phone width, the text part,
    the inbox headers and the checks. Saving a brief, the manifest, a template or .env
    updates the open page. A file that breaks the build shows its error on the page."""
    # Only a folder that cannot be an issue stops here: a missing one (nothing to watch), the
    # issues or the briefs folder. Any other problem is shown on the page, and fixing the
    # file (or creating issue.toml) brings the preview back.
    if wrong := wrong_issue_folder(issue_dir):
        raise wrong
    try:
        names = allowed_hosts(host, [check_name(name) for name in allow_hosts])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--allow-host") from None
    sock = listen(host, port)  # before building: a taken port should not wait for a build
    try:
        state = Preview(issue_dir, app.env_file, on_rebuild=_report, on_watch=_report_watch)
        state.build_now()
        config = uvicorn.Config(
            create_app(state, names),
            log_level="warning",
            access_log=False,
            lifespan="on",
            # Ctrl-C ends within seconds whatever a browser keeps open (the event streams end
            # at once; a request still running after this is cancelled)
            timeout_graceful_shutdown=STOP_WITHIN,
        )
        server = _Server(config, state)
        bound_port = sock.getsockname()[1]
        url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}/"
        if not is_loopback(host):
            click.echo(
                f"warning: listening on {host}: anyone who can reach this machine on port "
                f"{bound_port} sees the unsent issue, by address or as "
                f"{', '.join(sorted(names))} (other names are refused; add one with "
                "--allow-host)"
            )
        click.echo(f"preview at {url} (Ctrl-C to stop)")
        if not no_open:
            webbrowser.open(url)
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn has shut down gracefully, then re-raises the Ctrl-C it caught: that's the end.
        pass
    finally:
        sock.close()
    click.echo("preview stopped")
