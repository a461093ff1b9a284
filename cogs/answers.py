"""Answering interactions in time: deferring slow work, bounding reads, reporting errors.

Discord waits 3 seconds for the first answer. ``LateDefer`` defers only when the work before
the answer is slow; ``guarded`` runs a button's or form's action and hands any error to the
tree's one handler (discord.py would only log it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import discord

from cogs.inputs import check_source, studio
from services.errors import StudioBusy, StudioClosing

if TYPE_CHECKING:
    from bot import StudioBot

log = logging.getLogger(__name__)

T = TypeVar("T")


class LateDefer:
    """Defers an interaction if the work before its answer outlasts ``JobTiming.ack_budget``.

    A timer, not a task per interaction: the usual fast answer costs next to nothing (the
    acknowledgement latency under a burst is what Discord's 3 seconds are about).
    """

    def __init__(self, interaction: discord.Interaction, *, ephemeral: bool) -> None:
        self._interaction = interaction
        self.ephemeral = ephemeral  # may change until it fires (a job found to be private)
        self._deferring: asyncio.Task[Any] | None = None
        budget = studio(interaction).settings.timing.ack_budget
        self._timer = asyncio.get_running_loop().call_later(budget, self._defer)

    def _defer(self) -> None:
        log.info("interaction %s: slow to prepare its answer; deferring", self._interaction.id)
        response = self._interaction.response
        self._deferring = asyncio.create_task(
            response.defer(ephemeral=self.ephemeral, thinking=True)
        )

    @property
    def fired(self) -> bool:
        """The deferral was sent (or is on its way): its ephemerality is fixed."""
        return self._deferring is not None

    async def settle(self, *, quiet: bool = False) -> bool:
        """The work is done: no deferral from now on. True if the interaction was deferred.

        Raises if the deferral failed (Discord takes no answer any more), unless ``quiet``.
        """
        self._timer.cancel()
        if self._deferring is None:
            return False
        try:
            await self._deferring
        except Exception as err:
            if not quiet:
                raise
            log.info("interaction %s: the deferral failed (%s)", self._interaction.id, err)
            return False
        return True


async def answered_in_time(
    interaction: discord.Interaction, work: Awaitable[T], *, ephemeral: bool
) -> T:
    """Await ``work``; past the budget the interaction is deferred (thinking) meanwhile.

    The caller answers with ``edit_original_response`` when ``interaction.response.is_done()``.
    """
    late = LateDefer(interaction, ephemeral=ephemeral)
    try:
        result = await work
    except BaseException:
        await late.settle(quiet=True)  # the tree answers with a followup if it was deferred
        raise
    await late.settle()
    return result


async def within_budget(interaction: discord.Interaction, work: Awaitable[T]) -> T:
    """A read that must finish before the answer (e.g. before opening a modal) in time."""
    try:
        return await asyncio.wait_for(work, studio(interaction).settings.timing.ack_budget)
    except TimeoutError:
        log.warning("interaction %s: the database was too slow to answer in time", interaction.id)
        raise StudioBusy() from None


async def guarded(
    interaction: discord.Interaction,
    action: Callable[[discord.Interaction], Awaitable[Any]],
    *,
    job_id: str | None = None,
) -> None:
    """Run a button or modal action; errors go to the tree's handler (discord.py only logs them).

    ``job_id``: the job acted on, for the log line and the reference the member sees.
    """
    bot = studio(interaction)
    with handling(bot):
        try:
            if not bot.accepting:
                raise StudioClosing()
            check_source(interaction)
            await action(interaction)
        except Exception as err:
            await bot.tree.report(interaction, err, job_id=job_id)


@contextlib.contextmanager
def handling(bot: StudioBot) -> Iterator[None]:
    """Work on an interaction a shutdown lets finish first (see ``StudioBot.close``)."""
    task = asyncio.current_task()
    if task is None:
        yield
        return
    bot.handling.add(task)
    try:
        yield
    finally:
        bot.handling.discard(task)
