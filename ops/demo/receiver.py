"""A demo SDR webhook receiver that verifies Standard Webhooks signatures with its own code.

It is deliberately independent of ``connectors/``: if the notifier's signatures drift from the
specification, this receiver answers 401 and the demo shows it.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from sla.clock import Clock, SystemClock

__all__ = ["Delivery", "DeliveryCallback", "DemoReceiver", "verify_signature", "capture_time"]

log = logging.getLogger(__name__)

DeliveryCallback = Callable[["Delivery"], None]

#: Standard Webhooks' recommended replay window, both ways (clock skew and replays).
TOLERANCE_S = 5 * 60
_SECRET_PREFIX = "whsec_"
# Enough to dedup every redelivery of a demo run without growing forever.
_SEEN_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook the receiver answered, verified or not (``latency_s``: capture → received)."""

    rep_id: str
    webhook_id: str
    event_type: str
    lead_id: str | None
    verified: bool
    received_at: datetime
    latency_s: float | None
    status: int = 204
    duplicate: bool = False
    company: str | None = None


def _secret_key(secret: str) -> bytes:
    raw = secret.removeprefix(_SECRET_PREFIX)
    # Secrets are often written without base64 padding; restore it before decoding.
    return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)


def verify_signature(secret: str, headers: Mapping[str, str], body: bytes, now: datetime) -> str | None:
    """Why this delivery fails Standard Webhooks verification, or ``None`` when it passes.

    ``headers`` must be looked up case-insensitively (aiohttp's headers are).
    """
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (webhook_id and timestamp and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        sent = int(timestamp)
    except ValueError:
        return "webhook-timestamp is not integer seconds"
    if abs(now.timestamp() - sent) > TOLERANCE_S:
        return "webhook-timestamp outside the 5 minute tolerance"
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    for entry in signatures.split(" "):
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # other schemes (v1a, future versions) are not ours to check
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, candidate):
            return None
    return "no matching v1 signature"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def capture_time(data: Mapping[str, Any]) -> datetime | None:
    """When the capture that triggered this notification happened, from the body's attribution.

    The last touch is the capture that opened the current cycle (the engine measures its own
    routing and notify latency from it); the first touch is the fallback. For a person who
    came back, the first touch can be days old and would make the latency meaningless.
    """
    attribution = data.get("attribution")
    if not isinstance(attribution, dict):
        return None
    for key in ("last_touch", "first_touch"):
        touch = attribution.get(key)
        if isinstance(touch, dict) and (at := _parse_time(touch.get("at"))) is not None:
            return at
    return None


class DemoReceiver:
    """``POST /hooks/{rep_id}`` on 127.0.0.1: verify, dedup by webhook-id, answer 204 (401 if forged)."""

    def __init__(
        self,
        secrets: Mapping[str, str],
        *,
        port: int = 8090,
        host: str = "127.0.0.1",
        fail_rate: float = 0.0,
        seed: int | None = None,
        clock: Clock | None = None,
        on_delivery: DeliveryCallback | None = None,
        history: int = 1_000,
    ) -> None:
        for rep_id, secret in secrets.items():
            if not secret.startswith(_SECRET_PREFIX):
                raise ValueError(f"rep {rep_id!r}: webhook secret must start with {_SECRET_PREFIX!r}")
            _secret_key(secret)  # fail now, not on the first delivery, if it is not base64
        self._secrets = dict(secrets)
        self._host = host
        self._port = port
        #: Share of verified, first-time deliveries answered 503 to exercise the notifier's retries.
        self.fail_rate = fail_rate
        self._random = random.Random(seed)
        self._clock: Clock = clock or SystemClock()
        self._callbacks: list[DeliveryCallback] = [on_delivery] if on_delivery else []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._deliveries: deque[Delivery] = deque(maxlen=history)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the real port when constructed with ``port=0``)."""
        if self._url is None:
            raise RuntimeError("the receiver is not started")
        return self._url

    def hook_url(self, rep_id: str) -> str:
        return f"{self.url}/hooks/{rep_id}"

    @property
    def deliveries(self) -> tuple[Delivery, ...]:
        """The most recent deliveries, oldest first."""
        return tuple(self._deliveries)

    def subscribe(self, callback: DeliveryCallback) -> None:
        """Call ``callback`` (synchronously, on the loop) for every delivery answered."""
        self._callbacks.append(callback)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{rep_id}", self._handle)
        # No access log: the live view is the demo's output, not one line per request.
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = _bound_port(runner.addresses)
        self._url = f"http://{self._host}:{port}"

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> DemoReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        rep_id = request.match_info["rep_id"]
        secret = self._secrets.get(rep_id)
        if secret is None:
            return web.json_response({"error": f"unknown rep {rep_id!r}"}, status=404)
        body = await request.read()
        now = self._clock.now()
        webhook_id = request.headers.get("webhook-id", "")
        problem = verify_signature(secret, request.headers, body, now)
        if problem is not None:
            # Debug only: the live view counts rejections; one line per webhook would flood it.
            log.debug("rejected webhook for rep %s: %s", rep_id, problem)
            self._record(Delivery(rep_id, webhook_id, "?", None, False, now, None, status=401))
            return web.json_response({"error": problem}, status=401)
        try:
            message = orjson.loads(body)
            data = message["data"]
            event_type = str(message["type"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._record(Delivery(rep_id, webhook_id, "?", None, True, now, None, status=400))
            return web.json_response({"error": "body is not a Standard Webhooks JSON message"}, status=400)
        lead_id = data.get("lead_id") if isinstance(data, dict) else None
        captured = capture_time(data) if isinstance(data, dict) else None
        lead = data.get("lead") if isinstance(data, dict) else None
        delivery = Delivery(
            rep_id, webhook_id, event_type, lead_id if isinstance(lead_id, str) else None, True, now,
            (now - captured).total_seconds() if captured else None,
            company=lead.get("company") if isinstance(lead, dict) else None,
        )
        if webhook_id in self._seen:
            self._record(replace(delivery, duplicate=True))
            return web.Response(status=204)
        if self.fail_rate and self._random.random() < self.fail_rate:
            # Not remembered as seen: the notifier's retry must be processed as the first delivery.
            self._record(replace(delivery, status=503))
            return web.json_response({"error": "simulated outage (demo fail_rate)"}, status=503)
        self._remember(webhook_id)
        self._record(delivery)
        return web.Response(status=204)

    def _remember(self, webhook_id: str) -> None:
        self._seen[webhook_id] = None
        if len(self._seen) > _SEEN_LIMIT:
            self._seen.popitem(last=False)

    def _record(self, delivery: Delivery) -> None:
        self._deliveries.append(delivery)
        for callback in self._callbacks:
            try:
                callback(delivery)
            except Exception:  # an observer's bug must not turn into a failed webhook
                log.exception("delivery callback %r failed", callback)


def _bound_port(addresses: Iterable[Any]) -> int:
    for address in addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the receiver is not listening on any TCP address")
