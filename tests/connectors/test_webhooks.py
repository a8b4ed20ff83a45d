"""Tests for webhook signing (checked by the standardwebhooks verifier) and delivery against real servers."""
from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from connectors.netguard import GuardedResolver
from connectors.webhooks import (
    DeliveryResult,
    OutboundWebhook,
    WebhookSender,
    generate_secret,
    sign,
    signed_headers,
    validate_secret,
)
from tests.connectors.test_netguard import StaticResolver, must_not_resolve

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
BODY = b'{"type":"lead.assigned","timestamp":"2024-05-01T12:00:00Z","data":{"lead_id":"l-1"}}'


# --- signing -----------------------------------------------------------------------------


def test_matches_the_spec_test_vector() -> None:
    # The example from the Standard Webhooks specification / reference libraries.
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_generated_secrets_are_valid_and_distinct() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    validate_secret(first)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_not base64!", "followed by base64"),
        ("whsec_ümlaut", "followed by base64"),
        ("whsec_", "24-64 bytes, not 0"),
        ("whsec_" + base64.b64encode(b"x" * 23).decode(), "24-64 bytes, not 23"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "24-64 bytes, not 65"),
    ],
)
def test_validate_secret_says_what_is_wrong_without_quoting_it(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        validate_secret(secret)
    assert secret.removeprefix("whsec_") not in str(caught.value) or secret == "whsec_"


@pytest.mark.parametrize("size", [24, 32, 64])
def test_validate_secret_accepts_padded_and_unpadded_keys(size: int) -> None:
    encoded = base64.b64encode(bytes(range(size))).decode()
    validate_secret("whsec_" + encoded)
    validate_secret("whsec_" + encoded.rstrip("="))


secrets_ = st.binary(min_size=24, max_size=64).map(lambda key: "whsec_" + base64.b64encode(key).decode())
msg_ids = st.text(min_size=1, max_size=80)
bodies = st.text(max_size=500).map(str.encode)  # the reference verifier takes the body as text


@given(secret=secrets_, msg_id=msg_ids, body=bodies, tamper=st.binary(min_size=1, max_size=8))
def test_signatures_verify_with_standardwebhooks_and_tampering_fails(
    secret: str, msg_id: str, body: bytes, tamper: bytes
) -> None:
    timestamp = int(time.time())  # the verifier only accepts timestamps within 5 minutes of now
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    verifier = Webhook(secret)
    verifier.verify(body, headers, json_parse=False)
    tampered = body + tamper.decode("latin-1").encode()
    with pytest.raises(WebhookVerificationError):
        verifier.verify(tampered, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body, {**headers, "webhook-timestamp": str(timestamp - 1)}, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers, json_parse=False)


def test_signed_headers() -> None:
    headers = signed_headers(SECRET, "msg_1", 1714564800, BODY)
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1714564800",
        "webhook-signature": sign(SECRET, "msg_1", 1714564800, BODY),
        "Content-Type": "application/json",
        "User-Agent": "leadflow-webhooks/1",
    }


@pytest.mark.parametrize("msg_id", ["", "has space", "new\nline", "x" * 257, "ünïcode"])
def test_signed_headers_refuse_ids_that_cannot_be_headers(msg_id: str) -> None:
    with pytest.raises(ValueError, match="webhook id"):
        signed_headers(SECRET, msg_id, 1714564800, BODY)


# --- delivery against real servers --------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer (until the test ends)


@dataclass(frozen=True)
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 answering a script of replies (the last one repeats)."""

    def __init__(self, replies: Sequence[Reply]) -> None:
        self.replies = list(replies)
        self.received: list[Received] = []
        self.released = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(request.path, request.query_string, dict(request.headers), body))
        reply = self.replies[min(len(self.received), len(self.replies)) - 1]
        if reply.hang:
            await self.released.wait()
        return web.Response(status=reply.status, headers=reply.headers)

    def url(self, path: str = "/hook") -> str:
        return str(self.server.make_url(path))


StartReceiver = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def receiver() -> AsyncIterator[StartReceiver]:
    started: list[Receiver] = []

    async def start(*replies: Reply) -> Receiver:
        server = Receiver(replies or [Reply()])
        await server.server.start_server()
        started.append(server)
        return server

    yield start
    for server in started:
        server.released.set()  # let hanging handlers finish so shutdown is immediate
        await server.server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class FakeTime:
    """A clock that only moves when the sender sleeps; records every sleep."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay


def sender_for(
    session: aiohttp.ClientSession, fake: FakeTime, *, allow_private: bool = True, **options: object
) -> WebhookSender:
    # The sender's in-process retries (off by default: the notifier's schedule is durable).
    options.setdefault("retry_delays", (0.5, 2.0, 5.0))
    return WebhookSender(
        session, allow_private=allow_private, sleep=fake.sleep, clock=fake.clock, **options  # type: ignore[arg-type]
    )


def message(url: str, *, webhook_id: str = "msg_2b6f0cc9", secret: str = SECRET) -> OutboundWebhook:
    return OutboundWebhook(webhook_id=webhook_id, event_type="lead.assigned", url=url, secret=secret, body=BODY)


async def test_a_delivery_verifies_with_standardwebhooks(
    receiver: StartReceiver, session: aiohttp.ClientSession
) -> None:
    endpoint = await receiver(Reply(204))
    fake = FakeTime()
    result = await sender_for(session, fake).deliver(message(endpoint.url("/hooks/ana?v=2")))

    assert result == DeliveryResult(
        webhook_id="msg_2b6f0cc9", delivered=True, attempts=1, status=204, error=None,
        duration_s=result.duration_s, gave_up_reason=None,
    )
    assert not result.retryable and fake.sleeps == []
    [got] = endpoint.received
    assert (got.path, got.query, got.body) == ("/hooks/ana", "v=2", BODY)
    assert Webhook(SECRET).verify(got.body, got.headers) == {
        "type": "lead.assigned", "timestamp": "2024-05-01T12:00:00Z", "data": {"lead_id": "l-1"},
    }
    assert got.headers["webhook-timestamp"] == str(int(fake.now))
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == "leadflow-webhooks/1"


async def test_500_then_200_is_delivered_on_the_second_attempt(
    receiver: StartReceiver, session: aiohttp.ClientSession
) -> None:
    endpoint = await receiver(Reply(500), Reply(200))
    fake = FakeTime()
    result = await sender_for(session, fake).deliver(message(endpoint.url()))
    assert (result.delivered, result.attempts, result.status, result.error) == (True, 2, 200, None)
    assert fake.sleeps == [0.5]


async def test_retries_keep_the_id_and_re_sign_with_a_fresh_timestamp(
    receiver: StartReceiver, session: aiohttp.ClientSession
) -> None:
    endpoint = await receiver(Reply(503), Reply(502), Reply(200))
    fake = FakeTime()
    result = await sender_for(session, fake, retry_delays=(1.0, 2.0)).deliver(message(endpoint.url()))

    assert (result.delivered, result.attempts) == (True, 3)
    verifier = Webhook(SECRET)
    for got in endpoint.received:
        verifier.verify(got.body, got.headers)  # every attempt is independently valid
    assert {got.headers["webhook-id"] for got in endpoint.received} == {"msg_2b6f0cc9"}
    stamps = [int(got.headers["webhook-timestamp"]) for got in endpoint.received]
    assert stamps[1] - stamps[0] == 1 and stamps[2] - stamps[1] == 2
    assert len({got.headers["webhook-signature"] for got in endpoint.received}) == 3


async def test_410_stops_at_once(receiver: StartReceiver, session: aiohttp.ClientSession) -> None:
    endpoint = await receiver(Reply(410), Reply(200))
    fake = FakeTime()
    result = await sender_for(session, fake).deliver(message(endpoint.url()))
    assert (result.delivered, result.attempts, result.status) == (False, 1, 410)
    assert result.gave_up_reason == "endpoint gone (410)"
    assert not result.retryable and fake.sleeps == [] and len(endpoint.received) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_other_4xx_are_permanent(
    receiver: StartReceiver, session: aiohttp.ClientSession, status: int
) -> None:
    endpoint = await receiver(Reply(status), Reply(200))
    result = await sender_for(session, FakeTime()).deliver(message(endpoint.url()))
    assert (result.delivered, result.attempts, result.status) == (False, 1, status)
    assert result.gave_up_reason == f"rejected by endpoint ({status})"
    assert result.error == f"HTTP {status}"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried_then_left_to_the_durable_schedule(
    receiver: StartReceiver, session: aiohttp.ClientSession, status: int
) -> None:
    endpoint = await receiver(Reply(status))
    fake = FakeTime()
    result = await sender_for(session, fake).deliver(message(endpoint.url()))
    assert (result.delivered, result.attempts, result.status) == (False, 4, status)
    assert result.gave_up_reason is None and result.retryable
    assert result.error == f"HTTP {status}"
    assert fake.sleeps == [0.5, 2.0, 5.0] and len(endpoint.received) == 4


async def test_redirects_are_failures_and_not_followed(
    receiver: StartReceiver, session: aiohttp.ClientSession
) -> None:
    endpoint = await receiver(Reply(302, {"Location": "/elsewhere"}))
    result = await sender_for(session, FakeTime(), retry_delays=(0.0,)).deliver(message(endpoint.url()))
    assert (result.delivered, result.status, result.attempts) == (False, 302, 2)
    assert result.error == "HTTP 302 (redirects are not followed)"
    assert [got.path for got in endpoint.received] == ["/hook", "/hook"]


async def test_a_receiver_slower_than_the_timeout_is_retried_then_given_up(
    receiver: StartReceiver, session: aiohttp.ClientSession
) -> None:
    endpoint = await receiver(Reply(hang=True))
    fake = FakeTime()
    sender = sender_for(session, fake, timeout_s=0.2, retry_delays=(0.0, 0.0))
    result = await sender.deliver(message(endpoint.url()))
    assert (result.delivered, result.attempts, result.status) == (False, 3, None)
    assert result.error is not None and "timeout" in result.error
    assert result.retryable and len(endpoint.received) == 3
    assert 0.6 <= result.duration_s < 2.0


async def test_retry_after_is_honoured_up_to_the_longest_delay(
    receiver: StartReceiver, session: aiohttp.ClientSession
) -> None:
    fake = FakeTime(now=float(int(time.time())))  # whole seconds, as HTTP-dates are
    http_date = formatdate(fake.now + 7, usegmt=True)  # dated by the sender's clock
    endpoint = await receiver(
        Reply(429, {"Retry-After": "3"}),
        Reply(503, {"Retry-After": http_date}),
        Reply(429, {"Retry-After": "3600"}),
        Reply(429, {"Retry-After": "0"}),
        Reply(503, {"Retry-After": "soon"}),
        Reply(200),
    )
    sender = sender_for(session, fake, retry_delays=(0.5, 1.0, 2.0, 5.0, 1.0))
    result = await sender.deliver(message(endpoint.url()))
    assert (result.delivered, result.attempts) == (True, 6)
    # 3 s as asked; the HTTP-date, 4 s after the first sleep; 3600 s capped at the 5 s maximum;
    # never shorter than our own schedule; an unparseable header is ignored.
    assert fake.sleeps == [3.0, 4.0, 5.0, 5.0, 1.0]


async def test_a_refused_destination_is_permanent_with_no_request(
    receiver: StartReceiver, session: aiohttp.ClientSession
) -> None:
    endpoint = await receiver(Reply(200))
    result = await sender_for(session, FakeTime(), allow_private=False).deliver(message(endpoint.url()))
    assert (result.delivered, result.attempts, result.status) == (False, 0, None)
    assert result.gave_up_reason is not None and "loopback" in result.gave_up_reason
    assert endpoint.received == []


async def test_dns_rebinding_is_caught_at_connect_time(receiver: StartReceiver) -> None:
    # The pre-check sees a public address; the connection-time lookup answers 127.0.0.1.
    endpoint = await receiver(Reply(200))
    port = endpoint.server.port
    url = f"http://hooks.example.com:{port}/hook"

    async def public(host: str, port: int) -> Sequence[str]:
        return ["93.184.216.34"]

    for allow_private, delivered in [(False, False), (True, True)]:
        guard = GuardedResolver(allow_private=allow_private, inner=StaticResolver("127.0.0.1"))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=guard)) as guarded:
            sender = WebhookSender(guarded, allow_private=False, resolver=public, sleep=FakeTime().sleep)
            result = await sender.deliver(message(url))
        await guard.close()
        assert result.delivered is delivered
        if not delivered:
            assert result.attempts == 1 and result.gave_up_reason is not None
            assert "resolves to 127.0.0.1, a loopback address" in result.gave_up_reason
    assert len(endpoint.received) == 1  # only the session whose guard allowed it got through


async def test_dns_failure_is_left_to_the_durable_schedule(session: aiohttp.ClientSession) -> None:
    async def broken(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    sender = WebhookSender(session, allow_private=False, resolver=broken, sleep=FakeTime().sleep)
    result = await sender.deliver(message("https://hooks.example.com/x"))
    assert (result.delivered, result.attempts, result.gave_up_reason) == (False, 0, None)
    assert result.retryable and result.error is not None and "could not resolve" in result.error


async def test_connection_refused_is_transient(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeTime()
    result = await sender_for(session, fake, retry_delays=(0.1,)).deliver(message(f"http://127.0.0.1:{port}/"))
    assert (result.delivered, result.attempts, result.status) == (False, 2, None)
    assert result.retryable and result.error is not None and result.error.startswith("connection failed")


@pytest.mark.parametrize(
    ("changes", "reason", "our_fault"),
    [
        ({"secret": "not-a-secret"}, "invalid message: webhook secret must start with 'whsec_'", True),
        ({"webhook_id": "bad id"}, "invalid message: webhook id", True),
        ({"url": "http://[::1"}, "invalid message: URL is not valid", True),
        # The endpoint's own address is refused: about the endpoint, not a message we built wrong.
        ({"url": "ftp://files.example.com/"}, "URL scheme must be http or https", False),
    ],
)
async def test_an_undeliverable_message_is_permanent_with_no_request(
    session: aiohttp.ClientSession, changes: dict[str, str], reason: str, our_fault: bool
) -> None:
    fields = {"webhook_id": "msg_1", "url": "http://127.0.0.1:9/", "secret": SECRET, **changes}
    msg = OutboundWebhook(event_type="lead.assigned", body=BODY, **fields)
    sender = WebhookSender(session, allow_private=True, resolver=must_not_resolve, sleep=FakeTime().sleep)
    result = await sender.deliver(msg)
    assert (result.delivered, result.attempts) == (False, 0)
    assert result.gave_up_reason is not None and result.gave_up_reason.startswith(reason)
    assert result.our_fault is our_fault


async def test_the_receivers_failures_are_not_ours(receiver: StartReceiver, session: aiohttp.ClientSession) -> None:
    # What the endpoint's circuit breaker counts: a status, a timeout or a connection failure.
    endpoint = await receiver(Reply(503))
    result = await sender_for(session, FakeTime()).deliver(message(endpoint.url()))
    assert result.status == 503 and not result.our_fault
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await sender_for(session, FakeTime()).deliver(message(f"http://127.0.0.1:{port}/"))
    assert result.error is not None and result.error.startswith("connection failed") and not result.our_fault


async def test_logs_carry_ids_and_host_never_body_secret_or_query(
    receiver: StartReceiver, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = await receiver(Reply(500), Reply(200), Reply(503))
    caplog.set_level(logging.DEBUG, logger="connectors")
    await sender_for(session, FakeTime()).deliver(message(endpoint.url("/in?token=s3cr3t-token")))
    await sender_for(session, FakeTime(), retry_delays=()).deliver(message(endpoint.url("/in?token=s3cr3t-token")))
    ours = [record for record in caplog.records if record.name.startswith("connectors")]
    logged = "\n".join(record.getMessage() for record in ours)
    assert "msg_2b6f0cc9" in logged and "127.0.0.1" in logged and "lead.assigned" in logged
    for leak in ("s3cr3t-token", SECRET.removeprefix("whsec_"), "lead_id", "/in"):
        assert leak not in logged
    assert len(ours) == 4 and all("%s" in str(record.msg) for record in ours)  # lazy %-formatting


def test_outbound_webhook_repr_hides_url_secret_and_body() -> None:
    text = repr(message("https://hooks.example.com/in?token=s3cr3t"))
    assert "msg_2b6f0cc9" in text
    for leak in ("s3cr3t", SECRET, "lead_id"):
        assert leak not in text


@pytest.mark.parametrize(
    "options",
    [{"timeout_s": 0.0}, {"timeout_s": float("nan")}, {"retry_delays": (1.0, -1.0)}, {"retry_delays": (float("inf"),)}],
)
async def test_sender_rejects_nonsense_settings(session: aiohttp.ClientSession, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        WebhookSender(session, allow_private=False, **options)  # type: ignore[arg-type]
