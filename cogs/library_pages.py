"""The paged lists of results: /history, /favourites and /admin history.

A page is an ephemeral message: five results (prompt, date, job id, a jump link), Previous and
Next, and a "Show a result" select that posts one of them privately with its action buttons.
The buttons and the select are DynamicItems whose custom_ids carry the list (``h`` history,
``f`` favourites, ``a`` the moderators' history), the page, the member the list was made for
and, for ``a``, the member it is filtered on (0: everyone), so they work after a restart; a
click by anyone else is refused.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Self

import discord

from cogs.admin_options import NotAnAdmin, has_manage_guild
from cogs.answers import guarded
from cogs.buttons import result_view
from cogs.i18n import Speech, speech_for
from cogs.inputs import age_restricted, studio
from cogs.presenter import files_of, fit
from cogs.private import is_private
from cogs.render import NO_MENTIONS, clipped, escaped, result_embed
from cogs.routing import Routed
from services.errors import NotAllowed
from services.library import PAGE_SIZE, Page, Viewer, check_visible
from services.wording import N_
from storage.models import Job

log = logging.getLogger(__name__)

PROMPT_CHARS = 150
_NOT_YOURS = N_("This list belongs to the member who asked for it: use the command yourself.")
_SHOW = N_("Show a result")


def viewer(interaction: discord.Interaction) -> Viewer:
    return Viewer(interaction.user.id, interaction.guild_id, age_restricted(interaction))


def jump_url(job: Job) -> str:
    where = job.guild_id if job.guild_id is not None else "@me"
    return f"https://discord.com/channels/{where}/{job.channel_id}/{job.result_message_id}"


def _speech(interaction: discord.Interaction, kind: str) -> Speech:
    # the moderators' list speaks the server's language, the members' their own
    return speech_for(interaction.guild_locale if kind == "a" else interaction.locale)


async def load_page(interaction: discord.Interaction, kind: str, page: int, member: int) -> Page:
    library = studio(interaction).library
    who = viewer(interaction)
    if kind == "f":
        return await library.favourites(who, page)
    if kind == "h":
        return await library.history(who.guild_id, page, user_id=who.user_id, include_removed=False)
    return await library.history(who.guild_id, page, user_id=member or None, include_removed=True)


def _heading(t: Speech, kind: str, page: Page, member: int) -> str:
    if kind == "f":
        title = "⭐ " + t("**Your favourites**")
    elif kind == "h":
        title = "📜 " + t("**Your results**")
    elif member:
        title = "📜 " + t("**Results by {user}**", user=f"<@{member}>")
    else:
        title = "📜 " + t("**Recent results in this server**")
    counted = t.n("{count} result", "{count} results", page.total)
    where = t("page {page} of {pages}", page=page.number + 1, pages=page.pages)
    return f"{title} · {where} · {counted}"


def _empty(t: Speech, kind: str, member: int) -> str:
    if kind == "f":
        return t("You have no favourites here yet: click ⭐ Favourite on a result to add it.")
    if kind == "h":
        return t("You have no results in this server yet.")
    if member:
        return t("{user} has no results in this server yet.", user=f"<@{member}>")
    return t("There are no results in this server yet.")


def _entry(t: Speech, kind: str, number: int, job: Job) -> str:
    parts = [f"**{number}.**", discord.utils.format_dt(job.created_at, "f"), f"`{job.id}`"]
    if kind == "a":
        parts.insert(1, f"<@{job.user_id}>")
    if job.result_message_id is None:
        parts.append(t("removed by a moderator"))
    elif not is_private(job):  # a private result's message is ephemeral: no link reaches it
        parts.append(f"[{t('Jump to the result')}]({jump_url(job)})")
    prompt = escaped(clipped(" ".join(job.prompt.split()), PROMPT_CHARS))
    return " · ".join(parts) + f"\n> {prompt}"


def render_page(t: Speech, kind: str, page: Page, viewer_id: int, member: int) -> dict[str, Any]:
    """The message's content and view (keyword arguments for send/edit)."""
    if not page.total:
        return {"content": _empty(t, kind, member), "view": None}
    first = page.number * PAGE_SIZE + 1
    lines = [_heading(t, kind, page, member)]
    lines += [_entry(t, kind, first + i, job) for i, job in enumerate(page.jobs)]
    view = discord.ui.View(timeout=None)
    ids = (kind, page.number, viewer_id, member)
    view.add_item(PageButton("prev", *ids, disabled=page.number == 0, t=t))
    view.add_item(PageButton("next", *ids, disabled=page.number + 1 >= page.pages, t=t))
    shown = [(first + i, job) for i, job in enumerate(page.jobs) if job.result_message_id]
    if shown:
        view.add_item(ShowSelect(kind, viewer_id, shown, t=t))
    view.stop()  # clicks arrive through the registered DynamicItems, not this object
    return {"content": "\n".join(lines), "view": view}


async def send_page(interaction: discord.Interaction, kind: str, member: int = 0) -> None:
    """The list's first page, answered privately."""
    page = await load_page(interaction, kind, 0, member)
    shown = render_page(_speech(interaction, kind), kind, page, interaction.user.id, member)
    view = shown["view"] or discord.utils.MISSING
    await interaction.response.send_message(
        shown["content"], view=view, ephemeral=True, allowed_mentions=NO_MENTIONS
    )


def _check_clicker(interaction: discord.Interaction, kind: str, viewer_id: int) -> None:
    if interaction.user.id != viewer_id:
        raise NotAllowed("page", _NOT_YOURS)
    if kind == "a" and not has_manage_guild(interaction):
        raise NotAnAdmin()


class PageButton(
    Routed,
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"library:(?P<way>prev|next):(?P<kind>[hfa]):(?P<page>[0-9]{1,6}):"
    r"(?P<viewer>[0-9]{1,20}):(?P<member>[0-9]{1,20})",
):
    """Previous / Next on a list: ``page`` is the page shown when the button was made."""

    def __init__(
        self,
        way: str,
        kind: str,
        page: int,
        viewer_id: int,
        member: int,
        *,
        disabled: bool = False,
        t: Speech | None = None,
    ) -> None:
        t = t or speech_for(None)
        label = t("Previous") if way == "prev" else t("Next")
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji="◀️" if way == "prev" else "▶️",
                disabled=disabled,
                custom_id=f"library:{way}:{kind}:{page}:{viewer_id}:{member}",
            )
        )
        self.way, self.kind, self.page = way, kind, page
        self.viewer_id, self.member = viewer_id, member

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(
            match["way"],
            match["kind"],
            int(match["page"]),
            int(match["viewer"]),
            int(match["member"]),
        )

    async def callback(self, interaction: discord.Interaction) -> None:
        await guarded(interaction, self._turn)

    async def _turn(self, interaction: discord.Interaction) -> None:
        _check_clicker(interaction, self.kind, self.viewer_id)
        wanted = self.page - 1 if self.way == "prev" else self.page + 1
        page = await load_page(interaction, self.kind, wanted, self.member)
        t = _speech(interaction, self.kind)
        shown = render_page(t, self.kind, page, self.viewer_id, self.member)
        await interaction.response.edit_message(**shown, allowed_mentions=NO_MENTIONS)


class ShowSelect(
    Routed,
    discord.ui.DynamicItem[discord.ui.Select],
    template=r"library:show:(?P<kind>[hfa]):(?P<viewer>[0-9]{1,20})",
):
    """Posts the chosen result privately; the options' values are job ids."""

    def __init__(
        self,
        kind: str,
        viewer_id: int,
        jobs: Sequence[tuple[int, Job]] = (),
        *,
        t: Speech | None = None,
    ) -> None:
        t = t or speech_for(None)
        options = [
            discord.SelectOption(
                label=clipped(f"{n}. " + " ".join(job.prompt.split()), 100),
                value=job.id,
                description=job.id,
            )
            for n, job in jobs
        ] or [discord.SelectOption(label="-", value="-")]
        super().__init__(
            discord.ui.Select(
                placeholder=t(_SHOW),
                options=options,
                custom_id=f"library:show:{kind}:{viewer_id}",
            )
        )
        self.kind, self.viewer_id = kind, viewer_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match["kind"], int(match["viewer"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        values = dict(interaction.data or {}).get("values") or [""]
        await guarded(interaction, lambda i: self._show(i, str(values[0])), job_id=values[0])

    async def _show(self, interaction: discord.Interaction, job_id: str) -> None:
        # The submitted value is the member's to craft: check it belongs to this list.
        _check_clicker(interaction, self.kind, self.viewer_id)
        library, who = studio(interaction).library, viewer(interaction)
        job = await library.job(job_id)
        check_visible(job, who, "show", moderator=self.kind == "a")
        if self.kind == "h" and job.user_id != interaction.user.id:
            raise NotAllowed("show", "You can only show your own results.")
        if self.kind == "f" and not await library.is_favourite(job.id, who):
            raise NotAllowed("show", "You can only show your own results.")
        await show_privately(interaction, job)


async def result_message(client: discord.Client, job: Job) -> discord.Message | None:
    """The result as posted in Discord: its attachments have fresh signed URLs."""
    if job.result_message_id is None:
        return None
    channel = client.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
    try:
        return await channel.fetch_message(job.result_message_id)
    except discord.HTTPException as err:
        log.info("job %s: result message unavailable (%s)", job.id, err)
        return None


def attachment_for(message: discord.Message | None, job: Job, index: int) -> str | None:
    """Image ``index`` (0-based) of the posted result: the file named for it, else by position."""
    if message is None:
        return None
    named = f"{job.id}_{index + 1}."
    for attachment in message.attachments:
        if attachment.filename.startswith(named):
            return attachment.url
    if index < len(message.attachments):
        return message.attachments[index].url
    return None


async def show_privately(interaction: discord.Interaction, job: Job) -> None:
    """Post a result for this member only, with its action buttons (like /show, ephemeral)."""
    bot = studio(interaction)
    await interaction.response.defer(ephemeral=True, thinking=True)
    images, missing = await bot.jobs.download(job.id, job.result_urls)
    if not images:
        message = await result_message(bot, job)
        urls = [a.url for a in message.attachments] if message else []
        images, missing = await bot.jobs.download(job.id, urls)
    if not images:
        raise NotAllowed(
            "show", "The images of job `{job_id}` are no longer available.", job_id=job.id
        )
    fitted = await fit(images, missing, stem=job.id, per_file_limit=interaction.filesize_limit)
    t = speech_for(interaction.locale)
    await interaction.followup.send(
        embed=result_embed(t, job, fitted),
        files=files_of(fitted),
        view=result_view(t, job, bot.jobs.cost_of),
        ephemeral=True,
        allowed_mentions=NO_MENTIONS,
    )


PAGE_ITEMS = (PageButton, ShowSelect)
