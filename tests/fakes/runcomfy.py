"""A fake RunComfy model API: for tests, benchmarks and trying the bot without spending credits.

It serves the four documented endpoints with the documented shapes, runs each job along a
scripted timeline on the event loop clock, validates inputs against the published schemas
(written out here independently of ``client.models``, so the two check each other), and serves
real images itself. Faults can be injected per endpoint, and every request is logged.

In tests::

    async with FakeRunComfy(token="test-token") as fake:
        fake.script(JobScript(queue_seconds=0.05, run_seconds=0.05, outcome="fail"))
        ...  # point the client at fake.base_url
        assert fake.count("submit") == 1

Standalone (then set RUNCOMFY_API_BASE to the printed URL)::

    python -m tests.fakes.runcomfy --port 8765 [--token T] [--queue-seconds X --run-seconds Y]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import math
import os
import uuid
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from PIL import Image

TEXT_TO_IMAGE_MODEL: Final = "google/nano-banana-2/text-to-image"
EDIT_MODEL: Final = "google/nano-banana-2/edit"
ENDPOINTS: Final = ("submit", "status", "result", "cancel", "image")
OUTCOMES: Final = ("complete", "fail", "error_body")
_CONTENT_TYPES: Final = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_EXTENSIONS: Final = {"png": "png", "jpeg": "jpg", "webp": "webp"}
_JSON = web.RequestKey("json", object)  # the decoded body, kept for the handler


@dataclass(frozen=True)
class JobScript:
    """One job's timeline and ending. Times are seconds on the event loop clock."""

    queue_seconds: float = 0.02
    run_seconds: float = 0.03
    outcome: str = "complete"  # one of OUTCOMES
    # "fail": the job's error (a string or an object); "error_body": the message of the body.
    error: Any = "the model could not generate this image"
    # "error_body": once the job has run, status and result answer HTTP 200 with this code.
    error_code: int = 404001
    queue_position: int = 0  # position when submitted; counts down to 0 over queue_seconds
    image_bytes: int | None = None  # serve noisy PNGs (whatever format was asked) this large
    image_content_type: str | None = None  # serve images labelled with this type instead
    image_chunked: bool = False  # serve images chunked, without a Content-Length
    state_names: Mapping[str, str] = field(default_factory=dict)  # {"completed": "succeeded"}
    result_too_early: bool = False  # /result before the end answers 400 with error_code 400005

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {self.outcome!r}")


@dataclass(frozen=True)
class Fault:
    """What the next request(s) to an endpoint get instead of (or on top of) a normal answer."""

    status: int | None = None  # answer with this HTTP status and body instead
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # wait this long before answering (cut short when the fake closes)
    drop: bool = False  # handle the request, then close the connection without an answer

    def __post_init__(self) -> None:
        if self.drop and self.status is not None:
            # A dropped request gets no answer at all, so an answer's status means nothing.
            raise ValueError("a fault either answers with a status or drops, not both")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    endpoint: str  # one of ENDPOINTS, or "other"
    json: Any
    headers: Mapping[str, str]
    at: float  # event loop time
    text: str = ""  # the raw body (also when it is not valid JSON)


@dataclass
class FakeJob:
    request_id: str
    model: str
    payload: dict[str, Any]
    script: JobScript
    created_at: float
    cancelled_at: float | None = None
    images: dict[int, tuple[bytes, str]] = field(default_factory=dict)

    @property
    def started_at(self) -> float:
        return self.created_at + self.script.queue_seconds

    @property
    def finished_at(self) -> float:
        return self.started_at + self.script.run_seconds

    def state(self, now: float) -> str:
        """One of in_queue, in_progress, completed, failed, cancelled, error_body."""
        if self.cancelled_at is not None:
            return "cancelled"
        if now < self.started_at:
            return "in_queue"
        if now < self.finished_at:
            return "in_progress"
        return {"complete": "completed", "fail": "failed"}.get(self.script.outcome, "error_body")

    def queue_position(self, now: float) -> int:
        first = self.script.queue_position
        if self.script.queue_seconds <= 0:
            return 0
        left = max(0.0, self.started_at - now) / self.script.queue_seconds
        return min(first, math.floor(left * (first + 1)))

    def name(self, state: str) -> str:
        return self.script.state_names.get(state, state)


# The published input schemas (seeds): per field, its JSON type and the allowed values or range.
_ASPECT_RATIOS = ("auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16")
_COMMON_FIELDS: Final[dict[str, tuple[type, Any]]] = {
    "prompt": (str, None),
    "num_images": (int, range(1, 5)),
    "seed": (int, None),
    "aspect_ratio": (str, _ASPECT_RATIOS),
    "resolution": (str, ("0.5K", "1K", "2K", "4K")),
    "output_format": (str, ("jpeg", "png", "webp")),
    "safety_tolerance": (int, (1, 2, 3, 4, 5, 6)),
    "limit_generations": (bool, None),
    "enable_web_search": (bool, None),
}
_SCHEMAS: Final[dict[str, tuple[dict[str, tuple[type, Any]], tuple[str, ...]]]] = {
    TEXT_TO_IMAGE_MODEL: (_COMMON_FIELDS, ("prompt",)),
    EDIT_MODEL: ({**_COMMON_FIELDS, "image_urls": (list, range(1, 21))}, ("prompt", "image_urls")),
}
_TYPE_NAMES: Final = {str: "string", int: "integer", bool: "boolean", list: "list of strings"}


def validate(model: str, payload: Any) -> list[dict[str, Any]]:
    """Problems in the style of the API's 422 ``detail`` list; empty if the payload is fine."""
    if not isinstance(payload, dict):
        return [_problem((), "Input should be a valid dictionary", "dict_type")]
    fields, required = _SCHEMAS[model]
    problems = [
        _problem((name,), "Field required", "missing") for name in required if name not in payload
    ]
    for name, value in payload.items():
        if name not in fields:
            problems.append(_problem((name,), "Extra inputs are not permitted", "extra_forbidden"))
        elif message := _check_value(value, *fields[name]):
            problems.append(_problem((name,), message, "value_error"))
    return problems


def _check_value(value: Any, kind: type, allowed: Any) -> str | None:
    # bool is an int subclass in Python but not an integer in JSON Schema.
    wrong_type = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
    if kind is list and not wrong_type:
        wrong_type = not all(isinstance(v, str) for v in value)
    if wrong_type:
        return f"Input should be a valid {_TYPE_NAMES[kind]}"
    if isinstance(allowed, range):
        measured = len(value) if kind is list else value
        if measured not in allowed:
            what = "have between" if kind is list else "be between"
            return f"Input should {what} {allowed.start} and {allowed.stop - 1}"
    elif allowed is not None and value not in allowed:
        return "Input should be " + ", ".join(repr(a) for a in allowed)
    return None


def _problem(loc: tuple[str, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def _render_image(job: FakeJob, index: int) -> tuple[bytes, str]:
    """A real image: a small solid picture, or noise (incompressible) of a requested size."""
    out = io.BytesIO()
    if job.script.image_bytes:
        side = math.isqrt(job.script.image_bytes // 3) + 2
        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(
            out, "PNG", compress_level=0
        )
        return out.getvalue(), "image/png"
    fmt = job.payload.get("output_format", "png")
    digest = hashlib.sha256(f"{job.payload.get('prompt')}/{index}".encode()).digest()
    Image.new("RGB", (64, 48), tuple(digest[:3])).save(out, fmt.upper())
    return out.getvalue(), _CONTENT_TYPES[fmt]


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _error(status: int, code: int | None, message: str) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if code is not None:
        body["error_code"] = code
    return _json(status, body)


class FakeRunComfy:
    """The fake API as an async context manager (tests, port 0) or a long-running server."""

    def __init__(
        self,
        *,
        token: str | None = "test-token",  # None: any Bearer token is accepted
        host: str = "127.0.0.1",
        port: int = 0,
        default_script: JobScript | None = None,
    ) -> None:
        self.token = token
        self.default_script = default_script or JobScript()
        self.requests: list[RecordedRequest] = []
        self.jobs: dict[str, FakeJob] = {}
        self._host = host
        self._port = port
        self._scripts: deque[JobScript] = deque()
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._closing = asyncio.Event()  # ends injected delays, so closing never waits on them
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._middleware])
        self.app.add_routes(
            [
                web.post("/v1/models/{model:.+}", self._submit),
                web.get("/v1/requests/{request_id}/status", self._status),
                web.get("/v1/requests/{request_id}/result", self._result),
                web.post("/v1/requests/{request_id}/cancel", self._cancel),
                web.get("/files/{request_id}/{index:\\d+}.{ext}", self._image),
            ]
        )

    # -- control -------------------------------------------------------------------------------

    def script(self, *scripts: JobScript) -> None:
        """The next jobs follow these timelines, in order; later ones get ``default_script``."""
        self._scripts.extend(scripts)

    def inject(
        self,
        endpoint: str,
        *,
        times: int = 1,
        status: int | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """The next ``times`` requests to ``endpoint`` misbehave.

        ``status``: answer with it (and ``body``, default an error message) instead of handling
        the request: so an injected error on submit creates no job. ``drop``: handle the
        request, then close the connection unanswered (a dropped submit did create its job).
        ``delay``: answer that much later (or when the fake closes, whichever is first), so a
        long delay stands for "never answers". ``status=200`` with an ``error_code`` body is
        the API's "error with HTTP 200". ``status`` with ``drop`` is refused (ValueError).
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        if status is not None and body is None:
            body = {"message": f"injected HTTP {status}"}
        fault = Fault(status=status, body=body, headers=dict(headers or {}), delay=delay, drop=drop)
        self._faults[endpoint].extend([fault] * times)

    def count(self, endpoint: str) -> int:
        return sum(1 for r in self.requests if r.endpoint == endpoint)

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the fake is not running")
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        self._closing.clear()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeRunComfy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- plumbing ------------------------------------------------------------------------------

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        endpoint = _endpoint(request)
        raw = await request.read() if request.can_read_body else b""
        payload, malformed = None, False
        if raw:
            try:
                payload = json.loads(raw)
            except ValueError:
                malformed = True
        request[_JSON] = payload
        # Every request is logged first, whatever happens to it next.
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                endpoint,
                payload,
                dict(request.headers),
                self._now(),
                raw.decode("utf-8", errors="replace"),
            )
        )
        faults = self._faults.get(endpoint)
        fault = faults.popleft() if faults else None
        if fault is not None and fault.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), fault.delay)
        if fault is not None and fault.status is not None:
            return _json(fault.status, fault.body, fault.headers)
        if malformed:
            response: web.StreamResponse = _json(
                422, {"detail": [_problem((), "JSON decode error", "json_invalid")]}
            )
        else:
            response = (self._unauthorized(request) if endpoint != "image" else None) or (
                await handler(request)
            )
        if fault is not None and fault.drop:
            assert request.transport is not None
            request.transport.close()
        return response

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Bearer" and token and (self.token is None or token == self.token):
            return None
        return _error(401, 400004, "Invalid or expired API token")

    def _job(self, request: web.Request) -> FakeJob:
        job = self.jobs.get(request.match_info["request_id"])
        if job is None:
            raise web.HTTPNotFound(
                text='{"error_code": 404001, "message": "request not found or expired"}',
                content_type="application/json",
            )
        return job

    def _urls(self, request: web.Request, request_id: str) -> dict[str, str]:
        base = f"{request.url.origin()}/v1/requests/{request_id}"
        return {
            "status_url": f"{base}/status",
            "result_url": f"{base}/result",
            "cancel_url": f"{base}/cancel",
        }

    # -- endpoints -----------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in _SCHEMAS:
            return _error(404, None, f"unknown model {model!r}")
        payload = request[_JSON]
        if problems := validate(model, payload):
            return _json(422, {"detail": problems})
        script = self._scripts.popleft() if self._scripts else self.default_script
        request_id = str(uuid.uuid4())
        self.jobs[request_id] = FakeJob(request_id, model, payload, script, self._now())
        return _json(200, {"request_id": request_id, **self._urls(request, request_id)})

    def _state_body(self, job: FakeJob) -> tuple[str, dict[str, Any]]:
        now = self._now()
        state = job.state(now)
        body: dict[str, Any] = {"request_id": job.request_id, "status": job.name(state)}
        if state == "in_queue":
            body["queue_position"] = job.queue_position(now)
        elif state == "failed":
            body["error"] = job.script.error
        return state, body

    async def _status(self, request: web.Request) -> web.Response:
        job = self._job(request)
        state, body = self._state_body(job)
        if state == "error_body":
            return _error(200, job.script.error_code, str(job.script.error))
        return _json(200, {**body, **self._urls(request, job.request_id)})

    async def _result(self, request: web.Request) -> web.Response:
        job = self._job(request)
        state, body = self._state_body(job)
        if state == "error_body":
            return _error(200, job.script.error_code, str(job.script.error))
        if state in ("in_queue", "in_progress") and job.script.result_too_early:
            return _error(400, 400005, "the request has not finished yet")
        if state == "completed":
            fmt = job.payload.get("output_format", "png")
            urls = [
                f"{request.url.origin()}/files/{job.request_id}/{i}.{_EXTENSIONS[fmt]}"
                for i in range(job.payload.get("num_images", 1))
            ]
            body["output"] = {"image": urls[0]} if len(urls) == 1 else {"images": urls}
        return _json(200, body)

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self._job(request)
        state = job.state(self._now())
        if state == "in_queue":
            job.cancelled_at = self._now()
            state = "cancelled"
        outcome = "cancelled" if state == "cancelled" else "not_cancellable"
        body = {"request_id": job.request_id, "outcome": outcome, "status": job.name(state)}
        return _json(200, body)

    async def _image(self, request: web.Request) -> web.Response:
        job = self._job(request)
        index = int(request.match_info["index"])
        if job.state(self._now()) != "completed" or index >= job.payload.get("num_images", 1):
            raise web.HTTPNotFound()
        if index not in job.images:
            job.images[index] = await asyncio.to_thread(_render_image, job, index)
        data, content_type = job.images[index]
        content_type = job.script.image_content_type or content_type
        if not job.script.image_chunked:
            return web.Response(body=data, content_type=content_type)
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        # A client enforcing a size cap hangs up part-way: that ends the transfer, nothing more.
        with contextlib.suppress(ConnectionResetError):
            for start in range(0, len(data), 16 * 1024):
                await response.write(data[start : start + 16 * 1024])
            await response.write_eof()
        return response


def _endpoint(request: web.Request) -> str:
    path = request.path
    if path.startswith("/v1/models/") and request.method == "POST":
        return "submit"
    if path.startswith("/files/"):
        return "image"
    if path.startswith("/v1/requests/"):
        last = path.rsplit("/", 1)[-1]
        if last in ("status", "result", "cancel"):
            return last
    return "other"


async def _serve(args: argparse.Namespace) -> None:
    script = JobScript(
        queue_seconds=args.queue_seconds,
        run_seconds=args.run_seconds,
        queue_position=args.queue_position,
    )
    async with FakeRunComfy(
        token=args.token, host=args.host, port=args.port, default_script=script
    ) as fake:
        token = f"token {args.token!r}" if args.token else "any token"
        print(f"Fake RunComfy listening on {fake.base_url} ({token})", flush=True)
        print(f"  export RUNCOMFY_API_BASE={fake.base_url}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default=None, help="the only accepted token (default: any)")
    parser.add_argument("--queue-seconds", type=float, default=2.0)
    parser.add_argument("--run-seconds", type=float, default=8.0)
    parser.add_argument("--queue-position", type=int, default=2)
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        print("stopped", flush=True)  # Ctrl-C is how the standalone fake is meant to end


if __name__ == "__main__":
    main()
