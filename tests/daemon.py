"""What the private Dovecot and Postfix of the tests share: stop, clean up, show their logs."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from typing import Self


class Daemon:
    """A server run by a test in a folder of its own (`root`), as the process `process`."""

    LOGS: tuple[str, ...] = ()  # files in `root` worth showing when it fails
    STOP_WAIT = 10.0

    root: Path
    process: subprocess.Popen | None

    def start(self) -> Self:  # pragma: no cover - each server starts its own way
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self) -> str:
        parts = []
        for name in self.LOGS:
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)
