"""PostgreSQL's versions of the schema statements SQLite spells its own way (triggers).

The tables and indexes are shared (storage.dialect.ddl translates their types); SQLite's
triggers are statements of their own, PostgreSQL's are functions. Each keeps the SQLite
trigger's name and behaviour: the job state history, the append-only ledger, and the per-day
counters kept in the same transaction as the ledger insert.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialects:
    """A migration statement spelled per backend; None: nothing to run on that one."""

    sqlite: str | None
    postgresql: str | None


JOB_STATE_CHANGED = """
CREATE FUNCTION job_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_events (job_id, state, at) VALUES (NEW.id, NEW.state, NEW.updated_at);
    RETURN NULL;
END $$;
CREATE TRIGGER job_state_changed AFTER UPDATE OF state ON jobs
    FOR EACH ROW EXECUTE FUNCTION job_state_changed();
"""

# v6: the same history, and a NOTIFY on the channel every bot process listens on (delivered at
# COMMIT, so a listener never hears of a change it cannot read yet).
JOB_CHANNEL = "studio_jobs"
JOB_STATE_NOTIFY = f"""
CREATE OR REPLACE FUNCTION job_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_events (job_id, state, at) VALUES (NEW.id, NEW.state, NEW.updated_at);
    PERFORM pg_notify('{JOB_CHANNEL}', NEW.id);
    RETURN NULL;
END $$;
"""

# v6 too: a change to a guild's rules is announced, so every process drops its cached copy.
POLICY_CHANNEL = "studio_policy"
POLICY_NOTIFY = f"""
CREATE FUNCTION policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{POLICY_CHANNEL}', coalesce(NEW.guild_id, OLD.guild_id)::text);
    RETURN NULL;
END $$;
""" + "".join(
    f"""
CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION policy_changed();
"""
    for table in ("guild_policy", "role_tiers", "user_overrides", "blocklist", "bans")
)

# Job rows keep their insertion order, as SQLite's rowid does ("ORDER BY created_at, rowid").
JOBS_ROWID = "ALTER TABLE jobs ADD COLUMN rowid BIGINT GENERATED ALWAYS AS IDENTITY"

LEDGER_APPEND_ONLY = """
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
"""

LEDGER_USER_DAY = """
CREATE FUNCTION ledger_user_day() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_day AS u (day, guild_key, user_id, used, granted, forgiven)
    VALUES (
        NEW.day, coalesce(NEW.guild_id, 0), NEW.user_id,
        CASE NEW.kind WHEN 'reserve' THEN NEW.amount WHEN 'refund' THEN -NEW.amount ELSE 0 END,
        CASE NEW.kind WHEN 'grant' THEN NEW.amount ELSE 0 END,
        CASE NEW.kind WHEN 'reset' THEN NEW.amount ELSE 0 END
    )
    ON CONFLICT (day, guild_key, user_id) DO UPDATE SET
        used = u.used + excluded.used,
        granted = u.granted + excluded.granted,
        forgiven = u.forgiven + excluded.forgiven;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_user_day AFTER INSERT ON ledger
    FOR EACH ROW WHEN (NEW.kind <> 'commit') EXECUTE FUNCTION ledger_user_day();
"""

LEDGER_CAPS = """
CREATE FUNCTION ledger_caps() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta BIGINT := CASE NEW.kind WHEN 'reserve' THEN NEW.amount ELSE -NEW.amount END;
BEGIN
    INSERT INTO guild_day AS g (day, guild_key, used)
    VALUES (NEW.day, coalesce(NEW.guild_id, 0), delta)
    ON CONFLICT (day, guild_key) DO UPDATE SET used = g.used + excluded.used;
    INSERT INTO global_day AS d (day, used) VALUES (NEW.day, delta)
    ON CONFLICT (day) DO UPDATE SET used = d.used + excluded.used;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_caps AFTER INSERT ON ledger
    FOR EACH ROW WHEN (NEW.counts_toward_caps <> 0 AND NEW.kind IN ('reserve', 'refund'))
    EXECUTE FUNCTION ledger_caps();
"""
