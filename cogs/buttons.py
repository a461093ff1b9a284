"""Starting a job, and the buttons on a job's messages.

``launch`` is the whole request path: the job service validates, checks policy (cached) and
reserves (one database step); then Discord gets the public status message with its Cancel
button; only then does the job run, in the background. A refusal raises, and the tree answers it
ephemerally.

Buttons are ``StudioButton``s whose ``custom_id`` carries the job id (``studio:<action>:<job>``),
so they work on any message, after any restart, once registered (``add_job_buttons``, from the
studio cog's ``cog_load``). Every click is authorised here, on the server side, and a double
click is harmless: the job service's state changes are compare-and-set.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import aiohttp
import discord

from client.errors import RunComfyError
from client.models import MAX_PROMPT_LENGTH
from cogs.answers import LateDefer, guarded, handling, within_budget
from cogs.i18n import Speech, speech_for
from cogs.inputs import (
    check_age_restriction,
    is_image,
    may_act_on,
    may_manage,
    requester,
    studio,
)
from cogs.private import check_private, hidden
from cogs.render import NO_MENTIONS, status_text
from cogs.routing import JOB_ID, StudioButton, StudioModal
from cogs.tree import reply
from services.errors import NotAllowed, StudioClosing
from services.jobs import CancelResult, JobSpec, Progress, ensure_reusable, spec_of
from services.moderation import ensure_not_removed
from services.wording import N_
from storage.models import Job, JobKind, JobState

if TYPE_CHECKING:
    from bot import StudioBot

log = logging.getLogger(__name__)

PROMPT_FORM_PREFIX = "studio:prompt:"

SpecSource = JobSpec | Callable[[], Awaitable[JobSpec]]


async def launch(
    interaction: discord.Interaction, spec: SpecSource, *, private: bool | None = None
) -> Job:
    """Reserve, acknowledge with the status message, start: the request path.

    ``spec`` may be a coroutine function (a button looks its job up first). The work before
    the answer (that lookup, policy, the reservation) gets ``JobTiming.ack_budget`` seconds;
    past that the interaction is deferred, so Discord's 3 seconds are always met, and the
    status message replaces the placeholder once the work is done. A refusal after deferring
    removes the placeholder; the tree then answers it ephemerally.

    A private job (``spec.private``; ``private`` says so before a coroutine spec is resolved)
    is answered ephemerally, and only where the server allows private results.
    """
    bot = studio(interaction)
    if not bot.accepting:
        raise StudioClosing()
    # background work waits until this request is answered (and while requests arrive in a burst)
    with handling(bot), bot.pacing.request() as answered:
        return await _launch(bot, interaction, spec, private, answered)


async def _launch(
    bot: StudioBot,
    interaction: discord.Interaction,
    spec: SpecSource,
    private: bool | None,
    answered: Callable[[], None],
) -> Job:
    who = requester(interaction)
    late = LateDefer(interaction, ephemeral=hidden(interaction, spec, private))
    try:
        wanted = spec if isinstance(spec, JobSpec) else await spec()
        if wanted.private:
            await check_private(bot, late, who.guild_id)
        reservation = await bot.jobs.reserve(wanted, who)
    except BaseException:
        # A refusal: if a public placeholder went out, take it away; the tree then answers
        # ephemerally.
        if await late.settle(quiet=True):
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
        raise
    job = reservation.job
    t = speech_for(interaction.locale)
    content = status_text(t, job, Progress(JobState.RESERVED), reservation.notes)
    acked = False
    try:
        if await late.settle():  # deferred: the status message replaces the placeholder
            message = await interaction.edit_original_response(
                content=content, view=status_view(t, job.id), allowed_mentions=NO_MENTIONS
            )
            message_id: int | None = message.id
        else:
            response = await interaction.response.send_message(
                content,
                view=status_view(t, job.id),
                allowed_mentions=NO_MENTIONS,
                ephemeral=late.ephemeral,
            )
            message_id = getattr(response, "message_id", None)
        acked = True
    except BaseException as err:
        shown = await _shown_anyway(interaction, err)
        if shown is None:
            log.warning("job %s: the acknowledgement failed; abandoning it", job.id)
            await bot.jobs.abandon(job.id)
            raise
        message_id = shown  # Discord took it; only its answer to us was lost
    answered()
    if acked:
        ack = discord.utils.utcnow() - interaction.created_at
        bot.metrics.acknowledged(ack.total_seconds())
    await bot.jobs.accepted(job, status_message_id=message_id)
    return job


async def _shown_anyway(interaction: discord.Interaction, err: BaseException) -> int | None:
    """After a failed acknowledgement: the status message's id if Discord has it all the same.

    A refusal (an HTTP error answer) means it has not; a broken connection or a timeout leaves
    it open, so ask.
    """
    if isinstance(err, discord.HTTPException) or not isinstance(err, Exception):
        return None
    try:
        return (await interaction.original_response()).id
    except (discord.HTTPException, aiohttp.ClientError, TimeoutError):
        return None


def unstored(view: discord.ui.View) -> discord.ui.View:
    """A view discord.py will not keep in memory per message: a stopped one.

    Clicks still arrive, through the registered DynamicItems; otherwise every status and result
    message ever sent would hold a View in memory for the bot's lifetime.
    """
    view.stop()
    return view


def status_view(t: Speech, job_id: str) -> discord.ui.View:
    """A status message's buttons (Cancel), labelled in ``t``: the requester's language."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id, t=t))
    return unstored(view)


def result_view(t: Speech, job: Job, cost: Callable[[JobSpec], int]) -> discord.ui.View:
    """A result's buttons (Re-roll, Edit, Delete, Favourite) and one action menu per image,
    labelled in ``t``; ``cost`` (``JobService.cost_of``) prices the menus' actions."""
    from cogs.image_actions import result_extras  # it builds on this module

    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(job.id, t=t))
    view.add_item(EditButton(job.id, t=t))
    view.add_item(DeleteButton(job.id, t=t))
    for item in result_extras(t, job, cost):  # Favourite, then a row per menu
        view.add_item(item)
    return unstored(view)


class _JobButton(StudioButton, template=r"studio:_:" + JOB_ID):
    """A button on a job's status or result message: its target is the job.

    ``label`` is an ``N_`` text: the views pass ``t=`` so it shows in the message's language.
    """

    prefix = "studio"
    subject = "job"

    @property
    def job_id(self) -> str:
        return self.target


class CancelButton(_JobButton, template=r"studio:cancel:" + JOB_ID):
    action = "cancel"
    label = N_("Cancel")
    style = discord.ButtonStyle.danger

    async def run(self, interaction: discord.Interaction) -> None:
        # Acknowledge first: cancelling may wait on RunComfy's answer.
        await interaction.response.defer()
        t = speech_for(interaction.locale)
        try:
            result = await studio(interaction).jobs.cancel(
                self.job_id,
                actor_id=interaction.user.id,
                guild_id=interaction.guild_id,
                may_manage=may_manage(interaction),
            )
        except RunComfyError as err:
            log.warning("job %s: cancel failed: %s", self.job_id, err)
            await reply(
                interaction,
                t(
                    "RunComfy didn't answer the cancel request, so the job carries on."
                    " Try again in a moment."
                ),
            )
            return
        if result is CancelResult.CANCELLED:
            return  # the status message itself now says "Cancelled" and that the credits are back
        await reply(interaction, t(_NOT_CANCELLED[result]))


_NOT_CANCELLED = {
    CancelResult.RUNNING: N_(
        "Sorry, this job is already being generated and can't be stopped now."
        " It will finish shortly."
    ),
    CancelResult.FINISHED: N_("This job has already finished."),
    CancelResult.PENDING: N_("This job is being sent right now; try again in a moment."),
}


class RerollButton(_JobButton, template=r"studio:reroll:" + JOB_ID):
    action = "reroll"
    label = N_("Re-roll")
    style = discord.ButtonStyle.primary
    emoji = "🎲"

    async def run(self, interaction: discord.Interaction) -> None:
        async def spec() -> JobSpec:
            job = await studio(interaction).jobs.get(self.job_id)
            check_reusable(job, interaction)
            # Same request, a new seed, charged to whoever clicked.
            return spec_of(job, seed=None)

        await launch(interaction, spec)


class EditButton(_JobButton, template=r"studio:edit:" + JOB_ID):
    action = "edit"
    label = N_("Edit")
    emoji = "✏️"

    async def run(self, interaction: discord.Interaction) -> None:
        # A modal must be the first answer: the lookup cannot be deferred, only bounded.
        job = await within_budget(interaction, studio(interaction).jobs.get(self.job_id))
        check_reusable(job, interaction)
        urls = shown_images(interaction.message) or list(job.result_urls)
        if not urls:
            raise NotAllowed("edit", "This result has no images left to edit.")
        base = spec_of(job, kind=JobKind.EDIT, image_urls=tuple(urls), seed=None)
        t = speech_for(interaction.locale)
        modal = PromptModal(
            t, base, title=t("Edit this result"), open_forms=studio(interaction).open_forms
        )
        await interaction.response.send_modal(modal)


class DeleteButton(_JobButton, template=r"studio:delete:" + JOB_ID):
    action = "delete"
    label = N_("Delete")
    style = discord.ButtonStyle.danger
    emoji = "🗑️"

    async def run(self, interaction: discord.Interaction) -> None:
        job = await within_budget(interaction, studio(interaction).jobs.get(self.job_id))
        if not may_act_on(job, interaction):
            raise NotAllowed(
                "delete", "Only the member who asked (or a moderator) can delete this."
            )
        if not shows_job(interaction.message, job):
            raise NotAllowed("delete", "This button does not belong to this message.")
        try:
            await interaction.response.defer()
            if interaction.message is not None:
                await interaction.message.delete()
        except discord.NotFound:
            # A double click: the first one deleted the message (Discord then refuses the
            # second click's acknowledgement or its delete as Unknown Message). Done either way.
            log.info("job %s: result already deleted", job.id)
            return
        log.info("job %s: result deleted by user %s", job.id, interaction.user.id)


def check_reusable(job: Job, interaction: discord.Interaction) -> None:
    """Re-roll and Edit work from a posted result of this server, not a removed or
    age-restricted one brought into a normal channel."""
    ensure_reusable(job, actor_id=interaction.user.id, guild_id=interaction.guild_id)
    ensure_not_removed(job)
    check_age_restriction(job, interaction)


def shows_job(message: discord.Message | None, job: Job) -> bool:
    """Delete removes only a message that shows this job: its status or result message, or a
    /show copy (whose footer names the job), never whatever message a crafted click names."""
    if message is None:
        return False
    if message.id in (job.status_message_id, job.result_message_id):
        return True
    # The footer ("job <id> · ...") is in the requester's language: look for the id itself.
    named = re.compile(rf"(?<![A-Za-z0-9_-]){re.escape(job.id)}(?![A-Za-z0-9_-])")
    return any(named.search(e.footer.text or "") for e in message.embeds)


def shown_images(message: discord.Message | None) -> list[str]:
    """The images attached to the clicked message (fresh signed URLs from the interaction)."""
    if message is None:
        return []
    return [a.url for a in message.attachments if is_image(a)]


_PROMPT_LABEL = N_("Prompt")
_PROMPT_PLACEHOLDER = N_("Describe the change, e.g. 'make it night time, add neon signs'")


class PromptModal(StudioModal):
    """Asks for a prompt, then launches ``base`` with it (edits from buttons and the menu).

    The form's id goes with the job: a form sent twice makes one job. ``verify``: the images
    came from a member's message, so their hosts and bytes are checked before any charge.
    """

    def __init__(
        self,
        t: Speech,
        base: JobSpec,
        *,
        title: str,
        open_forms: set[str],
        verify: bool = False,
    ) -> None:
        """``t``: the language of the member the form is shown to; ``title`` is in it too."""
        super().__init__(title=title, prefix=PROMPT_FORM_PREFIX, open_forms=open_forms)
        # Made per form, in the member's language (setting ``label`` later is deprecated).
        self.prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
            label=t(_PROMPT_LABEL),
            style=discord.TextStyle.paragraph,
            placeholder=t(_PROMPT_PLACEHOLDER),
            max_length=MAX_PROMPT_LENGTH,
            required=True,
        )
        self.add_item(self.prompt)
        self.base = replace(base, form_id=self.custom_id)
        self.verify = verify

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await guarded(interaction, self._launch, job_id=self.base.parent_job_id)

    async def _launch(self, interaction: discord.Interaction) -> None:
        async def spec() -> JobSpec:
            if self.verify:
                t = speech_for(interaction.locale)  # the names appear in a refusal
                urls = self.base.image_urls
                images = [(t("image {number}", number=i), u) for i, u in enumerate(urls, 1)]
                await studio(interaction).jobs.check_images(images)
            return replace(self.base, prompt=self.prompt.value)

        await launch(interaction, spec, private=self.base.private)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        await studio(interaction).tree.report(interaction, error, job_id=self.base.parent_job_id)


DYNAMIC_ITEMS = (CancelButton, RerollButton, EditButton, DeleteButton)


def add_job_buttons(client: discord.Client) -> None:
    """Clicks on job buttons and menus reach these classes: for the studio cog's ``cog_load``."""
    from cogs.image_actions import IMAGE_ITEMS

    client.add_dynamic_items(*DYNAMIC_ITEMS, *IMAGE_ITEMS)


def remove_job_buttons(client: discord.Client) -> None:
    """For the studio cog's ``cog_unload``."""
    from cogs.image_actions import IMAGE_ITEMS

    client.remove_dynamic_items(*DYNAMIC_ITEMS, *IMAGE_ITEMS)
