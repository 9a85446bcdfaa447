"""The main module of each process bench/send.py measures (`--child KIND`): as small as the
`newsletter` command's own. A send's worker processes import their parent's main module
again (multiprocessing's spawn); under the command that is its console script, which
imports newsletter.cli and nothing more. Run as bench/send.py itself, each worker loaded the
whole bench (the renderer with it), some 0.2 s a worker the command does not spend."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import newsletter.cli  # noqa: E402, F401 - what the console script imports, and only that

if __name__ == "__main__":
    import send

    send.main()
