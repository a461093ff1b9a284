"""Opening a database: folder creation, pragmas, migrations from every version, newer refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage import JobState, LedgerKind, SchemaTooNewError, Storage
from storage import migrations as migrations_module
from storage.migrations import LATEST_VERSION, MIGRATIONS, migrate, sqlite_statements
from tests.storage_fixtures import GUILD, FakeClock, new_job, open_storage

DAY = "2025-03-14"
AT = "2025-03-14T12:00:00.000000+00:00"


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def _build(path: Path, version: int) -> None:
    """A file as an older bot left it: the first ``version`` migrations, plus its data."""
    conn = _raw(path)
    try:
        migrate(conn, target=version)
        if version >= 1:
            # v1 data: a job reserved for 3 credits, its ledger entry, a grant.
            conn.execute(
                "INSERT INTO jobs (id, kind, state, user_id, guild_id, channel_id, prompt, params,"
                " cost, quota_day, request_id, interaction_token, created_at, updated_at)"
                " VALUES ('oldjob01', 'imagine', 'running', 7, ?, 9, 'old prompt',"
                " '{\"num_images\": 3}', 3, ?, 'req-1', 'tok', ?, ?)",
                (GUILD, DAY, AT, AT),
            )
            conn.execute(
                "INSERT INTO ledger (kind, user_id, guild_id, day, amount, job_id, at)"
                " VALUES ('reserve', 7, ?, ?, 3, 'oldjob01', ?)",
                (GUILD, DAY, AT),
            )
            conn.execute(
                "INSERT INTO ledger (kind, user_id, guild_id, day, amount, actor_id, reason,"
                " counts_toward_caps, at) VALUES ('grant', 7, ?, ?, 5, 99, 'old grant', 0, ?)",
                (GUILD, DAY, AT),
            )
    finally:
        conn.close()


async def test_open_creates_the_folder_and_a_wal_database_at_the_latest_version(tmp_path):
    path = tmp_path / "nested" / "deeper" / "bot.sqlite3"
    async with Storage.open(path) as storage:
        assert storage.schema_version == LATEST_VERSION
        assert await storage.integrity_check() == []
    conn = _raw(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    finally:
        conn.close()


def test_there_are_at_least_two_migrations():
    assert LATEST_VERSION >= 2


@pytest.mark.parametrize("version", range(LATEST_VERSION))
async def test_upgrade_from_every_earlier_version_keeps_the_data(tmp_path, version):
    path = tmp_path / "bot.sqlite3"
    _build(path, version)
    clock = FakeClock()
    async with Storage.open(path, clock=clock) as storage:
        assert storage.schema_version == LATEST_VERSION
        assert await storage.integrity_check() == []
        assert await storage.quota.audit() == []
        # Everything newer than v1 works on the upgraded file.
        policy = await storage.policy.update(GUILD, daily_cap=50)
        assert policy.daily_cap == 50
        if version >= 1:
            job = await storage.jobs.get("oldjob01")
            assert job is not None
            assert (job.state, job.request_id, job.cost) == (JobState.RUNNING, "req-1", 3)
            assert job.params == {"num_images": 3}
            assert [j.id for j in await storage.jobs.unfinished()] == ["oldjob01"]
            balance = await storage.quota.balance(7, GUILD)
            assert (balance.used, balance.granted) == (3, 5)
            # The old job can still finish and be charged once.
            done = await storage.jobs.transition("oldjob01", JobState.DELIVERED)
            assert done is not None and done.committed == 3
            kinds = [e.kind for e in await storage.quota.job_entries("oldjob01")]
            assert kinds == [LedgerKind.RESERVE, LedgerKind.COMMIT]
            assert await storage.quota.audit() == []
    conn = _raw(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    finally:
        conn.close()


async def test_a_database_from_a_newer_bot_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "bot.sqlite3"
    _build(path, LATEST_VERSION)  # a rollback-journal file, as a newer bot might keep it
    conn = _raw(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNewError) as caught:
        async with Storage.open(path):
            pass
    assert (caught.value.found, caught.value.supported) == (LATEST_VERSION + 1, LATEST_VERSION)
    assert "newer than this bot supports" in str(caught.value)
    # Not a byte changed: not even the switch to WAL, which rewrites the header.
    assert path.read_bytes() == before
    conn = _raw(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION + 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()


async def test_each_upgrade_sets_user_version_in_the_same_transaction(tmp_path):
    # Every statement of every migration, then the version, commit together: a version number
    # never describes a schema that is not there, and the schema never lacks its version.
    path = tmp_path / "bot.sqlite3"
    conn = _raw(path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        migrate(conn)
    finally:
        conn.close()
    begins = [i for i, s in enumerate(statements) if s.startswith("BEGIN")]
    commits = [i for i, s in enumerate(statements) if s == "COMMIT"]
    [version] = [i for i, s in enumerate(statements) if s.startswith("PRAGMA user_version =")]
    assert len(begins) == len(commits) == 1
    ddl = [i for i, s in enumerate(statements) if s.lstrip().startswith(("CREATE", "ALTER"))]
    assert len(ddl) == sum(len(sqlite_statements(m)) for m in MIGRATIONS)
    assert begins[0] < min(ddl) and max(ddl) < version < commits[0]


async def test_a_failing_migration_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "bot.sqlite3"
    _build(path, 1)
    broken = (*MIGRATIONS[1], "CREATE TABLE jobs (id TEXT)")  # fails: jobs exists
    monkeypatch.setattr(migrations_module, "MIGRATIONS", (MIGRATIONS[0], broken))
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        async with Storage.open(path):
            pass
    conn = _raw(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "guild_policy" not in tables  # v2's first table was rolled back with the rest
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
    finally:
        conn.close()


async def test_reopening_keeps_everything(db_target):
    async with open_storage(db_target) as storage:
        job = await storage.jobs.create_reserved(new_job(cost=2))
        await storage.policy.update(GUILD, cooldown_seconds=30)
    async with open_storage(db_target) as storage:
        again = await storage.jobs.get(job.id)
        assert again == job
        assert (await storage.policy.get(GUILD)).cooldown_seconds == 30
        assert (await storage.quota.balance(1, GUILD)).used == 2


async def test_the_ledger_is_append_only(tmp_path):
    async with open_storage(tmp_path) as storage:
        await storage.jobs.create_reserved(new_job(cost=2))
    conn = _raw(tmp_path / "bot.sqlite3")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE ledger SET amount = 0")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM ledger")
    finally:
        conn.close()


async def test_on_postgresql_the_ledger_is_append_only_and_a_newer_schema_is_refused(
    postgres_url: str,
) -> None:
    async with open_storage(postgres_url) as storage:
        await storage.jobs.create_reserved(new_job(cost=2))
        for sql in ("UPDATE ledger SET amount = 0", "DELETE FROM ledger"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                await storage.db.write(lambda c, sql=sql: c.execute(sql))
        assert await storage.quota.audit() == []
        # as a newer bot would leave it
        await storage.db.write(
            lambda c: c.execute("UPDATE schema_version SET version = ?", (LATEST_VERSION + 1,))
        )
    with pytest.raises(SchemaTooNewError) as caught:
        async with Storage.open(postgres_url):
            pass
    assert (caught.value.found, caught.value.supported) == (LATEST_VERSION + 1, LATEST_VERSION)
