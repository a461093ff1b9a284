"""Members' references (named result images for /imagine), favourites and result history.

The rules live here: a reference is one of the member's own delivered, not removed results in
this server, at most MAX_REFERENCES of them with distinct names; age-restricted results stay
in age-restricted channels; a favourite may be any result the member can see here. Reading a
reference's fresh image URL is the Discord side's job (cogs/library.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from client.models import MAX_EDIT_IMAGES
from services.errors import InvalidInput, JobNotFound, NotAllowed
from services.jobs import JobRequest, ensure_reusable
from services.moderation import ensure_not_removed, is_removed
from services.wording import N_
from storage import Storage
from storage.library import Reference, Saved
from storage.models import Job

MAX_REFERENCES = 8
MAX_NAME_LENGTH = 32
PAGE_SIZE = 5
# Letters, digits, spaces and - _ . ' : names are listed comma-separated and shown in backticks.
NAME = re.compile(rf"[\w .'-]{{1,{MAX_NAME_LENGTH}}}")
_Reader = Callable[[int], Awaitable[tuple[list[Job], int]]]  # offset -> (jobs, total)
AGE_RESTRICTED = N_(
    "Job `{job_id}` was made in an age-restricted channel, so its images can't be used or"
    " shown in a channel that isn't."
)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who acts, where: a channel that is age-restricted (a thread: its parent) or not."""

    user_id: int
    guild_id: int | None
    age_restricted_here: bool


@dataclass(frozen=True, slots=True)
class Named:
    """A reference and the job its image comes from."""

    reference: Reference
    job: Job

    @property
    def name(self) -> str:
        return self.reference.name

    @property
    def index(self) -> int:
        return self.reference.image_index


@dataclass(frozen=True, slots=True)
class Page:
    jobs: list[Job]
    number: int  # 0-based
    pages: int  # at least 1, even when there is nothing to show
    total: int


def check_visible(job: Job, who: Viewer, action: str, *, moderator: bool = False) -> None:
    """A delivered result of this server, not removed, not age-restricted out of place; a
    private one only for its requester (or a moderator, in /admin history)."""
    ensure_reusable(job, actor_id=who.user_id, guild_id=who.guild_id)
    if JobRequest.of(job).private and job.user_id != who.user_id and not moderator:
        raise JobNotFound(job.id)  # as if it did not exist: a private result is not revealed
    ensure_not_removed(job, action)
    if job.age_restricted_channel and not who.age_restricted_here:
        raise NotAllowed("age_restricted", AGE_RESTRICTED, job_id=job.id)


def clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not NAME.fullmatch(name):
        raise InvalidInput(
            "name",
            "A reference name is 1 to {limit} letters, digits, spaces or - _ . ' (no commas).",
            limit=MAX_NAME_LENGTH,
        )
    return name


class LibraryService:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._store = storage.library

    async def job(self, job_id: str) -> Job:
        job = await self._storage.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    # -- references ---------------------------------------------------------------------------

    def check_savable(self, job: Job, index: int, who: Viewer) -> None:
        """Only the member who asked may keep a result's image, and only a usable one."""
        check_visible(job, who, "reference")
        if job.user_id != who.user_id:
            raise NotAllowed(
                "reference",
                "Only the member who asked for this result can save its images as references.",
            )
        if JobRequest.of(job).private:  # its message is ephemeral: its images can't be read again
            raise NotAllowed(
                "reference",
                "A private result's images can't be saved as references. Nothing was saved.",
            )
        if not 0 <= index < len(job.result_urls):
            raise InvalidInput(
                "index", "Job `{job_id}` has no image {number}.", job_id=job.id, number=index + 1
            )

    async def suggest_name(self, job: Job, index: int, who: Viewer) -> str:
        """A free name like ``ref-3`` for a reference the member may save; refuses first."""
        self.check_savable(job, index, who)
        taken = {r.name.casefold() for r in await self._store.references(who.user_id, who.guild_id)}
        if len(taken) >= MAX_REFERENCES:
            raise _full()
        return next(f"ref-{n}" for n in range(1, MAX_REFERENCES + 2) if f"ref-{n}" not in taken)

    async def save_reference(self, job_id: str, index: int, name: str, who: Viewer) -> str:
        """Keep image ``index`` (0-based) of the job as ``name``; the stored name."""
        name = clean_name(name)
        job = await self.job(job_id)
        self.check_savable(job, index, who)
        saved = await self._store.add_reference(
            who.user_id, who.guild_id, name, job.id, index, limit=MAX_REFERENCES
        )
        if saved is Saved.FULL:
            raise _full()
        if saved is Saved.TAKEN:
            raise InvalidInput(
                "name",
                "You already have a reference named `{name}`. Pick another name, or remove that"
                " one first with /references remove.",
                name=name,
            )
        return name

    async def names(self, user_id: int, guild_id: int | None) -> list[str]:
        """The member's reference names here (for autocomplete: no job lookups)."""
        return [r.name for r in await self._store.references(user_id, guild_id)]

    async def references(self, user_id: int, guild_id: int | None) -> list[Named]:
        refs = await self._store.references(user_id, guild_id)
        named = []
        for ref in refs:
            job = await self._storage.jobs.get(ref.job_id)
            if job is not None:
                named.append(Named(ref, job))
        return named

    async def remove_reference(self, user_id: int, guild_id: int | None, name: str) -> str:
        name = " ".join(name.split())
        if not await self._store.remove_reference(user_id, guild_id, name):
            shown = name[:64].replace("`", "'")  # shown in backticks
            raise InvalidInput("name", "You have no reference named `{name}`.", name=shown)
        return name

    async def resolve(self, names_text: str, who: Viewer, *, others: int) -> list[Named]:
        """The references a comma-separated list names, in its order, checked for use here
        with ``others`` images besides them. Refusals come before anything is charged."""
        wanted = _unique(" ".join(n.split()) for n in names_text.split(","))
        if not wanted:
            raise InvalidInput(
                "references", "Name at least one of your references. Nothing was charged."
            )
        mine = {n.name.casefold(): n for n in await self.references(who.user_id, who.guild_id)}
        chosen = []
        for name in wanted:
            found = mine.get(name.casefold())
            if found is None:
                raise InvalidInput(
                    "references",
                    "You have no reference named `{name}` (see /references list)."
                    " Nothing was charged.",
                    name=name[:64].replace("`", "'"),
                )
            _check_usable(found, who)
            chosen.append(found)
        total = len(chosen) + others
        if total > MAX_EDIT_IMAGES:
            raise InvalidInput(
                "references",
                "That's {count} images with your references; the edit model takes at most"
                " {limit}. Nothing was charged.",
                count=total,
                limit=MAX_EDIT_IMAGES,
            )
        return chosen

    # -- favourites ---------------------------------------------------------------------------

    async def toggle_favourite(self, job_id: str, who: Viewer) -> bool:
        """True: now a favourite; False: it was one and no longer is."""
        job = await self.job(job_id)
        check_visible(job, who, "favourite")
        return await self._store.toggle_favourite(who.user_id, job.id)

    async def is_favourite(self, job_id: str, who: Viewer) -> bool:
        return await self._store.is_favourite(who.user_id, job_id)

    async def favourites(self, who: Viewer, page: int) -> Page:
        return await _page(
            page,
            lambda offset: self._store.favourites(
                who.user_id, who.guild_id, offset=offset, limit=PAGE_SIZE
            ),
        )

    # -- history ------------------------------------------------------------------------------

    async def history(
        self, guild_id: int | None, page: int, *, user_id: int | None, include_removed: bool
    ) -> Page:
        """Delivered results here, newest first: one member's (``user_id``) or everyone's."""
        return await _page(
            page,
            lambda offset: self._store.delivered(
                guild_id,
                user_id=user_id,
                include_removed=include_removed,
                offset=offset,
                limit=PAGE_SIZE,
            ),
        )


async def _page(page: int, read: _Reader) -> Page:
    jobs, total = await read(max(page, 0) * PAGE_SIZE)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if page >= pages and total:  # the list shrank since the page was shown: its last page
        page = pages - 1
        jobs, total = await read(page * PAGE_SIZE)
    return Page(jobs, max(page, 0), pages, total)


def _check_usable(named: Named, who: Viewer) -> None:
    job = named.job
    if is_removed(job) or not 0 <= named.index < len(job.result_urls):
        raise NotAllowed(
            "references",
            "A moderator removed the result reference `{name}` came from, so it can't be used"
            " (remove it with /references remove). Nothing was charged.",
            name=named.name,
        )
    if job.age_restricted_channel and not who.age_restricted_here:
        raise NotAllowed(
            "age_restricted",
            "Reference `{name}` comes from an age-restricted channel, so it can't be used in a"
            " channel that isn't. Nothing was charged.",
            name=named.name,
        )


def _full() -> NotAllowed:
    return NotAllowed(
        "reference",
        "You already have {limit} references, the most you can keep. Remove one with"
        " /references remove first.",
        limit=MAX_REFERENCES,
    )


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        if name and name.casefold() not in seen:
            seen[name.casefold()] = name
    return list(seen.values())
