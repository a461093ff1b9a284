"""Regenerate the README's pictures: ``python -m tests.pictures [--out docs/pictures]``.

Runs the real bot against the fake Discord and the fake RunComfy (tests/e2e_harness.py), keeps
what the bot sent for five moments (a status message while queued, a delivered result, a
refusal, a moderators' log entry, ``/admin settings``), renders each as a page in Discord's look
(tests/pictures/render.py) and screenshots it with headless Chromium (Debian's ``chromium``).
Nothing is fetched from the network; the script installs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import io
import logging
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

from storage.models import JobState
from tests.e2e_harness import StudioEnv, studio_env
from tests.fakes.discord import StoredMessage
from tests.fakes.runcomfy import JobScript
from tests.helpers import FOREVER, finish_now
from tests.pictures.render import Context, Directory, render_message, render_page

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 680
BACKGROUND = (0x31, 0x33, 0x38)
INSTALL_HINT = (
    "Chromium is missing: install it with `apt-get install chromium fonts-noto-color-emoji` "
    "(Debian), then run again."
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


@dataclass
class Shot:
    """One message as the bot left it at one moment, with what rendering it needs."""

    name: str
    channel: str
    payload: dict[str, Any]
    images: dict[str, bytes]
    taken_at: datetime


def snapshot(env: StudioEnv, name: str, message: StoredMessage) -> Shot:
    """Copy the message now: later edits by the bot must not change the picture."""
    channel = env.discord.channel(message.channel_id).name
    images = {a.filename: a.data for a in message.attachments if a.data is not None}
    payload = copy.deepcopy(message.payload(env.discord.users))
    return Shot(name, channel, payload, images, datetime.now(UTC))


# -- the scenario ------------------------------------------------------------------------------


async def run_scenario(workdir: Path) -> tuple[list[Shot], Directory]:
    shots: list[Shot] = []
    async with studio_env(workdir, discord_options={"bot_name": "Banana Studio"}) as env:
        guild = env.discord.guild
        assert guild.member is not None and guild.admin is not None
        guild.member.user.global_name = "Mara"  # display names, as members usually have
        guild.admin.user.global_name = "Sam (mod)"
        log_channel = env.discord.add_text_channel(guild, "mod-log")
        async with env.running():
            assert env.bot is not None
            await env.admin("log-channel", {"channel": env.discord.channel(log_channel.id)})
            await env.admin("approval", {"enabled": True})
            await env.admin("blocklist add", {"pattern": "dragon"})
            await env.admin("quota tier", {"role": guild.member_role, "credits": 30})
            await env.admin("cooldown", {"seconds": 60})

            # A job that waits in RunComfy's queue until we let it go.
            env.runcomfy.script(JobScript(queue_seconds=FOREVER, queue_position=3))
            sent = await env.imagine(
                "a banana astronaut floating above Saturn, film photo", count=2
            )
            status = await env.acknowledged(sent)
            job_id = env.job_id_of(status)
            await env.wait_state(job_id, JobState.QUEUED)
            status = await env.wait_message(status.id, lambda m: "queue" in m.content)
            shots.append(snapshot(env, "status", status))

            finish_now(env.runcomfy, (await env.job(job_id)).request_id)
            await env.wait_state(job_id, JobState.AWAITING_APPROVAL)
            entry = await env.log_entry(log_channel.id, lambda m: job_id in str(m.embeds))
            await env.bot.moderation.wait_idle()
            shots.append(snapshot(env, "modlog", entry))

            click = await env.click(entry, "Approve", user=guild.admin)
            await click.wait_for_callback()
            await env.wait_state(job_id, JobState.DELIVERED)
            result = await env.wait_message(status.id, lambda m: len(m.attachments) == 2)
            shots.append(snapshot(env, "result", result))

            refused = await env.imagine("a dragon guarding the banana vault")
            await refused.wait_for_callback()
            assert refused.ephemeral and refused.original is not None
            shots.append(snapshot(env, "refusal", refused.original))

            settings = await env.discord.slash_command("admin settings", user=guild.admin)
            await settings.wait_for_callback()
            assert settings.original is not None
            shots.append(snapshot(env, "settings", settings.original))
            await env.bot.moderation.wait_idle()

        users = env.discord.users.values()
        directory = Directory(
            users={u.id: u.global_name or u.username for u in users},
            channels={c.id: c.name for c in guild.channels.values()},
            roles={r.id: r.name for r in guild.roles.values()},
        )
        return shots, directory


# -- pages and screenshots ---------------------------------------------------------------------


def page(shot: Shot, directory: Directory) -> str:
    ctx = Context(directory, shot.taken_at, shot.images)
    author = shot.payload["author"]
    name = author.get("global_name") or author["username"]
    fragment = render_message(shot.payload, ctx, author=name, bot=bool(author.get("bot")))
    return render_page([fragment], channel=shot.channel, width=WIDTH)


def screenshot(chromium: str, html: Path, png: Path, profile: Path) -> None:
    """Screenshot the page in a tall window, then crop away the empty bottom."""
    command = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},1400",
        f"--screenshot={png}",
        html.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not png.exists():
        raise SystemExit(f"chromium failed on {html.name}:\n{done.stderr[-2000:]}")
    with Image.open(png) as shot:
        image = shot.convert("RGB")
    background = Image.new("RGB", image.size, BACKGROUND)
    mask = ImageChops.difference(image, background).convert("L").point(lambda v: 255 * (v > 8))
    box = mask.getbbox()
    bottom = min(image.height, (box[3] if box else image.height) + 14)
    out = io.BytesIO()
    image.crop((0, 0, WIDTH, bottom)).quantize(256, dither=Image.Dither.NONE).save(
        out, "PNG", optimize=True
    )
    png.write_bytes(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "pictures")
    parser.add_argument("--html", type=Path, help="also keep the HTML pages in this folder")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pictures-") as tmp:
        work = Path(tmp)
        shots, directory = asyncio.run(run_scenario(work))
        pages = args.html or work
        pages.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            html = pages / f"{shot.name}.html"
            html.write_text(page(shot, directory), encoding="utf-8")
            png = args.out / f"{shot.name}.png"
            png.unlink(missing_ok=True)
            screenshot(chromium, html, png, work / "chromium-profile")
            print(f"{png} ({png.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
