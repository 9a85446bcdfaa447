"""What a hostile form body costs the web app: wall time to the answer, and CPU of the process.

    .venv/bin/python bench/web_body.py [MB]

Serves `newsletter serve`'s app on 127.0.0.1 (uvicorn in a thread, a throwaway database),
posts MB megabytes of `&` (empty form fields) to a valid preferences link, and prints the
status and the figures. Without a body limit the app parsed all of it (~8 s of CPU for
50 MB); with it the answer is 413 before the body is read.
"""

from __future__ import annotations

import resource
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from newsletter.config import load_settings
from newsletter.subscribers import SqliteStore
from newsletter.tokens import make_token, signing_key
from newsletter.web import create_app


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    folder = Path(tempfile.mkdtemp())
    settings = load_settings(
        None, environ={"NEWSLETTER_DB": str(folder / "n.db"), "NEWSLETTER_SECRET": "s" * 40}
    )
    with SqliteStore(settings.db_path) as store:
        ann = store.add("ann@example.org", language="en", source="bench").id
    token = make_token(signing_key(settings), ann)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="error")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    body = b"&" * (megabytes * 2**20)
    head = (
        f"POST /preferences/{token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    cpu0, wall0 = cpu(), time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head.encode("ascii"))
        sent = 0
        try:
            sock.sendall(body)
            sent = len(body)
        except OSError:  # refused before the body: the server closed the connection
            pass
        status = sock.recv(200).split(b"\r\n")[0].decode()
    wall = time.perf_counter() - wall0
    time.sleep(1.0)  # anything the server still does with the body shows in the CPU figure
    print(f"{megabytes} MB body: {status} after {wall:.2f} s; process CPU {cpu() - cpu0:.2f} s;"
          f" body {'sent whole' if sent else 'not taken'}")  # fmt: skip
    server.should_exit = True


if __name__ == "__main__":
    main()
