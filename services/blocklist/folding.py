"""How the blocklist reads text: folded characters, then tokens in a few views.

Folding undoes case, NFKC look-alikes (fullwidth, math, circled letters), Greek/Cyrillic
homoglyphs, accents and other combining marks, zero-width and invisible characters. The folded text
is cut into alphanumeric tokens; single letters spaced apart are joined ("b a d" -> bad) and digit
and symbol swaps are mapped (0->o, 4->a, @->a ...; 1 ! | read as either i or l).
"""

from __future__ import annotations

import operator
import re
import string
import unicodedata

# The wildcard for characters that read as either "i" or "l" (1 ! |). NUL never survives
# tokenising the prompt, so it cannot be typed in.
AMBIGUOUS = "\x00"

_UPPER_CONFUSABLES = str.maketrans(
    {
        # Greek capitals that look Latin; their lower-case forms do not (Ν/ν, Η/η).
        "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k",
        "Μ": "m", "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
        # Cyrillic capitals.
        "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p",
        "С": "c", "Т": "t", "Х": "x", "Ѕ": "s", "І": "i", "Ј": "j", "Ү": "y", "Һ": "h",
        "Ӏ": "l", "Ԁ": "d", "Ԛ": "q", "Ԝ": "w",
    }
)  # fmt: skip

_CONFUSABLES = str.maketrans(
    {
        # Cyrillic.
        "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "п": "n",
        "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
        "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ү": "y", "ь": "b",
        # Greek.
        "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u",
        "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c",
        "ϳ": "j",
        # Latin letters with no decomposition.
        "ı": "i", "ȷ": "j", "ɡ": "g", "ɑ": "a", "ł": "l", "ø": "o", "đ": "d", "ħ": "h",
    }
)  # fmt: skip

# Letters that render as nothing (Hangul fillers, braille blank, Mongolian vowel separator...).
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0")
# Combining marks, format characters (ZWSP, ZWJ, soft hyphen, bidi controls...), controls.
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf", "Cc"})
_ASCII_CONTROLS = {c: None for c in range(32) if not chr(c).isspace()} | {127: None}

_LEET = str.maketrans(
    {
        "0": "o", "1": AMBIGUOUS, "3": "e", "4": "a", "5": "s", "6": "g", "7": "t",
        "8": "b", "9": "g", "@": "a", "$": "s", "€": "e", "!": AMBIGUOUS, "|": AMBIGUOUS,
    }
)  # fmt: skip
_LEET_CHARS = re.compile(r"[0-9@$€!|]")
# Key used for the hash lookup: i, l and the wildcard are one letter.
_MERGE = str.maketrans({"l": "i", AMBIGUOUS: "i"})

_LEET_SYMBOLS = "@$€!|"
_PLAIN_PUNCT = re.compile(r"[^\w\s]|_")
_LEET_PUNCT = re.compile(r"[^\w\s@$€!|]|_")
# Punctuation between two alphanumerics of one whitespace token: only then is "glued" different.
_INNER_PUNCT = re.compile(r"[^\W_](?:[^\w\s]|_)+[^\W_]")
# Fast paths for ASCII text (most prompts): punctuation -> space (split) or -> nothing (glued).
_ASCII_PUNCT = string.punctuation
_ASCII_SPLIT = str.maketrans(_ASCII_PUNCT, " " * len(_ASCII_PUNCT))
_ASCII_GLUE = str.maketrans("", "", _ASCII_PUNCT)
_ASCII_PUNCT_NOT_LEET = "".join(c for c in _ASCII_PUNCT if c not in _LEET_SYMBOLS)
_ASCII_LEET_SPLIT = str.maketrans(_ASCII_PUNCT_NOT_LEET, " " * len(_ASCII_PUNCT_NOT_LEET))
_ASCII_LEET_GLUE = str.maketrans("", "", _ASCII_PUNCT_NOT_LEET)
# "kill!!" is kill: these symbols are letters only inside a piece.
_EDGE_PUNCT = "!|"
_SINGLE_CHAR_RUN = re.compile(r"(?<!\S)\S(?: \S)+(?!\S)")
_NUMBER = re.compile(r"(?<!\S)[0-9]+(?!\S)")
_REPEATS = re.compile(r"(.)\1+", re.DOTALL)
_FIRST_GROUP = operator.itemgetter(1)  # a C callable: faster than the r"\1" template


def normalise(text: str) -> str:
    """The prompt as the matcher reads it: folded, split into words, swaps mapped.

    This is the "split" view (see `views`) with the i/l wildcard shown as "i", e.g.
    ``normalise("Ｂ.Ａ.Ｄ  k1ll!!") == "bad kill"``.
    """
    return render(pieces(fold(text), leet=False, glued=False)).replace(AMBIGUOUS, "i")


def fold(text: str) -> str:
    """Character-level folding: case, look-alikes, marks, invisible characters."""
    if text.isascii():  # the common case: nothing to decompose or map
        return text.translate(_ASCII_CONTROLS).lower()
    text = unicodedata.normalize("NFKC", text).translate(_UPPER_CONFUSABLES).casefold()
    kept = [
        ch
        for ch in unicodedata.normalize("NFKD", text)
        if ch.isascii()
        or ch.isspace()
        or (ch not in _INVISIBLE and unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    ]
    text = "".join(kept).translate(_ASCII_CONTROLS).translate(_CONFUSABLES)
    return unicodedata.normalize("NFC", text)


def views(folded: str) -> tuple[list[str], list[str]]:
    """The distinct token views of a folded prompt, and the extra lone words from runs.

    Views: "split" (every non-alphanumeric separates: "b-a_d" -> b a d) and "glued"
    (punctuation inside a whitespace token is removed: "go.re" -> gore), each also in a "leet"
    variant where ``@ $ € ! |`` count as letters, only when the prompt holds one of them.
    """
    extras: list[str] = []
    glued = _INNER_PUNCT.search(folded) is not None
    leet = any(c in folded for c in _LEET_SYMBOLS)
    found = []
    for as_leet, as_glued in ((False, False), (False, True), (True, False), (True, True)):
        if (as_leet and not leet) or (as_glued and not glued):
            continue
        found.append(render(pieces(folded, leet=as_leet, glued=as_glued), extras))
    return list(dict.fromkeys(found)), extras


def pieces(folded: str, *, leet: bool, glued: bool) -> list[str]:
    """Alphanumeric pieces of one view (see `views`)."""
    if folded.isascii():
        if leet:
            table = _ASCII_LEET_GLUE if glued else _ASCII_LEET_SPLIT
        else:
            table = _ASCII_GLUE if glued else _ASCII_SPLIT
        found = folded.translate(table).split()
    else:
        found = (_LEET_PUNCT if leet else _PLAIN_PUNCT).sub("" if glued else " ", folded).split()
    if not leet:
        return found
    stripped = (piece.strip(_EDGE_PUNCT) for piece in found)
    return [piece for piece in stripped if piece]


def render(found: list[str], extras: list[str] | None = None) -> str:
    """Join single-character runs, map swaps, and return the tokens separated by single spaces.

    A run may start with the English words "a"/"i" ("draw a g o r e"): if `extras` is given,
    runs that start with one of them are also added to it without that letter.
    """

    def join_run(match: re.Match[str]) -> str:
        run = match.group().replace(" ", "")
        if extras is not None and len(run) >= 3:
            mapped = leet_word(run)
            if mapped[0] in "ai":
                extras.append(mapped[1:])
        return run

    text = _SINGLE_CHAR_RUN.sub(join_run, " ".join(found))
    if _LEET_CHARS.search(text):
        text = _leet_text(text)
    return text


def leet_word(word: str) -> str:
    """`word` with digit and symbol swaps mapped; pure numbers ("455", "1080") stay numbers."""
    return word if word.isdigit() else word.translate(_LEET)


def _leet_text(text: str) -> str:
    """Map swaps in every token except pure numbers (one translate; numbers copied back)."""
    mapped = text.translate(_LEET)
    numbers = [m.span() for m in _NUMBER.finditer(text)]
    if not numbers:
        return mapped
    parts, last = [], 0
    for start, end in numbers:  # translate keeps positions: it maps one character to one
        parts += (mapped[last:start], text[start:end])
        last = end
    parts.append(mapped[last:])
    return "".join(parts)


def key(word: str) -> str:
    """The hash-lookup key of a token: l and the wildcard read as i, repeated letters collapsed."""
    return _REPEATS.sub(_FIRST_GROUP, word.translate(_MERGE))
