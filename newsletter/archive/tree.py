"""Writing the site all or nothing: into a staging folder beside it, then swapped in.

On Linux the swap is one atomic exchange of the two folders (renameat2), so a server reading
the tree at that moment sees the old site or the new one, never none; elsewhere it is two
renames. A build that fails leaves the previous site as it was.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..errors import ArchiveError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step; False where the system cannot (the caller falls back)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]  # fmt: skip
    renameat2.restype = ctypes.c_int
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return done == 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_out_dir(out_dir: Path, ours: set[str]) -> None:
    """Refuse a folder the site cannot replace: a file, or a folder holding other things."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ArchiveError(
            "is a file, not a folder; give a folder for the site with --out", out_dir
        )
    if out_dir.is_dir():
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in ours)
        if others:
            # the folder is replaced whole: never when it holds anything but a site
            raise ArchiveError(
                f"holds other files ({others[0]}, ...); build the site into an empty or new folder",
                out_dir,
            )


# archive build takes --out; the rebuild after a send, NEWSLETTER_ARCHIVE_DIR only
ELSEWHERE = "choose another folder (--out, or NEWSLETTER_ARCHIVE_DIR)"


def write_tree(files: Mapping[str, bytes], out_dir: Path, ours: set[str]) -> Path:
    """Write `files` (path in the tree -> content) as the folder `out_dir`, all or nothing."""
    shown, out_dir = Path(out_dir), Path(out_dir).absolute()
    check_out_dir(shown, ours)
    blocking = next((p for p in out_dir.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ArchiveError(
            f"cannot write the site here: {blocking} is a file; {ELSEWHERE}",
            shown,
        )
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as exc:
        raise ArchiveError(
            f"cannot write the site here ({exc.strerror}); {ELSEWHERE}",
            shown,
        ) from None
    try:
        # mkdtemp makes a private folder; a web server must be able to read the site
        staging.chmod(0o777 & ~_umask())
        for path, content in sorted(files.items()):
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        if not out_dir.exists():
            os.replace(staging, out_dir)
        elif _exchange(staging, out_dir):
            shutil.rmtree(staging, ignore_errors=True)  # now the previous site
        else:
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ArchiveError(
            f"cannot write the site ({exc.strerror}); the previous one is unchanged", shown
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
