"""Prompt blocklist matcher for community moderators (standard library only).

Moderators add entries that are words, phrases or (flagged) regular expressions. A `Blocklist` is
built once per guild from ``(id, pattern, is_regex)`` rows and answers ``check(prompt)`` with the
first entry that matched, or None.

How a prompt is read
--------------------
1. Character folding (`_fold`): NFKC (fullwidth letters, ligatures, mathematical alphanumerics,
   circled letters), a map of upper-case Greek/Cyrillic look-alikes, casefold, NFKD, then every
   combining mark (Mn/Me), format character (Cf: ZWSP, ZWNJ, ZWJ, word joiner, BOM, soft hyphen,
   bidi controls), non-space control and invisible filler letter is dropped ("ñ" -> "n",
   "b̷a̷d̷" -> "bad"), then a map of lower-case Greek/Cyrillic/Latin look-alikes ("а", "ο", "ı" ...).
2. Tokens: the folded text is cut into alphanumeric pieces in up to four *views*:
   - split: every non-alphanumeric character separates ("b-a_d" -> b a d),
   - glued: punctuation inside a whitespace-delimited token is removed ("go.re" -> gore),
   and each of them in a "leet" variant where ``@ $ € ! |`` count as letters (only when the prompt
   contains one); ``!`` and ``|`` at the edge of a piece stay punctuation ("kill!!" is kill).
3. Runs of two or more single-character tokens are joined into one word ("b a d", "b.a.d",
   "b * a * d" -> bad). Such a run can start with the English words "a"/"i" ("draw a g o r e"), so
   the run without its first letter is also checked, as a lone word.
4. Digit and symbol swaps are mapped inside any token that is not purely digits (pure numbers such
   as "455" or "1080" stay numbers): 0->o 3->e 4->a 5->s 6->g 7->t 8->b 9->g @->a $->s €->e.
   ``1``, ``!`` and ``|`` are ambiguous (i or l): they become a wildcard that matches either.

How an entry matches
--------------------
A word/phrase entry is read with the same steps (symbols count as letters, so "a$$" means ass)
into one or more words. It matches only whole tokens of a view, so "ass" never matches "class",
"grass" or "assistant". Repeated letters are tolerated one way only: each run of a letter in the
entry must appear at least as often in the token ("baaad" matches bad, "kiiill" matches kill), but a
token with fewer repeats does not ("as" is not ass). A phrase matches consecutive tokens, or the
words written together as one token ("bloodbath", "b l o o d b a t h").

Lookup is a hash lookup: every token gets a key (letters with ``l`` and the wildcard read as ``i``,
runs collapsed); only tokens whose key belongs to an entry are verified with that entry's small
precompiled regex (e.g. kill -> ``k+[i?]+[l?]{2,}`` where ? is the wildcard).

A regex entry is compiled case-insensitively and searched in the raw casefolded prompt and in every
view (the wildcard tried as i and as l), so `normalise("N U D E")` == "nude" is seen by
``\\bnud(e|ity)\\b``. All regex entries are first searched as one alternation (several times
faster than one search each); only when it finds something are they tried one by one. Patterns are
at most 200 characters, must compile, must not match empty text, and may not repeat a group that
holds a quantifier or an alternation ("(a+)+", "(a|aa)*"), the usual shapes of catastrophic
backtracking. Prompts are at most 4000 characters.

When several entries match, the one given first wins. Stored entries that fail validation are
skipped (logged, and listed in `Blocklist.invalid`) rather than disabling the whole list.

Known limits: letters split into pieces longer than one character ("ki ll") are not joined;
scripts written without spaces (Chinese, Japanese, Thai) only match word entries as whole tokens, so
moderators need a regex entry there; Cyrillic/Greek words are folded onto Latin look-alikes.
"""

from __future__ import annotations

import logging
import operator
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_PATTERN_LENGTH = 200

# The wildcard for characters that read as either "i" or "l" (1 ! |). NUL never survives
# tokenising the prompt, so it cannot be typed in.
_AMBIGUOUS = "\x00"

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
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf", "Cc"})
_ASCII_CONTROLS = {c: None for c in range(32) if not chr(c).isspace()} | {127: None}

_LEET = str.maketrans(
    {
        "0": "o", "1": _AMBIGUOUS, "3": "e", "4": "a", "5": "s", "6": "g", "7": "t",
        "8": "b", "9": "g", "@": "a", "$": "s", "€": "e", "!": _AMBIGUOUS, "|": _AMBIGUOUS,
    }
)  # fmt: skip
_LEET_CHARS = re.compile(r"[0-9@$€!|]")
# Key used for the hash lookup: i, l and the wildcard are one letter.
_MERGE = str.maketrans({"l": "i", _AMBIGUOUS: "i"})
# Character classes used when verifying a candidate token against an entry word.
_LETTER_CLASS = {"i": "[i\x00]", "l": "[l\x00]", _AMBIGUOUS: "[il\x00]"}

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
_EDGE_PUNCT = "!|"
_SINGLE_CHAR_RUN = re.compile(r"(?<!\S)\S(?: \S)+(?!\S)")
_NUMBER = re.compile(r"(?<!\S)[0-9]+(?!\S)")
_REPEATS = re.compile(r"(.)\1+", re.DOTALL)
_FIRST_GROUP = operator.itemgetter(1)  # a C callable: faster than the r"\1" template
_RUN = re.compile(r"(.)\1*", re.DOTALL)
# Entry words are at most MAX_PATTERN_LENGTH long, so longer runs in a candidate token can be
# shortened without changing the result; this bounds the verification regexes' backtracking.
_LONG_RUN = re.compile(rf"(.)\1{{{MAX_PATTERN_LENGTH},}}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class BlockMatch:
    """The entry that blocked a prompt."""

    entry_id: int
    pattern: str


class InvalidBlocklistEntry(ValueError):
    """A moderator's entry that cannot be used; `reason` is written for the moderator."""

    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(f"invalid blocklist entry {pattern!r}: {reason}")
        self.pattern = pattern
        self.reason = reason


def normalise(text: str) -> str:
    """The prompt as the matcher reads it: folded, split into words, swaps mapped.

    This is the "split" view (see the module docstring) with the i/l wildcard shown as "i", e.g.
    ``normalise("Ｂ.Ａ.Ｄ  k1ll!!") == "bad kill"``.
    """
    return _render(_pieces(_fold(text), leet=False, glued=False)).replace(_AMBIGUOUS, "i")


def validate_entry(pattern: str, is_regex: bool) -> None:
    """Raise InvalidBlocklistEntry if `pattern` cannot be used as an entry."""
    _compile_entry(pattern, is_regex)


class Blocklist:
    """One guild's entries, precompiled. Immutable: build a new one when entries change."""

    def __init__(self, entries: Iterable[tuple[int, str, bool]]) -> None:
        self._entries: list[BlockMatch] = []
        # key of a token -> [(entry order, verifier of the whole token)]
        self._words: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
        # key of a phrase's first word -> [(entry order, ((key, verifier) per word))]
        self._phrases: dict[str, list[tuple[int, tuple[tuple[str, re.Pattern[str]], ...]]]] = {}
        self._regexes: list[tuple[int, re.Pattern[str]]] = []
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
            if isinstance(compiled, re.Pattern):
                self._regexes.append((order, compiled))
                continue
            # The phrase written as one token; its digits then read as letters, as in a prompt.
            joined = _leet_word("".join(compiled))
            self._words.setdefault(_key(joined), []).append((order, _word_verifier(joined)))
            if len(compiled) > 1:
                words = tuple((_key(w), _word_verifier(w)) for w in compiled)
                self._phrases.setdefault(words[0][0], []).append((order, words))
        # Entries that failed validation (e.g. stored before a rule was tightened): skipped, and
        # kept here with the reason so a moderator can be shown why they do nothing.
        self.invalid: tuple[tuple[int, InvalidBlocklistEntry], ...] = tuple(invalid)
        self._keys = frozenset(self._words) | frozenset(self._phrases)
        self._prefilter, self._unfiltered = _regex_prefilter(self._regexes)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, prompt: str) -> BlockMatch | None:
        """The first entry (in the order given) that matches `prompt`, or None."""
        if not self._entries:
            return None
        folded = _fold(prompt)
        views, extras = _views(folded)
        best: int | None = None
        if self._keys:
            for view in views:
                best = _earliest(best, self._scan(view))
            for word in extras:
                for order, verifier in self._words.get(_key(word), ()):
                    if _verify(verifier, word):
                        best = _earliest(best, order)
        if self._regexes:
            targets = _regex_targets(prompt, views)
            candidates = self._regexes
            if self._prefilter and not any(self._prefilter.search(t) for t in targets):
                candidates = self._unfiltered
            for order, regex in candidates:
                if best is not None and order > best:
                    break
                if any(regex.search(target) for target in targets):
                    best = order
                    break
        return None if best is None else self._entries[best]

    def _scan(self, view: str) -> int | None:
        """The earliest word/phrase entry matching whole tokens of one view."""
        keys = _key(view).split(" ")
        hits = self._keys.intersection(keys)
        if not hits:
            return None
        tokens = view.split(" ")
        best: int | None = None
        for pos, key in enumerate(keys):
            if key not in hits:
                continue
            for order, verifier in self._words.get(key, ()):
                if (best is None or order < best) and _verify(verifier, tokens[pos]):
                    best = order
            for order, words in self._phrases.get(key, ()):
                if (best is None or order < best) and _phrase_at(tokens, keys, pos, words):
                    best = order
        return best


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _phrase_at(
    tokens: list[str],
    keys: list[str],
    pos: int,
    words: tuple[tuple[str, re.Pattern[str]], ...],
) -> bool:
    if pos + len(words) > len(tokens):
        return False
    return all(
        keys[pos + i] == key and _verify(verifier, tokens[pos + i])
        for i, (key, verifier) in enumerate(words)
    )


def _fold(text: str) -> str:
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


def _render(pieces: list[str], extras: list[str] | None = None) -> str:
    """Join single-character runs, map swaps, and return the tokens separated by single spaces.

    If `extras` is given, runs that start with "a"/"i" are also added to it without that letter.
    """

    def join_run(match: re.Match[str]) -> str:
        run = match.group().replace(" ", "")
        if extras is not None and len(run) >= 3:
            mapped = _leet_word(run)
            if mapped[0] in "ai":
                extras.append(mapped[1:])
        return run

    text = _SINGLE_CHAR_RUN.sub(join_run, " ".join(pieces))
    if _LEET_CHARS.search(text):
        text = _leet_text(text)
    return text


def _leet_word(word: str) -> str:
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


def _verify(verifier: re.Pattern[str], token: str) -> bool:
    if len(token) > MAX_PATTERN_LENGTH:
        token = _LONG_RUN.sub(lambda m: m.group(1) * MAX_PATTERN_LENGTH, token)
    return verifier.fullmatch(token) is not None


def _views(folded: str) -> tuple[list[str], list[str]]:
    """The distinct token views of a folded prompt, and the extra lone words from runs."""
    extras: list[str] = []
    glued = _INNER_PUNCT.search(folded) is not None
    leet = any(c in folded for c in _LEET_SYMBOLS)
    views = []
    for as_leet, as_glued in ((False, False), (False, True), (True, False), (True, True)):
        if (as_leet and not leet) or (as_glued and not glued):
            continue
        views.append(_render(_pieces(folded, leet=as_leet, glued=as_glued), extras))
    return list(dict.fromkeys(views)), extras


def _pieces(folded: str, *, leet: bool, glued: bool) -> list[str]:
    """Alphanumeric pieces of one view (see the module docstring)."""
    if folded.isascii():
        if leet:
            table = _ASCII_LEET_GLUE if glued else _ASCII_LEET_SPLIT
        else:
            table = _ASCII_GLUE if glued else _ASCII_SPLIT
        pieces = folded.translate(table).split()
    else:
        pieces = (_LEET_PUNCT if leet else _PLAIN_PUNCT).sub("" if glued else " ", folded).split()
    if not leet:
        return pieces
    stripped = (piece.strip(_EDGE_PUNCT) for piece in pieces)
    return [piece for piece in stripped if piece]


def _regex_targets(prompt: str, views: list[str]) -> list[str]:
    targets = [prompt.casefold()]
    for view in views:
        if _AMBIGUOUS in view:
            targets.append(view.replace(_AMBIGUOUS, "i"))
            targets.append(view.replace(_AMBIGUOUS, "l"))
        else:
            targets.append(view)
    return list(dict.fromkeys(targets))


# Regexes that cannot join one alternation without changing meaning: numbered backreferences and
# conditionals (group numbers shift), global inline flags (only allowed at the very start).
_NOT_COMBINABLE = re.compile(r"\\[1-9]|\(\?\(|\(\?[aiLmsux]+\)")


def _regex_prefilter(
    regexes: list[tuple[int, re.Pattern[str]]],
) -> tuple[re.Pattern[str] | None, list[tuple[int, re.Pattern[str]]]]:
    """One alternation of the regex entries, and the entries it does not cover.

    One search of an alternation is several times faster than one search per entry; the
    entries are only searched one by one (to name the earliest) when it finds something.
    """
    combinable = [(o, r) for o, r in regexes if not _NOT_COMBINABLE.search(r.pattern)]
    others = [(o, r) for o, r in regexes if _NOT_COMBINABLE.search(r.pattern)]
    if len(combinable) < 2:
        return None, regexes
    try:
        combined = re.compile("|".join(f"(?:{r.pattern})" for _, r in combinable), re.IGNORECASE)
    except re.error:  # e.g. two entries define the same group name
        return None, regexes
    return combined, others


def _key(word: str) -> str:
    return _REPEATS.sub(_FIRST_GROUP, word.translate(_MERGE))


def _word_verifier(word: str) -> re.Pattern[str]:
    """A regex that fully matches the tokens that spell `word` (wildcards, extra repeats)."""
    if word.isdigit():
        return re.compile(re.escape(word))
    parts = []
    for run in _RUN.finditer(word):
        char, count = run.group(1), len(run.group())
        letter = _LETTER_CLASS.get(char) or re.escape(char)
        parts.append(letter + ("+" if count == 1 else f"{{{count},}}"))
    return re.compile("".join(parts))


def _entry_words(pattern: str) -> list[str]:
    """An entry's words, read like a prompt but with symbols as letters ("a$$" is ass)."""
    return _render(_pieces(_fold(pattern), leet=True, glued=False)).split()


def _compile_entry(pattern: str, is_regex: bool) -> re.Pattern[str] | list[str]:
    if not pattern.strip():
        raise InvalidBlocklistEntry(pattern, "is empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidBlocklistEntry(
            pattern, f"is {len(pattern)} characters long; the limit is {MAX_PATTERN_LENGTH}"
        )
    if not is_regex:
        words = _entry_words(pattern)
        if not words:
            raise InvalidBlocklistEntry(pattern, "has no letters or digits")
        return words
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise InvalidBlocklistEntry(pattern, f"is not a valid regular expression: {exc}") from exc
    problem = _backtracking_risk(pattern)
    if problem:
        raise InvalidBlocklistEntry(pattern, problem)
    if compiled.search("") is not None:
        raise InvalidBlocklistEntry(pattern, "matches empty text, so it would block every prompt")
    return compiled


_QUANTIFIER = re.compile(r"[*+?]|\{\d*,?\d*\}")


def _backtracking_risk(pattern: str) -> str | None:
    """Why `pattern` risks catastrophic backtracking, or None.

    Flags a group that holds a quantifier or an alternation and is itself repeated ("(a+)+",
    "(a|aa)*", "(\\w+\\s?){3,}"); an optional group ("(ab+)?") is fine. Only called on patterns
    that compile, so brackets and escapes are balanced.
    """
    # Per open group: does it hold a quantifier or "|"?
    stack = [False]
    risky_group_before = False  # the atom just before `i` is such a group
    i = 0
    while i < len(pattern):
        char = pattern[i]
        quantifier = _QUANTIFIER.match(pattern, i)
        if char == "\\":
            i += 2
            risky_group_before = False
        elif char == "[":
            i = _class_end(pattern, i)
            risky_group_before = False
        elif char == "(":
            stack.append(False)
            i += 2 if pattern.startswith("(?", i) else 1  # "(?:" is not a quantifier
            risky_group_before = False
        elif char == ")":
            inner = stack.pop() if len(stack) > 1 else False
            stack[-1] = stack[-1] or inner
            risky_group_before = inner
            i += 1
        elif char == "|":
            stack[-1] = True
            i += 1
            risky_group_before = False
        elif quantifier:
            if risky_group_before and quantifier.group() != "?":
                return (
                    "repeats a group that contains a quantifier or '|', which can take "
                    "exponential time; use a character class such as [a-z]+ instead"
                )
            stack[-1] = True
            i = quantifier.end()
            risky_group_before = False
        else:
            i += 1
            risky_group_before = False
    return None


def _class_end(pattern: str, start: int) -> int:
    """Index just after the character class that opens at `start`."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":  # a leading "]" is a literal
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1
