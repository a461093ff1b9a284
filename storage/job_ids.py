"""Job ids: short, url-safe, unique, and in creation order."""

from __future__ import annotations

import functools
import secrets
from datetime import datetime

# Job ids: 10 url-safe characters, 5 from the creation time (seconds) and 5 random (30 bits; a
# clash is retried). The alphabet is in ASCII order, so ids sort by creation time: new rows land
# at the end of every index keyed by job id instead of at random pages, which keeps writes
# cheap however many jobs are stored.
ID_ALPHABET = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 10
_ID_HALF = ID_LENGTH // 2

# Maps every byte to an alphabet character (256 is a multiple of 64, so each is equally likely).
_RANDOM_CHARS = bytes(ord(ID_ALPHABET[b % 64]) for b in range(256))


@functools.lru_cache(maxsize=4)
def _time_prefix(seconds: int) -> str:
    chars = []
    for _ in range(_ID_HALF):
        seconds, digit = divmod(seconds, 64)
        chars.append(ID_ALPHABET[digit])
    return "".join(reversed(chars))


def new_job_id(now: datetime) -> str:
    random_part = secrets.token_bytes(_ID_HALF).translate(_RANDOM_CHARS).decode("ascii")
    return _time_prefix(int(now.timestamp()) % 64**_ID_HALF) + random_part
