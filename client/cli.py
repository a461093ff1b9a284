"""``python -m client``: generate, edit, inspect and cancel RunComfy jobs from a shell.

Settings come from the environment and a ``.env`` file in the current directory (the process
environment wins). Progress goes to stderr, saved image paths to stdout (one per line). Any
failure is one line on stderr and a non-zero exit: 1 for API and job failures, 2 for bad
options or settings, 130 after Ctrl-C, 143 after SIGTERM.

Ctrl-C or SIGTERM while a job is on its way (submitting or waiting) cancels it if it is still
queued, and so does ``--timeout`` running out; a second signal gives up at once, leaving the job
to itself. ``status REQUEST_ID --out DIR`` saves a finished job's images as ``imagine`` does.

If whatever reads stdout goes away (``python -m client imagine ... | head -1``), the images are
still saved; the paths not printed are dropped silently and the exit status is 141, as for a
process killed by SIGPIPE, so ``set -o pipefail`` scripts notice while a plain pipe stays quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import aiohttp
from dotenv import dotenv_values

from client.api import JobHandle, RunComfyClient
from client.cli_signals import Interrupts
from client.errors import InvalidRequestError, JobTimeoutError, RunComfyError
from client.models import (
    CancelOutcome,
    DownloadedImage,
    EditRequest,
    GenerationOptions,
    GenerationRequest,
    JobState,
    JobStatus,
    TextToImageRequest,
)
from client.settings import ClientSettings, SettingError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 128 + 13  # as if killed by SIGPIPE
DEFAULT_TIMEOUT = 600.0
# Field names of the request models as the user typed them.
_FLAGS = {
    "prompt": "PROMPT",
    "image_urls": "--image",
    "num_images": "--count",
    "seed": "--seed",
    "aspect_ratio": "--aspect-ratio",
    "resolution": "--resolution",
    "output_format": "--format",
    "safety_tolerance": "--safety",
}
log = logging.getLogger(__name__)


class UsageError(Exception):
    """A bad command line; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print the whole usage text; one line is the contract.
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    common.add_argument("-v", "--verbose", action="store_true", help="log HTTP retries etc.")

    generation = _Parser(add_help=False, parents=[common])
    generation.add_argument("prompt", metavar="PROMPT")
    generation.add_argument("--aspect-ratio", default="auto", help="auto, 16:9, 1:1, ...")
    generation.add_argument("--resolution", default="1K", help="0.5K, 1K, 2K or 4K")
    generation.add_argument("--count", type=int, default=1, help="images to make (1-4)")
    generation.add_argument("--seed", type=int, default=None, help="for repeatable results")
    generation.add_argument("--format", default="png", help="png, jpeg or webp")
    generation.add_argument("--safety", type=int, default=4, help="1 (strict) to 6 (lenient)")
    generation.add_argument("--web-search", action="store_true", help="let the model search")
    generation.add_argument(
        "--no-limit-generations",
        action="store_true",
        help="allow more than one generation per prompt round",
    )
    generation.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="folder to save the images in"
    )
    generation.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the job (default {DEFAULT_TIMEOUT:g})",
    )

    parser = _Parser(prog="python -m client", description="RunComfy Nano Banana 2 from a shell.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("imagine", parents=[generation], help="generate images from a prompt")
    edit = commands.add_parser("edit", parents=[generation], help="edit images with a prompt")
    edit.add_argument(
        "--image",
        action="append",
        required=True,
        metavar="URL",
        dest="images",
        help="a public image URL to edit (repeat for more, up to 20)",
    )
    for name, what in (("status", "show a job's state"), ("cancel", "cancel a queued job")):
        command = commands.add_parser(name, parents=[common], help=what)
        command.add_argument("request_id", metavar="REQUEST_ID")
        if name == "status":
            command.add_argument(
                "--out", type=Path, metavar="DIR", help="save a finished job's images in it"
            )
    return parser


def build_request(args: argparse.Namespace) -> GenerationRequest:
    """The typed request; InvalidRequestError names the offending option."""
    options = GenerationOptions(
        num_images=args.count,
        seed=args.seed,
        aspect_ratio=args.aspect_ratio,
        resolution=args.resolution,
        output_format=args.format,
        safety_tolerance=args.safety,
        limit_generations=not args.no_limit_generations,
        enable_web_search=args.web_search,
    )
    if args.command == "edit":
        return EditRequest(args.prompt, tuple(args.images), options)
    return TextToImageRequest(args.prompt, options)


def load_environment(directory: Path) -> dict[str, str]:
    """``.env`` values overridden by the process environment."""
    dotenv = directory / ".env"
    values = dotenv_values(dotenv) if dotenv.is_file() else {}
    return {**{k: v for k, v in values.items() if v is not None}, **os.environ}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        timeout = getattr(args, "timeout", 1.0)
        if not math.isfinite(timeout) or timeout <= 0:  # argparse's float() takes "nan", "inf"
            raise UsageError("--timeout: must be a positive number of seconds")
        request = build_request(args) if args.command in ("imagine", "edit") else None
    except UsageError as err:
        return _fail(str(err), EXIT_USAGE)
    except InvalidRequestError as err:
        return _fail(f"{_FLAGS.get(err.field, err.field)}: {err.allowed}", EXIT_USAGE)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = ClientSettings.from_env(load_environment(Path.cwd()))
    except SettingError as err:
        return _fail(str(err), EXIT_USAGE)
    except (OSError, ValueError) as err:  # .env not UTF-8 or unreadable, cwd deleted, ...
        return _fail(f"cannot read the settings: {err}", EXIT_USAGE)
    try:
        return asyncio.run(_run(args, settings, request))
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        return _stdout_gone()
    except InvalidRequestError as err:  # a malformed REQUEST_ID
        return _fail(str(err), EXIT_USAGE)
    except RunComfyError as err:
        return _fail(str(err), EXIT_FAILED)
    except OSError as err:  # the output folder (network errors arrive as RunComfyError)
        return _fail(f"cannot save images there: {err}", EXIT_FAILED)
    except Exception as err:  # a bug: still one line, the traceback only when asked for
        if args.verbose:
            log.exception("unexpected error")
        hint = "" if args.verbose else " (run with --verbose for details)"
        return _fail(f"unexpected {type(err).__name__}: {err}{hint}", EXIT_FAILED)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _stdout_gone() -> int:
    """Whatever read stdout went away (``| head -1``): the images are saved, nothing to say."""
    try:
        # Python would also report the failed flush of stdout at exit: send that to /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError) as err:  # stdout is not a real file (embedded use)
        log.debug("could not silence stdout: %s", err)
    return EXIT_BROKEN_PIPE


async def _run(
    args: argparse.Namespace, settings: ClientSettings, request: GenerationRequest | None
) -> int:
    async with aiohttp.ClientSession() as session:
        client = RunComfyClient(session, settings)
        if request is not None:
            return await _generate(client, request, args)
        handle = client.job(args.request_id)
        if args.command == "status":
            return await _status(client, handle, args.out)
        return await _cancel(handle)


class _Progress:
    """State, queue position and elapsed time on stderr, one line per change."""

    def __init__(self, *, quiet: bool) -> None:
        self._quiet = quiet
        self._started = asyncio.get_running_loop().time()

    def say(self, text: str) -> None:
        if not self._quiet:
            elapsed = asyncio.get_running_loop().time() - self._started
            print(f"[{elapsed:6.1f} s] {text}", file=sys.stderr, flush=True)

    async def on_status(self, status: JobStatus) -> None:
        self.say(describe(status))


def describe(status: JobStatus) -> str:
    text = status.state.value
    if status.queue_position is not None:
        text += f" (position {status.queue_position})"
    if status.error:
        text += f": {status.error}"
    return text


async def _generate(
    client: RunComfyClient, request: GenerationRequest, args: argparse.Namespace
) -> int:
    # Before paying for images, make sure they can be saved.
    await asyncio.to_thread(args.out.mkdir, parents=True, exist_ok=True)
    progress = _Progress(quiet=args.quiet)
    handle: JobHandle | None = None
    # Signals are caught from before the submit: once a job may exist, it is cancelled, not lost.
    with Interrupts(progress.say) as ctrl_c:
        try:
            handle = await client.submit(request)
            progress.say(f"submitted request {handle.request_id}")
            waiting = asyncio.ensure_future(
                handle.wait(timeout=args.timeout, on_status=progress.on_status)
            )
            ctrl_c.cancels(waiting)
            try:
                urls = await waiting
            except asyncio.CancelledError:
                if not ctrl_c.pressed or ctrl_c.gave_up:
                    raise
                return await _cancel_after_interrupt(handle, ctrl_c)
            except JobTimeoutError as err:
                return await _cancel_after_timeout(handle, err)
        except asyncio.CancelledError:
            if not ctrl_c.gave_up:
                raise
            ctrl_c.forget_cancel()
            return _gave_up(handle, ctrl_c)
    assert handle is not None  # the block above returned or raised otherwise
    for path in await _save(client, urls, args.out, handle.request_id):
        print(path, flush=True)
    return EXIT_OK


def _gave_up(handle: JobHandle | None, signals: Interrupts) -> int:
    if handle is None:
        return _fail(
            f"{signals.word} again: gave up during the submit; the job may have been created and "
            "may still run (its request id never arrived)",
            signals.exit_code,
        )
    return _fail(
        f"{signals.word} again: gave up; request {handle.request_id} may still be running; "
        f"check it with: python -m client status {handle.request_id}",
        signals.exit_code,
    )


async def _cancel_after_interrupt(handle: JobHandle, signals: Interrupts) -> int:
    outcome = await handle.cancel()
    if outcome is CancelOutcome.CANCELLED:
        return _fail(f"{signals.word}: cancelled request {handle.request_id}", signals.exit_code)
    return _fail(
        f"{signals.word}: request {handle.request_id} is already running and cannot be cancelled"
        f"; fetch it later with: python -m client status {handle.request_id} --out DIR",
        signals.exit_code,
    )


async def _cancel_after_timeout(handle: JobHandle, err: JobTimeoutError) -> int:
    """A job still queued when the time is up is cancelled: nobody is waiting for it."""
    try:
        outcome = await handle.cancel()
    except RunComfyError as cancel_error:
        log.info("request %s: cancel after the timeout failed: %s", handle.request_id, cancel_error)
        outcome = CancelOutcome.NOT_CANCELLABLE
    if outcome is CancelOutcome.CANCELLED:
        return _fail(f"{err}; it was still queued, so it was cancelled", EXIT_FAILED)
    raise JobTimeoutError(
        f"{err}; it may still finish: python -m client status {handle.request_id} --out DIR",
        request_id=handle.request_id,
    ) from err


async def _save(
    client: RunComfyClient, urls: Sequence[str], out: Path, request_id: str
) -> list[Path]:
    images = await asyncio.gather(*(client.download(url) for url in urls))
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", request_id)
    return await asyncio.to_thread(_write_images, out, stem, images)


def _write_images(out: Path, stem: str, images: Sequence[DownloadedImage]) -> list[Path]:
    paths = []
    for number, image in enumerate(images, start=1):
        path = out / f"{stem}-{number}.{image.extension}"
        path.write_bytes(image.data)
        paths.append(path)
    return paths


async def _status(client: RunComfyClient, handle: JobHandle, out: Path | None) -> int:
    status = await handle.status()
    print(describe(status), flush=True)
    if out is None:
        if status.state is JobState.COMPLETED:
            for url in await handle.result():
                print(url, flush=True)
        return EXIT_OK
    if not status.state.is_terminal:
        unfinished = f"request {handle.request_id} has not finished yet; nothing saved"
        return _fail(unfinished, EXIT_FAILED)
    urls = await handle.result()  # a failed or cancelled job raises, with its reason
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    for path in await _save(client, urls, out, handle.request_id):
        print(path, flush=True)
    return EXIT_OK


async def _cancel(handle: JobHandle) -> int:
    if await handle.cancel() is CancelOutcome.CANCELLED:
        print("cancelled", flush=True)
        return EXIT_OK
    return _fail(
        f"request {handle.request_id} cannot be cancelled (it is running or has ended)",
        EXIT_FAILED,
    )
