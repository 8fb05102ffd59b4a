"""Ways to break a site agent's disk on purpose, shared by tests/test_agent_faults.py,
tests/test_spool.py and bench/soak.py: a small tmpfs to fill, and corrupt spool pages."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from pathlib import Path


def mount_tmpfs(mnt: Path, size: str = "16m") -> None:
    """Mount a tmpfs of ``size`` on ``mnt`` (needs root)."""
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)


def unmount(mnt: Path) -> None:
    """Unmount ``mnt``; lazily if a process still has a file open there."""
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path) -> Path:
    """Write a file until the filesystem says ENOSPC; return it (delete it to free the disk)."""
    f = mnt / "filler"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return f


def outbox_leaf_pages(path: Path) -> tuple[list[int], int]:
    """The spool's outbox leaf page numbers (SQLite's dbstat) and the page size."""
    con = sqlite3.connect(path)
    try:
        pages = [
            r[0]
            for r in con.execute(
                "SELECT pageno FROM dbstat WHERE name = 'outbox' AND pagetype = 'leaf' "
                "ORDER BY pageno"
            )
        ]
        return pages, int(con.execute("PRAGMA page_size").fetchone()[0])
    finally:
        con.close()


def overwrite_pages(path: Path, pages: list[int], page_size: int) -> None:
    """Random bytes over whole pages, as a power cut or a failing SD card would leave them."""
    with open(path, "r+b") as f:
        for pg in pages:
            f.seek((pg - 1) * page_size)
            f.write(os.urandom(page_size))
