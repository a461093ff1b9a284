"""Numbered schema migrations, applied at start-up in one transaction.

``PRAGMA user_version`` holds how many migrations the file has had. Opening applies the missing
ones, in order, inside a single ``BEGIN IMMEDIATE`` transaction together with the new version
number, so an upgrade either happens completely or not at all (user_version lives in the
database header, so it commits or rolls back with the rest). A file with a higher version than
this code knows is refused with :class:`SchemaTooNewError` before anything is written to it,
not even the switch to WAL (an older bot must not write to a schema it does not understand).
Migrations are append-only: never edit one that has shipped, add the next.
"""

from __future__ import annotations

import sqlite3

from storage import pg_schema
from storage.db import write_txn
from storage.dialect import ddl
from storage.models import SchemaTooNewError
from storage.pg_schema import Dialects

# "Not terminal", as the partial index jobs_unfinished spells it. Queries that want the index
# must repeat these terms exactly. Separate comparisons rather than NOT IN (...): with a list of
# more than two values SQLite builds a temporary table each time it evaluates the condition, and
# it does so on every state change of every job (measured: ~20 µs per update). Part of migration
# 1, so never edit it: a different condition needs a new index in a new migration.
UNFINISHED = (
    "state <> 'delivered' AND state <> 'cancelled' AND state <> 'failed' AND state <> 'rejected'"
)

# v1: the job ledger and the quota ledger with its running per-day counters.
_V1 = (
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('imagine', 'edit')),
        state TEXT NOT NULL,
        user_id INTEGER NOT NULL,
        guild_id INTEGER,                 -- NULL: a DM
        channel_id INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        params TEXT NOT NULL,             -- JSON object of request parameters
        cost INTEGER NOT NULL CHECK (cost >= 0),
        quota_day TEXT NOT NULL,          -- the UTC day its credits count against
        request_id TEXT,                  -- RunComfy's id, once submitted
        parent_job_id TEXT REFERENCES jobs(id) ON DELETE SET NULL,
        interaction_token TEXT,           -- a secret
        token_expires_at TEXT,
        status_message_id INTEGER,
        result_message_id INTEGER,
        log_message_id INTEGER,
        error TEXT,
        result_urls TEXT NOT NULL DEFAULT '[]',
        age_restricted_channel INTEGER NOT NULL DEFAULT 0,
        settled INTEGER NOT NULL DEFAULT 0,   -- reservation committed and/or refunded
        committed INTEGER,                    -- credits committed on delivery
        refunded INTEGER NOT NULL DEFAULT 0,  -- credits refunded so far
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    Dialects(None, pg_schema.JOBS_ROWID),
    # Only unfinished jobs are in this index, so resuming is fast however long the history.
    f"CREATE INDEX jobs_unfinished ON jobs (state) WHERE {UNFINISHED}",
    "CREATE INDEX jobs_by_user ON jobs (user_id, created_at)",
    """
    CREATE TABLE job_events (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        state TEXT NOT NULL,
        at TEXT NOT NULL
    )
    """,
    "CREATE INDEX job_events_by_job ON job_events (job_id, id)",
    # Every state a job enters after its creation (whose time is jobs.created_at) is recorded by
    # the database itself, so no code path can skip it.
    Dialects(
        """
    CREATE TRIGGER job_state_changed AFTER UPDATE OF state ON jobs BEGIN
        INSERT INTO job_events (job_id, state, at) VALUES (NEW.id, NEW.state, NEW.updated_at);
    END
    """,
        pg_schema.JOB_STATE_CHANGED,
    ),
    """
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('reserve', 'commit', 'refund', 'grant', 'reset')),
        user_id INTEGER NOT NULL,
        guild_id INTEGER,
        day TEXT NOT NULL,                -- the UTC day the entry counts against
        amount INTEGER NOT NULL CHECK (amount >= 0),
        job_id TEXT REFERENCES jobs(id),
        actor_id INTEGER,                 -- the admin, for grant/reset
        reason TEXT,
        counts_toward_caps INTEGER NOT NULL DEFAULT 1,  -- 0: user-only (e.g. refund after delivery)
        at TEXT NOT NULL
    )
    """,
    # At most one entry of each kind per job (a refund that counts toward the caps, of the
    # reservation or its undelivered part, and one that does not, after delivery), whatever
    # recovery repeats; also how a job's entries are found. NULL job ids (grants, resets) are
    # distinct from each other, so they are not limited.
    "CREATE UNIQUE INDEX ledger_by_job ON ledger (job_id, kind, counts_toward_caps)",
    "CREATE INDEX ledger_by_user ON ledger (user_id, guild_id, id)",
    Dialects(
        """
    CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN
        SELECT RAISE(ABORT, 'the ledger is append-only');
    END
    """,
        pg_schema.LEDGER_APPEND_ONLY,
    ),
    Dialects(
        """
    CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger BEGIN
        SELECT RAISE(ABORT, 'the ledger is append-only');
    END
    """,
        None,
    ),
    # Running per-day counters, kept by triggers in the same transaction as the ledger insert, so
    # a reservation reads three rows instead of summing the ledger. guild_key 0 means a DM.
    """
    CREATE TABLE user_day (
        day TEXT NOT NULL,
        guild_key INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0,      -- reserve - refund
        granted INTEGER NOT NULL DEFAULT 0,   -- grant
        forgiven INTEGER NOT NULL DEFAULT 0,  -- reset
        PRIMARY KEY (day, guild_key, user_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE guild_day (
        day TEXT NOT NULL,
        guild_key INTEGER NOT NULL,
        used INTEGER NOT NULL DEFAULT 0,      -- reserve - refund, entries that count toward caps
        PRIMARY KEY (day, guild_key)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE global_day (
        day TEXT PRIMARY KEY,
        used INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID
    """,
    Dialects(
        """
    CREATE TRIGGER ledger_user_day AFTER INSERT ON ledger WHEN NEW.kind <> 'commit' BEGIN
        INSERT INTO user_day (day, guild_key, user_id, used, granted, forgiven)
        VALUES (
            NEW.day, coalesce(NEW.guild_id, 0), NEW.user_id,
            CASE NEW.kind WHEN 'reserve' THEN NEW.amount WHEN 'refund' THEN -NEW.amount ELSE 0 END,
            CASE NEW.kind WHEN 'grant' THEN NEW.amount ELSE 0 END,
            CASE NEW.kind WHEN 'reset' THEN NEW.amount ELSE 0 END
        )
        ON CONFLICT (day, guild_key, user_id) DO UPDATE SET
            used = used + excluded.used,
            granted = granted + excluded.granted,
            forgiven = forgiven + excluded.forgiven;
    END
    """,
        pg_schema.LEDGER_USER_DAY,
    ),
    Dialects(
        """
    CREATE TRIGGER ledger_caps AFTER INSERT ON ledger
        WHEN NEW.counts_toward_caps AND NEW.kind IN ('reserve', 'refund') BEGIN
        INSERT INTO guild_day (day, guild_key, used)
        VALUES (NEW.day, coalesce(NEW.guild_id, 0),
                CASE NEW.kind WHEN 'reserve' THEN NEW.amount ELSE -NEW.amount END)
        ON CONFLICT (day, guild_key) DO UPDATE SET used = used + excluded.used;
        INSERT INTO global_day (day, used)
        VALUES (NEW.day, CASE NEW.kind WHEN 'reserve' THEN NEW.amount ELSE -NEW.amount END)
        ON CONFLICT (day) DO UPDATE SET used = used + excluded.used;
    END
    """,
        pg_schema.LEDGER_CAPS,
    ),
)

# v2: each community's rules and its moderation data.
_V2 = (
    """
    CREATE TABLE guild_policy (
        guild_id INTEGER PRIMARY KEY,
        allowed_channel_ids TEXT NOT NULL,   -- JSON list; empty: every channel
        allowed_role_ids TEXT NOT NULL,      -- JSON list; empty: everyone
        default_daily_credits INTEGER CHECK (default_daily_credits >= 0),
        daily_cap INTEGER CHECK (daily_cap >= 0),
        max_safety INTEGER NOT NULL,
        max_safety_age_restricted INTEGER NOT NULL,
        log_channel_id INTEGER,
        approval_mode INTEGER NOT NULL,
        cooldown_seconds INTEGER NOT NULL,
        max_jobs_in_flight INTEGER NOT NULL,
        dms_enabled INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE role_tiers (
        guild_id INTEGER NOT NULL,
        role_id INTEGER NOT NULL,
        credits INTEGER NOT NULL CHECK (credits >= 0),
        PRIMARY KEY (guild_id, role_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE user_overrides (
        guild_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        credits INTEGER NOT NULL CHECK (credits >= 0),
        PRIMARY KEY (guild_id, user_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE blocklist (
        id INTEGER PRIMARY KEY,
        guild_id INTEGER NOT NULL,
        pattern TEXT NOT NULL,
        is_regex INTEGER NOT NULL,
        added_by INTEGER,
        at TEXT NOT NULL,
        UNIQUE (guild_id, pattern, is_regex)
    )
    """,
    """
    CREATE TABLE bans (
        guild_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        reason TEXT,
        banned_by INTEGER,
        until TEXT,                          -- NULL: until lifted
        at TEXT NOT NULL,
        PRIMARY KEY (guild_id, user_id)
    ) WITHOUT ROWID
    """,
    # Moderation statistics read a guild's jobs by creation time.
    "CREATE INDEX jobs_by_guild ON jobs (guild_id, created_at)",
)

# v3: indexes for the per-member questions asked on every request. Without them SQLite answers
# "how many unfinished jobs has this member here" (asked inside every reservation) and "when did
# they last ask here" by walking the guild's whole history (measured: ~10 ms at 100,000 jobs).
_V3 = (
    f"CREATE INDEX jobs_unfinished_by_member ON jobs (user_id, guild_id) WHERE {UNFINISHED}",
    "CREATE INDEX jobs_by_member ON jobs (user_id, guild_id, created_at)",
)

# v4: whether Discord was answered for a job (resume refunds one it never was), and the form a
# job was sent from (one job per form, however often it is submitted). Earlier jobs count as
# answered: that is how they were resumed.
_V4 = (
    "ALTER TABLE jobs ADD COLUMN acknowledged INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE jobs ADD COLUMN form_id TEXT",
    "CREATE UNIQUE INDEX jobs_by_form ON jobs (form_id) WHERE form_id IS NOT NULL",
)

# v5: what the RunComfy client learned of job durations, per timing key (model, resolution,
# image count), so the first job after a restart polls as well as a learned one. The estimate
# is the client's own plain data, kept as a JSON object: storage does not interpret it.
_V5 = (
    """
    CREATE TABLE timing_estimates (
        key TEXT PRIMARY KEY,
        estimate TEXT NOT NULL,           -- JSON object, as the client exported it
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID
    """,
)

# v6: the requester's language (Discord's locale code, e.g. "ko"), so what is posted later,
# without an interaction (a result after the token expired, a rejection), speaks it too.
_V6 = ("ALTER TABLE jobs ADD COLUMN locale TEXT",)

# v7: job leases, so that several bot processes on one PostgreSQL database share the work: the
# process holding a job's lease runs it and renews the lease; when that process dies, another
# takes the job over once the lease has expired (storage.leases). On PostgreSQL every state
# change is also announced (NOTIFY), so a process following a job hears at once that another
# ended it, and so is every change to a guild's rules (each process caches them). Jobs from
# before have no lease: the first process to claim them takes them.
_V7 = (
    "ALTER TABLE jobs ADD COLUMN lease_owner TEXT",
    "ALTER TABLE jobs ADD COLUMN lease_until TEXT",
    Dialects(None, pg_schema.JOB_STATE_NOTIFY),
    Dialects(None, pg_schema.POLICY_NOTIFY),
)

# v8: what members keep beyond a job: named reference images (a result's image n, kept by job
# and index: Discord's attachment URLs expire, so a fresh one is read when it is used),
# favourite results, their own defaults; the server's named styles and whether it allows
# private results.
_V8 = (
    """
    CREATE TABLE member_references (
        user_id INTEGER NOT NULL,
        guild_key INTEGER NOT NULL,      -- the guild id, or 0 for DMs
        name TEXT NOT NULL,
        job_id TEXT NOT NULL REFERENCES jobs (id),
        image_index INTEGER NOT NULL,    -- 0-based, in the job's result_urls
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, guild_key, name)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE favourites (
        user_id INTEGER NOT NULL,
        job_id TEXT NOT NULL REFERENCES jobs (id),
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, job_id)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE member_presets (
        user_id INTEGER NOT NULL PRIMARY KEY,  -- a snowflake, never a generated key
        settings TEXT NOT NULL,          -- JSON object: the options a member set as defaults
        updated_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE guild_styles (
        guild_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        text TEXT NOT NULL,              -- added to the prompt of a job that names the style
        added_by INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (guild_id, name)
    ) WITHOUT ROWID
    """,
    "ALTER TABLE guild_policy ADD COLUMN private_results INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX jobs_delivered_by_guild ON jobs (guild_id, created_at) WHERE state = 'delivered'",
)

# Ordered: a new migration is appended as the next entry. A statement is SQL both backends run
# (PostgreSQL's types via storage.dialect.ddl) or a Dialects pair.
MIGRATIONS: tuple[tuple[str | Dialects, ...], ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8)
LATEST_VERSION = len(MIGRATIONS)


def sqlite_statements(migration: tuple[str | Dialects, ...]) -> list[str]:
    """The statements SQLite runs for one migration."""
    spelled = (s.sqlite if isinstance(s, Dialects) else s for s in migration)
    return [s for s in spelled if s is not None]


def _apply(conn: sqlite3.Connection, statement: str | Dialects) -> None:
    if getattr(conn, "dialect", "sqlite") == "postgresql":
        sql = statement.postgresql if isinstance(statement, Dialects) else ddl(statement)
        if sql is not None:
            conn.script(sql)  # type: ignore[attr-defined]
        return
    sql = statement.sqlite if isinstance(statement, Dialects) else statement
    if sql is not None:
        conn.execute(sql)


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def refuse_newer(conn: sqlite3.Connection) -> int:
    """The file's version; SchemaTooNewError if this code is too old for it. Writes nothing."""
    found = schema_version(conn)
    if found > LATEST_VERSION:
        raise SchemaTooNewError(found, LATEST_VERSION)
    return found


def migrate(conn: sqlite3.Connection, *, target: int = LATEST_VERSION) -> tuple[int, int]:
    """Bring the file to ``target`` in one transaction; returns (version found, version now).

    ``conn`` must be in autocommit mode (isolation_level=None). ``target`` below the latest is
    for tests that build an older file.
    """
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"target: must be from 0 to {LATEST_VERSION}, got {target}")

    def run(conn: sqlite3.Connection) -> int:
        # Checked again under the write lock: another process may have upgraded meanwhile.
        found = refuse_newer(conn)
        for statements in MIGRATIONS[found:target]:
            for statement in statements:
                _apply(conn, statement)
        if target > found:
            conn.execute(f"PRAGMA user_version = {int(target)}")
        return found

    found = write_txn(conn, run)
    return found, max(found, target)
