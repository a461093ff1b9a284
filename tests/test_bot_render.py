"""What a job's messages say (pure functions of the job)."""

from __future__ import annotations

from datetime import UTC, datetime

from cogs.i18n import ENGLISH as t
from cogs.modlog_outcomes import action_text
from cogs.render import outcome_text
from services.moderation import ActionResult, Notice, Outcome
from storage.models import Job, JobKind, JobState


def job(cost: int, state: JobState = JobState.FAILED) -> Job:
    now = datetime.now(UTC)
    return Job(
        id="j1",
        kind=JobKind.IMAGINE,
        state=state,
        user_id=1,
        guild_id=2,
        channel_id=3,
        prompt="a cat",
        params={},
        cost=cost,
        created_at=now,
        updated_at=now,
        error="RunComfy could not make this image.",
    )


def test_the_refund_line_agrees_with_the_number_of_credits() -> None:
    assert "Your 1 credit is back." in outcome_text(t, job(1))
    assert "Your 2 credits are back." in outcome_text(t, job(2))
    assert "Your 1 credit is back." in outcome_text(t, job(1, JobState.CANCELLED))


def test_every_moderator_outcome_has_its_own_sentence() -> None:
    told = {
        outcome: action_text(t, ActionResult(job(2), outcome, amount=2, notice=Notice.DM))
        for outcome in Outcome
    }
    assert all(text != outcome.value for outcome, text in told.items())
    assert len(set(told.values())) == len(Outcome)
    assert told[Outcome.REJECTED] == "Rejected: <@1> was told by DM; credits refunded."
    assert told[Outcome.REMOVED] == "Removed the result from <#3>."
