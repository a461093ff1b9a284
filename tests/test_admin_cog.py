"""The /admin cog's text: what admins read (the commands themselves: tests/test_admin_e2e.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from cogs.admin_render import (
    MAX_LISTED,
    balance_text,
    ban_text,
    block_text,
    channels_text,
    ledger_text,
    roles_text,
    settings_embed,
    tiers_text,
)
from cogs.i18n import ENGLISH as t
from services.admin import SettingsSummary
from storage.models import Balance, Ban, BlocklistEntry, GuildPolicy, LedgerEntry, LedgerKind

AT = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)
STAMP = int(AT.timestamp())


def test_empty_lists_mean_everyone_and_everywhere() -> None:
    policy = GuildPolicy(guild_id=1)
    assert channels_text(t, policy) == "every channel"
    assert roles_text(t, policy) == "everyone"
    assert tiers_text(t, policy) == "none"


def test_long_lists_are_shortened() -> None:
    policy = GuildPolicy(
        guild_id=1, allowed_channel_ids=frozenset(range(100, 100 + MAX_LISTED + 4))
    )
    assert channels_text(t, policy).endswith(" and 4 more")
    assert channels_text(t, policy).startswith("<#100>, <#101>")


def test_tiers_are_listed_best_first() -> None:
    policy = GuildPolicy(guild_id=1, role_tiers={5: 10, 6: 50, 7: 10})
    assert tiers_text(t, policy) == "<@&6>: 50, <@&5>: 10, and <@&7>: 10"


def test_ban_text() -> None:
    forever = Ban(1, 42, "spam *everywhere*", 9, None, AT)
    assert ban_text(t, forever) == "<@42> until lifted: spam \\*everywhere\\*"
    timed = Ban(1, 42, None, 9, AT, AT)
    assert ban_text(t, timed) == f"<@42> until <t:{STAMP}:f>"


def test_block_text_escapes_the_pattern() -> None:
    entry = BlocklistEntry(3, 1, "__bold__ `code`", False, 9, AT)
    assert block_text(t, entry) == "#3 (text) \\_\\_bold\\_\\_ \\`code\\`"
    assert block_text(t, BlocklistEntry(4, 1, r"a\d+", True, 9, AT)) == "#4 (regex) a\\\\d+"


def test_ledger_text() -> None:
    grant = LedgerEntry(1, LedgerKind.GRANT, 42, 1, 3, None, 9, "contest", AT)
    assert ledger_text(t, grant) == f"<t:{STAMP}:f> · granted 3 · by <@9> · contest"
    reserve = LedgerEntry(2, LedgerKind.RESERVE, 42, 1, 2, "abc123", None, None, AT)
    assert ledger_text(t, reserve) == f"<t:{STAMP}:f> · reserved 2 · job `abc123`"


def test_balance_text() -> None:
    balance = Balance(
        limit=20,
        used=5,
        granted=3,
        remaining=18,
        resets_at=AT,
        limit_source="role tier",
        guild_cap_remaining=40,
    )
    assert balance_text(t, 42, balance) == (
        "<@42> has **18 credits** left today (limit 20 from a role tier, plus 3 granted;"
        f" 5 used). Resets <t:{STAMP}:R>. The server's daily cap has 40 credits left."
    )


def test_settings_embed_lists_bans_and_stays_within_discord_limits() -> None:
    bans = tuple(Ban(1, 1000 + n, "x" * 300, 9, None, AT) for n in range(MAX_LISTED + 5))
    summary = SettingsSummary(
        policy=GuildPolicy(guild_id=1, default_daily_credits=7, daily_cap=100, log_channel_id=55),
        blocklist_entries=2,
        active_bans=bans,
        global_default_credits=20,
    )
    embed = settings_embed(t, summary)
    text = embed.description or ""
    assert len(text) <= 4096
    assert "**Daily credits per member:** 7" in text
    assert "**Server daily cap:** 100" in text
    assert "**Log channel:** <#55>" in text
    assert f"**Bans:** {MAX_LISTED + 5} active" in text
    assert text.endswith("\n- and 5 more")
    assert f"<@1000> until lifted: {'x' * 79}…" in text
