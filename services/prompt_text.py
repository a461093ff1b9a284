"""What of a member's text is sent on: control and invisible format characters are dropped.

A prompt of only zero-width characters, NUL bytes or bidi controls must count as empty (and
cost nothing); such characters are never forwarded to RunComfy. Zero-width joiners stay inside
text, where they shape emoji sequences and some scripts.
"""

from __future__ import annotations

import unicodedata

KEPT_CONTROLS = frozenset("\n\t")
# Format characters that carry meaning between letters (emoji sequences, Indic and Arabic text).
JOINERS = frozenset("\u200c\u200d")
# Letters that render as nothing: Hangul fillers, the braille blank, the Khmer vowel inherents.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5")
_DROPPED = frozenset({"Cc", "Cf", "Cs"})
# ... plus private-use and unassigned code points: no font shows them to the model or anyone.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})


def clean_text(text: str) -> str:
    """``text`` without control, format and lone-surrogate characters (newlines, tabs and
    joiners kept); carriage returns become newlines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(
        ch
        for ch in text
        if ch in KEPT_CONTROLS or ch in JOINERS or unicodedata.category(ch) not in _DROPPED
    )


def has_visible_text(text: str) -> bool:
    """Whether ``text`` has a character someone can see (not space, marks alone or fillers)."""
    return any(
        not ch.isspace() and ch not in BLANK_LETTERS and unicodedata.category(ch) not in _INVISIBLE
        for ch in text
    )
