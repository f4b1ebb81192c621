"""The k6 REST API client: read a k6's status, probe, stop, and the bytes that resume it.

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
