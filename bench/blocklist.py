"""Blocklist benchmark: cost of check() and of validating regex entries.

Run from the checkout: ``.venv/bin/python bench/blocklist.py``.

1. ``Blocklist.check`` per prompt (median of repeated calls) with ~200 word entries, two prefix
   entries and a few regexes: a short prompt, a 4000-character prompt, a 4000-character leet
   prompt, and a prompt that folding makes ~28,000 characters long.
2. ``validate_entry`` (an RE2 compile) for ordinary regexes, for shapes that backtrack
   catastrophically in a backtracking engine (accepted: RE2 is linear), and for a look-ahead
   (refused: RE2 lacks it).
3. ``Blocklist.check`` of those catastrophic shapes on hostile 4000-character prompts.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file's folder is sys.path[0]; put the checkout first instead.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import re2

from services.blocklist import Blocklist, InvalidBlocklistEntry, validate_entry

WORDS = ["gore", "ass", "nsfw", "kill", "blood bath", "cum", "nazi", "filth"]
ENTRIES = [(i, w, False) for i, w in enumerate(WORDS + [f"word{i}x" for i in range(200)])]
ENTRIES += [(900, "kill*", False), (901, "blood ba*", False)]
ENTRIES += [(950, r"\bnud(e|ity)\b", True), (951, r"gore\w*", True), (952, r"\bk[i1]ll", True)]

# Shapes of catastrophic backtracking, each with a prompt that would trigger it.
HOSTILE = {
    r"(a+)+b": "a" * 3999 + "c",
    r"(a|aa)*b": "a" * 3999 + "c",
    r"\d+\d+z": "1" * 4000,
    r"a*a*a*a*b": "a" * 4000,
    r"\d{1,10}\d{1,10}\d*z": "1" * 4000,
}

PROMPTS = {
    "short": "a castle on a hill at dawn, volumetric lighting",
    "4000 chars": ("a castle on a hill, k.i.t.t.e.n " * 200)[:4000],
    "4000 leet": ("c4stle 0n a h1ll! " * 250)[:4000],
    "folds to 28k": "\ufdfa " * 1500,
}


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    blocklist = Blocklist(ENTRIES)
    print(f"check() with {len(blocklist)} entries (median):")
    for name, prompt in PROMPTS.items():
        ms = _median_ms(lambda p=prompt: blocklist.check(p), 50)
        print(f"  {name:14} {ms:8.3f} ms")
    print("validate_entry, an RE2 compile (median of 5):")
    for pattern in [r"\bnud(e|ity)\b", r"gore\w*", r"(cat|dog)s?", *HOSTILE, r"nud(?=e)"]:
        outcome = []

        def run(p=pattern, out=outcome) -> None:
            re2.purge()  # re2.compile caches patterns: time a real compile each run
            try:
                validate_entry(p, True)
                out.append("accepted")
            except InvalidBlocklistEntry:
                out.append("refused")

        ms = _median_ms(run, 5)
        print(f"  {pattern:40} {ms:8.3f} ms  {outcome[-1]}")
    print("check() of one hostile regex on a hostile 4000-character prompt (median of 5):")
    for pattern, prompt in HOSTILE.items():
        single = Blocklist([(1, pattern, True)])
        found = []
        ms = _median_ms(lambda b=single, p=prompt, out=found: out.append(b.check(p)), 5)
        print(f"  {pattern:40} {ms:8.3f} ms  {'blocked' if found[-1] else 'passed'}")


if __name__ == "__main__":
    main()
