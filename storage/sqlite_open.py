"""Opening the SQLite file: checking its path first, then the connection's settings."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from storage.models import DatabaseOpenError

BUSY_TIMEOUT_MS = 5000
CACHE_KIB = 16 * 1024  # page cache per connection; SQLite's default is 2 MiB


def check_path(path: Path) -> None:
    """Refuse, with a clear reason, a path SQLite could not use; create its folder."""
    if path.is_dir():
        raise DatabaseOpenError(path, "it is a directory; give the path of a file")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise DatabaseOpenError(path, f"{folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = f"cannot create its folder {folder}: {exc.strerror or exc}"
        raise DatabaseOpenError(path, problem) from exc
    # SQLite writes the -wal and -shm files beside the database, so the folder must be writable
    # even when the file exists. (root passes these checks; SQLite's own error then applies.)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseOpenError(path, f"this user cannot create files in {folder}")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseOpenError(path, "this user cannot read and write the file")


def sqlite_problem(exc: BaseException) -> str:
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        return "the file is not an SQLite database"
    return f"SQLite: {exc}"


def open_sqlite(path: Path) -> sqlite3.Connection:
    """On the database thread (a sqlite3 connection is tied to it): connect and set up."""
    # Connection settings only: nothing here changes the file (see enable_wal).
    # isolation_level=None: the sqlite3 module opens no transactions of its own; we do.
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=256)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # With WAL: a crash (even SIGKILL) loses nothing committed; a power loss or OS crash may
        # lose the last transactions but never corrupts the file.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        # Reads the header: a file that is not a database fails here, while opening.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn
