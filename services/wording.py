"""Sentences the services hand to the cogs: an English text plus the values it names.

``text`` is the translation catalogs' key (cogs/locales); the cogs look it up in the reader's
language and fill its ``{placeholders}`` from ``args``. ``str()`` is the English sentence, for
logs. ``stored``/``parse`` keep one in a text column (a job's failure reason, its notes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def N_(text: str) -> str:
    """Marks an English text for the catalogs' extraction; returns it unchanged."""
    return text


@dataclass(frozen=True, slots=True)
class Wording:
    text: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text.format(**self.args) if self.args else self.text

    def stored(self) -> str:
        """One string for a text column: the text alone, or JSON when it has values."""
        if not self.args:
            return self.text
        return json.dumps({"text": self.text, "args": dict(self.args)}, ensure_ascii=False)

    @classmethod
    def parse(cls, stored: str) -> Wording:
        """The inverse of ``stored``; any other text (older rows) is a text with no values."""
        if stored.startswith("{"):
            try:
                data = json.loads(stored)
                return cls(str(data["text"]), dict(data.get("args") or {}))
            except (ValueError, KeyError, TypeError):
                pass
        return cls(stored)


class UserText(str):
    """A value a member typed, echoed in a sentence: the cogs show it as typed (its markdown and
    mentions inert). Services mark it; rendering it is the cogs' business."""

    __slots__ = ()


def said(text: str, /, **args: Any) -> Wording:
    """``Wording`` for a literal text: ``said("Job {job_id} ...", job_id=...)`` (extracted)."""
    return Wording(text, args)


__all__ = ["N_", "UserText", "Wording", "said"]
