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

A word entry also matches its common English inflections as whole tokens: the word followed by
one of -s, -ed, -ing, -er, -ers (kill -> kills, killed, killing, killer, killers; "n a z i s" is
nazis), -es only after s, x, z, ch, sh, o ("asses", "bitches"; not "spices" for spic), only -s
after a final "c" (English writes -cked), and for a word ending in a single "e" -s, -d, -r, -rs,
or -ing replacing the "e" (nude -> nudes, nuded, nuding). Only the last word of a phrase is
inflected ("blood baths"). Suffixes tolerate repeated letters ("killinggg") except "es", which
must be exact: "asses" is ass, but "assess" (ass + "ess"), "assesses" and "assessing" are not. A
doubled final consonant is a repeat, so "cumming" is cum. Words that merely contain or start with
the entry still pass ("skill", "class", "cumulative", "Nazareth's"). Not covered: -y/-ies
("pussies") and irregular forms; add those as entries of their own. An entry in double quotes
is exact, for when an inflection is an innocent word: "butt" blocks butter, '"butt"' does not.

An entry ending in ``*`` is a prefix: "kill*" matches every token that starts with kill
("killstreak", "k1lljoy"), "blood ba*" matches "blood bank". A ``*`` anywhere else is punctuation
("k*i*l*l" is kill).

Lookup is a hash lookup: every token gets a key (letters with ``l`` and the wildcard read as ``i``,
runs collapsed); each word entry is indexed under the keys of its inflected forms, and only tokens
whose key belongs to an entry are verified with that entry's small precompiled regex (e.g. kill ->
``k+[i?]+[l?]{2,}(?:s+|es|e+d+|[i?]+n+g+|e+r+s*)?`` where ? is the wildcard). Prefix entries are
checked with ``str.startswith`` on the keys.

A regex entry is compiled case-insensitively and searched in the raw casefolded prompt and in every
view (the wildcard tried as i and as l), so `normalise("N U D E")` == "nude" is seen by
``\\bnud(e|ity)\\b``. All regex entries are first searched as one alternation (several times
faster than one search each); only when it finds something are they tried one by one.

Regex cost. Python's ``re`` has no timeout and ``check`` runs on the event loop, so a slow
pattern would stall every guild. Patterns are at most 200 characters, must compile, must not
match empty text, and two static rules (checked for stored entries too) reject the shapes of
catastrophic backtracking:
- a repeated group that holds a quantifier or an alternation ("(a+)+", "(a|aa)*"): exponential;
- repeats in a row that can match the same characters, directly or across parts that can be
  empty or that both can absorb ("\\d+\\d+z", "a*a*b", "\\w+\\s*\\w+", "\\d+0\\d+", "a.*b.*c"):
  polynomial (found on the stdlib parser's tree, see _NeighbourCheck).
``validate_entry`` (what ``/admin blocklist add`` calls) then runs ``check_regex_cost``: the
pattern is timed in a separate interpreter on adversarial 4000-character texts built from its own
atoms (long runs of a character each atom matches, plus generic digit/letter/space mixes); over
COST_BUDGET (150 ms) of work, or not done in time (the child is killed), it is refused ("this
pattern can take too long on some prompts; simplify it"). That also catches quadratic patterns
with no anchor ("[a-z]+ing", ".*nude.*": ~0.1 s per 4000-character text); "\\b[a-z]+ing" is fine.
At match time each regex sees at most 4000 characters at once: prompts are at most 4000
characters, but folding can lengthen them (NFKC makes "\ufdfa" 18 letters), so longer texts are
searched in windows of 4000 overlapping by 400, cut at spaces; cost per text then stays what
``check_regex_cost`` measured. (A match longer than ~400 characters across a cut, or ``^``/``$``
meaning the prompt's ends, can differ only in such over-long texts.)

When several entries match, the one given first wins. Stored entries that fail validation are
skipped (logged, and listed in `Blocklist.invalid`) rather than disabling the whole list.

Known limits: letters split into pieces longer than one character ("ki ll") are not joined;
scripts written without spaces (Chinese, Japanese, Thai) only match word entries as whole tokens, so
moderators need a regex entry there; Cyrillic/Greek words are folded onto Latin look-alikes.
"""

from __future__ import annotations

import json
import logging
import operator
import queue
import re
import string
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from re import _constants as _sre_c  # the stdlib's own regex parser: exact classes and escapes
from re import _parser as _sre
from typing import Any

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

# Inflections a word entry also matches: kill -> kills, killed, killing, killer(s). "es" is
# strict ("asses" is ass, but "assess" is not ass + "ess"); other suffixes tolerate repeats.
_SUFFIX_REGEX = {
    "s": "s+",
    "es": "es",
    "ed": "e+d+",
    "ing": "[i\x00]+n+g+",
    "er": "e+r+",
    "ers": "e+r+s+",
}
# "-es" only follows these endings ("bitches", "asses"): "spices" is not spic + "es".
_ES_AFTER = ("s", "x", "z", "ch", "sh", "o")
# After a word's single final "e": nude -> nudes, nuded, nuder(s), and nuding (e dropped).
_E_SUFFIXES = ("s", "d", "r", "rs")
_E_INFLECTION = "(?:e+(?:s+|d+|r+s*)?|[i\x00]+n+g+)"


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
    """Raise InvalidBlocklistEntry if `pattern` cannot be used as an entry.

    For a regex this also runs check_regex_cost: a child process, tens of milliseconds.
    """
    _compile_entry(pattern, is_regex)
    if is_regex:
        check_regex_cost(pattern)


class Blocklist:
    """One guild's entries, precompiled. Immutable: build a new one when entries change."""

    def __init__(self, entries: Iterable[tuple[int, str, bool]]) -> None:
        self._entries: list[BlockMatch] = []
        # key of a token (the entry word or one of its inflections) -> [(entry order, verifier)]
        self._words: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
        # "kill*" entries: [(entry order, key the token's key starts with, verifier)]
        self._prefixes: list[tuple[int, str, re.Pattern[str]]] = []
        # key of a phrase's first word -> [(entry order, one _PhraseWord per word)]
        self._phrases: dict[str, list[tuple[int, tuple[_PhraseWord, ...]]]] = {}
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
            words, prefix = compiled.words, compiled.prefix
            # The phrase written as one token; its digits then read as letters, as in a prompt.
            joined = _leet_word("".join(words))
            if prefix:
                self._prefixes.append((order, _key(joined), _word_verifier(joined, prefix=True)))
            else:
                inflect = not compiled.exact
                verifier = _word_verifier(joined, inflect=inflect)
                keys = _inflected_keys(joined) if inflect else {_key(joined)}
                for key in keys:
                    self._words.setdefault(key, []).append((order, verifier))
            if len(words) > 1:
                # Only the last word of a phrase is inflected or a prefix ("blood baths").
                last = len(words) - 1
                phrase = tuple(
                    _phrase_word(w, last=i == last and not compiled.exact, prefix=prefix)
                    for i, w in enumerate(words)
                )
                self._phrases.setdefault(_key(words[0]), []).append((order, phrase))
        # Entries that failed validation (e.g. stored before a rule was tightened): skipped, and
        # kept here with the reason so a moderator can be shown why they do nothing.
        self.invalid: tuple[tuple[int, InvalidBlocklistEntry], ...] = tuple(invalid)
        self._keys = frozenset(self._words) | frozenset(self._phrases)
        self._prefix_keys = tuple(key for _, key, _ in self._prefixes)
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
        if self._keys or self._prefixes:
            for view in views:
                best = _earliest(best, self._scan(view))
            for word in extras:
                best = self._word_at(word, _key(word), best)
        if self._regexes:
            targets = [w for t in _regex_targets(prompt, views) for w in _windows(t)]
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
        prefixes = self._prefix_keys
        if not hits and not (prefixes and any(key.startswith(prefixes) for key in keys)):
            return None
        tokens = view.split(" ")
        best: int | None = None
        for pos, key in enumerate(keys):
            if key in hits:
                best = self._word_at(tokens[pos], key, best)
                for order, words in self._phrases.get(key, ()):
                    if (best is None or order < best) and _phrase_at(tokens, keys, pos, words):
                        best = order
            elif prefixes and key.startswith(prefixes):
                best = self._word_at(tokens[pos], key, best)
        return best

    def _word_at(self, token: str, key: str, best: int | None) -> int | None:
        """`best`, or an earlier word/prefix entry that matches the whole `token`."""
        for order, verifier in self._words.get(key, ()):
            if (best is None or order < best) and _verify(verifier, token):
                best = order
        for order, prefix_key, verifier in self._prefixes:
            if (
                (best is None or order < best)
                and key.startswith(prefix_key)
                and _verify(verifier, token)
            ):
                best = order
        return best


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


@dataclass(frozen=True, slots=True)
class _PhraseWord:
    keys: frozenset[str]  # keys a token may have (the word's, or its inflections')
    prefix_key: str | None  # set for the last word of "blood ba*": the token's key starts with it
    verifier: re.Pattern[str]

    def accepts(self, token: str, key: str) -> bool:
        if self.prefix_key is not None:
            return key.startswith(self.prefix_key) and _verify(self.verifier, token)
        return key in self.keys and _verify(self.verifier, token) and _verify(self.verifier, token)


def _phrase_word(word: str, *, last: bool, prefix: bool) -> _PhraseWord:
    if last and prefix:
        return _PhraseWord(frozenset(), _key(word), _word_verifier(word, prefix=True))
    if last:
        return _PhraseWord(_inflected_keys(word), None, _word_verifier(word, inflect=True))
    return _PhraseWord(frozenset({_key(word)}), None, _word_verifier(word))


def _phrase_at(
    tokens: list[str],
    keys: list[str],
    pos: int,
    words: tuple[_PhraseWord, ...],
) -> bool:
    if pos + len(words) > len(tokens):
        return False
    return all(word.accepts(tokens[pos + i], keys[pos + i]) for i, word in enumerate(words))


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


def _spelling(word: str) -> str:
    """Regex source for `word` with wildcards and extra repeats: kill -> k+[i?]+[l?]{2,}."""
    parts = []
    for run in _RUN.finditer(word):
        char, count = run.group(1), len(run.group())
        letter = _LETTER_CLASS.get(char) or re.escape(char)
        parts.append(letter + ("+" if count == 1 else f"{{{count},}}"))
    return "".join(parts)


def _inflects(word: str) -> bool:
    return not word.isdigit() and (word[-1].isalpha() or word[-1] == _AMBIGUOUS)


def _drops_e(word: str) -> bool:
    """Whether `word` ends in one "e" that "-ing" replaces (nude -> nuding)."""
    return len(word) > 2 and word[-1] == "e" and word[-2] != "e"


def _word_verifier(word: str, *, inflect: bool = False, prefix: bool = False) -> re.Pattern[str]:
    """A regex that fully matches the tokens that spell `word` (wildcards, extra repeats).

    `inflect`: also its inflections (see _suffixes); `prefix`: any token starting with it.
    """
    if prefix:
        return re.compile((re.escape(word) if word.isdigit() else _spelling(word)) + ".*")
    if word.isdigit():
        return re.compile(re.escape(word))
    if not (inflect and _inflects(word)):
        return re.compile(_spelling(word))
    if _drops_e(word):
        return re.compile(_spelling(word[:-1]) + _E_INFLECTION)
    suffixes = "|".join(_SUFFIX_REGEX[suffix] for suffix in _suffixes(word))
    return re.compile(f"{_spelling(word)}(?:{suffixes})?")


def _suffixes(word: str) -> list[str]:
    """The suffixes (keys of _SUFFIX_REGEX) a word not ending in a single "e" takes."""
    if word.endswith("c"):  # English writes -cked, -cking: "spiced" is not spic + "ed"
        return ["s"]
    return ["s", *(["es"] if word.endswith(_ES_AFTER) else []), "ed", "ing", "er", "ers"]


def _inflected_keys(word: str) -> frozenset[str]:
    """Lookup keys of `word` and of its inflections (repeats collapse, so one key each)."""
    if not _inflects(word):
        return frozenset({_key(word)})
    if _drops_e(word):
        forms = [word, *(word + s for s in _E_SUFFIXES), word[:-1] + "ing"]
    else:
        forms = [word, *(word + s for s in _suffixes(word))]
    return frozenset(_key(form) for form in forms)


def _entry_words(pattern: str) -> list[str]:
    """An entry's words, read like a prompt but with symbols as letters ("a$$" is ass)."""
    return _render(_pieces(_fold(pattern), leet=True, glued=False)).split()


@dataclass(frozen=True, slots=True)
class _WordEntry:
    words: list[str]
    prefix: bool  # written with a trailing "*": matches tokens that start with the last word
    exact: bool = False  # written in double quotes: no inflections


def _compile_entry(pattern: str, is_regex: bool) -> re.Pattern[str] | _WordEntry:
    if not pattern.strip():
        raise InvalidBlocklistEntry(pattern, "is empty")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidBlocklistEntry(
            pattern, f"is {len(pattern)} characters long; the limit is {MAX_PATTERN_LENGTH}"
        )
    if not is_regex:
        text = pattern.strip()
        exact = len(text) > 2 and text[0] == text[-1] == '"'
        prefix = not exact and text.endswith("*")
        words = _entry_words(text[1:-1] if exact else text.rstrip("*"))
        if not words:
            raise InvalidBlocklistEntry(pattern, "has no letters or digits")
        return _WordEntry(words, prefix, exact)
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise InvalidBlocklistEntry(pattern, f"is not a valid regular expression: {exc}") from exc
    problem = _backtracking_risk(pattern) or _neighbour_risk(pattern)
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


# -- regex cost -------------------------------------------------------------------------------

# A regex searches at most this much text at once. Prompts are at most 4000 characters, but
# folding can lengthen them (NFKC turns "﷽" into 18 letters) and check_regex_cost measures a
# pattern on 4000-character texts, so longer targets are searched in overlapping windows.
_REGEX_WINDOW = 4000
_WINDOW_OVERLAP = 400


def _windows(text: str) -> list[str]:
    """`text`, or overlapping slices of it of at most _REGEX_WINDOW characters.

    Slices are cut at spaces when there is one near the cut, so ``\\b`` still sees whole words.
    """
    if len(text) <= _REGEX_WINDOW:
        return [text]
    windows: list[str] = []
    start = 0
    while start + _REGEX_WINDOW < len(text):
        end = start + _REGEX_WINDOW
        space = text.rfind(" ", end - _WINDOW_OVERLAP // 2, end)
        end = space if space > start else end
        windows.append(text[start:end])
        back = end - _WINDOW_OVERLAP
        space = text.find(" ", back, end)
        start = space + 1 if space != -1 else back
    windows.append(text[start:])
    return windows


_RISKY_NEIGHBOURS = (
    "has two repeated parts in a row that can match the same characters (like \\d+\\d+ or "
    "\\w*\\s*\\w*), which can take very long on some prompts; merge them into one"
)
_TOO_SLOW = (
    "this pattern can take too long on some prompts; simplify it (for example start it with "
    "\\b or with plain letters)"
)
# A repeat allowing more than this many copies counts as unbounded for the neighbour rule.
_BIG_REPEAT = 10
# Characters the static check reasons about (plus every literal of the pattern): enough to tell
# \d, \w, \s, '.', classes and literals apart.
_PROBE = (
    string.ascii_lowercase + string.digits + string.punctuation + " \t\n"
    + "\u00e9\u00df\u0430\u03c9\u0663\u65e5\u00a0\u2003\x01"
)  # fmt: skip
_CATEGORY_TESTS = {
    _sre_c.CATEGORY_DIGIT: re.compile(r"\d"),
    _sre_c.CATEGORY_NOT_DIGIT: re.compile(r"\D"),
    _sre_c.CATEGORY_SPACE: re.compile(r"\s"),
    _sre_c.CATEGORY_NOT_SPACE: re.compile(r"\S"),
    _sre_c.CATEGORY_WORD: re.compile(r"\w"),
    _sre_c.CATEGORY_NOT_WORD: re.compile(r"\W"),
}
_REPEATS_OPS = (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT)


class _Risky(Exception):
    """Raised inside _NeighbourCheck when two overlapping repeats can meet."""


class _NeighbourCheck:
    """Finds repeats that can match the same text one after the other ("\\d+\\d+", "a*a*b").

    Walks the parse tree of the stdlib's own regex parser keeping the *live* repeats: unbounded
    repeats seen earlier that could still be consuming text here, because every required atom
    since shares a character with them. A new unbounded repeat that shares a character with
    a live one and with each of those atoms (\\d+\\d+, \\w+\\s*\\w+, \\d+0\\d+, \\w+ing\\w+) can
    split the same text in many ways: polynomial backtracking. Classes are compared on
    _PROBE plus the pattern's own literals.
    """

    def __init__(self, parsed: _sre.SubPattern) -> None:
        self.flags = parsed.state.flags
        alphabet = set(_PROBE)
        self._collect_literals(parsed.data, alphabet)
        self.alphabet = frozenset(alphabet)
        self.groups: dict[int, tuple[frozenset[str], bool]] = {}
        self.leaves: list[frozenset[str]] = []  # every leaf's characters (for cost inputs)

    def run(self, items: Iterable[tuple[Any, Any]]) -> bool:
        try:
            self._seq(items, [])
        except _Risky:
            return True
        return False

    def _collect_literals(self, node: Any, out: set[str]) -> None:
        if isinstance(node, _sre.SubPattern):
            node = node.data
        if (
            isinstance(node, tuple)
            and len(node) == 2
            and isinstance(node[0], _sre_c._NamedIntConstant)
        ):
            op, av = node
            if op in (_sre_c.LITERAL, _sre_c.NOT_LITERAL):
                out.update({chr(av).lower(), chr(av).upper()})
            elif op is _sre_c.RANGE:
                out.update({chr(av[0]).lower(), chr(av[1]).lower()})
            else:
                self._collect_literals(av, out)
        elif isinstance(node, (list, tuple)):
            for item in node:
                self._collect_literals(item, out)

    def _same(self, ch: str, code: int) -> bool:
        target = chr(code)
        if ch == target:
            return True
        return bool(self.flags & re.IGNORECASE) and ch.lower() == target.lower()

    def _in_range(self, ch: str, lo: int, hi: int) -> bool:
        variants = {ch, ch.lower(), ch.upper()} if self.flags & re.IGNORECASE else {ch}
        return any(len(v) == 1 and lo <= ord(v) <= hi for v in variants)

    def _leaf(self, op: Any, av: Any) -> frozenset[str]:
        if op is _sre_c.LITERAL:
            chars = frozenset(c for c in self.alphabet if self._same(c, av))
        elif op is _sre_c.NOT_LITERAL:
            chars = frozenset(c for c in self.alphabet if not self._same(c, av))
        elif op is _sre_c.ANY:
            dotall = self.flags & re.DOTALL
            chars = frozenset(c for c in self.alphabet if dotall or c != "\n")
        else:  # IN
            negate = any(o is _sre_c.NEGATE for o, _ in av)
            chars = frozenset(c for c in self.alphabet if self._in_class(c, av) != negate)
        self.leaves.append(chars)
        return chars

    def _in_class(self, ch: str, items: list[tuple[Any, Any]]) -> bool:
        for op, av in items:
            if op is _sre_c.LITERAL and self._same(ch, av):
                return True
            if op is _sre_c.RANGE and self._in_range(ch, *av):
                return True
            if op is _sre_c.CATEGORY:
                test = _CATEGORY_TESTS.get(av)
                if test is None or test.match(ch):  # unknown category: assume it matches
                    return True
        return False

    def _chars(self, items: Iterable[tuple[Any, Any]]) -> tuple[frozenset[str], bool]:
        """All characters a subpattern can match, and whether it holds an unbounded repeat."""
        chars: set[str] = set()
        unbounded = False
        for op, av in items:
            if op in (_sre_c.LITERAL, _sre_c.NOT_LITERAL, _sre_c.ANY, _sre_c.IN):
                chars |= self._leaf(op, av)
            elif op in (*_REPEATS_OPS, _sre_c.POSSESSIVE_REPEAT):
                sub, sub_unbounded = self._chars(av[2])
                chars |= sub
                unbounded = unbounded or sub_unbounded or av[1] > _BIG_REPEAT
            elif op is _sre_c.SUBPATTERN:
                sub, sub_unbounded = self._chars(av[3])
                chars |= sub
                unbounded = unbounded or sub_unbounded
            elif op is _sre_c.ATOMIC_GROUP:
                sub, sub_unbounded = self._chars(av)
                chars |= sub
                unbounded = unbounded or sub_unbounded
            elif op is _sre_c.BRANCH:
                for alt in av[1]:
                    sub, sub_unbounded = self._chars(alt)
                    chars |= sub
                    unbounded = unbounded or sub_unbounded
            elif op is _sre_c.GROUPREF_EXISTS:
                for alt in av[1:]:
                    if alt is not None:
                        sub, sub_unbounded = self._chars(alt)
                        chars |= sub
                        unbounded = unbounded or sub_unbounded
            elif op is _sre_c.GROUPREF:
                sub, sub_unbounded = self.groups.get(av, (self.alphabet, True))
                chars |= sub
                unbounded = unbounded or sub_unbounded
            elif op in (_sre_c.AT, _sre_c.ASSERT, _sre_c.ASSERT_NOT):
                continue  # zero width
            else:  # an opcode this check does not know: assume the worst
                chars |= self.alphabet
                unbounded = True
        return frozenset(chars), unbounded

    def _repeat(self, live: list[_Live], chars: frozenset[str], nullable: bool) -> list[_Live]:
        """Live repeats after an unbounded repeat of `chars` (raises _Risky on overlap)."""
        for before, required in live:
            if chars & before and all(chars & r for r in required):
                raise _Risky
        kept = live if nullable else _narrow(live, chars)
        return _unique([*kept, (chars, ())])

    def _seq(self, items: Iterable[tuple[Any, Any]], live: list[_Live]) -> list[_Live]:
        for op, av in items:
            if op in (_sre_c.LITERAL, _sre_c.NOT_LITERAL, _sre_c.ANY, _sre_c.IN):
                live = _narrow(live, self._leaf(op, av))
            elif op in (_sre_c.AT,):
                continue
            elif op in (_sre_c.ASSERT, _sre_c.ASSERT_NOT):
                self._seq(av[1], [])
            elif op is _sre_c.SUBPATTERN:
                live = self._seq(av[3], live)
                if av[0] is not None:
                    self.groups[av[0]] = self._chars(av[3])
            elif op is _sre_c.BRANCH:
                live = _unique([s for alt in av[1] for s in self._seq(alt, live)])
            elif op is _sre_c.GROUPREF_EXISTS:
                alts = [alt for alt in av[1:] if alt is not None]
                after = [s for alt in alts for s in self._seq(alt, live)]
                live = _unique(after + (live if len(alts) < 2 else []))
            elif op in _REPEATS_OPS:
                low, high, body = av
                if high > _BIG_REPEAT:
                    self._seq(body, [])
                    chars, _ = self._chars(body)
                    live = self._repeat(live, chars, nullable=low == 0)
                else:  # small and bounded: as if written out
                    for _ in range(low):
                        live = self._seq(body, live)
                    for _ in range(high - low):
                        live = _unique(live + self._seq(body, live))
            elif op in (_sre_c.POSSESSIVE_REPEAT, _sre_c.ATOMIC_GROUP):
                # Never gives characters back, so it cannot split text with a neighbour.
                body = av[2] if op is _sre_c.POSSESSIVE_REPEAT else av
                self._seq(body, [])
            elif op is _sre_c.GROUPREF:
                chars, unbounded = self.groups.get(av, (self.alphabet, True))
                if unbounded:
                    live = self._repeat(live, chars, nullable=True)
                else:
                    live = _narrow(live, chars)
            else:
                chars, _ = self._chars([(op, av)])
                live = self._repeat(live, chars, nullable=True)
        return live


# An unbounded repeat seen earlier that could still be consuming text: its characters, and the
# characters (one set per required atom since) it must be able to absorb to reach this point.
_Live = tuple[frozenset[str], tuple[frozenset[str], ...]]


def _narrow(live: list[_Live], chars: frozenset[str]) -> list[_Live]:
    """Live repeats that can absorb one more required atom matching `chars`."""
    return _unique([(rep, (*req, rep & chars)) for rep, req in live if rep & chars])


def _unique(live: list[_Live]) -> list[_Live]:
    return list(dict.fromkeys(live))


def _neighbour_risk(pattern: str) -> str | None:
    """Why `pattern` risks polynomial backtracking (overlapping repeats in a row), or None."""
    parsed = _sre.parse(pattern, re.IGNORECASE)
    return _RISKY_NEIGHBOURS if _NeighbourCheck(parsed).run(parsed.data) else None


# Texts check_regex_cost tries are this long (the longest prompt).
_COST_TEXT_LENGTH = 4000
# Seconds of regex work allowed over all those texts, and extra wall time (process start-up
# excluded: the child says "ready" first) before the child is killed.
COST_BUDGET = 0.15
_COST_SLACK = 0.25
_START_LIMIT = 10.0
# Runs in a fresh interpreter (-I -S: no site, no environment), so a runaway search can be
# killed without touching the bot's process.
_COST_CHILD = """
import json, re, sys, time
job = json.loads(sys.stdin.readline())
regex = re.compile(job["pattern"], re.IGNORECASE)
print("ready", flush=True)
spent = 0.0
for text in job["texts"]:
    started = time.perf_counter()
    regex.search(text)
    spent += time.perf_counter() - started
    if spent > job["budget"]:
        break
print(spent, flush=True)
"""


def _cost_texts(pattern: str) -> list[str]:
    """Adversarial texts for `pattern`: long runs of characters its own atoms match."""
    parsed = _sre.parse(pattern, re.IGNORECASE)
    check = _NeighbourCheck(parsed)
    check._chars(parsed.data)  # fills check.leaves
    n = _COST_TEXT_LENGTH
    singles: list[str] = []
    for chars in check.leaves:
        for preferred in (string.ascii_lowercase, string.digits, " ", _PROBE):
            found = sorted(c for c in chars if c in preferred)
            if found:
                singles.append(found[0])
                break
    literals = "".join(chr(av) for op, av in parsed.data if op is _sre_c.LITERAL)
    texts = [c * (n - 1) + "\x01" for c in dict.fromkeys(singles)]
    texts += [c * (n - 1) + "\n" for c in dict.fromkeys(singles[:8])]
    generic = ["1", "a", " ", "a1 ", "a ", "a1", "ab", "_a", "-a"]
    if literals:
        generic.append(literals)
    texts += [(g * (n // len(g) + 1))[: n - 1] + "\x01" for g in generic]
    return texts[:40]


def check_regex_cost(pattern: str, *, budget: float = COST_BUDGET) -> None:
    """Raise InvalidBlocklistEntry if `pattern` is slow on adversarial 4000-character prompts.

    Times the pattern in a separate Python process on long runs of the characters its own atoms
    match (and a few generic texts) and kills that process on overrun, so a catastrophic pattern
    cannot hang the caller. Blocks for the child's start-up plus at most `budget` +
    _COST_SLACK seconds (typically 20-40 ms for an ordinary pattern). `pattern` must already
    compile (validate_entry checks that first).
    """
    job = json.dumps({"pattern": pattern, "texts": _cost_texts(pattern), "budget": budget})
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _COST_CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    except OSError as exc:
        log.exception("could not start the regex cost check for %r", pattern)
        raise InvalidBlocklistEntry(
            pattern, "could not be tested right now; try again later"
        ) from exc
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    reader = threading.Thread(target=_read_lines, args=(child, job, lines), daemon=True)
    reader.start()
    try:
        ready = lines.get(timeout=_START_LIMIT)
        spent = lines.get(timeout=budget + _COST_SLACK) if ready == "ready" else ""
    except queue.Empty:
        spent = "timeout"
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        reader.join()
        if child.stdout is not None:
            child.stdout.close()
    if spent == "timeout":
        raise InvalidBlocklistEntry(pattern, _TOO_SLOW)
    try:
        seconds = float(spent)
    except ValueError:
        log.error("regex cost check for %r failed (exit %s)", pattern, child.returncode)
        raise InvalidBlocklistEntry(
            pattern, "could not be tested right now; try again later"
        ) from None
    if seconds > budget:
        raise InvalidBlocklistEntry(pattern, _TOO_SLOW)


def _read_lines(child: subprocess.Popen[str], job: str, out: queue.SimpleQueue[str]) -> None:
    """Send the job, then pass each line the child prints (and "" at its end) to `out`."""
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(job + "\n")
        child.stdin.close()
    except OSError:  # the child died first; its missing answer is reported by the caller
        log.warning("regex cost check child exited before reading its job")
    for line in child.stdout:
        out.put(line.strip())
    out.put("")
