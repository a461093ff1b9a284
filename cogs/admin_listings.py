"""``/admin`` answers that list things (a ledger, the blocklist, held results) and may not fit
one message: worded in the server's language, then sent with the whole list as a text file
when the start is all that fits.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import discord
from discord.utils import format_dt

from cogs.admin_render import balance_text, block_text, escaped, ledger_text
from cogs.i18n import Speech
from cogs.modlog_render import jump_url
from cogs.tree import reply
from services.admin import BlocklistReport, LedgerReport
from services.wording import Wording
from storage.models import BlocklistEntry, Job

MAX_MESSAGE = 2000

Listing = tuple[str, list[str]]  # a header, then one line per item


def ledger_listing(t: Speech, report: LedgerReport) -> Listing:
    """``/admin quota ledger``: the member's balance, then their recent ledger entries."""
    header = balance_text(t, report.user_id, report.balance)
    if not report.entries:
        return header + "\n" + t("No ledger entries yet."), []
    lines = [ledger_text(t, e) for e in report.entries]
    return header + "\n**" + t("Recent ledger:") + "**", lines


def blocklist_listing(t: Speech, report: BlocklistReport) -> Listing:
    """``/admin blocklist list``: every entry, those not in use marked."""
    if not report.entries:
        return t("The blocklist is empty."), []
    count = len(report.entries)
    header = t.n("**Blocklist** ({count} entry):", "**Blocklist** ({count} entries):", count)
    if report.problems:
        header += " ⚠️ " + t.n(
            "{count} not in use (they match nothing; remove or fix them).",
            "{count} not in use (they match nothing; remove or fix them).",
            len(report.problems),
        )
    return header, blocklist_lines(t, report.entries, report.problems)


def pending_listing(t: Speech, jobs: Sequence[Job], log_channel_id: int | None) -> Listing:
    """``/admin pending``: the held jobs, each with a link to its log entry."""
    if not jobs:
        return t("No results are waiting for a moderator."), []
    header = t.n(
        "**Waiting for a moderator** ({count}; missing log entries were posted again):",
        "**Waiting for a moderator** ({count}; missing log entries were posted again):",
        len(jobs),
    )
    return header, [pending_line(t, job, log_channel_id) for job in jobs]


def blocklist_lines(
    t: Speech, entries: Iterable[BlocklistEntry], invalid: dict[int, Wording]
) -> list[str]:
    """One line per entry; entries that failed validation (and so match nothing) are marked."""
    lines = []
    for entry in entries:
        line = block_text(t, entry)
        if entry.id in invalid:
            why = invalid[entry.id]
            reason = escaped(t.wording(why))
            line = "⚠️ " + t("{entry} — not in use: {reason}", entry=line, reason=reason)
        lines.append(line)
    return lines


def pending_line(t: Speech, job: Job, log_channel_id: int | None) -> str:
    """``/admin pending``: one held job, with a link to its log entry."""
    args = {
        "job_id": job.id,
        "user": f"<@{job.user_id}>",
        "channel": f"<#{job.channel_id}>",
        "when": format_dt(job.updated_at, "R"),
    }
    if job.log_message_id is None or log_channel_id is None:
        return t(
            "`{job_id}` by {user} in {channel}, waiting since {when}: no log entry"
            " (it could not be posted: check the log channel)",
            **args,
        )
    url = jump_url(job.guild_id, log_channel_id, job.log_message_id)
    return t(
        "`{job_id}` by {user} in {channel}, waiting since {when}: [log entry]({url})",
        url=url,
        **args,
    )


def split_long(t: Speech, header: str, lines: Sequence[str]) -> tuple[str, str | None]:
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
    more = len(lines) - (len(shown) - 1)
    shown.append(
        "… " + t.n("{count} more in the attached file.", "{count} more in the attached file.", more)
    )
    return "\n".join(shown), body


async def long_reply(
    t: Speech, interaction: discord.Interaction, listing: Listing, filename: str
) -> None:
    """A list that may not fit one message: the start inline, the whole list as a text file."""
    text, whole = split_long(t, *listing)
    if whole is None:
        await reply(interaction, text)
        return
    await reply(interaction, text, file=discord.File(io.BytesIO(whole.encode()), filename))
