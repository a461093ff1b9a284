"""What ``/admin`` answers look like: settings, stats, ledgers, bans, blocklists. Pure functions.

The admin service returns records and report dataclasses; these functions word them. User text
(reasons, patterns) is shown escaped; nothing here pings anyone (the cog sends every answer with
no allowed mentions). A list that may not fit one message is a ``Listing``: its header and lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import discord
from discord.utils import format_dt

from cogs.modlog_render import jump_url
from cogs.render import format_duration, limit_words, listed, plural
from services.admin import BlocklistReport, LedgerReport, SettingsSummary, StatsReport
from storage.models import Balance, Ban, BlocklistEntry, GuildPolicy, GuildStats, Job, LedgerEntry

MAX_MESSAGE = 2000
MAX_LISTED = 15  # bans, tiers and the like listed in /admin settings before "and N more"

Listing = tuple[str, list[str]]  # a header, then one line per item


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


def default_credits_text(policy: GuildPolicy) -> str:
    credits = policy.default_daily_credits
    if credits is None:
        return "Members now get the bot's default daily credits."
    return f"Members now get {plural(credits, 'credit')} a day (unless a tier or override says)."


def daily_cap_text(policy: GuildPolicy) -> str:
    if policy.daily_cap is None:
        return "This server no longer has a daily cap."
    return f"This server may now spend at most {plural(policy.daily_cap, 'credit')} a day."


def safety_text(policy: GuildPolicy, *, changed: bool) -> str:
    return (
        f"The safety ceiling {'is now' if changed else 'is'} {policy.max_safety}"
        f" ({policy.max_safety_age_restricted} in age-restricted channels)."
    )


def log_channel_text(policy: GuildPolicy) -> str:
    if policy.log_channel_id is not None:
        return f"The moderators' log now goes to <#{policy.log_channel_id}>."
    if policy.approval_mode:
        return (
            "The moderators' log is off. Approval mode needs it: until a log channel is set,"
            " results are posted without approval."
        )
    return "The moderators' log is off."


def approval_text(policy: GuildPolicy) -> str:
    if not policy.approval_mode:
        return (
            "Approval mode is off: results are posted as soon as they're ready"
            " (results already waiting in the log still need a moderator)."
        )
    if policy.log_channel_id is None:
        return (
            "Approval mode is on, but there is no log channel for moderators to approve in."
            " Set a log channel with `/admin log-channel`: until then, results are posted"
            " without approval."
        )
    return "Approval mode is on: results wait for a moderator in the log channel."


def cooldown_text(policy: GuildPolicy) -> str:
    if not policy.cooldown_seconds:
        return "No cooldown between jobs."
    return f"Members now wait {format_duration(policy.cooldown_seconds)} between jobs."


def in_flight_text(policy: GuildPolicy) -> str:
    jobs = plural(policy.max_jobs_in_flight, "job")
    return f"Members may now have {jobs} in progress at once."


def dms_text(policy: GuildPolicy) -> str:
    if policy.dms_enabled:
        return "The bot may now DM members (a DM tells them when a result is rejected)."
    return "The bot won't DM members; it answers in the channel instead."


def tiers_text(policy: GuildPolicy) -> str:
    tiers = sorted(policy.role_tiers.items(), key=lambda kv: (-kv[1], kv[0]))
    return listed([f"<@&{role}>: {c}" for role, c in tiers], limit=MAX_LISTED) or "none"


def until_text(until: datetime | None) -> str:
    """How long a ban lasts."""
    return "until lifted" if until is None else f"until {format_dt(until, 'f')}"


def ban_text(ban: Ban, *, reason_limit: int = 300) -> str:
    text = f"<@{ban.user_id}> {until_text(ban.until)}"
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
    parts = [format_dt(entry.at, "f"), f"{verb} {entry.amount}"]
    if entry.job_id:
        parts.append(f"job `{entry.job_id}`")
    if entry.actor_id:
        parts.append(f"by <@{entry.actor_id}>")
    if entry.reason:
        parts.append(escaped(entry.reason))
    return " · ".join(parts)


def balance_text(user_id: int, balance: Balance) -> str:
    text = (
        f"<@{user_id}> has **{plural(balance.remaining, 'credit')}** left today"
        f" (limit {balance.limit} from {limit_words(balance.limit_source)}"
    )
    if balance.granted:
        text += f", plus {balance.granted} granted"
    text += f"; {balance.used} used). Resets {format_dt(balance.resets_at, 'R')}."
    caps = (("server's", balance.guild_cap_remaining), ("bot-wide", balance.global_cap_remaining))
    for whose, left in caps:
        if left is not None:
            text += f" The {whose} daily cap has {plural(left, 'credit')} left."
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
        default = f"bot-wide default ({summary.global_default_credits})"
    else:
        default = "bot-wide default"
    lines = [
        f"**Channels:** {channels_text(policy)}",
        f"**Roles:** {roles_text(policy)}",
        f"**Daily credits per member:** {default}",
        f"**Server daily cap:** {'none' if policy.daily_cap is None else policy.daily_cap}",
        f"**Role tiers:** {tiers_text(policy)}",
        f"**Safety ceiling:** {policy.max_safety}"
        f" (age-restricted channels: {policy.max_safety_age_restricted})",
        f"**Blocklist:** {plural(summary.blocklist_entries, 'entry')}",
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


def ledger_listing(report: LedgerReport) -> Listing:
    """``/admin quota ledger``: the member's balance, then their recent ledger entries."""
    header = balance_text(report.user_id, report.balance)
    if not report.entries:
        return header + "\nNo ledger entries yet.", []
    return header + "\n**Recent ledger:**", [ledger_text(e) for e in report.entries]


def blocklist_listing(report: BlocklistReport) -> Listing:
    """``/admin blocklist list``: every entry, those not in use marked."""
    if not report.entries:
        return "The blocklist is empty.", []
    header = f"**Blocklist** ({plural(len(report.entries), 'entry')}):"
    if report.problems:
        header += f" ⚠️ {len(report.problems)} not in use (they match nothing; remove or fix them)."
    return header, blocklist_lines(report.entries, report.problems)


def pending_listing(jobs: Sequence[Job], log_channel_id: int | None) -> Listing:
    """``/admin pending``: the held jobs, each with a link to its log entry."""
    if not jobs:
        return "No results are waiting for a moderator.", []
    header = f"**Waiting for a moderator** ({len(jobs)}; missing log entries were posted again):"
    return header, [pending_line(job, log_channel_id) for job in jobs]


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
        f" waiting since {format_dt(job.updated_at, 'R')}"
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
