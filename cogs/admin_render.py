"""What ``/admin`` answers look like: settings, stats, ledgers, bans, blocklists. Pure functions.

User text (reasons, patterns) is shown escaped; nothing here pings anyone (the cog sends every
answer with no allowed mentions).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import discord

from cogs.modlog_render import jump_url
from services.admin import SettingsSummary, StatsReport
from services.policy import discord_time, format_duration, listed
from storage.models import Balance, Ban, BlocklistEntry, GuildPolicy, GuildStats, Job, LedgerEntry

MAX_MESSAGE = 2000
MAX_LISTED = 15  # bans, tiers and the like listed in /admin settings before "and N more"


def escaped(text: str) -> str:
    """User text shown as text: markdown escaped (mentions are harmless: nothing is pinged)."""
    return discord.utils.escape_markdown(text)


def on_off(value: bool) -> str:
    return "on" if value else "off"


def channels_text(policy: GuildPolicy) -> str:
    tags = [f"<#{c}>" for c in sorted(policy.allowed_channel_ids)]
    return listed(tags, limit=MAX_LISTED) or "every channel"


def roles_text(policy: GuildPolicy) -> str:
    tags = [f"<@&{r}>" for r in sorted(policy.allowed_role_ids)]
    return listed(tags, limit=MAX_LISTED) or "everyone"


def tiers_text(policy: GuildPolicy) -> str:
    tiers = sorted(policy.role_tiers.items(), key=lambda kv: (-kv[1], kv[0]))
    return listed([f"<@&{role}>: {c}" for role, c in tiers], limit=MAX_LISTED) or "none"


def ban_text(ban: Ban, *, reason_limit: int = 300) -> str:
    until = "until lifted" if ban.until is None else f"until {discord_time(ban.until, 'f')}"
    text = f"<@{ban.user_id}> {until}"
    if ban.reason:
        reason = ban.reason
        if len(reason) > reason_limit:
            reason = reason[: reason_limit - 1] + "…"
        text += f": {escaped(reason)}"
    return text


def block_text(entry: BlocklistEntry) -> str:
    kind = "regex" if entry.is_regex else "text"
    return f"#{entry.id} ({kind}) {escaped(entry.pattern)}"


_LEDGER_VERBS = {
    "reserve": "reserved",
    "commit": "committed",
    "refund": "refunded",
    "grant": "granted",
    "reset": "reset",
}


def ledger_text(entry: LedgerEntry) -> str:
    verb = _LEDGER_VERBS.get(entry.kind.value, entry.kind.value)
    parts = [discord_time(entry.at, "f"), f"{verb} {entry.amount}"]
    if entry.job_id:
        parts.append(f"job `{entry.job_id}`")
    if entry.actor_id:
        parts.append(f"by <@{entry.actor_id}>")
    if entry.reason:
        parts.append(escaped(entry.reason))
    return " · ".join(parts)


def balance_text(user_id: int, balance: Balance) -> str:
    text = (
        f"<@{user_id}> has **{balance.remaining}** credits left today"
        f" (limit {balance.limit} from the {balance.limit_source}"
    )
    if balance.granted:
        text += f", plus {balance.granted} granted"
    text += f"; {balance.used} used). Resets {discord_time(balance.resets_at)}."
    if balance.guild_cap_remaining is not None:
        text += f" The server's daily cap has {balance.guild_cap_remaining} left."
    return text


def stats_text(stats: GuildStats) -> str:
    lines = [
        f"Jobs: **{stats.jobs}** ({stats.delivered} delivered, {stats.failures} failed,"
        f" {stats.cancelled} cancelled, {stats.rejected} rejected, {stats.in_flight} in progress)",
        f"Images: **{stats.images_delivered}** · Credits spent: **{stats.credits_spent}**",
    ]
    if stats.top_users:
        top = ", ".join(f"<@{user}> {credits}" for user, credits in stats.top_users)
        lines.append(f"Top: {top}")
    return "\n".join(lines)


def stats_embed(report: StatsReport) -> discord.Embed:
    embed = discord.Embed(title="Studio stats")
    embed.add_field(name="Today (UTC)", value=stats_text(report.today)[:1024], inline=False)
    embed.add_field(name="Last 7 days", value=stats_text(report.week)[:1024], inline=False)
    return embed


def settings_embed(summary: SettingsSummary) -> discord.Embed:
    policy = summary.policy
    if policy.default_daily_credits is not None:
        default = str(policy.default_daily_credits)
    elif summary.global_default_credits is not None:
        default = f"bot default ({summary.global_default_credits})"
    else:
        default = "bot default"
    lines = [
        f"**Channels:** {channels_text(policy)}",
        f"**Roles:** {roles_text(policy)}",
        f"**Daily credits per member:** {default}",
        f"**Server daily cap:** {'none' if policy.daily_cap is None else policy.daily_cap}",
        f"**Role tiers:** {tiers_text(policy)}",
        f"**Safety ceiling:** {policy.max_safety}"
        f" (age-restricted channels: {policy.max_safety_age_restricted})",
        f"**Blocklist:** {summary.blocklist_entries} entries",
        "**Log channel:** "
        + ("not set" if policy.log_channel_id is None else f"<#{policy.log_channel_id}>"),
        f"**Approval before posting:** {on_off(policy.approval_mode)}",
        "**Cooldown:** "
        + ("none" if not policy.cooldown_seconds else format_duration(policy.cooldown_seconds)),
        f"**Jobs in flight per member:** {policy.max_jobs_in_flight}",
        f"**DMs to members:** {on_off(policy.dms_enabled)}",
        f"**Bans:** {len(summary.active_bans)} active",
    ]
    # short reasons, so the whole list fits the embed
    lines += [f"- {ban_text(b, reason_limit=80)}" for b in summary.active_bans[:MAX_LISTED]]
    if len(summary.active_bans) > MAX_LISTED:
        lines.append(f"- and {len(summary.active_bans) - MAX_LISTED} more")
    return discord.Embed(title="Studio settings", description="\n".join(lines)[:4096])


def blocklist_lines(entries: Iterable[BlocklistEntry], invalid: dict[int, str]) -> list[str]:
    """One line per entry; entries that failed validation (and so match nothing) are marked."""
    lines = []
    for entry in entries:
        line = block_text(entry)
        if entry.id in invalid:
            line = f"⚠️ {line} — not in use: {escaped(invalid[entry.id])}"
        lines.append(line)
    return lines


def pending_line(job: Job, log_channel_id: int | None) -> str:
    """``/admin pending``: one held job, with a link to its log entry."""
    head = (
        f"`{job.id}` by <@{job.user_id}> in <#{job.channel_id}>,"
        f" waiting since {discord_time(job.updated_at)}"
    )
    if job.log_message_id is None or log_channel_id is None:
        return head + ": no log entry (it could not be posted: check the log channel)"
    url = jump_url(job.guild_id, log_channel_id, job.log_message_id)
    return head + f": [log entry]({url})"


def split_long(header: str, lines: Sequence[str]) -> tuple[str, str | None]:
    """A list for one message: (what fits inline, the whole list for a file or None)."""
    body = "\n".join([header, *lines])
    if len(body) <= MAX_MESSAGE:
        return body, None
    shown: list[str] = [header]
    size = len(header)
    for line in lines:
        if size + len(line) + 1 > MAX_MESSAGE - 80:
            break
        shown.append(line)
        size += len(line) + 1
    shown.append(f"… {len(lines) - (len(shown) - 1)} more in the attached file.")
    return "\n".join(shown), body
