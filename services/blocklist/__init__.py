"""Prompt blocklist for community moderators: words, phrases, prefixes and RE2 regexes.

`Blocklist` is built once per guild from ``(id, pattern, is_regex)`` rows; ``check(prompt)``
answers the first entry that matched, or None. Modules: `folding` (how text is read), `words`
(word entries), `regex` (regex entries), `matcher` (the list), `entry` (results and refusals).
"""

from services.blocklist.entry import MAX_PATTERN_LENGTH, BlockMatch, InvalidBlocklistEntry
from services.blocklist.folding import normalise
from services.blocklist.matcher import Blocklist, validate_entry

__all__ = [
    "MAX_PATTERN_LENGTH",
    "BlockMatch",
    "Blocklist",
    "InvalidBlocklistEntry",
    "normalise",
    "validate_entry",
]
