"""A member's quota day, resolved: which daily limit applies, what is used, what is left.

The rules (limit precedence, caps, resets) are the contract in storage.quota's docstring.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from storage.migrations import UNFINISHED
from storage.models import QuotaExceededError
from storage.settings import QuotaSettings

DAILY_ALLOWANCE = "daily allowance"
GUILD_CAP = "guild daily cap"
GLOBAL_CAP = "global daily cap"

SOURCE_OVERRIDE = "user override"
SOURCE_TIER = "role tier"
SOURCE_GUILD = "guild default"
SOURCE_GLOBAL = "global default"

# Everything a reservation or a balance needs, in one statement. guild_key 0 is a DM.
_TIER_SQL = """(SELECT max(credits) FROM role_tiers
        WHERE guild_id = :g AND role_id IN (SELECT value FROM json_each(:roles)))"""
_LIMITS_SQL = """
SELECT
    (SELECT credits FROM user_overrides WHERE guild_id = :g AND user_id = :u) AS override,
    {tier} AS tier,
    gp.default_daily_credits AS guild_default,
    gp.daily_cap AS guild_cap,
    coalesce(ud.used, 0) AS used,
    coalesce(ud.granted, 0) AS granted,
    coalesce(ud.forgiven, 0) AS forgiven,
    coalesce(gd.used, 0) AS guild_used,
    coalesce(gl.used, 0) AS global_used
FROM (SELECT 1) AS one
LEFT JOIN guild_policy AS gp ON gp.guild_id = :g
LEFT JOIN user_day AS ud ON ud.day = :d AND ud.guild_key = :gk AND ud.user_id = :u
LEFT JOIN guild_day AS gd ON gd.day = :d AND gd.guild_key = :gk
LEFT JOIN global_day AS gl ON gl.day = :d
"""
# A member without roles (or in DMs) has no tier: skip that lookup.
_LIMITS_WITH_TIERS_SQL = _LIMITS_SQL.format(tier=_TIER_SQL)
_LIMITS_WITHOUT_TIERS_SQL = _LIMITS_SQL.format(tier="NULL")


@dataclass(frozen=True, slots=True)
class Standing:
    """A member's day, resolved: the inputs of every quota decision."""

    limit: int
    limit_source: str
    used: int  # max(0, used - forgiven)
    granted: int
    guild_cap: int | None
    guild_used: int
    global_cap: int | None
    global_used: int

    @property
    def allowance(self) -> int:
        return self.limit + self.granted


def _roles_json(role_ids: Collection[int]) -> str:
    return "[" + ",".join(str(int(r)) for r in role_ids) + "]"


def standing(
    conn: sqlite3.Connection,
    settings: QuotaSettings,
    user_id: int,
    guild_id: int | None,
    day: str,
    role_ids: Collection[int],
) -> Standing:
    params: dict[str, object] = {"g": guild_id, "gk": guild_id or 0, "u": user_id, "d": day}
    if role_ids and guild_id is not None:
        params["roles"] = _roles_json(role_ids)
        row = conn.execute(_LIMITS_WITH_TIERS_SQL, params).fetchone()
    else:
        row = conn.execute(_LIMITS_WITHOUT_TIERS_SQL, params).fetchone()
    if row["override"] is not None:
        limit, source = row["override"], SOURCE_OVERRIDE
    elif row["tier"] is not None:
        limit, source = row["tier"], SOURCE_TIER
    elif row["guild_default"] is not None:
        limit, source = row["guild_default"], SOURCE_GUILD
    else:
        limit, source = settings.default_daily_credits, SOURCE_GLOBAL
    return Standing(
        limit=limit,
        limit_source=source,
        used=max(0, row["used"] - row["forgiven"]),
        granted=row["granted"],
        guild_cap=row["guild_cap"] if guild_id is not None else None,
        guild_used=row["guild_used"],
        global_cap=settings.global_daily_cap,
        global_used=row["global_used"],
    )


def check_reservation(s: Standing, cost: int, resets_at: datetime) -> None:
    """Raise QuotaExceededError for the first limit ``cost`` more credits would pass."""
    # An allowance of 0 means "may not generate", even a job that happens to cost nothing.
    if s.used + cost > s.allowance or s.allowance == 0:
        raise QuotaExceededError(
            limit=DAILY_ALLOWANCE, allowed=s.allowance, used=s.used, cost=cost, resets_at=resets_at
        )
    if s.guild_cap is not None and s.guild_used + cost > s.guild_cap:
        raise QuotaExceededError(
            limit=GUILD_CAP, allowed=s.guild_cap, used=s.guild_used, cost=cost, resets_at=resets_at
        )
    if s.global_cap is not None and s.global_used + cost > s.global_cap:
        raise QuotaExceededError(
            limit=GLOBAL_CAP,
            allowed=s.global_cap,
            used=s.global_used,
            cost=cost,
            resets_at=resets_at,
        )


# Credits the member's unsettled jobs of that day hold. Unsettled jobs are always unfinished
# (every terminal state settles), so this reads the index jobs_unfinished_by_member.
_HELD_SQL = f"""
SELECT coalesce(sum(cost), 0) FROM jobs INDEXED BY jobs_unfinished_by_member
WHERE {UNFINISHED} AND user_id = ? AND guild_id IS ? AND quota_day = ? AND settled = 0
"""


def resettable(conn: sqlite3.Connection, user_id: int, guild_id: int | None, day: str) -> int:
    """What a reset would give back now: the day's settled credits not already forgiven."""
    row = conn.execute(
        "SELECT used - forgiven FROM user_day WHERE day = ? AND guild_key = ? AND user_id = ?",
        (day, guild_id or 0, user_id),
    ).fetchone()
    counted = 0 if row is None else row[0]
    held = conn.execute(_HELD_SQL, (user_id, guild_id, day)).fetchone()[0]
    return max(0, counted - held)
