"""One guild's blocklist: entries checked in the order given, the first that matches wins."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from services.blocklist import folding
from services.blocklist.entry import BlockMatch, InvalidBlocklistEntry, check_size
from services.blocklist.regex import Regex, RegexIndex, compile_regex
from services.blocklist.words import WordEntry, WordIndex, parse_words

log = logging.getLogger("services.blocklist")


def validate_entry(pattern: str, is_regex: bool) -> None:
    """Raise InvalidBlocklistEntry if `pattern` cannot be used as an entry.

    Only parses and compiles (well under a millisecond): nothing is timed or run elsewhere.
    """
    _compile_entry(pattern, is_regex)


def _compile_entry(pattern: str, is_regex: bool) -> WordEntry | Regex:
    check_size(pattern)
    return compile_regex(pattern) if is_regex else parse_words(pattern)


class Blocklist:
    """One guild's entries, precompiled. Immutable: build a new one when entries change."""

    def __init__(self, entries: Iterable[tuple[int, str, bool]]) -> None:
        self._entries: list[BlockMatch] = []
        words: list[tuple[int, WordEntry]] = []
        regexes: list[tuple[int, str, Regex]] = []
        invalid: list[tuple[int, InvalidBlocklistEntry]] = []
        for entry_id, pattern, is_regex in entries:
            try:
                compiled = _compile_entry(pattern, is_regex)
            except InvalidBlocklistEntry as exc:
                log.warning("blocklist entry %s skipped: %s", entry_id, exc.reason)
                invalid.append((entry_id, exc))
                continue
            order = len(self._entries)
            self._entries.append(BlockMatch(entry_id, pattern))
            if isinstance(compiled, WordEntry):
                words.append((order, compiled))
            else:
                regexes.append((order, pattern, compiled))
        # Entries that failed validation (e.g. stored before a rule was tightened): skipped, and
        # kept here with the reason so a moderator can be shown why they do nothing.
        self.invalid: tuple[tuple[int, InvalidBlocklistEntry], ...] = tuple(invalid)
        self._words = WordIndex(words)
        self._regexes = RegexIndex(regexes)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, prompt: str) -> BlockMatch | None:
        """The first entry (in the order given) that matches `prompt`, or None."""
        if not self._entries:
            return None
        views, extras = folding.views(folding.fold(prompt))
        best = self._words.earliest(views, extras)
        best = self._regexes.earliest(prompt, views, best)
        return None if best is None else self._entries[best]
