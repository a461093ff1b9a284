"""What the blocklist answers and refuses: the matched entry, the refusal, the length limit."""

from __future__ import annotations

from dataclasses import dataclass

from services.wording import Wording, said

MAX_PATTERN_LENGTH = 200


@dataclass(frozen=True, slots=True)
class BlockMatch:
    """The entry that blocked a prompt."""

    entry_id: int
    pattern: str


class InvalidBlocklistEntry(ValueError):
    """A moderator's entry that cannot be used; `reason` is written for the moderator."""

    def __init__(self, pattern: str, reason: Wording) -> None:
        super().__init__(f"invalid blocklist entry {pattern!r}: {reason}")
        self.pattern = pattern
        self.reason = reason


def check_size(pattern: str) -> None:
    """Raise InvalidBlocklistEntry if `pattern` is blank or longer than MAX_PATTERN_LENGTH."""
    if not pattern.strip():
        raise InvalidBlocklistEntry(pattern, said("is empty"))
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidBlocklistEntry(
            pattern,
            said(
                "is {length} characters long; the limit is {limit}",
                length=len(pattern),
                limit=MAX_PATTERN_LENGTH,
            ),
        )
