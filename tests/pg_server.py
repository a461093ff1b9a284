"""A throwaway PostgreSQL server for the tests, CI and the benchmarks.

``python -m tests.pg_server start DIR`` initialises a cluster in DIR (created, must not exist),
starts it on a free loopback port and prints its URL; ``python -m tests.pg_server stop DIR``
stops it. PostgreSQL refuses to run as root, so as root the cluster belongs to an unprivileged
user (``studio-pg``, created if missing). Durability is off (fsync): the data is thrown away.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

USER = "studio-pg"
ADMIN_URL_FILE = "url"


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
        found = candidates[0] if candidates else None
    if found is None:
        raise PostgresMissing(
            f"PostgreSQL's {name} was not found (install Debian's postgresql package:"
            " apt-get install postgresql)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _owner() -> pwd.struct_passwd | None:
    """The user the server runs as: ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
        )
        return pwd.getpwnam(USER)


def _run(owner: pwd.struct_passwd | None, cmd: list[str]) -> None:
    if owner is not None:
        cmd = ["runuser", "-u", owner.pw_name, "--", *cmd]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def start(folder: Path) -> str:
    """Initialise and start a cluster in ``folder``; its URL (user postgres, trust auth)."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    owner = _owner()
    folder.mkdir(parents=True)
    folder.chmod(0o755)
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data = folder / "data"
    _run(
        owner,
        [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
    )
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
        " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    _run(owner, [pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-o", options, "start"])
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    (folder / ADMIN_URL_FILE).write_text(url)
    return url


def stop(folder: Path) -> None:
    pg_ctl = find_binary("pg_ctl")
    _run(_owner(), [pg_ctl, "-D", str(folder / "data"), "-m", "immediate", "-w", "stop"])


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.pg_server start|stop DIR", file=sys.stderr)
        return 2
    try:
        if argv[0] == "start":
            print(start(Path(argv[1])))
        else:
            stop(Path(argv[1]))
    except PostgresMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"{exc}: {exc.stderr.decode(errors='replace')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
