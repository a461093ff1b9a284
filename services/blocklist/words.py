"""Word, phrase, prefix ("kill*") and exact ('"kill"') entries, and the index that finds them.

An entry matches whole tokens only ("ass" never matches "class"), tolerates extra repeated letters
("kiiill") and, unless quoted, its common English inflections (kills, killed, killing, killer).
Tokens are looked up by key in a dict; only candidates are verified with the entry's small regex.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from services.blocklist import folding
from services.blocklist.entry import MAX_PATTERN_LENGTH, InvalidBlocklistEntry
from services.wording import said

# Character classes used when verifying a candidate token against an entry word.
_LETTER_CLASS = {"i": "[i\x00]", "l": "[l\x00]", folding.AMBIGUOUS: "[il\x00]"}
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
class WordEntry:
    words: tuple[str, ...]
    prefix: bool  # written with a trailing "*": matches tokens that start with the last word
    exact: bool = False  # written in double quotes: no inflections


def parse_words(pattern: str) -> WordEntry:
    """A word/phrase entry, read like a prompt but with symbols as letters ("a$$" is ass).

    A trailing ``*`` makes it a prefix ("kill*"); a ``*`` anywhere else is punctuation.
    """
    text = pattern.strip()
    exact = len(text) > 2 and text[0] == text[-1] == '"'
    prefix = not exact and text.endswith("*")
    body = text[1:-1] if exact else text.rstrip("*")
    words = folding.render(folding.pieces(folding.fold(body), leet=True, glued=False)).split()
    if not words:
        raise InvalidBlocklistEntry(pattern, said("has no letters or digits"))
    return WordEntry(tuple(words), prefix, exact)


class WordIndex:
    """The word entries of one blocklist, indexed by the keys of the tokens they match."""

    def __init__(self, entries: Iterable[tuple[int, WordEntry]]) -> None:
        # key of a token (the entry word or one of its inflections) -> [(entry order, verifier)]
        self._words: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
        # "kill*" entries: [(entry order, key the token's key starts with, verifier)]
        self._prefixes: list[tuple[int, str, re.Pattern[str]]] = []
        # key of a phrase's first word -> [(entry order, one _PhraseWord per word)]
        self._phrases: dict[str, list[tuple[int, tuple[_PhraseWord, ...]]]] = {}
        for order, entry in entries:
            self._add(order, entry)
        self._keys = frozenset(self._words) | frozenset(self._phrases)
        self._prefix_keys = tuple(key for _, key, _ in self._prefixes)

    def _add(self, order: int, entry: WordEntry) -> None:
        words, prefix = entry.words, entry.prefix
        # The phrase written as one token ("bloodbath"); its digits then read as letters.
        joined = folding.leet_word("".join(words))
        if prefix:
            self._prefixes.append((order, folding.key(joined), _verifier(joined, prefix=True)))
        else:
            inflect = not entry.exact
            verifier = _verifier(joined, inflect=inflect)
            for key in _inflected_keys(joined) if inflect else {folding.key(joined)}:
                self._words.setdefault(key, []).append((order, verifier))
        if len(words) > 1:
            # Only the last word of a phrase is inflected or a prefix ("blood baths").
            last = len(words) - 1
            phrase = tuple(
                _phrase_word(w, last=i == last and not entry.exact, prefix=prefix)
                for i, w in enumerate(words)
            )
            self._phrases.setdefault(folding.key(words[0]), []).append((order, phrase))

    def earliest(self, views: list[str], extras: list[str]) -> int | None:
        """The order of the first entry matching a view's tokens or a lone extra word."""
        if not (self._keys or self._prefixes):
            return None
        best: int | None = None
        for view in views:
            found = self._scan(view)
            if found is not None and (best is None or found < best):
                best = found
        for word in extras:
            best = self._word_at(word, folding.key(word), best)
        return best

    def _scan(self, view: str) -> int | None:
        """The earliest word/phrase entry matching whole tokens of one view."""
        keys = folding.key(view).split(" ")
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


@dataclass(frozen=True, slots=True)
class _PhraseWord:
    keys: frozenset[str]  # keys a token may have (the word's, or its inflections')
    prefix_key: str | None  # set for the last word of "blood ba*": the token's key starts with it
    verifier: re.Pattern[str]

    def accepts(self, token: str, key: str) -> bool:
        if self.prefix_key is not None:
            return key.startswith(self.prefix_key) and _verify(self.verifier, token)
        return key in self.keys and _verify(self.verifier, token)


def _phrase_word(word: str, *, last: bool, prefix: bool) -> _PhraseWord:
    if last and prefix:
        return _PhraseWord(frozenset(), folding.key(word), _verifier(word, prefix=True))
    if last:
        return _PhraseWord(_inflected_keys(word), None, _verifier(word, inflect=True))
    return _PhraseWord(frozenset({folding.key(word)}), None, _verifier(word))


def _phrase_at(
    tokens: list[str], keys: list[str], pos: int, words: tuple[_PhraseWord, ...]
) -> bool:
    if pos + len(words) > len(tokens):
        return False
    return all(word.accepts(tokens[pos + i], keys[pos + i]) for i, word in enumerate(words))


def _verify(verifier: re.Pattern[str], token: str) -> bool:
    if len(token) > MAX_PATTERN_LENGTH:
        token = _LONG_RUN.sub(lambda m: m.group(1) * MAX_PATTERN_LENGTH, token)
    return verifier.fullmatch(token) is not None


def _spelling(word: str) -> str:
    """Regex source for `word` with wildcards and extra repeats: kill -> k+[i?]+[l?]{2,}.

    Each run of a letter must appear at least as often in the token: "baaad" is bad, "as" is
    not ass. A doubled final consonant is a repeat, so "cumming" is cum.
    """
    parts = []
    for run in _RUN.finditer(word):
        char, count = run.group(1), len(run.group())
        letter = _LETTER_CLASS.get(char) or re.escape(char)
        parts.append(letter + ("+" if count == 1 else f"{{{count},}}"))
    return "".join(parts)


def _inflects(word: str) -> bool:
    return not word.isdigit() and (word[-1].isalpha() or word[-1] == folding.AMBIGUOUS)


def _drops_e(word: str) -> bool:
    """Whether `word` ends in one "e" that "-ing" replaces (nude -> nuding)."""
    return len(word) > 2 and word[-1] == "e" and word[-2] != "e"


def _verifier(word: str, *, inflect: bool = False, prefix: bool = False) -> re.Pattern[str]:
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
        return frozenset({folding.key(word)})
    if _drops_e(word):
        forms = [word, *(word + s for s in _E_SUFFIXES), word[:-1] + "ing"]
    else:
        forms = [word, *(word + s for s in _suffixes(word))]
    return frozenset(folding.key(form) for form in forms)
