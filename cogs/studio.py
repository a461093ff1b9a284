"""The studio's commands: /imagine, /edit, the "Edit image" message menu, /quota and /show.

Names, options and choices are part of the product (the shared ones: cogs/studio_options.py).
Handlers only turn options into a ``JobSpec`` (the member's presets fill what they omit) and
hand it to ``launch``; refusals raise and the tree answers them ephemerally.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from client.models import MAX_PROMPT_LENGTH, DownloadedImage
from cogs.answers import answered_in_time, within_budget
from cogs.buttons import (
    PromptModal,
    add_job_buttons,
    launch,
    remove_job_buttons,
    result_view,
)
from cogs.i18n import Speech, speech_for
from cogs.inputs import (
    check_age_restriction,
    check_attachment,
    may_act_on,
    message_images,
    requester,
    studio_job_id,
)
from cogs.library import apply_references, references_autocomplete
from cogs.presenter import files_of, fit
from cogs.private import is_private
from cogs.quota_text import cap_lines, default_cost_line, default_spec
from cogs.render import NO_MENTIONS, limit_words, result_embed, usable_credits
from cogs.studio_options import (
    Count,
    Prompt,
    Seed,
    StyleName,
    generation_options,
    given_of,
    spec_for,
)
from cogs.tree import reply
from services.errors import InvalidInput, NotAllowed
from services.jobs import JobSpec
from storage.models import Balance, Job, JobKind, JobState

if TYPE_CHECKING:
    from bot import StudioBot

log = logging.getLogger(__name__)

JOB_ID_TEXT = re.compile(r"[A-Za-z0-9_-]{1,64}")


class StudioCog(commands.Cog):
    def __init__(self, bot: StudioBot) -> None:
        self.bot = bot
        self.edit_menu = app_commands.ContextMenu(name="Edit image", callback=self.edit_image)
        # Offered in DMs only when they may be used there (ALLOW_DMS), instead of refused there.
        dms = bot.settings.allow_dms
        where = app_commands.AppCommandContext(guild=True, dm_channel=dms, private_channel=dms)
        for command in (self.imagine, self.edit, self.edit_menu):
            command.allowed_contexts = where

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.edit_menu)
        add_job_buttons(self.bot)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.edit_menu.name, type=self.edit_menu.type)
        remove_job_buttons(self.bot)

    # -- generation ---------------------------------------------------------------------------

    @app_commands.command(name="imagine", description="Generate images from a text prompt")
    @app_commands.describe(
        prompt=f"What to draw (up to {MAX_PROMPT_LENGTH:,} characters)",
        references="Your saved references to use, comma-separated",
    )
    @app_commands.autocomplete(references=references_autocomplete)
    @generation_options
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: Prompt,
        aspect_ratio: Choice[str] | None = None,
        resolution: Choice[str] | None = None,
        count: Count | None = None,
        seed: Seed | None = None,
        format: Choice[str] | None = None,
        safety: Choice[int] | None = None,
        web_search: bool = False,
        style: StyleName | None = None,
        private: bool = False,
        references: str | None = None,
    ) -> None:
        given = given_of(aspect_ratio, resolution, count, format, safety)

        async def spec() -> JobSpec:
            wanted = await spec_for(
                interaction,
                JobKind.IMAGINE,
                prompt,
                given,
                seed=seed,
                web_search=web_search,
                style=style,
                private=private,
            )
            if references and references.strip():
                wanted = await apply_references(interaction, wanted, references)
            return wanted

        await launch(interaction, spec, private=private)

    @app_commands.command(name="edit", description="Edit or combine images with a text prompt")
    @app_commands.describe(
        prompt=f"The change to make (up to {MAX_PROMPT_LENGTH:,} characters)",
        image="The image to edit (PNG, JPEG or WebP)",
        image2="Another image to use (optional)",
        image3="Another image to use (optional)",
        image4="Another image to use (optional)",
    )
    @generation_options
    async def edit(
        self,
        interaction: discord.Interaction,
        prompt: Prompt,
        image: discord.Attachment,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        aspect_ratio: Choice[str] | None = None,
        resolution: Choice[str] | None = None,
        count: Count | None = None,
        seed: Seed | None = None,
        format: Choice[str] | None = None,
        safety: Choice[int] | None = None,
        web_search: bool = False,
        style: StyleName | None = None,
        private: bool = False,
    ) -> None:
        given = {"image": image, "image2": image2, "image3": image3, "image4": image4}
        images = [(name, check_attachment(a, name)) for name, a in given.items() if a is not None]
        defaults = given_of(aspect_ratio, resolution, count, format, safety)

        async def spec() -> JobSpec:
            await self.bot.jobs.check_images(images)  # what the member really sent
            urls = tuple(url for _, url in images)
            return await spec_for(
                interaction,
                JobKind.EDIT,
                prompt,
                defaults,
                seed=seed,
                web_search=web_search,
                style=style,
                private=private,
                image_urls=urls,
            )

        await launch(interaction, spec, private=private)

    async def edit_image(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The "Edit image" message menu: a modal for the prompt, then an edit of its images."""
        urls = message_images(message)
        if not urls:
            raise InvalidInput("image_urls", "That message has no PNG, JPEG or WebP images.")
        job_id = studio_job_id(message, self.bot.user.id if self.bot.user else None)
        if job_id is not None:  # one of our results: its job says where it was made
            # a modal must be the first answer: the lookup is bounded, not deferred
            job = await within_budget(interaction, self.bot.jobs.find(job_id))
            if job is not None:
                check_age_restriction(job, interaction)
        base = JobSpec(kind=JobKind.EDIT, prompt="", image_urls=tuple(urls))
        t = speech_for(interaction.locale)
        title = t.n("Edit this image", "Edit these {count} images", len(urls))
        modal = PromptModal(t, base, title=title, open_forms=self.bot.open_forms, verify=True)
        await interaction.response.send_modal(modal)

    # -- information ----------------------------------------------------------------------

    @app_commands.command(name="quota", description="Your credits left today and jobs in progress")
    async def quota(self, interaction: discord.Interaction) -> None:
        who = requester(interaction)
        jobs = self.bot.jobs
        balance, in_flight, preset = await answered_in_time(
            interaction,
            asyncio.gather(
                jobs.balance(who),
                jobs.in_flight(who.user_id, who.guild_id),
                self.bot.presets.preset(who.user_id),
            ),
            ephemeral=True,
        )
        t = speech_for(interaction.locale)
        weights = self.bot.settings.quota.resolution_weights
        resets = balance.resets_at
        costs = (
            t.n("{resolution} = {count} credit", "{resolution} = {count} credits", w, resolution=r)
            for r, w in weights.items()
        )
        lines = [
            _credits_left(t, balance),
            *cap_lines(t, balance),
            t(
                "They reset {when} ({at}).",
                when=discord.utils.format_dt(resets, "R"),
                at=discord.utils.format_dt(resets, "t"),
            ),
            t("Jobs in progress: **{jobs}**.", jobs=in_flight),
            default_cost_line(t, jobs.cost_of(default_spec(preset)), preset),
            "-# " + t("Cost per image: {costs}", costs=", ".join(costs)),
        ]
        if interaction.response.is_done():  # deferred: the database was slow
            await interaction.edit_original_response(
                content="\n".join(lines), allowed_mentions=NO_MENTIONS
            )
        else:
            await reply(interaction, "\n".join(lines))

    @app_commands.command(name="show", description="Post one of your past results again")
    @app_commands.describe(job_id="The job id shown under the result (e.g. from its footer)")
    async def show(self, interaction: discord.Interaction, job_id: Range[str, 1, 64]) -> None:
        """Re-post a result: for its requester, or a moderator of the job's own server.

        Refusals come before the (public) defer, so they stay ephemeral. The server's rules on
        who may use the studio where (bans, channels, roles, DMs) apply, since this posts; the
        prompt, cooldown and in-flight rules do not: nothing is generated or charged.
        """
        wanted = job_id.strip().strip("`")
        if not JOB_ID_TEXT.fullmatch(wanted):
            raise InvalidInput("job_id", "That isn't a job id: it's the code under a result.")
        job = await within_budget(interaction, self.bot.jobs.get(wanted))
        if not may_act_on(job, interaction):
            raise NotAllowed("show", "You can only show your own results.")
        if job.state != JobState.DELIVERED:
            raise _no_result(job)
        if job.result_message_id is None:
            # Delivered, then taken down by a moderator (see services/moderation/actions.py).
            raise NotAllowed("show", "Job `{job_id}` was removed by a moderator.", job_id=job.id)
        check_age_restriction(job, interaction)
        await within_budget(interaction, self.bot.jobs.check_presence(requester(interaction)))
        private = is_private(job)  # shown again only to the one who asks
        await interaction.response.defer(thinking=True, ephemeral=private)
        try:
            images, missing = await self.bot.jobs.download(job.id, job.result_urls)
            if not images:
                images, missing = await self._from_result_message(job)
            if not images:
                raise NotAllowed(
                    "show",
                    "The images of job `{job_id}` are no longer available.",
                    job_id=job.id,
                )
        except BaseException:
            # take the public "thinking" placeholder away; the refusal is answered ephemerally
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
            raise
        fitted = await fit(images, missing, stem=job.id, per_file_limit=interaction.filesize_limit)
        t = speech_for(interaction.locale)  # a copy posted for this member: in their language
        await interaction.followup.send(
            embed=result_embed(t, job, fitted),
            files=files_of(fitted),
            view=result_view(t, job, self.bot.jobs.cost_of),
            allowed_mentions=NO_MENTIONS,
            ephemeral=private,
        )

    async def _from_result_message(self, job: Job) -> tuple[list[DownloadedImage], list[str]]:
        """The images as first posted in Discord (when RunComfy's URLs have expired)."""
        if job.result_message_id is None:
            return [], []
        channel = self.bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            message = await channel.fetch_message(job.result_message_id)
        except discord.HTTPException as err:
            log.info("job %s: original result message unavailable (%s)", job.id, err)
            return [], []
        return await self.bot.jobs.download(job.id, [a.url for a in message.attachments])


def _credits_left(t: Speech, balance: Balance) -> str:
    """/quota's first line: two whole sentences, with and without granted credits."""
    args = {
        "usable": usable_credits(balance),
        "source": limit_words(t, balance.limit_source),
        "granted": balance.granted,
    }
    if balance.granted:
        return t.n(
            "You have **{usable}** of {count} credit left today"
            " (from {source}, plus {granted} granted).",
            "You have **{usable}** of {count} credits left today"
            " (from {source}, plus {granted} granted).",
            balance.limit,
            **args,
        )
    return t.n(
        "You have **{usable}** of {count} credit left today (from {source}).",
        "You have **{usable}** of {count} credits left today (from {source}).",
        balance.limit,
        **args,
    )


def _no_result(job: Job) -> NotAllowed:
    """/show of a job that was never delivered: why, as a whole sentence per kind of state."""
    if job.state == JobState.CANCELLED:
        return NotAllowed(
            "show", "Job `{job_id}` has no result to show (it was cancelled).", job_id=job.id
        )
    if job.state == JobState.FAILED:
        return NotAllowed(
            "show", "Job `{job_id}` has no result to show (it failed).", job_id=job.id
        )
    if job.state == JobState.REJECTED:
        return NotAllowed(
            "show",
            "Job `{job_id}` has no result to show (a moderator rejected it).",
            job_id=job.id,
        )
    if job.state == JobState.AWAITING_APPROVAL:
        return NotAllowed(
            "show",
            "Job `{job_id}` has no result to show yet (it is waiting for a moderator's approval).",
            job_id=job.id,
        )
    return NotAllowed(
        "show", "Job `{job_id}` has no result to show yet (it is still in progress).", job_id=job.id
    )


async def setup(bot: StudioBot) -> None:
    await bot.add_cog(StudioCog(bot))
