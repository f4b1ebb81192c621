"""The k6 REST API client: status, probe, stop, setup and teardown, and the bytes that resume it.

Every call is bounded by a timeout; the API is plain HTTP on the pod network (no TLS, no proxy).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

logger = logging.getLogger(__name__)

PORT = 6565
STATUS_PAUSED_BEFORE_RUN = 4  # k6's ExecutionStatus: paused before the run, after init
STATUS_ENDED = 9  # ended; 10 interrupted, 11 marked as failed (k6 >= 1.6)


STATUS_PATH = "/v1/status"
SETUP_PATH = "/v1/setup"  # POST runs setup() now; PUT sets the data every VU receives
TEARDOWN_PATH = "/v1/teardown"  # POST runs teardown() with the current setup data
RESUME_BODY = {"data": {"type": "status", "id": "default", "attributes": {"paused": False}}}
STOP_BODY = {"data": {"type": "status", "id": "default", "attributes": {"stopped": True}}}


@dataclass(frozen=True)
class ApiStatus:
    """The parts of `GET /v1/status` the protocol uses."""

    status: int
    paused: bool

    @property
    def ready(self) -> bool:
        """Paused before the run, after init: safe to resume."""
        return self.paused and self.status == STATUS_PAUSED_BEFORE_RUN


def parse_status(body: bytes | str) -> ApiStatus:
    """Parse a k6 status document."""
    try:
        attributes = json.loads(body)["data"]["attributes"]
        if not isinstance(attributes, dict) or attributes.get("status") is None:
            raise TypeError("no status attributes")
    except (TypeError, KeyError, IndexError) as e:
        raise ValueError(f"not a k6 status document: {e}") from None
    return ApiStatus(status=int(attributes["status"]), paused=bool(attributes["paused"]))


# The k6 API is plain HTTP on the unit's own network: no TLS context to build (loading CA
# certificates costs ~100 ms per client) and no proxy from the environment.
_CLIENT_OPTIONS: dict = {"verify": False, "trust_env": False}


def _async_client(timeout: float, endpoints: int) -> httpx.AsyncClient:
    """A client with a connection for every endpoint (httpx's default pool stops at 100)."""
    limits = httpx.Limits(max_connections=max(1, endpoints), max_keepalive_connections=0)
    return httpx.AsyncClient(timeout=timeout, limits=limits, **_CLIENT_OPTIONS)


def get_status(endpoint: str, timeout: float = 1.0) -> ApiStatus | None:
    """One status probe; None when the API is not (or no longer) answering."""
    try:
        with httpx.Client(timeout=timeout, **_CLIENT_OPTIONS) as client:
            response = client.get(f"http://{endpoint}{STATUS_PATH}")
        response.raise_for_status()
        return parse_status(response.content)
    except (httpx.HTTPError, ValueError, KeyError) as e:
        logger.debug("k6 API at %s not answering: %s", endpoint, e)
        return None


def wait_ready(
    endpoint: str,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
) -> ApiStatus | None:
    """Poll the local k6 API until it is paused before the run, k6 has exited, or time is up.

    `alive` (when given) says whether the k6 process still runs: a dead one never answers.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = get_status(endpoint, timeout=min(1.0, max(0.05, timeout)))
        if last is not None and (last.ready or last.status >= STATUS_ENDED):
            return last
        if time.monotonic() >= deadline or (last is None and alive is not None and not alive()):
            return last
        time.sleep(interval)


def probe_all(endpoints: Sequence[str], timeout: float = 1.0) -> dict[str, ApiStatus | None]:
    """Status of every endpoint, probed concurrently."""

    async def one(client: httpx.AsyncClient, endpoint: str) -> ApiStatus | None:
        try:
            response = await client.get(f"http://{endpoint}{STATUS_PATH}")
            response.raise_for_status()
            return parse_status(response.content)
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    async def main() -> list[ApiStatus | None]:
        async with _async_client(timeout, len(endpoints)) as client:
            return await asyncio.gather(*(one(client, e) for e in endpoints))

    return dict(zip(endpoints, asyncio.run(main()), strict=True))


def stop_all(endpoints: Sequence[str], timeout: float = 2.0) -> dict[str, str | None]:
    """PATCH `stopped: true` to every endpoint concurrently; endpoint → error (None if ok)."""

    async def one(client: httpx.AsyncClient, endpoint: str) -> str | None:
        try:
            response = await client.patch(f"http://{endpoint}{STATUS_PATH}", json=STOP_BODY)
            response.raise_for_status()
            return None
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"

    async def main() -> list[str | None]:
        async with _async_client(timeout, len(endpoints)) as client:
            return await asyncio.gather(*(one(client, e) for e in endpoints))

    return dict(zip(endpoints, asyncio.run(main()), strict=True))


def request_bytes(method: str, endpoint: str, body: dict) -> bytes:
    """One pre-encoded HTTP/1.1 request to the k6 status endpoint (for a raw-socket fan-out)."""
    payload = json.dumps(body).encode()
    head = (
        f"{method} {STATUS_PATH} HTTP/1.1\r\nHost: {endpoint}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + payload


def resume_request(endpoint: str) -> bytes:
    """The request that resumes the paused k6 at `endpoint`."""
    return request_bytes("PATCH", endpoint, RESUME_BODY)


@dataclass(frozen=True)
class SetupAnswer:
    """What `POST /v1/setup` gave: setup()'s data as JSON text (None: undefined), or why not."""

    data: str | None = None
    error: str = ""


@dataclass(frozen=True)
class TeardownAnswer:
    """What `POST /v1/teardown` gave: whether k6 got the call, and why it failed (if it did)."""

    reached: bool
    error: str | None = None


def _error_text(response: httpx.Response) -> str:
    """k6's own error text from a JSON:API error answer (`errors[0].detail`), else the body."""
    try:
        error = response.json()["errors"][0]
        text = str(error.get("detail") or error.get("title") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        text = response.text
    return text.strip() or f"HTTP {response.status_code}"


def _call(method: str, url: str, timeout: float, content: bytes | None = None) -> httpx.Response:
    with httpx.Client(timeout=timeout, **_CLIENT_OPTIONS) as client:
        return client.request(method, url, content=content)


def run_setup(endpoint: str, timeout: float) -> SetupAnswer:
    """Run the script's setup() in the paused k6 at `endpoint` (started with `--no-setup`)."""
    try:
        response = _call("POST", f"http://{endpoint}{SETUP_PATH}", timeout)
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:  # never reached k6
        return SetupAnswer(error=f"k6 at {endpoint} did not answer: {type(e).__name__}: {e}")
    except httpx.TimeoutException:
        return SetupAnswer(error=f"setup() did not finish within {timeout:g} s")
    except httpx.HTTPError as e:
        return SetupAnswer(error=f"k6 at {endpoint} did not answer: {type(e).__name__}: {e}")
    if response.status_code != 200:
        return SetupAnswer(error=_error_text(response))
    try:
        attributes = response.json()["data"]["attributes"]
    except (ValueError, KeyError, TypeError) as e:
        return SetupAnswer(error=f"not a k6 setup answer: {e}")
    if not isinstance(attributes, dict) or "data" not in attributes:
        return SetupAnswer(data=None)  # setup() returned nothing (or the script has none)
    return SetupAnswer(data=json.dumps(attributes["data"], separators=(",", ":")))


def put_setup_all(
    endpoints: Sequence[str], data: str | None, timeout: float = 10.0
) -> dict[str, str | None]:
    """Give every k6 the same setup data (`PUT /v1/setup`); endpoint → error (None if ok).

    `data` is JSON text; None sends an empty body, which k6 takes as undefined.
    """
    body = b"" if data is None else data.encode()

    async def one(client: httpx.AsyncClient, endpoint: str) -> str | None:
        try:
            response = await client.put(f"http://{endpoint}{SETUP_PATH}", content=body)
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}"
        return None if response.status_code == 200 else _error_text(response)

    async def main() -> list[str | None]:
        async with _async_client(timeout, len(endpoints)) as client:
            return await asyncio.gather(*(one(client, e) for e in endpoints))

    return dict(zip(endpoints, asyncio.run(main()), strict=True))


def run_teardown(endpoint: str, timeout: float) -> TeardownAnswer:
    """Run the script's teardown() in the k6 at `endpoint`; whether k6 got the call, and how."""
    try:
        response = _call("POST", f"http://{endpoint}{TEARDOWN_PATH}", timeout)
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:  # teardown() did not run
        return TeardownAnswer(False, f"k6 at {endpoint} did not answer: {type(e).__name__}: {e}")
    except httpx.TimeoutException:
        return TeardownAnswer(True, f"teardown() did not finish within {timeout:g} s")
    except httpx.HTTPError as e:  # the call may have reached k6: say it may have run
        return TeardownAnswer(True, f"k6 at {endpoint} did not answer: {type(e).__name__}: {e}")
    return TeardownAnswer(True, None if response.status_code == 200 else _error_text(response))
