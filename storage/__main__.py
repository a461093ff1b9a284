"""``python -m storage copy --to postgresql://...``: move an install from SQLite to PostgreSQL.

The source is ``--from PATH``, else ``DATABASE_PATH`` (from the environment or ``./.env``), else
``data/bot.sqlite3``. Prints what was copied and the ledger audit of both sides; exit 0 when
both balance, 1 when the copy was refused or an audit found a problem, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from dotenv import load_dotenv

from storage.copy import CopyRefused, copy_database
from storage.models import StorageError
from storage.pg import is_postgres_url, redact
from storage.settings import database_path_from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser("copy", help="copy an SQLite database into an empty PostgreSQL one")
    copy.add_argument("--to", required=True, help="the target: a postgresql:// URL")
    copy.add_argument("--from", dest="source", help="the SQLite file (default: DATABASE_PATH)")
    args = parser.parse_args(argv)

    if not is_postgres_url(args.to):
        print("error: --to must be a postgresql:// URL", file=sys.stderr)
        return 2
    load_dotenv(override=False)
    source = Path(args.source) if args.source else database_path_from_env(os.environ)
    try:
        report = asyncio.run(copy_database(source, args.to))
    except (CopyRefused, StorageError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"copied {source} to {redact(args.to)}:")
    for table, rows in report.rows.items():
        print(f"  {table}: {rows} rows")
    ok = True
    for side, problems in (("source", report.source_audit), ("target", report.target_audit)):
        print(f"audit of the {side}: {'balanced' if not problems else 'PROBLEMS'}")
        for problem in problems:
            print(f"  {problem}")
        ok = ok and not problems
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
