"""Starting a job, and the buttons on a job's messages.

``launch`` is the whole request path: the job service validates, checks policy (cached) and
reserves (one database step); then Discord gets the public status message with its Cancel
button; only then does the job run, in the background. A refusal raises, and the tree answers it
ephemerally.

Buttons are ``DynamicItem``s whose ``custom_id`` carries the job id (``studio:<action>:<job>``),
so they work on any message, after any restart, once registered in ``setup_hook``. Every click
is authorised here, on the server side, and a double click is harmless: the job service's
state changes are compare-and-set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import discord

from client.models import MAX_PROMPT_LENGTH
from cogs.inputs import IMAGE_TYPES, check_age_restriction, may_manage, requester, studio
from cogs.render import NO_MENTIONS, status_text
from services.errors import NotAllowed, StudioClosing
from services.jobs import CancelResult, JobSpec, Progress
from storage.models import Job, JobKind, JobState

log = logging.getLogger(__name__)

JOB_ID = r"(?P<job_id>[A-Za-z0-9_-]{1,64})"


async def launch(interaction: discord.Interaction, spec: JobSpec) -> Job:
    """Reserve, acknowledge with the status message, start: the request path."""
    bot = studio(interaction)
    if not bot.accepting:
        raise StudioClosing()
    reservation = await bot.jobs.reserve(spec, requester(interaction))
    job = reservation.job
    try:
        response = await interaction.response.send_message(
            status_text(job, Progress(JobState.RESERVED), reservation.notes),
            view=status_view(job.id),
            allowed_mentions=NO_MENTIONS,
        )
    except BaseException:
        log.warning("job %s: the acknowledgement failed; abandoning it", job.id)
        await bot.jobs.abandon(job.id)
        raise
    bot.jobs.start(job, status_message_id=getattr(response, "message_id", None))
    return job


async def guarded(
    interaction: discord.Interaction, action: Callable[[discord.Interaction], Awaitable[Any]]
) -> None:
    """Run a button or modal action; errors go to the tree's handler (discord.py only logs them)."""
    bot = studio(interaction)
    try:
        if not bot.accepting:
            raise StudioClosing()
        await action(interaction)
    except Exception as err:
        await bot.tree.report(interaction, err)


def status_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def result_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RerollButton(job_id))
    view.add_item(EditButton(job_id))
    view.add_item(DeleteButton(job_id))
    return view


class _JobButton(discord.ui.DynamicItem[discord.ui.Button], template=r"studio:_:" + JOB_ID):
    """Shared construction: ``action`` names the button in its custom_id."""

    action = "_"
    label = ""
    style = discord.ButtonStyle.secondary
    emoji: str | None = None

    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=self.label,
                style=self.style,
                emoji=self.emoji,
                custom_id=f"studio:{self.action}:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> _JobButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        log.info("job %s: %s clicked by user %s", self.job_id, self.action, interaction.user.id)
        await guarded(interaction, self.run)

    async def run(self, interaction: discord.Interaction) -> None:
        raise NotImplementedError


class CancelButton(_JobButton, template=r"studio:cancel:" + JOB_ID):
    action = "cancel"
    label = "Cancel"
    style = discord.ButtonStyle.danger

    async def run(self, interaction: discord.Interaction) -> None:
        # Acknowledge first: cancelling may wait on RunComfy's answer.
        await interaction.response.defer()
        result = await studio(interaction).jobs.cancel(
            self.job_id, actor_id=interaction.user.id, may_manage=may_manage(interaction)
        )
        text = {
            CancelResult.CANCELLED: "Cancelled. The credits are back.",
            CancelResult.RUNNING: (
                "Sorry, this job is already being generated and can't be stopped now."
                " It will finish shortly."
            ),
            CancelResult.FINISHED: "This job has already finished.",
            CancelResult.PENDING: "This job is being sent right now; try again in a moment.",
        }[result]
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


class RerollButton(_JobButton, template=r"studio:reroll:" + JOB_ID):
    action = "reroll"
    label = "Re-roll"
    style = discord.ButtonStyle.primary
    emoji = "🎲"

    async def run(self, interaction: discord.Interaction) -> None:
        job = await studio(interaction).jobs.get(self.job_id)
        check_age_restriction(job, interaction)
        # Same request, a new seed, charged to whoever clicked.
        await launch(interaction, JobSpec.from_job(job, seed=None))


class EditButton(_JobButton, template=r"studio:edit:" + JOB_ID):
    action = "edit"
    label = "Edit"
    emoji = "✏️"

    async def run(self, interaction: discord.Interaction) -> None:
        job = await studio(interaction).jobs.get(self.job_id)
        check_age_restriction(job, interaction)
        urls = _shown_images(interaction.message) or list(job.result_urls)
        if not urls:
            raise NotAllowed("edit", "This result has no images left to edit.")
        base = JobSpec.from_job(job, kind=JobKind.EDIT, image_urls=tuple(urls), seed=None)
        await interaction.response.send_modal(PromptModal(base, title="Edit this result"))


class DeleteButton(_JobButton, template=r"studio:delete:" + JOB_ID):
    action = "delete"
    label = "Delete"
    style = discord.ButtonStyle.danger
    emoji = "🗑️"

    async def run(self, interaction: discord.Interaction) -> None:
        job = await studio(interaction).jobs.get(self.job_id)
        if interaction.user.id != job.user_id and not may_manage(interaction):
            raise NotAllowed(
                "delete", "Only the member who asked (or a moderator) can delete this."
            )
        await interaction.response.defer()
        if interaction.message is not None:
            await interaction.message.delete()
        log.info("job %s: result deleted by user %s", job.id, interaction.user.id)


def _shown_images(message: discord.Message | None) -> list[str]:
    """The images attached to the clicked message (fresh signed URLs from the interaction)."""
    if message is None:
        return []
    return [
        a.url
        for a in message.attachments
        if (a.content_type or "").split(";")[0].strip().lower() in IMAGE_TYPES
    ]


class PromptModal(discord.ui.Modal):
    """Asks for a prompt, then launches ``base`` with it (edits from buttons and the menu)."""

    prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label="Prompt",
        style=discord.TextStyle.paragraph,
        placeholder="Describe the change, e.g. 'make it night time, add neon signs'",
        max_length=MAX_PROMPT_LENGTH,
        required=True,
    )

    def __init__(self, base: JobSpec, *, title: str) -> None:
        super().__init__(title=title, timeout=15 * 60)
        self.base = base

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await guarded(interaction, self._launch)

    async def _launch(self, interaction: discord.Interaction) -> None:
        await launch(interaction, replace(self.base, prompt=self.prompt.value))

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        await studio(interaction).tree.report(interaction, error)


DYNAMIC_ITEMS = (CancelButton, RerollButton, EditButton, DeleteButton)
