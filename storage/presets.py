"""A member's saved defaults (``member_presets``) and each server's named styles
(``guild_styles``).

Presets are one JSON object per member, whatever the server: the service checks their values;
this store keeps only what is a JSON object. Style names are matched without regard to case, so
"Anime" and "anime" are one style.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.clock import Clock, from_db, to_db
from storage.db import Database
from storage.validate import snowflake


@dataclass(frozen=True, slots=True)
class GuildStyle:
    guild_id: int
    name: str
    text: str
    added_by: int
    created_at: datetime


def _style(row: sqlite3.Row) -> GuildStyle:
    return GuildStyle(
        guild_id=row["guild_id"],
        name=row["name"],
        text=row["text"],
        added_by=row["added_by"],
        created_at=from_db(row["created_at"]),
    )


class StyleLimitError(Exception):
    """The server already has its limit of styles (nothing was written)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} styles")
        self.limit = limit


class PresetStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def get(self, user_id: int) -> dict[str, Any]:
        """The member's saved defaults ({} when none, or when the row is damaged)."""
        snowflake("user_id", user_id)
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT settings FROM member_presets WHERE user_id = ?", (user_id,)
            ).fetchone()
        )
        if row is None:
            return {}
        try:
            value = json.loads(row["settings"])
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    async def put(self, user_id: int, settings: dict[str, Any]) -> None:
        """Replace the member's defaults with ``settings`` (empty: forget them)."""
        snowflake("user_id", user_id)
        text = json.dumps(settings, separators=(",", ":"), sort_keys=True)
        at = to_db(self._clock())

        def run(conn: sqlite3.Connection) -> None:
            if not settings:
                conn.execute("DELETE FROM member_presets WHERE user_id = ?", (user_id,))
                return
            conn.execute(
                "INSERT INTO member_presets (user_id, settings, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET settings = excluded.settings,"
                " updated_at = excluded.updated_at",
                (user_id, text, at),
            )

        await self._db.write(run, what="saving a member's presets")


class StyleStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def list(self, guild_id: int) -> list[GuildStyle]:
        snowflake("guild_id", guild_id)
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM guild_styles WHERE guild_id = ? ORDER BY lower(name)", (guild_id,)
            ).fetchall()
        )
        return [_style(r) for r in rows]

    async def get(self, guild_id: int, name: str) -> GuildStyle | None:
        snowflake("guild_id", guild_id)
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM guild_styles WHERE guild_id = ? AND lower(name) = lower(?)",
                (guild_id, name),
            ).fetchone()
        )
        return None if row is None else _style(row)

    async def put(
        self, guild_id: int, name: str, text: str, *, added_by: int, limit: int
    ) -> tuple[GuildStyle, bool]:
        """Add the style, or replace the text of the one with that name; (style, replaced).

        StyleLimitError when adding would pass ``limit``: counted in the same transaction.
        """
        snowflake("guild_id", guild_id)
        at = self._clock()

        def run(conn: sqlite3.Connection) -> tuple[GuildStyle, bool]:
            old = conn.execute(
                "SELECT name FROM guild_styles WHERE guild_id = ? AND lower(name) = lower(?)",
                (guild_id, name),
            ).fetchone()
            if old is None:
                count = conn.execute(
                    "SELECT count(*) FROM guild_styles WHERE guild_id = ?", (guild_id,)
                ).fetchone()[0]
                if count >= limit:
                    raise StyleLimitError(limit)
            else:
                conn.execute(
                    "DELETE FROM guild_styles WHERE guild_id = ? AND name = ?",
                    (guild_id, old["name"]),
                )
            conn.execute(
                "INSERT INTO guild_styles (guild_id, name, text, added_by, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (guild_id, name, text, added_by, to_db(at)),
            )
            return GuildStyle(guild_id, name, text, added_by, at), old is not None

        return await self._db.write(run, what="saving a server style")

    async def remove(self, guild_id: int, name: str) -> GuildStyle | None:
        """Remove the named style; the one removed, or None if there was none."""
        snowflake("guild_id", guild_id)

        def run(conn: sqlite3.Connection) -> GuildStyle | None:
            row = conn.execute(
                "SELECT * FROM guild_styles WHERE guild_id = ? AND lower(name) = lower(?)",
                (guild_id, name),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "DELETE FROM guild_styles WHERE guild_id = ? AND name = ?", (guild_id, row["name"])
            )
            return _style(row)

        return await self._db.write(run, what="removing a server style")
