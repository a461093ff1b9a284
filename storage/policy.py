"""Each community's rules: channels, roles, quota tiers and overrides, safety ceilings,
the prompt blocklist, moderation settings and bans.

A guild that never configured anything gets :class:`GuildPolicy`'s defaults. ``update`` takes
only known field names with valid values; anything else raises InvalidSettingError (a
ValueError) naming the field, and nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from storage.clock import Clock, from_db, from_db_opt, to_db, to_db_opt
from storage.db import Database
from storage.models import Ban, BlocklistEntry, GuildPolicy, InvalidSettingError
from storage.validate import (
    aware_time,
    opt_aware_time,
    opt_snowflake,
    opt_text,
    snowflake,
    whole,
)

# RunComfy's safety_tolerance runs from 1 (strictest) to 6 (most permissive).
MIN_SAFETY, MAX_SAFETY = 1, 6
MAX_COOLDOWN_SECONDS = 24 * 3600
MAX_JOBS_IN_FLIGHT = 50
MAX_CREDITS = 1_000_000
MAX_PATTERN_LENGTH = 200


def _credits(name: str, value: Any) -> int:
    return whole(name, value, 0, MAX_CREDITS)


def _opt_credits(name: str, value: Any) -> int | None:
    return None if value is None else _credits(name, value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidSettingError(name, "must be True or False")
    return value


def _id_set(name: str, value: Any) -> frozenset[int]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidSettingError(name, "must be a collection of Discord ids (empty: all)")
    return frozenset(snowflake(name, v) for v in value)


def _safety(name: str, value: Any) -> int:
    return whole(name, value, MIN_SAFETY, MAX_SAFETY)


# The fields update() may change, each with its validator.
_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "allowed_channel_ids": _id_set,
    "allowed_role_ids": _id_set,
    "default_daily_credits": _opt_credits,
    "daily_cap": _opt_credits,
    "max_safety": _safety,
    "max_safety_age_restricted": _safety,
    "log_channel_id": opt_snowflake,
    "approval_mode": _flag,
    "cooldown_seconds": lambda n, v: whole(n, v, 0, MAX_COOLDOWN_SECONDS),
    "max_jobs_in_flight": lambda n, v: whole(n, v, 1, MAX_JOBS_IN_FLIGHT),
    "dms_enabled": _flag,
    "private_results": _flag,
}
_ELSEWHERE = {"guild_id": "cannot be changed", "role_tiers": "set with set_role_tier()"}

_UPSERT_POLICY = """
INSERT INTO guild_policy (
    guild_id, allowed_channel_ids, allowed_role_ids, default_daily_credits, daily_cap,
    max_safety, max_safety_age_restricted, log_channel_id, approval_mode, cooldown_seconds,
    max_jobs_in_flight, dms_enabled, private_results, updated_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (guild_id) DO UPDATE SET
    allowed_channel_ids = excluded.allowed_channel_ids,
    allowed_role_ids = excluded.allowed_role_ids,
    default_daily_credits = excluded.default_daily_credits,
    daily_cap = excluded.daily_cap,
    max_safety = excluded.max_safety,
    max_safety_age_restricted = excluded.max_safety_age_restricted,
    log_channel_id = excluded.log_channel_id,
    approval_mode = excluded.approval_mode,
    cooldown_seconds = excluded.cooldown_seconds,
    max_jobs_in_flight = excluded.max_jobs_in_flight,
    dms_enabled = excluded.dms_enabled,
    private_results = excluded.private_results,
    updated_at = excluded.updated_at
"""


def validate_policy_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Checked and normalised values; InvalidSettingError names the first bad field."""
    clean = {}
    for name, value in fields.items():
        if name in _ELSEWHERE:
            raise InvalidSettingError(name, _ELSEWHERE[name])
        validator = _VALIDATORS.get(name)
        if validator is None:
            raise InvalidSettingError(name, f"unknown policy field ({', '.join(_VALIDATORS)})")
        clean[name] = validator(name, value)
    return clean


def _policy(conn: sqlite3.Connection, guild_id: int) -> GuildPolicy:
    row = conn.execute("SELECT * FROM guild_policy WHERE guild_id = ?", (guild_id,)).fetchone()
    tiers = dict(
        conn.execute(
            "SELECT role_id, credits FROM role_tiers WHERE guild_id = ? ORDER BY role_id",
            (guild_id,),
        ).fetchall()
    )
    if row is None:
        return GuildPolicy(guild_id=guild_id, role_tiers=tiers)
    return GuildPolicy(
        guild_id=guild_id,
        allowed_channel_ids=frozenset(json.loads(row["allowed_channel_ids"])),
        allowed_role_ids=frozenset(json.loads(row["allowed_role_ids"])),
        role_tiers=tiers,
        default_daily_credits=row["default_daily_credits"],
        daily_cap=row["daily_cap"],
        max_safety=row["max_safety"],
        max_safety_age_restricted=row["max_safety_age_restricted"],
        log_channel_id=row["log_channel_id"],
        approval_mode=bool(row["approval_mode"]),
        cooldown_seconds=row["cooldown_seconds"],
        max_jobs_in_flight=row["max_jobs_in_flight"],
        dms_enabled=bool(row["dms_enabled"]),
        private_results=bool(row["private_results"]),
    )


def _save_policy(conn: sqlite3.Connection, p: GuildPolicy, at: datetime) -> None:
    conn.execute(
        _UPSERT_POLICY,
        (
            p.guild_id,
            json.dumps(sorted(p.allowed_channel_ids)),
            json.dumps(sorted(p.allowed_role_ids)),
            p.default_daily_credits,
            p.daily_cap,
            p.max_safety,
            p.max_safety_age_restricted,
            p.log_channel_id,
            int(p.approval_mode),
            p.cooldown_seconds,
            p.max_jobs_in_flight,
            int(p.dms_enabled),
            int(p.private_results),
            to_db(at),
        ),
    )


def _block_from_row(row: sqlite3.Row) -> BlocklistEntry:
    return BlocklistEntry(
        id=row["id"],
        guild_id=row["guild_id"],
        pattern=row["pattern"],
        is_regex=bool(row["is_regex"]),
        added_by=row["added_by"],
        at=from_db(row["at"]),
    )


def _ban_from_row(row: sqlite3.Row) -> Ban:
    return Ban(
        guild_id=row["guild_id"],
        user_id=row["user_id"],
        reason=row["reason"],
        banned_by=row["banned_by"],
        until=from_db_opt(row["until"]),
        at=from_db(row["at"]),
    )


class PolicyStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get(self, guild_id: int) -> GuildPolicy:
        """The guild's rules; the defaults if it never configured anything."""
        snowflake("guild_id", guild_id)
        return await self._db.read(lambda c: _policy(c, guild_id))

    async def update(self, guild_id: int, /, **fields: Any) -> GuildPolicy:
        """Change the named fields (others keep their values); returns the new policy."""
        snowflake("guild_id", guild_id)
        clean = validate_policy_fields(fields)
        at = self._clock()

        def run(conn: sqlite3.Connection) -> GuildPolicy:
            policy = dataclasses.replace(_policy(conn, guild_id), **clean)
            _save_policy(conn, policy, at)
            return policy

        return await self._db.write(run)

    async def set_role_tier(self, guild_id: int, role_id: int, credits: int | None) -> None:
        """Members with this role get ``credits`` a day (the best of their tiers); None removes."""
        snowflake("guild_id", guild_id)
        snowflake("role_id", role_id)
        credits = _opt_credits("credits", credits)

        def run(conn: sqlite3.Connection) -> None:
            if credits is None:
                conn.execute(
                    "DELETE FROM role_tiers WHERE guild_id = ? AND role_id = ?", (guild_id, role_id)
                )
            else:
                conn.execute(
                    "INSERT INTO role_tiers (guild_id, role_id, credits) VALUES (?, ?, ?)"
                    " ON CONFLICT (guild_id, role_id) DO UPDATE SET credits = excluded.credits",
                    (guild_id, role_id, credits),
                )

        await self._db.write(run)

    async def set_user_override(self, guild_id: int, user_id: int, credits: int | None) -> None:
        """The member gets exactly ``credits`` a day in this guild, whatever their roles."""
        snowflake("guild_id", guild_id)
        snowflake("user_id", user_id)
        credits = _opt_credits("credits", credits)

        def run(conn: sqlite3.Connection) -> None:
            if credits is None:
                conn.execute(
                    "DELETE FROM user_overrides WHERE guild_id = ? AND user_id = ?",
                    (guild_id, user_id),
                )
            else:
                conn.execute(
                    "INSERT INTO user_overrides (guild_id, user_id, credits) VALUES (?, ?, ?)"
                    " ON CONFLICT (guild_id, user_id) DO UPDATE SET credits = excluded.credits",
                    (guild_id, user_id, credits),
                )

        await self._db.write(run)

    async def get_user_override(self, guild_id: int, user_id: int) -> int | None:
        def run(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT credits FROM user_overrides WHERE guild_id = ? AND user_id = ?",
                (guild_id, user_id),
            ).fetchone()
            return None if row is None else row[0]

        return await self._db.query(run)

    async def add_block(
        self, guild_id: int, pattern: str, *, is_regex: bool, added_by: int | None
    ) -> BlocklistEntry:
        """Block prompts matching ``pattern`` (words, or a regex); adding twice is a no-op."""
        snowflake("guild_id", guild_id)
        _flag("is_regex", is_regex)
        opt_snowflake("added_by", added_by)
        if not isinstance(pattern, str) or not pattern.strip():
            raise InvalidSettingError("pattern", "must be non-empty text")
        pattern = pattern.strip()
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise InvalidSettingError("pattern", f"must be at most {MAX_PATTERN_LENGTH} characters")
        if is_regex:
            try:
                re.compile(pattern)
            except re.error as exc:
                problem = f"not a valid regular expression: {exc}"
                raise InvalidSettingError("pattern", problem) from exc
        at = to_db(self._clock())

        def run(conn: sqlite3.Connection) -> BlocklistEntry:
            conn.execute(
                "INSERT INTO blocklist (guild_id, pattern, is_regex, added_by, at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id, pattern, is_regex) DO NOTHING",
                (guild_id, pattern, int(is_regex), added_by, at),
            )
            row = conn.execute(
                "SELECT * FROM blocklist WHERE guild_id = ? AND pattern = ? AND is_regex = ?",
                (guild_id, pattern, int(is_regex)),
            ).fetchone()
            return _block_from_row(row)

        return await self._db.write(run)

    async def remove_block(self, guild_id: int, entry_id: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM blocklist WHERE guild_id = ? AND id = ?", (guild_id, entry_id)
            )
            return cursor.rowcount > 0

        return await self._db.write(run)

    async def blocklist(self, guild_id: int) -> list[BlocklistEntry]:
        def run(conn: sqlite3.Connection) -> list[BlocklistEntry]:
            rows = conn.execute(
                "SELECT * FROM blocklist WHERE guild_id = ? ORDER BY id", (guild_id,)
            ).fetchall()
            return [_block_from_row(r) for r in rows]

        return await self._db.query(run)

    async def ban(
        self,
        guild_id: int,
        user_id: int,
        *,
        reason: str | None,
        banned_by: int | None,
        until: datetime | None,
    ) -> Ban:
        """Bar the member from generating here until ``until`` (None: until lifted).

        Banning again replaces the earlier ban.
        """
        snowflake("guild_id", guild_id)
        snowflake("user_id", user_id)
        opt_snowflake("banned_by", banned_by)
        opt_text("reason", reason)
        until = opt_aware_time("until", until)
        at = aware_time("now", self._clock())
        ban = Ban(guild_id, user_id, reason, banned_by, until, at)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO bans (guild_id, user_id, reason, banned_by, until, at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (guild_id, user_id) DO UPDATE SET"
                " reason = excluded.reason, banned_by = excluded.banned_by,"
                " until = excluded.until, at = excluded.at",
                (guild_id, user_id, reason, banned_by, to_db_opt(until), to_db(at)),
            )

        await self._db.write(run)
        return ban

    async def unban(self, guild_id: int, user_id: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
            )
            return cursor.rowcount > 0

        return await self._db.write(run)

    async def get_ban(
        self, guild_id: int, user_id: int, *, now: datetime | None = None
    ) -> Ban | None:
        """The member's ban here if it is in force at ``now``; an expired ban is None."""
        moment = to_db(now or self._clock())

        def run(conn: sqlite3.Connection) -> Ban | None:
            row = conn.execute(
                "SELECT * FROM bans WHERE guild_id = ? AND user_id = ?"
                " AND (until IS NULL OR until > ?)",
                (guild_id, user_id, moment),
            ).fetchone()
            return None if row is None else _ban_from_row(row)

        return await self._db.query(run)

    async def bans(self, guild_id: int, *, now: datetime | None = None) -> list[Ban]:
        """Bans in force in the guild, newest first."""
        moment = to_db(now or self._clock())

        def run(conn: sqlite3.Connection) -> list[Ban]:
            rows = conn.execute(
                "SELECT * FROM bans WHERE guild_id = ? AND (until IS NULL OR until > ?)"
                " ORDER BY at DESC, user_id",
                (guild_id, moment),
            ).fetchall()
            return [_ban_from_row(r) for r in rows]

        return await self._db.query(run)
