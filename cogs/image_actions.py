"""Per-image actions on a result: one select menu per image (Vary, Edit…, Re-render, Reframe,
Save as reference).

Each menu is a ``DynamicItem`` whose custom_id names the job and the image
(``studio:img:<job>:<n>``, n from 1), so it works on any result, after any restart. Only the
member who asked for the result may use them, on the server side, like Re-roll and Edit
(``check_reusable``); every new job goes through ``launch``: policy before any charge, charged
to the member who picks. The specs come from ``services.jobs.derive``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, ClassVar, Self

import discord

from client.models import ASPECT_RATIOS
from cogs.answers import guarded, within_budget
from cogs.buttons import (
    PromptModal,
    check_reusable,
    launch,
    result_view,
    shown_images,
    shows_job,
)
from cogs.i18n import ENGLISH, Speech, speech_for
from cogs.inputs import studio
from cogs.routing import Routed
from services.errors import InvalidInput, NotAllowed
from services.jobs import JobSpec
from services.jobs.derive import (
    MAX_IMAGE_ACTIONS,
    RERENDER_RESOLUTIONS,
    edit_base,
    image_url,
    reframed,
    rerendered,
    varied,
)
from services.wording import N_
from storage.models import Job

log = logging.getLogger(__name__)

Pricing = Callable[[JobSpec], int]  # credits a spec costs (JobService.cost_of)

VARY, EDIT, SAVE = "vary", "edit", "save"
RENDER, FRAME = "render:", "frame:"  # + a resolution / an aspect ratio
NOT_REQUESTER = N_(
    "Only the member who asked for this result can use its image actions. Nothing was charged."
)
# The aspect ratios' names in the menu ("auto" is no shape of its own).
_AUTO_FRAME = N_("Reframe: the model picks the shape")


def _frame_label(t: Speech, ratio: str) -> str:
    return t(_AUTO_FRAME) if ratio == "auto" else t("Reframe to {ratio}", ratio=ratio)


def action_options(t: Speech, job: Job, index: int, cost: Pricing) -> list[discord.SelectOption]:
    """The menu for image ``index`` of ``job``: each action with what it costs the picker."""
    url = job.result_urls[index]
    options = [
        discord.SelectOption(
            label=t("Vary"),
            value=VARY,
            emoji="🔀",
            description=t.n(
                "New variations of this image: {count} credit",
                "New variations of this image: {count} credits",
                cost(varied(job, url)),
            ),
        ),
        discord.SelectOption(
            label=t("Edit…"),
            value=EDIT,
            emoji="✏️",
            description=t.n(
                "Change this image with a new prompt: {count} credit",
                "Change this image with a new prompt: {count} credits",
                cost(edit_base(job, url)),
            ),
        ),
    ]
    for resolution in RERENDER_RESOLUTIONS:
        options.append(
            discord.SelectOption(
                label=t("Re-render at {resolution}", resolution=resolution),
                value=RENDER + resolution,
                emoji="🔁",
                description=t.n(
                    "A new image at {resolution}, not an upscale: {count} credit",
                    "A new image at {resolution}, not an upscale: {count} credits",
                    cost(rerendered(job, url, resolution)),
                    resolution=resolution,
                ),
            )
        )
    for ratio in ASPECT_RATIOS:
        options.append(
            discord.SelectOption(
                label=_frame_label(t, ratio),
                value=FRAME + ratio,
                emoji="🖼️",
                description=t.n(
                    "The scene extended to the new shape: {count} credit",
                    "The scene extended to the new shape: {count} credits",
                    cost(reframed(job, url, ratio)),
                ),
            )
        )
    options.append(
        discord.SelectOption(
            label=t("Save as reference"),
            value=SAVE,
            emoji="📌",
            description=t("Keep it for /imagine's references option; free"),
        )
    )
    return options


def result_extras(t: Speech, job: Job, cost: Pricing) -> list[discord.ui.Item[Any]]:
    """What a result shows after Re-roll, Edit and Delete: the Favourite button (where the
    library cog is installed), then one menu per image (at most four: Discord's rows)."""
    items: list[discord.ui.Item[Any]] = []
    try:
        from cogs.library import FavouriteButton

        items.append(FavouriteButton(job.id, t=t))
    except ImportError:
        pass
    count = min(len(job.result_urls), MAX_IMAGE_ACTIONS)
    items += [
        ImageActions(job.id, n, options=action_options(t, job, n - 1, cost), t=t)
        for n in range(1, count + 1)
    ]
    return items


class ImageActions(
    Routed,
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"studio:img:(?P<target>[A-Za-z0-9_-]{1,64}):(?P<n>[1-9])",
):
    """The action menu of image ``n`` (from 1) of a result."""

    subject: ClassVar[str] = "job"

    def __init__(
        self,
        job_id: str,
        n: int,
        *,
        options: list[discord.SelectOption] | None = None,
        t: Speech = ENGLISH,
    ) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"studio:img:{job_id}:{n}",
                placeholder=t("Image {n}: choose an action", n=n),
                options=options or [],
                min_values=1,
                max_values=1,
            )
        )
        self.job_id = job_id
        self.n = n

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(match["target"], int(match["n"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        choice = self.item.values[0] if self.item.values else ""
        log.info(
            "job %s: image %s action %r picked by user %s",
            self.job_id,
            self.n,
            choice[:40],
            interaction.user.id,
        )
        await guarded(interaction, lambda i: self.run(i, choice), job_id=self.job_id)

    async def run(self, interaction: discord.Interaction, choice: str) -> None:
        index = self.n - 1
        if choice in (EDIT, SAVE):
            # A form must be the first answer: the lookup cannot be deferred, only bounded.
            job = await within_budget(interaction, studio(interaction).jobs.get(self.job_id))
            try:
                check_image_action(job, interaction)
                if choice == EDIT:
                    await _open_edit(interaction, job, index)
                else:
                    await _save(interaction, job, index)
            finally:
                await _reset(interaction, job)
            return
        parent: list[Job] = []

        async def spec() -> JobSpec:
            job = await studio(interaction).jobs.get(self.job_id)
            parent.append(job)
            check_image_action(job, interaction)
            return derived(job, choice, _url(job, index, interaction))

        try:
            await launch(interaction, spec)
        finally:  # after a refusal too, else the same pick again would send nothing
            if parent:
                await _reset(interaction, parent[0])


def derived(job: Job, choice: str, url: str) -> JobSpec:
    """The job a menu choice starts (Vary, Re-render, Reframe)."""
    if choice == VARY:
        return varied(job, url)
    if choice.startswith(RENDER):
        return rerendered(job, url, choice.removeprefix(RENDER))
    if choice.startswith(FRAME):
        return reframed(job, url, choice.removeprefix(FRAME))
    raise InvalidInput("action", "That action isn't one the studio knows. Nothing was charged.")


def check_image_action(job: Job, interaction: discord.Interaction) -> None:
    """Like Re-roll and Edit (this server, a posted result, not removed, age rules), and only
    for the member who asked for it."""
    check_reusable(job, interaction)
    if interaction.user.id != job.user_id:
        raise NotAllowed("image_action", NOT_REQUESTER)


async def _reset(interaction: discord.Interaction, job: Job) -> None:
    """Show the menus afresh: Discord keeps a menu's last choice, and picking it again would
    send nothing (a second Vary of the same image). Best effort, on the bot's public messages."""
    message, bot = interaction.message, studio(interaction)
    if message is None or message.flags.ephemeral or bot.user is None:
        return
    if message.author.id != bot.user.id or not shows_job(message, job):
        return  # a menu copied onto someone else's message, or naming another job
    view = result_view(speech_for(interaction.locale), job, bot.jobs.cost_of)
    try:
        await message.edit(view=view)
    except discord.HTTPException as err:
        log.info("job %s: the menus could not be reset (%s)", job.id, err.status)


def _url(job: Job, index: int, interaction: discord.Interaction) -> str:
    # A crafted custom_id may name this job on another message: use its images only if it
    # shows this job.
    message = interaction.message
    shown = shown_images(message) if shows_job(message, job) else []
    return image_url(job, index, shown)


async def _open_edit(interaction: discord.Interaction, job: Job, index: int) -> None:
    base = edit_base(job, _url(job, index, interaction))
    t = speech_for(interaction.locale)
    modal = PromptModal(
        t,
        base,
        title=t("Edit image {n}", n=index + 1),
        open_forms=studio(interaction).open_forms,
    )
    await interaction.response.send_modal(modal)


async def _save(interaction: discord.Interaction, job: Job, index: int) -> None:
    image_url(job, index)  # refuses an image the result does not have
    try:
        from cogs.library import save_as_reference  # the library cog may not be installed
    except ImportError:
        raise NotAllowed(
            "save_reference", "Saving references isn't available yet. Nothing was changed."
        ) from None
    await save_as_reference(interaction, job, index)


IMAGE_ITEMS = (ImageActions,)
