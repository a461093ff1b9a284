"""How the bot's services are built around it, each with its collaborators from the start.

The Discord side (the presenter, the moderators' log) needs the bot to talk to Discord; the job
engine needs the Discord side from its first moment; so ``StudioBot`` calls ``wire`` once, in its
own constructor, and holds what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from client import RunComfyClient
from cogs.modlog_sink import DiscordModLog
from cogs.pacing import Pacing
from cogs.presenter import DiscordPresenter
from services.admin import AdminService
from services.image_inputs import InputImages
from services.jobs import JobService
from services.jobs.breaker import CircuitBreaker
from services.library import LibraryService
from services.metrics import Metrics
from services.moderation import ModerationService, ModLog
from services.policy import PolicyService
from services.presets import PresetService
from services.settings import BotSettings
from services.timings import TimingKeeper
from storage import Storage

if TYPE_CHECKING:
    from bot import StudioBot


@dataclass(frozen=True, slots=True)
class Services:
    """What the bot is built with (see ``wire``)."""

    policy: PolicyService
    admin: AdminService
    jobs: JobService
    moderation: ModerationService
    pacing: Pacing
    presenter: DiscordPresenter
    modlog_sink: DiscordModLog
    metrics: Metrics
    timings: TimingKeeper
    presets: PresetService  # members' defaults, server styles, private results
    library: LibraryService  # members' references, favourites and history


def wire(
    bot: StudioBot,
    settings: BotSettings,
    storage: Storage,
    runcomfy: RunComfyClient,
    metrics: Metrics | None = None,
) -> Services:
    """Build every service around ``bot``, each with its collaborators from the start."""
    policy = PolicyService(
        storage, default_safety=settings.default_safety, allow_dms=settings.allow_dms
    )
    admin = AdminService(
        storage, policy, global_default_credits=settings.quota.default_daily_credits
    )
    pacing = Pacing(settings.timing)
    presenter = DiscordPresenter(bot, pacing, settings.timing)
    sink = DiscordModLog(bot, presenter)
    modlog = ModLog(storage, policy, runcomfy, sink)
    metrics = metrics or Metrics()
    breaker = CircuitBreaker(threshold=3, pause=60.0, max_pause=600.0)
    jobs = JobService(
        storage,
        runcomfy,
        policy,
        presenter,
        quota=settings.quota,
        timing=settings.timing,
        events=modlog,
        inputs=InputImages(runcomfy, origins=settings.discord_cdn_origins),
        breaker=breaker,
        metrics=metrics,
        outages=modlog,
        lease_owner=settings.lease_owner,
    )
    metrics.count_in_flight(jobs.active_count)
    moderation = ModerationService(storage, jobs, policy, admin, modlog, sink)
    timings = TimingKeeper(storage, runcomfy)  # learned job durations, kept in the database
    presets = PresetService(storage, policy)
    library = LibraryService(storage)
    return Services(
        policy,
        admin,
        jobs,
        moderation,
        pacing,
        presenter,
        sink,
        metrics,
        timings,
        presets=presets,
        library=library,
    )
