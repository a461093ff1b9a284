"""What ``/admin`` answers look like: settings, stats, ledgers, bans, blocklists.

The admin service returns records and report dataclasses; these functions word them in the
server's language (``t``: cogs/i18n.py). User text (reasons, patterns) is shown escaped; nothing
here pings anyone (the cog sends every answer with no allowed mentions). A list that may not fit
one message is worded and sent by cogs/admin_listings.py.
"""

from __future__ import annotations

from datetime import datetime

import discord
from discord.utils import format_dt

from cogs.i18n import Speech
from cogs.render import limit_words, listed
from cogs.translator import command_path
from services.admin import SettingsSummary, StatsReport
from services.wording import N_
from storage.models import Balance, Ban, BlocklistEntry, GuildPolicy, GuildStats, LedgerEntry

MAX_LISTED = 15  # bans, tiers and the like listed in /admin settings before "and N more"


def escaped(text: str) -> str:
    """User text shown as text: markdown escaped (mentions are harmless: nothing is pinged)."""
    return discord.utils.escape_markdown(text)


def on_off(t: Speech, value: bool) -> str:
    return t("on") if value else t("off")


def channels_text(t: Speech, policy: GuildPolicy) -> str:
    tags = [f"<#{c}>" for c in sorted(policy.allowed_channel_ids)]
    return listed(t, tags, limit=MAX_LISTED) or t("every channel")


def roles_text(t: Speech, policy: GuildPolicy) -> str:
    tags = [f"<@&{r}>" for r in sorted(policy.allowed_role_ids)]
    return listed(t, tags, limit=MAX_LISTED) or t("everyone")


def where_text(t: Speech, policy: GuildPolicy, *, changed: bool) -> str:
    """Where the studio works, as a sentence (``changed``: it just changed)."""
    if not policy.allowed_channel_ids:
        if changed:
            return t("The studio now works in every channel.")
        return t("The studio works in every channel.")
    channels = channels_text(t, policy)
    if changed:
        return t("The studio now works in {channels}.", channels=channels)
    return t("The studio works in {channels}.", channels=channels)


def who_text(t: Speech, policy: GuildPolicy, *, changed: bool) -> str:
    """Who may use the studio, as a sentence (``changed``: it just changed)."""
    if not policy.allowed_role_ids:
        return t("The studio is now for everyone.") if changed else t("The studio is for everyone.")
    roles = roles_text(t, policy)
    if changed:
        return t("The studio is now for {roles}.", roles=roles)
    return t("The studio is for {roles}.", roles=roles)


def default_credits_text(t: Speech, policy: GuildPolicy) -> str:
    credits = policy.default_daily_credits
    if credits is None:
        return t("Members now get the bot's default daily credits.")
    return t.n(
        "Members now get {count} credit a day (unless a tier or override says).",
        "Members now get {count} credits a day (unless a tier or override says).",
        credits,
    )


def daily_cap_text(t: Speech, policy: GuildPolicy) -> str:
    if policy.daily_cap is None:
        return t("This server no longer has a daily cap.")
    return t.n(
        "This server may now spend at most {count} credit a day.",
        "This server may now spend at most {count} credits a day.",
        policy.daily_cap,
    )


def safety_text(t: Speech, policy: GuildPolicy, *, changed: bool) -> str:
    normal, aged = policy.max_safety, policy.max_safety_age_restricted
    if changed:
        return t(
            "The safety ceiling is now {ceiling} ({aged} in age-restricted channels).",
            ceiling=normal,
            aged=aged,
        )
    return t(
        "The safety ceiling is {ceiling} ({aged} in age-restricted channels).",
        ceiling=normal,
        aged=aged,
    )


def log_channel_text(t: Speech, policy: GuildPolicy) -> str:
    if policy.log_channel_id is not None:
        return t(
            "The moderators' log now goes to {channel}.", channel=f"<#{policy.log_channel_id}>"
        )
    if policy.approval_mode:
        return t(
            "The moderators' log is off. Approval mode needs it: until a log channel is set,"
            " results are posted without approval."
        )
    return t("The moderators' log is off.")


def approval_text(t: Speech, policy: GuildPolicy) -> str:
    if not policy.approval_mode:
        return t(
            "Approval mode is off: results are posted as soon as they're ready"
            " (results already waiting in the log still need a moderator)."
        )
    if policy.log_channel_id is None:
        return t(
            "Approval mode is on, but there is no log channel for moderators to approve in."
            " Set a log channel with {command}: until then, results are posted without approval.",
            command=f"`{command_path(t, 'admin log-channel')}`",
        )
    return t("Approval mode is on: results wait for a moderator in the log channel.")


def cooldown_text(t: Speech, policy: GuildPolicy) -> str:
    if not policy.cooldown_seconds:
        return t("No cooldown between jobs.")
    duration = t.duration(policy.cooldown_seconds)
    return t("Members now wait {duration} between jobs.", duration=duration)


def in_flight_text(t: Speech, policy: GuildPolicy) -> str:
    return t.n(
        "Members may now have {count} job in progress at once.",
        "Members may now have {count} jobs in progress at once.",
        policy.max_jobs_in_flight,
    )


def dms_text(t: Speech, policy: GuildPolicy) -> str:
    if policy.dms_enabled:
        return t("The bot may now DM members (a DM tells them when a result is rejected).")
    return t("The bot won't DM members; it answers in the channel instead.")


def tiers_text(t: Speech, policy: GuildPolicy) -> str:
    tiers = sorted(policy.role_tiers.items(), key=lambda kv: (-kv[1], kv[0]))
    tags = [f"<@&{role}>: {t.number(c)}" for role, c in tiers]
    return listed(t, tags, limit=MAX_LISTED) or t("none")


def until_text(t: Speech, until: datetime | None) -> str:
    """How long a ban lasts."""
    if until is None:
        return t("until lifted")
    return t("until {time}", time=format_dt(until, "f"))


def _reason(ban: Ban, limit: int) -> str:
    reason = ban.reason or ""
    if len(reason) > limit:
        reason = reason[: limit - 1] + "…"
    return escaped(reason)


def ban_text(t: Speech, ban: Ban, *, reason_limit: int = 300) -> str:
    """A ban in a list: who, until when, why."""
    user = f"<@{ban.user_id}>"
    reason = _reason(ban, reason_limit)
    if ban.until is None:
        if reason:
            return t("{user} until lifted: {reason}", user=user, reason=reason)
        return t("{user} until lifted", user=user)
    time = format_dt(ban.until, "f")
    if reason:
        return t("{user} until {time}: {reason}", user=user, time=time, reason=reason)
    return t("{user} until {time}", user=user, time=time)


def banned_text(t: Speech, ban: Ban) -> str:
    """``/admin ban``'s answer."""
    user = f"<@{ban.user_id}>"
    reason = _reason(ban, 300)
    if ban.until is None:
        if reason:
            return t("Banned {user} until lifted: {reason}.", user=user, reason=reason)
        return t("Banned {user} until lifted.", user=user)
    time = format_dt(ban.until, "f")
    if reason:
        return t("Banned {user} until {time}: {reason}.", user=user, time=time, reason=reason)
    return t("Banned {user} until {time}.", user=user, time=time)


def block_text(t: Speech, entry: BlocklistEntry) -> str:
    number, pattern = str(entry.id), escaped(entry.pattern)  # str: an id is never "1,234"
    if entry.is_regex:
        return t("#{number} (regex) {pattern}", number=number, pattern=pattern)
    return t("#{number} (text) {pattern}", number=number, pattern=pattern)


_LEDGER_VERBS = {
    "reserve": N_("reserved {amount}"),
    "commit": N_("committed {amount}"),
    "refund": N_("refunded {amount}"),
    "grant": N_("granted {amount}"),
    "reset": N_("reset {amount}"),
}


def ledger_text(t: Speech, entry: LedgerEntry) -> str:
    verb = _LEDGER_VERBS.get(entry.kind.value)
    what = t(verb, amount=entry.amount) if verb else f"{entry.kind.value} {entry.amount}"
    parts = [format_dt(entry.at, "f"), what]
    if entry.job_id:
        parts.append(t("job `{job_id}`", job_id=entry.job_id))
    if entry.actor_id:
        parts.append(t("by {user}", user=f"<@{entry.actor_id}>"))
    if entry.reason:
        parts.append(escaped(entry.reason))
    return " · ".join(parts)


def balance_text(t: Speech, user_id: int, balance: Balance) -> str:
    """A member's credits today: what is left, where the limit comes from, the caps."""
    args = {
        "user": f"<@{user_id}>",
        "limit": balance.limit,
        "source": limit_words(t, balance.limit_source),
        "used": balance.used,
    }
    if balance.granted:
        text = t.n(
            "{user} has **{count} credit** left today (limit {limit} from {source},"
            " plus {granted} granted; {used} used).",
            "{user} has **{count} credits** left today (limit {limit} from {source},"
            " plus {granted} granted; {used} used).",
            balance.remaining,
            granted=balance.granted,
            **args,
        )
    else:
        text = t.n(
            "{user} has **{count} credit** left today (limit {limit} from {source}; {used} used).",
            "{user} has **{count} credits** left today (limit {limit} from {source}; {used} used).",
            balance.remaining,
            **args,
        )
    sentences = [text, t("Resets {when}.", when=format_dt(balance.resets_at, "R"))]
    if balance.guild_cap_remaining is not None:
        sentences.append(
            t.n(
                "The server's daily cap has {count} credit left.",
                "The server's daily cap has {count} credits left.",
                balance.guild_cap_remaining,
            )
        )
    if balance.global_cap_remaining is not None:
        sentences.append(
            t.n(
                "The bot-wide daily cap has {count} credit left.",
                "The bot-wide daily cap has {count} credits left.",
                balance.global_cap_remaining,
            )
        )
    return " ".join(sentences)


def stats_text(t: Speech, stats: GuildStats) -> str:
    lines = [
        t(
            "Jobs: **{jobs}** ({delivered} delivered, {failed} failed, {cancelled} cancelled,"
            " {rejected} rejected, {in_flight} in progress)",
            jobs=stats.jobs,
            delivered=stats.delivered,
            failed=stats.failures,
            cancelled=stats.cancelled,
            rejected=stats.rejected,
            in_flight=stats.in_flight,
        ),
        t(
            "Images: **{images}** · Credits spent: **{credits}**",
            images=stats.images_delivered,
            credits=stats.credits_spent,
        ),
    ]
    if stats.top_users:
        top = ", ".join(f"<@{user}> {t.number(spent)}" for user, spent in stats.top_users)
        lines.append(t("Top: {users}", users=top))
    return "\n".join(lines)


def stats_embed(t: Speech, report: StatsReport) -> discord.Embed:
    embed = discord.Embed(title=t("Studio stats"))
    embed.add_field(name=t("Today (UTC)"), value=stats_text(t, report.today)[:1024], inline=False)
    embed.add_field(name=t("Last 7 days"), value=stats_text(t, report.week)[:1024], inline=False)
    return embed


def _default_credits(t: Speech, summary: SettingsSummary) -> str:
    if summary.policy.default_daily_credits is not None:
        return t.number(summary.policy.default_daily_credits)
    if summary.global_default_credits is not None:
        return t("bot-wide default ({credits})", credits=summary.global_default_credits)
    return t("bot-wide default")


def settings_embed(t: Speech, summary: SettingsSummary) -> discord.Embed:
    policy = summary.policy
    cap = t("none") if policy.daily_cap is None else t.number(policy.daily_cap)
    log_channel = t("not set") if policy.log_channel_id is None else f"<#{policy.log_channel_id}>"
    cooldown = t.duration(policy.cooldown_seconds) if policy.cooldown_seconds else t("none")
    safety = t(
        "{ceiling} (age-restricted channels: {aged})",
        ceiling=policy.max_safety,
        aged=policy.max_safety_age_restricted,
    )
    bans = len(summary.active_bans)
    rows = [
        (t("Channels:"), channels_text(t, policy)),
        (t("Roles:"), roles_text(t, policy)),
        (t("Daily credits per member:"), _default_credits(t, summary)),
        (t("Server daily cap:"), cap),
        (t("Role tiers:"), tiers_text(t, policy)),
        (t("Safety ceiling:"), safety),
        (
            t("Blocklist:"),
            t.n("{count} entry", "{count} entries", summary.blocklist_entries),
        ),
        (t("Log channel:"), log_channel),
        (t("Approval before posting:"), on_off(t, policy.approval_mode)),
        (t("Cooldown:"), cooldown),
        (t("Jobs in flight per member:"), t.number(policy.max_jobs_in_flight)),
        (t("DMs to members:"), on_off(t, policy.dms_enabled)),
        (t("Private results:"), on_off(t, policy.private_results)),
        (t("Bans:"), t.n("{count} active", "{count} active", bans)),
    ]
    lines = [f"**{label}** {value}" for label, value in rows]
    # short reasons, so the whole list fits the embed
    lines += [f"- {ban_text(t, b, reason_limit=80)}" for b in summary.active_bans[:MAX_LISTED]]
    if bans > MAX_LISTED:
        lines.append("- " + t.n("and {count} more", "and {count} more", bans - MAX_LISTED))
    return discord.Embed(title=t("Studio settings"), description="\n".join(lines)[:4096])
