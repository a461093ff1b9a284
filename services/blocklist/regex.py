"""Regex entries, run by RE2 (google-re2): matching time is linear in the prompt's length.

So no pattern can stall the event loop, and there is no slow-pattern guard. RE2 has no
look-around, back-references, atomic groups or possessive repeats; such entries are refused.
Its ``\\w``, ``\\d``, ``\\s`` and ``\\b`` are ASCII-only (``\\p{L}`` is any letter).
"""

from __future__ import annotations

import re
from typing import Protocol

import re2

from services.blocklist import folding
from services.blocklist.entry import InvalidBlocklistEntry
from services.wording import Wording, said

# Case-insensitive as before; groups are never read, so none are captured (faster, and entries
# that reuse a group name can share the combined alternation).
_OPTIONS = re2.Options()
_OPTIONS.case_sensitive = False
_OPTIONS.never_capture = True
_OPTIONS.log_errors = False  # a refused entry is the moderator's business, not stderr's


class Regex(Protocol):
    """A compiled RE2 pattern (google-re2 ships no type for it)."""

    def search(self, text: bytes) -> object | None: ...


def compile_regex(pattern: str) -> Regex:
    """`pattern` compiled by RE2, or InvalidBlocklistEntry with a reason for the moderator."""
    try:
        regex: Regex = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raise InvalidBlocklistEntry(pattern, _refusal(pattern, exc)) from exc
    if regex.search(b"") is not None:
        raise InvalidBlocklistEntry(
            pattern, said("matches empty text, so it would block every prompt")
        )
    return regex


def _refusal(pattern: str, exc: re2.error) -> Wording:
    """Why RE2 refused `pattern`: malformed, or a feature RE2 lacks."""
    detail = exc.args[0] if exc.args else ""
    message = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
    # Python's parser tells a malformed pattern (and where) from one RE2 merely lacks.
    try:
        re.compile(pattern)
    except re.error as bad:
        return said("is not a valid regular expression: {detail}", detail=str(bad))
    return said(
        "uses a feature the blocklist doesn't support ({feature}). Use plain words, word*,"
        " or a simpler pattern.",
        feature=_feature(pattern, message),
    )


def _feature(pattern: str, message: str) -> str:
    """The feature RE2 refused, named from its error ("invalid perl operator: (?=")."""
    code, _, arg = message.partition(": ")
    if arg.startswith(("(?=", "(?!", "(?<=", "(?<!")):
        return "look-ahead/look-behind"
    if re.fullmatch(r"\\[1-9]", arg) or (arg == "(?P" and "(?P=" in pattern):
        return "back-references"
    if arg.startswith("(?>"):
        return "atomic groups"
    if code == "bad repetition operator" and arg.endswith("+"):
        return "possessive repeats such as a++"
    if code == "invalid repetition size":
        return "a repeat count above 1000"
    if arg == "\\Z":
        return "\\Z; write \\z for the end of the text"
    return f"RE2: {message}"  # e.g. "invalid perl operator: (?x"


class RegexIndex:
    """The regex entries of one blocklist, searched in the folded views and the raw prompt."""

    def __init__(self, entries: list[tuple[int, str, Regex]]) -> None:
        self._entries = [(order, regex) for order, _, regex in entries]
        # One search of an alternation is several times faster than one per entry; entries are
        # searched one by one (to name the earliest) only when it finds something.
        self._any: Regex | None = None
        if len(entries) > 1:
            combined = "|".join(f"(?:{pattern})" for _, pattern, _ in entries)
            try:
                self._any = re2.compile(combined, _OPTIONS)
            except re2.error:  # e.g. too large for RE2's memory budget: search one by one
                self._any = None

    def earliest(self, prompt: str, views: list[str], best: int | None) -> int | None:
        """`best`, or the order of an earlier regex entry found in `prompt` or its views."""
        if not self._entries or (best is not None and self._entries[0][0] > best):
            return best
        # Encoded once for all searches. A lone surrogate cannot be UTF-8: passed through, RE2
        # sees bytes that match nothing instead of the encoder raising.
        targets = [t.encode("utf-8", "surrogatepass") for t in _targets(prompt, views)]
        if self._any is not None and not any(self._any.search(t) for t in targets):
            return best
        for order, regex in self._entries:
            if best is not None and order > best:
                break
            if any(regex.search(t) for t in targets):
                return order
        return best


def _targets(prompt: str, views: list[str]) -> list[str]:
    """The casefolded raw prompt, and each view with the i/l wildcard read as i and as l."""
    targets = [prompt.casefold()]
    for view in views:
        if folding.AMBIGUOUS in view:
            targets.append(view.replace(folding.AMBIGUOUS, "i"))
            targets.append(view.replace(folding.AMBIGUOUS, "l"))
        else:
            targets.append(view)
    return list(dict.fromkeys(targets))
