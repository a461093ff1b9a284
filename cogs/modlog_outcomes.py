"""What a moderator's decision says: to the moderator who clicked (the server's language) and to
the requester whose result was rejected (their own language, ``job.locale``). Pure functions;
the log entries themselves: cogs/modlog_render.py.
"""

from __future__ import annotations

from cogs.i18n import Speech
from cogs.modlog_render import state_text
from cogs.render import credits_back, quoted_prompt
from services.moderation import ActionResult, Notice, Outcome
from services.wording import N_
from storage.models import Job, JobKind

_REJECTED = {
    Notice.PRIVATE: N_(
        "Rejected: {user} was told privately (a message only they can see); credits refunded."
    ),
    Notice.DM: N_("Rejected: {user} was told by DM; credits refunded."),
    Notice.CHANNEL: N_(
        "Rejected: {user} was told in the channel (without the prompt); credits refunded."
    ),
    Notice.NONE: N_("Rejected: {user} was not told (no way to reach them); credits refunded."),
}


def rejected_status(t: Speech, job: Job) -> str:
    """What everyone sees on a rejected job's status message: neutral, no prompt."""
    job_line = t("job `{job_id}`", job_id=job.id)
    return "🚫 " + t("This request was not posted.") + "\n-# " + job_line


def rejected_notice(t: Speech, job: Job) -> str:
    """The private verdict (ephemeral or DM): with the prompt, only the requester sees it."""
    args = {"channel": f"<#{job.channel_id}>", "job_id": job.id}
    if job.kind == JobKind.EDIT:
        verdict = t(
            "Your edit request in {channel} (job `{job_id}`) was not approved by the server's"
            " moderators, so it wasn't posted.",
            **args,
        )
    else:
        verdict = t(
            "Your image request in {channel} (job `{job_id}`) was not approved by the server's"
            " moderators, so it wasn't posted.",
            **args,
        )
    return f"{verdict} {credits_back(t, job.cost)}\n{quoted_prompt(job.prompt)}"


def rejected_in_channel(t: Speech, job: Job) -> str:
    """The last resort, in the channel: mentions the requester, without the prompt."""
    verdict = t(
        "{user} your request (job `{job_id}`) was not posted.",
        user=f"<@{job.user_id}>",
        job_id=job.id,
    )
    return f"{verdict} {credits_back(t, job.cost)}"


def action_text(t: Speech, result: ActionResult) -> str:
    """What the moderator is told about their click (privately)."""
    job = result.job
    match result.outcome:
        case Outcome.NOT_WAITING:
            return t(
                "Job `{job_id}` is no longer waiting for approval (it is {state}).",
                job_id=job.id,
                state=state_text(t, job.state),
            )
        case Outcome.STILL_HELD:
            return t(
                "Approved, but Discord would not take the result, so it was not posted; it is"
                " still waiting here. Try Approve again later."
            )
        case Outcome.APPROVED_UNPOSTED:
            if job.error:
                return t(
                    "Approved, but the result was not posted: {reason}",
                    reason=t.stored(job.error),
                )
            return t("Approved, but the result was not posted: it could not be posted")
        case Outcome.APPROVED:
            return t("Approved: the result is posted in {channel}.", channel=f"<#{job.channel_id}>")
        case Outcome.REJECTED:
            return t(_REJECTED[result.notice or Notice.NONE], user=f"<@{job.user_id}>")
        case Outcome.NO_RESULT:
            return t("Job `{job_id}` has no posted result.", job_id=job.id)
        case Outcome.ALREADY_REMOVED:
            return t("The result was already removed.")
        case Outcome.GONE:
            return t("The result message was already deleted.")
        case Outcome.REMOVED:
            return t("Removed the result from {channel}.", channel=f"<#{job.channel_id}>")
        case Outcome.NOT_DELIVERED:
            return t(
                "Nothing to refund: job `{job_id}` is {state}.",
                job_id=job.id,
                state=state_text(t, job.state),
            )
        case Outcome.ALREADY_REFUNDED:
            return t("Job `{job_id}` was already refunded.", job_id=job.id)
        case Outcome.RESET:
            return t(
                "Nothing to refund: job `{job_id}`'s credits were already given back by a reset"
                " of that day.",
                job_id=job.id,
            )
        case Outcome.REFUNDED:
            return t.n(
                "Refunded {count} credit to {user}.",
                "Refunded {count} credits to {user}.",
                result.amount,
                user=f"<@{job.user_id}>",
            )
        case Outcome.REFUNDED_TODAY:
            return _refunded_today(t, result)
    return result.outcome.value


def _refunded_today(t: Speech, result: ActionResult) -> str:
    user = f"<@{result.job.user_id}>"
    if result.day is None:
        return t.n(
            "Refunded {count} credit to {user}: the job was on an earlier day (UTC), so they"
            " were granted for today instead.",
            "Refunded {count} credits to {user}: the job was on an earlier day (UTC), so they"
            " were granted for today instead.",
            result.amount,
            user=user,
        )
    return t.n(
        "Refunded {count} credit to {user}: the job was on {day} (UTC), so they were granted"
        " for today instead.",
        "Refunded {count} credits to {user}: the job was on {day} (UTC), so they were granted"
        " for today instead.",
        result.amount,
        user=user,
        day=result.day.isoformat(),
    )


def action_detail(t: Speech, result: ActionResult) -> str:
    """What the entry's note adds beyond the action ("" if nothing)."""
    if result.outcome != Outcome.REFUNDED_TODAY:
        return ""
    if result.day is None:
        return t("job of an earlier day: granted for today")
    return t("job of {day}: granted for today", day=result.day.isoformat())
