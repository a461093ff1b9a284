"""What members keep: references (/references, "Save as reference", /imagine's ``references``),
favourites (the ⭐ Favourite button, /favourites) and /history.

The rules are the library service's (services/library.py); here are the Discord sides: the name
form, fresh image URLs read from the posted result (Discord's signed URLs expire), the answers,
and the lists (cogs/library_pages.py). Everything is answered privately.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from cogs.answers import guarded, within_budget
from cogs.i18n import Speech, speech_for
from cogs.inputs import studio
from cogs.library_pages import (
    PAGE_ITEMS,
    attachment_for,
    jump_url,
    result_message,
    send_page,
    viewer,
)
from cogs.private import is_private
from cogs.routing import JOB_ID, StudioButton, StudioModal
from cogs.tree import reply
from services.jobs import JobSpec
from services.library import MAX_NAME_LENGTH, MAX_REFERENCES, Named
from services.wording import N_
from storage.models import Job, JobKind

if TYPE_CHECKING:
    from bot import StudioBot

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 2.0  # seconds to read a result message; past that the stored URL is used
REFERENCE_FORM_PREFIX = "library:ref:"
_NAME_LABEL = N_("Name")
_NAME_PLACEHOLDER = N_("A short name, e.g. hero or watercolour")


def _named(interaction: discord.Interaction) -> tuple[int, int | None]:
    return interaction.user.id, interaction.guild_id


# -- references ---------------------------------------------------------------------------------


async def save_as_reference(interaction: discord.Interaction, job: Job, index: int) -> None:
    """Ask for a name, then keep image ``index`` (0-based) of ``job`` in the member's set.

    Refusals (another member's result, a removed or out-of-place age-restricted one, a full set)
    raise before the form opens, and again when it is sent. Must be the interaction's first
    answer (a form).
    """
    bot = studio(interaction)
    name = await within_budget(
        interaction, bot.library.suggest_name(job, index, viewer(interaction))
    )
    t = speech_for(interaction.locale)
    modal = ReferenceForm(t, job.id, index, name, open_forms=bot.open_forms)
    await interaction.response.send_modal(modal)


class ReferenceForm(StudioModal):
    """The name of a new reference (suggested: the first free ``ref-N``)."""

    def __init__(
        self, t: Speech, job_id: str, index: int, suggestion: str, *, open_forms: set[str]
    ) -> None:
        super().__init__(
            title=t("Save as reference"), prefix=REFERENCE_FORM_PREFIX, open_forms=open_forms
        )
        self.name: discord.ui.TextInput[ReferenceForm] = discord.ui.TextInput(
            label=t(_NAME_LABEL),
            placeholder=t(_NAME_PLACEHOLDER),
            default=suggestion,
            min_length=1,
            max_length=MAX_NAME_LENGTH,
        )
        self.add_item(self.name)
        self.job_id, self.index = job_id, index

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await guarded(interaction, self._save, job_id=self.job_id)

    async def _save(self, interaction: discord.Interaction) -> None:
        library = studio(interaction).library
        name = await library.save_reference(
            self.job_id, self.index, self.name.value, viewer(interaction)
        )
        t = speech_for(interaction.locale)
        text = t(
            "Saved image {number} of job `{job_id}` as reference `{name}`."
            " Use it with `/imagine` and `references: {name}`.",
            number=self.index + 1,
            job_id=self.job_id,
            name=name,
        )
        await reply(interaction, "🖼️ " + text)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        await studio(interaction).tree.report(interaction, error, job_id=self.job_id)


async def apply_references(
    interaction: discord.Interaction, spec: JobSpec, references: str | None
) -> JobSpec:
    """/imagine's ``references``: the spec as an edit of the named references' images (before
    any it has). Unknown names, too many images and age-restricted references in a normal
    channel are refused (raised) before anything is charged."""
    if references is None or not references.strip():
        return spec
    bot = studio(interaction)
    chosen = await bot.library.resolve(references, viewer(interaction), others=len(spec.image_urls))
    urls = await _fresh_urls(bot, chosen)
    return replace(spec, kind=JobKind.EDIT, image_urls=(*urls, *spec.image_urls))


async def _fresh_urls(client: discord.Client, chosen: list[Named]) -> list[str]:
    """Each reference's image as posted (a fresh signed URL), else the stored result URL."""
    jobs = {n.job.id: n.job for n in chosen}

    async def read(job: Job) -> discord.Message | None:
        try:
            return await asyncio.wait_for(result_message(client, job), FETCH_TIMEOUT)
        except TimeoutError:
            log.info("job %s: reading the result message timed out", job.id)
            return None

    messages = dict(zip(jobs, await asyncio.gather(*map(read, jobs.values())), strict=True))
    return [
        attachment_for(messages[n.job.id], n.job, n.index) or n.job.result_urls[n.index]
        for n in chosen
    ]


async def references_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[Choice[str]]:
    """The member's reference names, completing the last item of a comma-separated list."""
    *done, partial = current.split(",")
    done = [d.strip() for d in done if d.strip()]
    prefix = "".join(f"{d}, " for d in done)
    used = {d.casefold() for d in done}
    wanted = partial.strip().casefold()
    names = await _names(interaction)
    fitting = [n for n in names if n.casefold() not in used and wanted in n.casefold()]
    fitting.sort(key=lambda n: not n.casefold().startswith(wanted))
    values = [prefix + n for n in fitting if len(prefix + n) <= 100]
    return [Choice(name=v, value=v) for v in values[:25]]


async def _name_autocomplete(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
    wanted = current.strip().casefold()
    names = [n for n in await _names(interaction) if wanted in n.casefold()]
    return [Choice(name=n, value=n) for n in names[:25]]


async def _names(interaction: discord.Interaction) -> list[str]:
    return await studio(interaction).library.names(*_named(interaction))


def _reference_line(t: Speech, named: Named, here_age_restricted: bool) -> str:
    job = named.job
    source = t("image {number} of job `{job_id}`", number=named.index + 1, job_id=job.id)
    parts = [f"`{named.name}`", source]
    if job.result_message_id is None:
        parts.append(t("removed by a moderator"))
    elif not is_private(job):  # an ephemeral message: no link reaches it
        parts.append(f"[{t('Jump to the result')}]({jump_url(job)})")
    if job.age_restricted_channel and not here_age_restricted:
        parts.append(t("age-restricted: usable only in age-restricted channels"))
    return "- " + " · ".join(parts)


# -- favourites ---------------------------------------------------------------------------------


class FavouriteButton(StudioButton, template=r"studio:fav:" + JOB_ID):
    """⭐ on a result: adds it to the clicker's favourites, or takes it out again."""

    prefix = "studio"
    subject = "job"
    action = "fav"
    label = N_("Favourite")
    emoji = "⭐"

    async def run(self, interaction: discord.Interaction) -> None:
        library = studio(interaction).library
        added = await library.toggle_favourite(self.target, viewer(interaction))
        t = speech_for(interaction.locale)
        if added:
            text = "⭐ " + t("Added to your favourites: see them with `/favourites`.")
        else:
            text = t("Removed from your favourites.")
        await reply(interaction, text)


LIBRARY_ITEMS = (FavouriteButton, *PAGE_ITEMS)


# -- the commands -------------------------------------------------------------------------------


class LibraryCog(commands.Cog):
    def __init__(self, bot: StudioBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*LIBRARY_ITEMS)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*LIBRARY_ITEMS)

    references = app_commands.Group(name="references", description="Your saved reference images")

    @references.command(name="list", description="Your saved reference images")
    async def references_list(self, interaction: discord.Interaction) -> None:
        mine = await self.bot.library.references(*_named(interaction))
        t = speech_for(interaction.locale)
        if not mine:
            text = t(
                "You have no references here yet: choose “Save as reference” for an image of"
                " one of your results."
            )
            await reply(interaction, text)
            return
        here = viewer(interaction).age_restricted_here
        head = "🖼️ " + t(
            "**Your references** ({count} of {limit})", count=len(mine), limit=MAX_REFERENCES
        )
        lines = [head, *(_reference_line(t, n, here) for n in mine)]
        lines.append("-# " + t("Use them with `/imagine` and `references`, comma-separated."))
        await reply(interaction, "\n".join(lines))

    @references.command(name="remove", description="Remove one of your saved reference images")
    @app_commands.describe(name="The reference's name")
    @app_commands.autocomplete(name=_name_autocomplete)
    async def references_remove(
        self, interaction: discord.Interaction, name: Range[str, 1, 64]
    ) -> None:
        removed = await self.bot.library.remove_reference(*_named(interaction), name)
        t = speech_for(interaction.locale)
        await reply(interaction, t("Removed reference `{name}`.", name=removed))

    @app_commands.command(name="history", description="Page through your results in this server")
    async def history(self, interaction: discord.Interaction) -> None:
        await send_page(interaction, "h")

    @app_commands.command(name="favourites", description="Page through your favourite results")
    async def favourites(self, interaction: discord.Interaction) -> None:
        await send_page(interaction, "f")


async def setup(bot: StudioBot) -> None:
    await bot.add_cog(LibraryCog(bot))
