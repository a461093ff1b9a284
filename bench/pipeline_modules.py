"""Which of the project's modules one /imagine passes through on its way to a delivered result.

    .venv/bin/python -m bench.pipeline_modules

Runs the real bot against the fake Discord and the fake RunComfy (as the end-to-end tests do),
records every call made in the project's own modules (not tests/, not libraries) from the
moment the interaction arrives until the job is DELIVERED, and prints the modules in the order
first entered, and the distinct places where control passes between cogs/ and services/ (a
function of one layer calling a function of the other; each caller-callee pair once).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from storage.models import JobState
from tests.e2e_harness import studio_env

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("cogs", "services", "client", "storage")


def module_of(filename: str) -> str | None:
    path = Path(filename)
    try:
        relative = path.resolve().relative_to(ROOT)
    except ValueError:
        return None
    if relative.parts[0] not in (*LAYERS, "bot.py"):
        return None
    return ".".join(relative.with_suffix("").parts)


class Recorder:
    def __init__(self) -> None:
        self.modules: list[str] = []
        self.crossings: set[tuple[str, str]] = set()
        self.on = False

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.on or event != "call":
            return
        callee = module_of(frame.f_code.co_filename)
        if callee is None:
            return
        if callee not in self.modules:
            self.modules.append(callee)
        caller = frame.f_back
        caller_module = module_of(caller.f_code.co_filename) if caller else None
        if caller_module is None:
            return
        pair = {caller_module.split(".")[0], callee.split(".")[0]}
        if pair == {"cogs", "services"} and caller is not None:
            self.crossings.add(
                (
                    f"{caller_module}.{caller.f_code.co_qualname}",
                    f"{callee}.{frame.f_code.co_qualname}",
                )
            )


async def main() -> None:
    recorder = Recorder()
    with tempfile.TemporaryDirectory() as folder:
        async with studio_env(Path(folder)) as env, env.running():
            sys.setprofile(recorder)
            try:
                recorder.on = True
                sent = await env.imagine("a lighthouse at dusk")
                status = await env.acknowledged(sent)
                await env.wait_state(env.job_id_of(status), JobState.DELIVERED)
                await env.wait_message(status.id, lambda m: bool(m.attachments))
            finally:
                recorder.on = False
                sys.setprofile(None)
    print(f"{len(recorder.modules)} modules, in the order first entered:")
    for name in recorder.modules:
        print(f"  {name}")
    print(f"{len(recorder.crossings)} places where cogs/ and services/ call each other:")
    for caller, callee in sorted(recorder.crossings):
        print(f"  {caller} -> {callee}")


if __name__ == "__main__":
    asyncio.run(main())
