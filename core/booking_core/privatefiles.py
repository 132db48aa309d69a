"""Files that hold patient data on local disk (the embedded SQLite database, emails): owner-only.

`booking run` keeps everything under `.booking/`; on a shared machine a world-readable database or mail
folder is a disclosure. Folders are 0700 and files 0600, whatever the process umask, and an older
install's looser modes are tightened on the next start.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
# Restrictive umask for the embedded platform: SQLite's -wal/-shm files and anything else created later.
PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it owner-only."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty if missing (never truncate) and make it owner-only."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE)
    os.close(fd)
    path.chmod(FILE_MODE)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to a new owner-only file at `path` (replaced if it exists)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(FILE_MODE)


def harden_tree(root: Path) -> None:
    """Owner-only modes on `root`, every folder and every file under it (symlinks left alone)."""
    if not root.is_dir():
        return
    root.chmod(DIR_MODE)
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for d in dirnames:
            if not (base / d).is_symlink():
                (base / d).chmod(DIR_MODE)
        for f in filenames:
            if not (base / f).is_symlink():
                (base / f).chmod(FILE_MODE)
