"""The WebSocket gateway: sessions, authorization, requests to commands, answers from state.

Invariants:
- The actor of every command is the session's account, taken from its token at logon, never
  from the request's params.
- An account can never see, amend or cancel another account's order: such a request gets
  exactly the answer an order id that never existed gets (404 UNKNOWN_ORDER, same message).
- op.* methods need the operator role (403 FORBIDDEN otherwise); the core checks it again.
- Queries read the exchange state on the event loop between sequencer batches; because a
  batch is handled, fsynced and released without yielding, they only ever see durable state.
  Once a batch fails (its append raised: the state in memory is ahead of the journal), every
  request is answered 503, a new connection's upgrade is refused (HTTP 503) and a session not
  yet logged on is closed (1011) before any account is looked up, heartbeats and liquidity
  stop, and /readyz and /metrics report the journal's last durable seq: nothing more is read
  from that state until the restart.
- order.place, order.amend and session.cancel_on_disconnect (journaled too) are limited per
  account by a token bucket (ORDER_BURST at once, ORDER_RATE_PER_S sustained): beyond it, 429
  RATE_LIMITED with retry_after_ms, and nothing reaches the sequencer. Cancels of real orders
  are never limited; a cancel that names no open order of the account (by cl_ord_id: nor an
  order.place of that cl_ord_id still in flight on this session) is answered at the edge with
  the core's own 404 UNKNOWN_ORDER and journals nothing, so cancels cost the journal at most
  one record per order placed.
- A connection has at most IN_FLIGHT_MAX requests unanswered, and at most WRITE_BACKLOG_MAX
  bytes of answers not yet taken by the kernel (made and not yet written, or written and not
  yet sent), plus the one answer that went past it; past either, its frames are not read
  until it drops below (a client that sends and never reads costs bounded memory: bytes, not
  requests, since one answer may be large). No answer grows without bound with the state:
  orders.open and account.fills come in pages (gateway/protocol.py).
  A query is answered at once; a command when its batch is durable (no task per request:
  each request is handled as its frame is parsed, gateway/connection.py). A command's answer
  is written before the execution reports and market data of its batch.
- Messages under 1,024 bytes go out uncompressed, larger ones deflated (gateway/compression.py);
  permessage-deflate is negotiated as websockets' default.
- Bad frames (malformed JSON, unknown method, wrong types, binary frames) get a typed 400
  and the connection carries on; a frame above FRAME_BYTES_MAX closes it with 1009; no
  logon within LOGON_TIMEOUT_S, or a failed logon, closes it with 1008.
- Execution reports (after executions.subscribe): every private event of the session's account
  (accepted, filled, amended, canceled, cash) is pushed once its batch is durable, on the
  channel "executions" with the account's seq/prev_seq (the same in every session of the
  account and across restarts) and, for orders, exec_type and ord_status
  (gateway/execution_reports.py), each encoded once for every session of the account. A
  session is closed with 1008 SLOW_CONSUMER rather than slowing the sequencer when, as new
  pushes come, more than OUTBOX_MAX of those it had the chance to read are still unwritten
  (gateway/outbox.py): the pushes of one batch are always accepted whole (one cancel_all of
  more orders than that, to a client that reads, is no reason), and its memory stays bounded.
- Balances (subscribe {channel: "balances"}): a snapshot of every balance of the session's
  account, then after each durable batch that posted to it an update with the balances it
  changed (absolute values, so a client never sums deltas), with per-session seq/prev_seq;
  each subscribe starts again with a snapshot.
- Market data (md.subscribe {symbol, channels}): the channels of gateway/market_data.py. Its
  messages are computed in the sequencer right after each command and released with the
  batch once durable; a subscription queues the channel's snapshot first, so every update
  that follows carries a higher seq. Heartbeats every HEARTBEAT_INTERVAL_S per symbol. If
  market data ever raises, it is switched off (subscribers closed with 1011; the MQTT
  publisher says "offline" and clears its retained market data; each Redis instrument stream
  ends with a "stopped" entry) and the exchange carries on: it is derived data, never a
  reason to stop trading.
- Liquidity (channel "liquidity", gateway/liquidity.py): subscribed like the market-data
  channels (a snapshot first). Its figures are accumulated in the sequencer next to market
  data; once a batch is durable an update goes out for each symbol the batch changed (at
  most one per LIQUIDITY_UPDATE_MIN_NS per symbol; a held-back change goes with the next
  batch or refresh), and every HEARTBEAT_INTERVAL_S a refresh, since time-weighted figures
  move with time alone. The same updates feed the liquidity sinks (MQTT's retained topic).
- At most CONNECTIONS_PER_TOKEN_MAX connections per API token (the next is closed with
  1008 LIMIT_EXCEEDED); an account's other tokens have slots of their own.
  session.cancel_on_disconnect {enabled, scope} makes the end of that connection cancel the
  open orders this session placed (scope "session", the default; also those whose answer
  comes after the end), or every open order of the account (scope "account"). The exchange
  keeps it in its journaled state (exchange/disconnect.py): the gateway names each session
  (PlaceOrder.session_id) and tells the exchange when one ends (EndSession, retried while the
  queue is full, for as long as the exchange runs); the cancels are made in that one command,
  with reason "disconnect". A server that stops, cleanly or not, ends every session: the restart
  ends those its state still holds before it serves anyone (sequencer.end_stale_sessions).
- Shutdown (SIGTERM/SIGINT, or `stop` set): stop accepting connections and commands, let the
  sequencer drain and fsync what is queued, send those answers, close every connection with
  1001 (going away), snapshot, release the journal.
- account.fills answers from a bounded log of the day's fills kept by the gateway from
  durable batches (gateway/accounts.py says how it is bounded and from which seq complete).
  It and orders.open answer a page at a time (gateway/protocol.py, "Pages").
- /livez, /readyz (200 "ready" while the sequencer runs, else 503) and /metrics answer plain
  HTTP; /readyz?verbose answers JSON: recovery, journal writable and last seq, whether market
  data still runs, and the state of each integration (Redis: connected, backlog, dropped;
  MQTT: connected, buffered, dropped).
- GET / and /dashboard... without an Upgrade header answer the operator dashboard's static
  files (gateway/dashboard_http.py); an upgrade to "/" is the WebSocket API as before.
- Revoking a token (`ipx tokens revoke`) closes every session that logged on with it (close
  code 4001, reason "token revoked") within TOKEN_POLL_S; until then its requests get 401.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import functools
import hashlib
import http
import importlib.metadata
import itertools
import json
import logging
import os
import secrets
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from exchange.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    CloseMarket,
    Command,
    Deposit,
    DistributeRoyalty,
    EndSession,
    Halt,
    IssueShares,
    KillSwitch,
    ListAsset,
    OpenAccount,
    OpenOffering,
    PlaceOrder,
    Resume,
    Role,
    SetCancelOnDisconnect,
    StartAuction,
    Withdraw,
)
from exchange.core import Outcome
from exchange.events import (
    PRIVATE_EVENTS,
    CommandRejected,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
)
from exchange.reasons import Reject
from exchange.state import ExchangeState, Instrument
from exchange.trading import find_own_order
from gateway import (
    accounts,
    compression,
    dashboard_http,
    execution_reports,
    heap,
    liquidity,
    market_data,
    protocol,
)
from gateway.admission import Admission
from gateway.connection import GatewayConnection
from gateway.metrics import Metrics, SinkCounts
from gateway.mqtt_publisher import MqttPublisher
from gateway.outbox import Outbox, Passes
from gateway.protocol import ProtocolError
from gateway.redis_publisher import RedisPublisher
from gateway.sequencer import (
    QUEUE_MAX,
    Overloaded,
    Recovery,
    Sequencer,
    SequencerStopped,
    Unavailable,
    recover,
)
from gateway.sessions import (
    ORDER_BURST,
    ORDER_RATE_PER_S,
    TOKEN_POLL_S,
    OrderRateLimiter,
    TokenStore,
    token_hash,
)
from ledger.balances import Balances
from matching.orders import OrderType

BOOK_CHANNELS = frozenset({market_data.L2, market_data.L3})  # Followed only on demand.
LOGON_TIMEOUT_S = 10.0
# A TLS connection is admitted (gateway/admission.py) only once its handshake is done: asyncio
# hands the connection over then. Until then it is held only by this timeout (asyncio's own
# default is 60 s), which bounds what silent connections to a TLS port can hold.
TLS_HANDSHAKE_TIMEOUT_S = 5.0
# Pushes waiting for one client from earlier passes, besides one burst (gateway/outbox.py);
# beyond it: disconnected as too slow.
OUTBOX_MAX = 10_000
PUSH_WRITE_MAX = 256  # Pushes written to one connection at once.
HEARTBEAT_INTERVAL_S = 1.0
LIQUIDITY_UPDATE_MIN_NS = 100_000_000  # Per symbol, between two change-driven updates.
SLOW_CLOSE_TIMEOUT_S = 1.0
CONNECTIONS_PER_TOKEN_MAX = 16  # Beyond it a new connection is closed with 1008.
# Cancels of real orders are never limited (one of no order is refused at the edge:
# Gateway._cancel); session.cancel_on_disconnect is journaled like an order.
RATE_LIMITED_METHODS = frozenset({"order.place", "order.amend", "session.cancel_on_disconnect"})
IN_FLIGHT_MAX = 64  # Requests of one connection awaiting their answer; then reading pauses.
# Bytes of answers made and not yet sent (the client is not reading): then reading pauses too.
WRITE_BACKLOG_MAX = 256 * 1024
DRAIN_TIMEOUT_S = 10.0
# A session's end meets a full queue: retried after this, doubling up to the max (its
# cancels matter more than any new order, and each waiting end is one small coroutine).
END_SESSION_RETRY_S = 0.01
END_SESSION_RETRY_MAX_S = 0.2
NO_SUCH_ORDER = "no such open order"  # The core's words, for an edge lookup that fails.
TOKEN_REVOKED_CODE = 4001  # Close code of a session whose token was revoked.
STOPPED = "the exchange stopped: reconnect after its restart"  # After a journal failure.

log = logging.getLogger("ipx.gateway")
# Per durable batch: INFO per rejected order and per fill (each side of a trade), DEBUG per
# other order event; each line carries journal_seq, order_id, cl_ord_id, account, symbol.
order_log = logging.getLogger("ipx.gateway.orders")
ORDER_EVENTS = (OrderAccepted, OrderAmended, OrderCanceled, OrderFilled, OrderRejected)


@dataclass(slots=True, eq=False)
class Session:
    connection: GatewayConnection
    account: str | None = None
    # Requests read and not yet answered in a write; at IN_FLIGHT_MAX reading pauses until a
    # write frees slots (Gateway._receive, _may_read).
    in_flight: int = 0
    # Pushes (execution reports, market data): a bounded outbox drained by one writer task,
    # created by the first subscription.
    outbox: Outbox | None = None
    writer: asyncio.Task[None] | None = None
    executions: bool = False
    balances: bool = False  # Subscribed to the account's "balances" channel.
    balances_seq: int = 0  # Per session: each subscription starts with a snapshot.
    market_data: dict[tuple[str, str], None] = field(default_factory=dict)  # (channel, symbol)
    registered: bool = False  # Counted in its token's connections.
    # Answers not yet written: all of this loop pass's go out in one write (_flush_answers).
    answers: list[bytes] = field(default_factory=list)
    answer_bytes: int = 0  # Their size: counted against WRITE_BACKLOG_MAX (_may_read).
    token_sha256: str = ""  # The token it logged on with: revoking it closes the session.
    # Its name in the exchange's state (exchange/disconnect.py): which open orders it placed,
    # and what its end cancels. Unique across restarts (a random prefix per server start).
    session_id: str = ""
    # Whether it ever asked for cancel-on-disconnect. Its end is told to the exchange
    # (EndSession) if so, or if the exchange holds open orders it placed.
    asked_cancel_on_disconnect: bool = False
    # cl_ord_id -> its order.place requests sent to the sequencer and not yet answered: a
    # cancel by that cl_ord_id right behind them must reach the core (Gateway._cancel).
    placing: dict[str, int] = field(default_factory=dict)

    def open_outbox(self, outbox_max: int, passes: Passes) -> None:
        if self.writer is not None and self.writer.done():
            raise ProtocolError(503, "UNAVAILABLE", "this session is being closed")
        if self.outbox is None:
            self.outbox = Outbox(outbox_max, passes)
            self.writer = asyncio.create_task(self._write())

    def push_text(self, text: bytes) -> bool:
        """Queue one push message (UTF-8 JSON); return False when the session is too slow."""
        assert self.outbox is not None
        return self.outbox.put(text)

    def push_balances(
        self,
        kind: Literal["snapshot", "update"],
        journal_seq: int,
        balances: dict[str, accounts.Balance],
    ) -> bool:
        """Queue a "balances" snapshot (every balance) or update (the ones that changed)."""
        seq = self.balances_seq + 1
        message = accounts.BalancesPush(kind, seq, seq - 1, journal_seq, balances)
        if not self.push_text(protocol.encode_push(message)):
            return False
        self.balances_seq = seq
        return True

    async def _write(self) -> None:
        # As with answers: the pushes waiting (up to PUSH_WRITE_MAX) leave in one socket write
        # instead of a send() each. While more than WRITE_BACKLOG_MAX of the connection's bytes
        # wait unsent, nothing more is written: the outbox fills meanwhile, and one too full
        # disconnects the session (SLOW_CONSUMER) rather than slowing anyone else.
        outbox, connection = self.outbox, self.connection
        assert outbox is not None
        while True:
            await outbox.wait()
            texts = outbox.take(PUSH_WRITE_MAX, WRITE_BACKLOG_MAX)
            if not connection.write_texts(texts):
                return  # Closed: its session is being dropped.
            await connection.drain()  # Past WRITE_BACKLOG_MAX unsent: until the kernel takes it.


class _MqttFeed:
    """Adapts the MQTT publisher (it takes messages only) to take outcomes as Redis does."""

    def __init__(self, publisher: MqttPublisher) -> None:
        self.publisher = publisher

    def publish(self, outcome: Outcome, messages: Sequence[market_data.Message]) -> None:
        if messages:
            self.publisher.publish_messages(messages)

    async def close(self, timeout_s: float = 2.0) -> None:
        await self.publisher.stop(timeout_s)


# An integration fed each durable outcome with its market-data messages.
Publisher = RedisPublisher | _MqttFeed


def _counts(publisher: Publisher) -> SinkCounts:
    """The counters /metrics shows for one integration."""
    if isinstance(publisher, RedisPublisher):
        stats = publisher.stats
        return SinkCounts(
            "redis",
            stats.outcomes_written,
            stats.outcomes_dropped,
            publisher.backlog,
            stats.outcomes_refused,
        )
    mqtt = publisher.publisher
    return SinkCounts("mqtt", mqtt.stats.published, mqtt.stats.dropped, mqtt.buffered())


def _source(publisher: Publisher) -> RedisPublisher | MqttPublisher:
    return publisher if isinstance(publisher, RedisPublisher) else publisher.publisher


MQTT_URL_FORM = "mqtt://[user:password@]host[:1883] (user and password percent-encoded)"


def _mqtt_address(url: str) -> tuple[str, int, str | None, str | None]:
    # (host, port, username, password). An error never quotes the URL: it may hold a password,
    # and the error is printed.
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"--mqtt-url has scheme {parsed.scheme!r}; write {MQTT_URL_FORM}")
    if not parsed.hostname:
        raise ValueError(f"--mqtt-url names no host; write {MQTT_URL_FORM}")
    try:
        port = parsed.port or 1883
    except ValueError:
        raise ValueError(f"--mqtt-url has no port number; write {MQTT_URL_FORM}") from None
    # urlsplit leaves them percent-encoded, as a URL must carry "@", ":" or "/" in them.
    username = None if parsed.username is None else urllib.parse.unquote(parsed.username)
    password = None if parsed.password is None else urllib.parse.unquote(parsed.password)
    return parsed.hostname, port, username, password


def mqtt_identifier(data_dir: str) -> str:
    """The MQTT client id (and state topic) of the exchange whose journal is in data_dir.

    The same across restarts: each id leaves a retained state topic behind, and one per
    process id grew the broker's retained set by a topic per restart, for ever. Two servers
    never share a data dir (the journal is locked), so never an id either.
    """
    digest = hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()
    return f"ipx-gateway-{digest[:12]}"


def _package_version() -> str:
    try:
        return importlib.metadata.version("ipx-exchange")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Gateway:
    """Serves one exchange (its sequencer) to WebSocket clients."""

    def __init__(
        self,
        sequencer: Sequencer,
        tokens: TokenStore,
        *,
        logon_timeout_s: float = LOGON_TIMEOUT_S,
        rate_limiter: OrderRateLimiter | None = None,
        connections_per_token_max: int = CONNECTIONS_PER_TOKEN_MAX,
        outbox_max: int = OUTBOX_MAX,
        recovery: Recovery | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.sequencer = sequencer
        self.recovery = recovery
        # Caps on TCP connections before they log on (gateway/admission.py).
        self.admission = admission or Admission()
        self.outbox_max = outbox_max
        # A pass of pushes starts with each durable batch, heartbeat tick and subscription: a
        # session is judged too slow only on the pushes of earlier passes (gateway/outbox.py).
        self.passes = Passes()
        self.tokens = tokens
        self.connections_per_token_max = connections_per_token_max
        self._connections: dict[str, int] = {}  # token_sha256 -> its open sessions
        self._sessions: dict[Session, None] = {}  # Logged-on sessions, to close on revocation.
        # Session ids: a random prefix per server start, so none names an earlier one's.
        self._boot_id = secrets.token_hex(4)
        self._session_numbers = itertools.count(1)
        self.rate_limiter = rate_limiter or OrderRateLimiter()
        self.logon_timeout_s = logon_timeout_s
        self._tasks: set[asyncio.Task[None]] = set()  # Connections being closed.
        self._unsent: dict[Session, None] = {}  # Sessions with answers, in the order they came.
        # Sessions subscribed to their account's execution reports.
        self._subscribed: dict[str, dict[Session, None]] = {}
        self._balance_subscribed: dict[str, dict[Session, None]] = {}  # account -> sessions
        # (channel, symbol) -> its snapshot in this state: encoded, and its seq.
        self._snapshots: dict[tuple[str, str], tuple[bytes, int]] = {}
        # Books are followed for book.l2/book.l3 only while subscribed (or once a publisher
        # takes every message): see "Books on demand" in gateway/market_data.py.
        # Public seqs carry on above any earlier run's, so a client that kept one across a
        # restart sees a gap and resyncs (gateway/market_data.py, "Sequence numbers").
        seq_base = market_data.run_seq_base(time.time_ns() // 1_000_000)
        self.market_data = market_data.MarketData(
            sequencer.exchange, protocol.CURRENCY_DIGITS, books_on_demand=True, seq_base=seq_base
        )
        self._market_data_failed = False
        self._market_data_failed_seq = 0  # The outcome it failed at, until Redis is told.
        self._market_data_sessions: dict[tuple[str, str], dict[Session, None]] = {}
        # Tracking starts now, on the sequencer's clock: the time this server was down is
        # not quoted time, though the book rested as the journal's last record left it.
        self.liquidity = liquidity.Liquidity(
            sequencer.exchange,
            protocol.CURRENCY_DIGITS,
            seq_base=seq_base,
            start_ns=sequencer.now_ns(),
        )
        # Where liquidity updates go besides subscribers (MQTT's retained topics).
        self.liquidity_sinks: list[Callable[[liquidity.LiquidityMessage], None]] = []
        self._liquidity_pending: dict[str, None] = {}  # Changed, not yet published.
        self._liquidity_sent: dict[str, int] = {}  # symbol -> monotonic ns of its last update.
        self.fills = accounts.FillLog(sequencer.exchange.seq + 1)
        self.metrics = Metrics(
            sequencer.exchange.state.instruments,
            version=_package_version(),
            queue_depth=lambda: sequencer.queue_depth,
            journal_seq=lambda: sequencer.journal.last_seq,  # Durable: memory may be ahead.
            connections=lambda: len(self._sessions),
            connections_refused=lambda: self.admission.refused,
            sinks=self._sink_counts,
            liquidity=self._liquidity_figures,
        )
        sequencer.on_journal_append = self.metrics.observe_fsync
        # Integrations fed after each durable batch (Redis, MQTT); they only enqueue, so an
        # outage of theirs never slows the exchange.
        self.publishers: list[Publisher] = []
        # Publish lag, sampled: one (journal seq, durable at) per publisher at a time, observed
        # when the publisher reports that seq written (add_publisher).
        self._lag_samples: dict[Publisher, tuple[int, float]] = {}
        sequencer.observe(self._observe)
        sequencer.subscribe(self._on_batch)
        # A method answers at once (a query, a refusal) or returns Sequenced: its command
        # goes to the sequencer, and the answer is made from the outcome once it is durable.
        self._methods: dict[str, Callable[[str, Any], Any]] = {
            "order.amend": self._amend,
            "order.status": self._status,
            "orders.open": self._open_orders,
            "account.balances": self._balances,
            "instruments.list": self._instruments,
            "book.snapshot": self._book,
            "order.cancel_all": self._cancel_all,
            "account.fills": self._fills,
            "account.royalties": self._royalties,
            "instrument.info": self._instrument_info,
            "op.open_account": self._op_open_account,
            "op.deposit": self._op_deposit,
            "op.withdraw": self._op_withdraw,
            "op.list_asset": self._op_list_asset,
            "op.issue_shares": self._op_issue_shares,
            "op.open_offering": self._op_open_offering,
            "op.distribute_royalty": self._op_distribute_royalty,
            "op.kill_switch": self._op_kill_switch,
            "op.cancel_all": self._op_cancel_all,
            "op.halt": self._op_halt,
            "op.resume": self._op_resume,
            "op.start_auction": self._op_start_auction,
            "op.close_market": self._op_close_market,
        }

    @property
    def state(self) -> ExchangeState:
        return self.sequencer.exchange.state

    @property
    def _balances_store(self) -> Balances:
        return self.sequencer.exchange.balances

    # HTTP before the upgrade: health endpoints and the bearer token.

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer /livez, /readyz, /metrics and the dashboard; refuse a bad bearer token."""
        path, _, query = request.path.partition("?")  # Each endpoint matched by its path alone.
        if path == "/livez":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            return self.metrics.respond(connection)
        page = dashboard_http.respond(connection, request)  # None for an upgrade to "/".
        if page is not None:
            return page
        if path == "/readyz":
            ready = self.sequencer.running
            status = http.HTTPStatus.OK if ready else http.HTTPStatus.SERVICE_UNAVAILABLE
            if "verbose" in urllib.parse.parse_qs(query, keep_blank_values=True):
                response = connection.respond(status, json.dumps(self.readiness()) + "\n")
                del response.headers["Content-Type"]
                response.headers["Content-Type"] = "application/json"
                return response
            return connection.respond(status, "ready\n" if ready else "not ready\n")
        if self.sequencer.failed:  # Nothing is served from memory ahead of the journal.
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, STOPPED + "\n")
        # get_all, not get: websockets' get raises on a repeated header (a 500 for anyone).
        # Two tokens name no one session: the request is malformed, whichever is valid.
        headers = request.headers.get_all("Authorization")
        if len(headers) > 1:
            return connection.respond(
                http.HTTPStatus.BAD_REQUEST, f"send one Authorization header, not {len(headers)}\n"
            )
        if headers and self._bearer_account(headers[0]) is None:
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "invalid bearer token\n")
        return None

    def readiness(self) -> dict[str, Any]:
        """What /readyz?verbose answers: recovery, journal, and each integration's state."""
        recovery = self.recovery
        return {
            "ready": self.sequencer.running,
            # A Gateway only exists around a recovered exchange: recovery is always done.
            "recovery": {"done": True}
            | (
                {}
                if recovery is None
                else {
                    "snapshot_seq": recovery.snapshot_seq,
                    "replayed_records": recovery.replayed_records,
                    "seconds": round(recovery.seconds, 6),
                    "sessions_ended": recovery.sessions_ended,
                    "torn_bytes_truncated": recovery.torn_bytes_truncated,
                    # The journal's own account of the tail it cut (None: a clean end).
                    "torn_seq": self.sequencer.journal.recovery.torn_seq,
                    "torn_reason": self.sequencer.journal.recovery.torn_reason,
                }
            ),
            # The sequencer stops at the first journal failure: running means writable.
            "journal": {
                "writable": self.sequencer.running,
                "last_seq": self.sequencer.journal.last_seq,  # Durable: memory may be ahead.
            },
            # Derived data that switched itself off (it raised; the log says why) leaves the
            # exchange trading, so readiness does not depend on it; operators must see it.
            "market_data": {"running": not self._market_data_failed},
            "integrations": self._integrations(),
        }

    def _integrations(self) -> dict[str, dict[str, Any]]:
        states: dict[str, dict[str, Any]] = {}
        for publisher in self.publishers:
            if isinstance(publisher, RedisPublisher):
                stats = publisher.stats
                states["redis"] = {
                    "connected": publisher.connected,
                    "backlog": publisher.backlog,
                    "dropped": stats.outcomes_dropped,
                    "written": stats.outcomes_written,
                    # Refused by their ids: the keys are another journal's (the log says).
                    "refused": stats.outcomes_refused,
                    "last_journal_seq": stats.last_journal_seq,
                    "connection_errors": stats.connection_errors,
                }
            elif isinstance(publisher, _MqttFeed):
                mqtt = publisher.publisher
                states["mqtt"] = {
                    "connected": mqtt.connected,
                    "buffered": mqtt.buffered(),
                    "dropped": mqtt.stats.dropped,
                    "published": mqtt.stats.published,
                    "connect_failures": mqtt.stats.connect_failures,
                }
        return states

    def _sink_counts(self) -> list[SinkCounts]:
        return [_counts(publisher) for publisher in self.publishers]

    def add_publisher(self, publisher: Publisher) -> None:
        """Feed an integration every durable batch, and time its publish lag."""
        sink = _counts(publisher).sink
        source = _source(publisher)

        def written(seq: int) -> None:
            sample = self._lag_samples.get(publisher)
            if sample is not None and seq >= sample[0]:
                del self._lag_samples[publisher]
                self.metrics.observe_publisher_lag(sink, time.monotonic() - sample[1])

        source.on_written = written
        if isinstance(source, MqttPublisher):
            # Its snapshots read the state itself: never once memory may be ahead of the
            # journal, nor from market data frozen at its failure (it withdraws instead).
            source.state_showable = lambda: not (self.sequencer.failed or self._market_data_failed)
        self.market_data.follow_every_book()  # It takes every message of every symbol.
        self.publishers.append(publisher)

    def _sample_lag(self, first_seq: int) -> None:
        # One sample per sink at a time: the last seq it took from this batch, if it took any
        # (MQTT takes only some channels' messages; Redis every outcome).
        now = time.monotonic()
        for publisher in self.publishers:
            seq = _source(publisher).enqueued_seq
            if seq >= first_seq and publisher not in self._lag_samples:
                self._lag_samples[publisher] = (seq, now)

    def _bearer_account(self, header: str) -> str | None:
        token = _bearer_token(header)
        return None if token is None else self._account_of(token)

    def _account_of(self, token: str) -> str | None:
        account = self.tokens.account_of(token)
        if account is None or account not in self.state.accounts:
            return None
        return account

    # One connection.

    async def handle_connection(self, connection: ServerConnection) -> None:
        assert isinstance(connection, GatewayConnection), "serve(create_connection=...) makes it"
        session = Session(connection, session_id=f"{self._boot_id}-{next(self._session_numbers)}")
        header = _authorization(connection.request.headers if connection.request else None)
        if header is not None:
            session.account = self._bearer_account(header)
            session.token_sha256 = token_hash(_bearer_token(header) or "")
        try:
            if session.account is None and not await self._logon(connection, session):
                return
            connection.logged_on()  # No longer held against its address's pending cap.
            if self.sequencer.failed:  # Nothing more is served from memory (see _dispatch).
                await connection.close(1011, STOPPED)
                return
            if not self._register(session):
                limit = self.connections_per_token_max
                await connection.close(1008, f"LIMIT_EXCEEDED: {limit} connections per token")
                return
            # From here on each request is handled as its frame is parsed (_receive).
            connection.deliver_to(functools.partial(self._receive, session))
            await connection.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            self._unsubscribe(session)
            self._unregister(session)
            if session.asked_cancel_on_disconnect or session.session_id in self.state.sessions:
                await self._end_session(session)

    def _receive(self, session: Session, frame: str | bytes) -> bool:
        # Called by the connection for each request as it is parsed; says whether to read on.
        session.in_flight += 1
        self._answer(session, frame, time.perf_counter())
        return self._may_read(session)

    def _may_read(self, session: Session) -> bool:
        # At IN_FLIGHT_MAX unanswered requests, the write that frees slots resumes reading
        # (_flush_answers). A client that sends and does not read its answers: none of its
        # requests are read until the kernel has taken the backlog (the connection resumes
        # reading itself then: GatewayConnection.resume_writing). Bytes count, not requests:
        # the answers made and not yet written count with those written and not yet sent,
        # so a pipeline of requests with large answers stops being read after the one that
        # passes WRITE_BACKLOG_MAX, before the rest are made. (Once they are written, the
        # transport pauses past the same mark, so resume_writing comes when it drops below.)
        connection = session.connection
        return (
            session.in_flight < IN_FLIGHT_MAX
            and connection.writable
            and session.answer_bytes + connection.unsent_bytes <= WRITE_BACKLOG_MAX
        )

    def _register(self, session: Session) -> bool:
        token = session.token_sha256
        count = self._connections.get(token, 0)
        if count >= self.connections_per_token_max:
            return False
        self._connections[token] = count + 1
        session.registered = True
        self._sessions[session] = None
        return True

    def _unregister(self, session: Session) -> None:
        if session.registered:
            session.registered = False
            self._sessions.pop(session, None)
            token = session.token_sha256
            count = self._connections[token] - 1
            if count:
                self._connections[token] = count
            else:
                del self._connections[token]

    async def _end_session(self, session: Session) -> None:
        # The exchange applies the session's cancel-on-disconnect (exchange/disconnect.py), in
        # one command, after every command the session sent. Not while the server shuts down:
        # the restart ends every session the state still holds (end_stale_sessions).
        account = session.account
        assert account is not None
        command = EndSession(account, session.session_id)
        wait_s = END_SESSION_RETRY_S
        while True:
            try:
                await self.sequencer.submit(command)
                return
            except Overloaded:  # A full queue: wait a little and retry, never give up.
                await asyncio.sleep(wait_s)
                wait_s = min(2 * wait_s, END_SESSION_RETRY_MAX_S)
            except (Unavailable, SequencerStopped):  # Shutting down: the restart ends it.
                log.info("session %s is left for the restart to end", session.session_id)
                return

    def _set_cancel_on_disconnect(
        self, session: Session, params: protocol.CancelOnDisconnectParams
    ) -> Sequenced:
        assert session.account is not None
        session.asked_cancel_on_disconnect = True
        scope = params.scope if params.enabled else ""
        command = SetCancelOnDisconnect(session.account, session.session_id, scope)
        answer = {"cancel_on_disconnect": params.enabled, "scope": params.scope}
        return Sequenced(command, functools.partial(_fixed_answer, answer))

    def _subscribe_executions(self, session: Session) -> dict[str, Any]:
        assert session.account is not None
        if not session.executions:
            session.open_outbox(self.outbox_max, self.passes)
            session.executions = True
            self._subscribed.setdefault(session.account, {})[session] = None
        # The number of the account's last report: the next one pushed is seq + 1.
        return {"channel": "executions", "seq": self.state.accounts[session.account].execution_seq}

    def _subscribe_balances(self, session: Session) -> dict[str, Any]:
        # A snapshot of every balance first (again at each subscribe: a resync), then, after
        # each durable batch, the balances it changed, absolute.
        account = session.account
        assert account is not None
        session.open_outbox(self.outbox_max, self.passes)
        self.passes.start()
        session.balances = True
        self._balance_subscribed.setdefault(account, {})[session] = None
        balances = accounts.balances_view(self._balances_store, self.state.instruments, account)
        if not session.push_balances("snapshot", self.state.seq, balances):
            self._disconnect_slow(session)
        return {"channel": "balances", "seq": session.balances_seq}

    def _drop_balances(self, session: Session) -> None:
        if not session.balances:
            return
        session.balances = False
        sessions = self._balance_subscribed.get(session.account or "")
        if sessions is not None:
            sessions.pop(session, None)
            if not sessions:
                del self._balance_subscribed[session.account or ""]

    def _route_balances(self, outcomes: Sequence[Outcome]) -> None:
        subscribed = self._balance_subscribed
        store, instruments = self._balances_store, self.state.instruments
        for account, (journal_seq, assets) in accounts.balance_changes(
            outcomes, subscribed
        ).items():
            balances = {
                asset: accounts.balance_view(
                    asset, store.available(account, asset), store.held(account, asset), instruments
                )
                for asset in assets
            }
            for session in list(subscribed.get(account, ())):  # Some may have been dropped.
                if not session.push_balances("update", journal_seq, balances):
                    self._disconnect_slow(session)

    def _subscribe_market_data(
        self, session: Session, params: protocol.MarketDataParams
    ) -> dict[str, Any]:
        # Snapshots go into the outbox now, between two batches: every update queued after
        # them has a higher seq, so the client applies them in order.
        if self._market_data_failed:
            raise ProtocolError(503, "UNAVAILABLE", "market data is unavailable")
        self._instrument(params.symbol)
        session.open_outbox(self.outbox_max, self.passes)
        self.passes.start()
        seqs = {}
        for channel in dict.fromkeys(params.channels):
            key = (channel, params.symbol)
            subscribers = self._market_data_sessions.setdefault(key, {})
            if channel in BOOK_CHANNELS and session not in subscribers:
                self.market_data.watch_books(params.symbol)  # Before its snapshot.
            subscribers[session] = None
            session.market_data[key] = None
            if channel == liquidity.CHANNEL:
                figures = self.liquidity.view(params.symbol, time.time_ns())
                text, seq = liquidity.encode(figures), figures.seq
            else:
                text, seq = self._snapshot_text(channel, params.symbol)
            if not session.push_text(text):
                self._disconnect_slow(session)
            seqs[channel] = seq
        return {"symbol": params.symbol, "channels": seqs}

    def _snapshot_text(self, channel: str, symbol: str) -> tuple[bytes, int]:
        # Made and encoded once per state of the exchange: a burst of subscribes (or one
        # client repeating them: a book.l3 snapshot walks every resting order) costs one
        # snapshot per channel and symbol between two batches, not one each. The state moves
        # only by batches, and _on_batch empties the cache at each.
        cached = self._snapshots.get((channel, symbol))
        if cached is None:
            snapshot = self.market_data.snapshot(channel, symbol)
            cached = self._snapshots[(channel, symbol)] = (
                market_data.encode(snapshot),
                snapshot.seq,
            )
        return cached

    def _unsubscribe_market_data(
        self, session: Session, params: protocol.MarketDataParams
    ) -> dict[str, Any]:
        for channel in params.channels:
            self._drop_market_data(session, (channel, params.symbol))
        return {"symbol": params.symbol, "channels": list(dict.fromkeys(params.channels))}

    def _drop_market_data(self, session: Session, key: tuple[str, str]) -> None:
        session.market_data.pop(key, None)
        sessions = self._market_data_sessions.get(key)
        if sessions is not None and session in sessions:
            del sessions[session]
            if key[0] in BOOK_CHANNELS:
                self.market_data.unwatch_books(key[1])
            if not sessions:
                del self._market_data_sessions[key]

    def _subscribe_channel(
        self, session: Session, params: protocol.ChannelParams
    ) -> dict[str, Any]:
        # `subscribe {channel, symbol?}`: the issue's spelling of the two subscriptions.
        if params.channel == "executions" or params.channel == "balances":
            if params.symbol:
                raise protocol.validation_error(f"the {params.channel} channel takes no symbol")
            if params.channel == "balances":
                return self._subscribe_balances(session)
            return self._subscribe_executions(session)
        if not params.symbol:
            raise protocol.validation_error(f"channel {params.channel} needs a symbol")
        md = protocol.MarketDataParams(symbol=params.symbol, channels=[params.channel])
        result = self._subscribe_market_data(session, md)
        return {
            "channel": params.channel,
            "symbol": params.symbol,
            "seq": result["channels"][params.channel],
        }

    def _unsubscribe_channel(
        self, session: Session, params: protocol.ChannelParams
    ) -> dict[str, Any]:
        if params.channel == "executions":
            sessions = self._subscribed.get(session.account or "")
            if session.executions and sessions is not None:
                session.executions = False
                sessions.pop(session, None)
                if not sessions:
                    del self._subscribed[session.account or ""]
        elif params.channel == "balances":
            self._drop_balances(session)
        else:
            self._drop_market_data(session, (params.channel, params.symbol))
        return {"channel": params.channel, "symbol": params.symbol}

    def _unsubscribe(self, session: Session) -> None:
        if session.account is not None and session.executions:
            session.executions = False
            sessions = self._subscribed.get(session.account)
            if sessions is not None:
                sessions.pop(session, None)
                if not sessions:
                    del self._subscribed[session.account]
        self._drop_balances(session)
        for key in list(session.market_data):
            self._drop_market_data(session, key)
        if session.writer is not None:
            session.writer.cancel()

    def _observe(self, outcome: Outcome) -> list[market_data.Message]:
        # Runs in the sequencer right after each command. Market data is derived: if it
        # breaks, the exchange carries on and its subscribers are told (1011).
        if self._market_data_failed:
            return []
        try:
            messages = self.market_data.on_outcome(outcome)
            self.liquidity.on_outcome(outcome)
            return messages
        except Exception:
            log.exception("market data failed at seq %d: switched off", outcome.seq)
            self._market_data_failed = True
            self._market_data_failed_seq = outcome.seq
            return []

    def _on_batch(self, outcomes: Sequence[Outcome], messages: Sequence[Any]) -> None:
        # Called by the sequencer once the batch is durable.
        self._snapshots.clear()  # All of the state before this batch.
        self.passes.start()
        self.fills.record(outcomes)
        self.metrics.observe_outcomes(outcomes)
        if order_log.isEnabledFor(logging.INFO):  # Off the hot path unless wanted.
            _log_orders(outcomes, order_log.isEnabledFor(logging.DEBUG))
        if self.publishers:
            self._publish(outcomes, messages)
            if self._market_data_failed_seq:
                self._end_published_market_data()
        if self._subscribed:
            self._route_executions(outcomes)
        if self._balance_subscribed:
            self._route_balances(outcomes)
        if self._market_data_sessions:
            self._route_market_data(messages)
        if outcomes and not self._market_data_failed:
            self._liquidity_pending.update(dict.fromkeys(self.liquidity.take_changed()))
            self._publish_liquidity(outcomes[-1].ts_ns, time.monotonic_ns())
        if self._market_data_failed and self._market_data_sessions:
            for session in {s for group in self._market_data_sessions.values() for s in group}:
                self._unsubscribe(session)
                self._close_later(session, 1011, "market data failed; reconnect later")

    def _end_published_market_data(self) -> None:
        # Once, with the batch market data failed in: Redis ends each instrument stream and
        # drops its last values (MQTT sees state_showable turn False and withdraws itself).
        first_seq, self._market_data_failed_seq = self._market_data_failed_seq, 0
        symbols = sorted(self.state.instruments)
        for publisher in self.publishers:
            if isinstance(publisher, RedisPublisher):
                publisher.market_data_stopped(first_seq, symbols)

    def _publish(self, outcomes: Sequence[Outcome], messages: Sequence[Any]) -> None:
        by_seq: dict[int, list[market_data.Message]] = {}
        for message in messages:
            by_seq.setdefault(message.journal_seq, []).append(message)
        for outcome in outcomes:
            own = by_seq.get(outcome.seq, [])
            for publisher in self.publishers:
                publisher.publish(outcome, own)
        if outcomes:
            self._sample_lag(outcomes[0].seq)

    def _route_executions(self, outcomes: Sequence[Outcome]) -> None:
        subscribed = self._subscribed
        reports = [
            (outcome.seq, event)
            for outcome in outcomes
            for event in outcome.events
            if event.__class__ in PRIVATE_EVENTS and event.account in subscribed  # type: ignore[union-attr]
        ]
        if not reports:
            return
        # Released before the next batch is handled, so an account's execution_seq is the
        # number of its last report in this batch: count back to its first one.
        in_batch: dict[str, int] = {}
        for _, event in reports:
            account = event.account  # type: ignore[union-attr]
            in_batch[account] = in_batch.get(account, 0) + 1
        accounts = self.state.accounts
        next_seq = {
            account: accounts[account].execution_seq - count + 1
            for account, count in in_batch.items()
        }
        instruments = self.state.instruments
        encode = protocol.encode_push
        for journal_seq, event in reports:
            account = event.account  # type: ignore[union-attr]
            seq = next_seq[account]
            next_seq[account] = seq + 1
            sessions = subscribed.get(account)
            if not sessions:  # Its last session was dropped as slow earlier in this batch.
                continue
            view = execution_reports.report_view(event, instruments)
            report = execution_reports.ExecutionReportPush(
                "update", seq, seq - 1, journal_seq, view
            )
            text = encode(report)  # Once for every session of the account.
            for session in list(sessions):
                if not session.push_text(text):
                    self._disconnect_slow(session)

    def _route_market_data(self, messages: Sequence[market_data.Message]) -> None:
        subscribers = self._market_data_sessions
        for message in messages:
            sessions = subscribers.get((market_data.channel_of(message), message.symbol))
            if not sessions:
                continue
            text = market_data.encode(message)  # Encoded once for every subscriber.
            for session in list(sessions):
                if not session.push_text(text):
                    self._disconnect_slow(session)

    def _publish_liquidity(self, now_ns: int, monotonic_ns: int, refresh: bool = False) -> None:
        # An update per pending symbol (every watched one on a refresh) that someone receives,
        # unless the symbol had one less than LIQUIDITY_UPDATE_MIN_NS ago (then it waits).
        watched = self._liquidity_watched()
        symbols = watched if refresh else [s for s in self._liquidity_pending if s in watched]
        gap_ns = LIQUIDITY_UPDATE_MIN_NS
        for symbol in symbols:
            if not refresh and monotonic_ns - self._liquidity_sent.get(symbol, -gap_ns) < gap_ns:
                continue
            self._liquidity_pending.pop(symbol, None)
            self._liquidity_sent[symbol] = monotonic_ns
            message = self.liquidity.update(symbol, now_ns)
            for sink in self.liquidity_sinks:
                sink(message)
            sessions = self._market_data_sessions.get((liquidity.CHANNEL, symbol))
            if sessions:
                text = liquidity.encode(message)
                for session in list(sessions):
                    if not session.push_text(text):
                        self._disconnect_slow(session)
        if refresh:
            self._liquidity_pending.clear()

    def _liquidity_watched(self) -> dict[str, None]:
        # The symbols whose liquidity someone receives: every one with a sink, else those
        # with a subscriber.
        if self.liquidity_sinks:
            return dict.fromkeys(self.liquidity.symbols)
        return {
            symbol: None
            for channel, symbol in self._market_data_sessions
            if channel == liquidity.CHANNEL
        }

    def _liquidity_figures(self) -> list[liquidity.LiquidityMessage]:
        # For /metrics, read when scraped (on the event loop, between two batches); not after
        # a journal failure, when the figures may include the lost batch.
        if self._market_data_failed or self.sequencer.failed:
            return []
        now_ns = time.time_ns()
        return [self.liquidity.view(symbol, now_ns) for symbol in self.liquidity.symbols]

    async def send_heartbeats(self, interval_s: float = HEARTBEAT_INTERVAL_S) -> None:
        """Every interval, push a heartbeat per symbol to the sessions subscribed to it.

        Liquidity is refreshed at the same pace: an update per watched symbol.
        """
        while True:
            await asyncio.sleep(interval_s)
            if self._market_data_failed or self.sequencer.failed:
                continue  # After a journal failure memory is ahead of the journal: say nothing.
            self.passes.start()
            by_symbol: dict[str, dict[Session, None]] = {}
            for (_, symbol), sessions in self._market_data_sessions.items():
                by_symbol.setdefault(symbol, {}).update(sessions)
            now_ns = time.time_ns()
            for symbol, sessions in by_symbol.items():
                text = market_data.encode(self.market_data.heartbeat(symbol, now_ns))
                for session in list(sessions):
                    if not session.push_text(text):
                        self._disconnect_slow(session)
            self._publish_liquidity(now_ns, time.monotonic_ns(), refresh=True)

    async def watch_tokens(self, interval_s: float = TOKEN_POLL_S) -> None:
        """Every interval, re-read tokens.json if it changed; close revoked tokens' sessions."""
        checked = self.tokens.generation
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.tokens.reload_if_changed()  # A logon may have reloaded it already.
                if self.tokens.generation != checked:
                    checked = self.tokens.generation
                    self.close_revoked()
            except Exception:  # Were it a bug: revocations must go on being applied.
                log.exception("token watch failed; looking again in %.2f s", interval_s)

    def close_revoked(self) -> None:
        """Close (4001 "token revoked") every session whose token is no longer valid."""
        for session in list(self._sessions):
            if not self.tokens.is_valid(session.token_sha256):
                self._unregister(session)
                self._unsubscribe(session)
                self._close_later(session, TOKEN_REVOKED_CODE, "token revoked")

    def _close_later(self, session: Session, code: int, reason: str) -> None:
        # A task kept until done (the loop holds only weak references to tasks).
        task = asyncio.create_task(session.connection.close(code, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _disconnect_slow(self, session: Session) -> None:
        if session.writer is None or session.writer.done():
            return  # Already being closed.
        self._unsubscribe(session)
        self.metrics.slow_consumer_disconnected()
        reason = f"SLOW_CONSUMER: more than {self.outbox_max} pushes unread"
        # It does not read: waiting the usual 10 s for its close frame would only hold the
        # connection open. It gets SLOW_CLOSE_TIMEOUT_S to read the close, then is dropped.
        session.connection.close_timeout = SLOW_CLOSE_TIMEOUT_S
        self._close_later(session, 1008, reason)

    async def _logon(self, connection: GatewayConnection, session: Session) -> bool:
        # The first frame of an unauthenticated connection must be a good session.logon.
        try:
            frame = await asyncio.wait_for(connection.receive(), self.logon_timeout_s)
        except TimeoutError:
            await connection.close(1008, "no logon in time")
            return False
        request_id: str | None = None
        try:
            request = _decode_text_frame(frame)
            request_id = request.id
            if request.method != "session.logon":
                raise protocol.unauthorized("log on first: session.logon {token}")
            params = protocol.decode_params(request)
            if self.sequencer.failed:  # Not even whether the account exists (see _dispatch).
                await connection.close(1011, STOPPED)
                return False
            account = self._account_of(params.token)
            if account is None:
                raise protocol.unauthorized("unknown or revoked token")
        except ProtocolError as error:
            self.metrics.observe_edge_rejection(error.code, "session.logon")
            await connection.send(_error_text(request_id or error.request_id, error))
            await connection.close(1008, "authentication failed")
            return False
        session.account = account
        session.token_sha256 = token_hash(params.token)
        await connection.send(
            _text(protocol.encode_result(request_id, self._logon_result(account)))
        )
        return True

    def _logon_result(self, account: str) -> dict[str, Any]:
        return {"account": account, "role": self.state.accounts[account].role.value}

    def _answer(self, session: Session, frame: str | bytes, started: float) -> None:
        # Answers at once, or (a command) when the sequencer resolves its outcome, durable:
        # no task per request, and the answer written without awaiting (see _send_answer).
        request_id = method = None
        try:
            request = _decode_text_frame(frame)
            request_id, method = request.id, request.method
            result = self._dispatch(session, request)
            if isinstance(result, Sequenced):
                try:
                    self.sequencer.enqueue_call(
                        result.command,
                        functools.partial(
                            self._answer_outcome, session, request_id, result, started
                        ),
                    )
                except BaseException:
                    if result.done is not None:
                        result.done()
                    raise
                return
            answer = protocol.encode_result(request_id, result)
        except Exception as error:
            answer = self._error_answer(request_id, error)
            # Refused here, before the core: counted as observe_outcomes counts the core's.
            self.metrics.observe_edge_rejection(_refusal_code(error), method)
        self._send_answer(session, answer, started)

    def _answer_outcome(
        self,
        session: Session,
        request_id: str,
        sequenced: Sequenced,
        started: float,
        outcome: Outcome | BaseException,
    ) -> None:
        # Called by the sequencer once the command is durable (or with SequencerStopped).
        if sequenced.done is not None:
            sequenced.done()
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            if sequenced.answer is None:
                _raise_if_rejected(outcome)
                assert outcome.reply is not None, "a handled command always has a reply"
                result = execution_reports.decimal_view(outcome.reply, self.state.instruments)
            else:
                result = sequenced.answer(outcome)
            answer = protocol.encode_result(request_id, result)
        except Exception as error:
            answer = self._error_answer(request_id, error)
        self._send_answer(session, answer, started)

    def _send_answer(self, session: Session, answer: bytes, started: float) -> None:
        # Queued, and written with the rest of this loop pass's answers to the same connection
        # by _flush_answers, scheduled once per pass: the answers a durable batch releases
        # (their callbacks run in one pass) leave in one socket write per connection instead of
        # one each. The in-flight slot is freed once the answer is written.
        session.answers.append(answer)
        session.answer_bytes += len(answer)
        self.metrics.observe_ack(time.perf_counter() - started)
        if len(session.answers) == 1:
            if not self._unsent:
                asyncio.get_running_loop().call_soon(self._flush_answers)
            self._unsent[session] = None

    def _flush_answers(self) -> None:
        unsent, self._unsent = self._unsent, {}
        for session in unsent:
            answers, session.answers = session.answers, []
            session.answer_bytes = 0
            try:
                session.connection.write_texts(answers)
            except Exception as error:  # One broken connection must not cost the others.
                log.warning("answers to %s not written: %r", session.account, error)
            finally:
                session.in_flight -= len(answers)
                if self._may_read(session):
                    session.connection.resume()

    def _dispatch(self, session: Session, request: protocol.Request) -> Any:
        """Check the request; return its result, or Sequenced for the sequencer."""
        if self.sequencer.failed:
            # The failed batch is in memory but not in the journal, and the restart will not
            # have it: answering from memory would show what never happened.
            raise ProtocolError(
                503, "UNAVAILABLE", "the exchange stopped on a failure: nothing was done; "
                "reconnect after the restart and query the order by its cl_ord_id",
            )  # fmt: skip
        params = protocol.decode_params(request)
        account = session.account
        assert account is not None
        if request.method == "session.logon":
            raise protocol.validation_error("this session is already logged on")
        if not self.tokens.is_valid(session.token_sha256):
            raise protocol.unauthorized("token revoked")  # Closing within TOKEN_POLL_S.
        if request.method in RATE_LIMITED_METHODS:
            self._admit(account)
        if request.method in SESSION_METHODS:
            return SESSION_METHODS[request.method](self, session, params)
        if request.method.startswith(protocol.OPERATOR_PREFIX):
            self._require_operator(account)
        return self._methods[request.method](account, params)

    @staticmethod
    def _error_answer(request_id: str | None, error: Exception) -> bytes:
        """The typed error answer for what a request raised."""
        if isinstance(error, ProtocolError):
            return _error_bytes(request_id or error.request_id, error)
        if isinstance(error, Overloaded):
            return _error_bytes(request_id, ProtocolError(503, "OVERLOADED", str(error)))
        if isinstance(error, Unavailable):
            return _error_bytes(request_id, ProtocolError(503, "UNAVAILABLE", str(error)))
        if isinstance(error, SequencerStopped):
            message = f"{error}: query the order by its client id"
            return _error_bytes(request_id, ProtocolError(500, "INTERNAL", message))
        log.error("request %r failed", request_id, exc_info=error)
        internal = ProtocolError(500, "INTERNAL", "internal error: query the order by its id")
        return _error_bytes(request_id, internal)

    def _admit(self, account: str) -> None:
        wait_ms = self.rate_limiter.admit(account)
        if wait_ms is not None:
            raise ProtocolError(
                429,
                "RATE_LIMITED",
                f"more than {self.rate_limiter.burst} orders at once or "
                f"{self.rate_limiter.rate_per_s:g} a second: retry in {wait_ms} ms",
                retry_after_ms=wait_ms,
            )

    def _require_operator(self, account: str) -> None:
        if self.state.accounts[account].role is not Role.OPERATOR:
            raise protocol.forbidden("this method needs an operator account")

    # Orders.

    def _instrument(self, symbol: str) -> Instrument:
        instrument = self.state.instruments.get(symbol)
        if instrument is None:
            raise protocol.rejection(Reject.UNKNOWN_SYMBOL, f"no instrument {symbol!r}")
        return instrument

    def _place(self, session: Session, params: protocol.PlaceParams) -> Any:
        # Named with its session (PlaceOrder.session_id): the session's end may cancel it.
        account = session.account
        assert account is not None
        instrument = self._instrument(params.symbol)
        terms = instrument.terms
        if params.type is OrderType.MARKET:
            if params.price is not None:
                raise protocol.validation_error("a market order takes no price")
            price_ticks = 0
        elif params.price is None:
            raise protocol.validation_error("a limit order needs a price")
        else:
            price_ticks = protocol.price_to_ticks(
                params.price, terms.currency, terms.tick_size_minor
            )
        command = PlaceOrder(
            account,
            params.symbol,
            params.cl_ord_id,
            params.side,
            params.type,
            params.time_in_force,
            price_ticks,
            params.quantity,
            params.post_only,
            params.stp_mode,
            params.expire_ts_ns,
            session.session_id,
        )
        placing = session.placing
        placing[params.cl_ord_id] = placing.get(params.cl_ord_id, 0) + 1
        done = functools.partial(_placed_or_refused, placing, params.cl_ord_id)
        return Sequenced(command, functools.partial(self._placed, account), done)

    def _placed(self, account: str, outcome: Outcome) -> Any:
        reply = outcome.reply
        if isinstance(reply, OrderRejected):
            raise protocol.rejection(reply.reason, reply.message)
        assert reply is not None and hasattr(reply, "order_id")
        order_id: int = reply.order_id
        view = self._order_view(account, order_id)
        events: Sequence[Event] = outcome.events
        if not any(event is reply for event in events):
            # A resend: the exchange answered with the first outcome's reply, and keeps the
            # fills of that arrival with it (today's, or yesterday's after the day roll: today
            # a new order may have taken the cl_ord_id, so the one with this order id).
            events = ()
            state = self.state
            key = (account, view["cl_ord_id"])
            for client_orders in (state.client_orders, state.client_orders_yesterday):
                client_order = client_orders.get(key)
                if client_order is not None and client_order.order_id == order_id:
                    events = client_order.fills
                    break
        view["fills"] = [
            self._fill_view(event)
            for event in events
            if isinstance(event, OrderFilled) and event.order_id == order_id
        ]
        return view

    def _cancel(self, session: Session, params: protocol.OrderRefParams) -> Any:
        # Cancels are not rate limited, so one that can cancel nothing is refused here, as the
        # core would refuse it, rather than journaled: else a flood of them fills the disk. By
        # cl_ord_id, an order.place still in flight on this session is let through: the
        # cancel follows it in the queue. (An order id is known only once its order is in
        # the state; a place in flight on another session has no order yet, either way.)
        account = session.account
        assert account is not None
        _require_reference(params.order_id, params.cl_ord_id)
        order = find_own_order(self.state, account, params.order_id, params.cl_ord_id)
        placing = not params.order_id and params.cl_ord_id in session.placing
        if order is None and not placing:
            raise protocol.rejection(Reject.UNKNOWN_ORDER, NO_SUCH_ORDER)
        command = CancelOrder(account, params.order_id, params.cl_ord_id)
        return Sequenced(command, functools.partial(self._canceled, account))

    def _canceled(self, account: str, outcome: Outcome) -> Any:
        reply = outcome.reply
        if isinstance(reply, CommandRejected):
            raise protocol.rejection(reply.reason, reply.message)
        assert isinstance(reply, OrderCanceled)
        view = self._order_view(account, reply.order_id)
        view["canceled_units"] = reply.canceled_units
        return view

    def _amend(self, account: str, params: protocol.AmendParams) -> Any:
        _require_reference(params.order_id, params.cl_ord_id)
        order = find_own_order(self.state, account, params.order_id, params.cl_ord_id)
        if order is None:
            raise protocol.rejection(Reject.UNKNOWN_ORDER, NO_SUCH_ORDER)
        terms = order.instrument.terms
        price_ticks = protocol.price_to_ticks(params.price, terms.currency, terms.tick_size_minor)
        command = AmendOrder(
            account, price_ticks, params.quantity, params.order_id, params.cl_ord_id
        )
        return Sequenced(command, functools.partial(self._amended, account, order.order_id))

    def _amended(self, account: str, order_id: int, outcome: Outcome) -> Any:
        reply = outcome.reply
        if isinstance(reply, CommandRejected):
            raise protocol.rejection(reply.reason, reply.message)
        return self._order_view(account, order_id)

    def _status(self, account: str, params: protocol.OrderRefParams) -> Any:
        _require_reference(params.order_id, params.cl_ord_id)
        state = self.state
        order_id, cl_ord_id = params.order_id, params.cl_ord_id
        if order_id:
            # An order the book refused got an id but never lived: found by it all the same.
            rejected = state.rejected_order(order_id)
            if rejected is None or rejected[0] != account:
                return self._order_view(account, order_id)
            cl_ord_id = rejected[1]
        client_order = state.client_order(account, cl_ord_id)  # Yesterday's too.
        if client_order is None:
            raise protocol.rejection(Reject.UNKNOWN_ORDER, NO_SUCH_ORDER)
        reply = client_order.reply
        if isinstance(reply, OrderRejected):
            return {
                "order_id": client_order.order_id,
                "cl_ord_id": cl_ord_id,
                "symbol": reply.symbol,
                "status": "rejected",
                "reason": reply.reason.value,
                "message": reply.message,
            }
        return self._order_view(account, client_order.order_id)

    def _open_orders(self, account: str, params: protocol.PageParams) -> Any:
        # A page, in order_id order: an account may hold OPEN_ORDERS_PER_ACCOUNT_MAX orders,
        # far too many for one answer. Ids are given in order, so the account's open orders
        # are nearly sorted already (sorting them costs about a copy).
        state = self.state
        orders, symbol, limit = state.orders, params.symbol, params.limit
        order_ids = sorted(state.accounts[account].open_orders)
        views: list[dict[str, Any]] = []
        next_after = None
        for index in range(bisect.bisect_right(order_ids, params.after), len(order_ids)):
            order_id = order_ids[index]
            if symbol and orders[order_id].instrument.terms.symbol != symbol:
                continue
            if len(views) == limit:  # One more matches: the page is not the last.
                next_after = views[-1]["order_id"]
                break
            views.append(self._order_view(account, order_id))
        return {"orders": views, "next": next_after}

    def _order_view(self, account: str, order_id: int) -> dict[str, Any]:
        """Describe one of the account's orders; someone else's is UNKNOWN_ORDER, like no order."""
        state = self.state
        order = state.orders.get(order_id)
        open_ = order is not None
        if order is None:
            order = state.finished_order(order_id)  # Ended today or yesterday.
        if order is None or order.account != account:
            raise protocol.rejection(Reject.UNKNOWN_ORDER, NO_SUCH_ORDER)
        instrument = order.instrument
        terms = instrument.terms
        if open_:
            book_order = instrument.book.order(order_id)
            leaves = book_order.leaves_units if book_order is not None else 0
            status = "partially_filled" if order.cum_units else "open"
        else:
            leaves = 0
            status = "filled" if order.cum_units == order.quantity_units else "canceled"
        return {
            "order_id": order.order_id,
            "cl_ord_id": order.cl_ord_id,
            "symbol": terms.symbol,
            "side": order.side.value,
            "type": order.order_type.value,
            "time_in_force": order.time_in_force.value,
            "price": protocol.ticks_to_price(
                order.price_ticks, terms.currency, terms.tick_size_minor
            ),
            "quantity": order.quantity_units,
            "filled": order.cum_units,
            "leaves": leaves,
            "status": status,
        }

    def _fill_view(self, event: OrderFilled) -> dict[str, Any]:
        terms = self.state.instruments[event.symbol].terms
        return {
            "trade_id": event.trade_id,
            "price": protocol.ticks_to_price(
                event.price_ticks, terms.currency, terms.tick_size_minor
            ),
            "quantity": event.quantity_units,
            "liquidity": event.liquidity.value,
            "fee": protocol.minor_to_amount(event.fee_minor, terms.currency),
        }

    def _cancel_all(self, account: str, params: protocol.SymbolFilterParams) -> Any:
        if params.symbol:
            self._instrument(params.symbol)
        return Sequenced(CancelAll(account, account, params.symbol))

    # Account and market.

    def _fills(self, account: str, params: protocol.PageParams) -> Any:
        return self.fills.view(self.state, account, params.symbol, params.limit, params.after)

    def _royalties(self, account: str, params: protocol.NoParams) -> Any:
        return accounts.royalties_view(self.state, self.sequencer.exchange.balances, account)

    def _instrument_info(self, account: str, params: protocol.SymbolParams) -> Any:
        return accounts.instrument_info(self.state, self._instrument(params.symbol))

    def _balances(self, account: str, params: protocol.NoParams) -> Any:
        balances = accounts.balances_view(self._balances_store, self.state.instruments, account)
        return {"account": account, "balances": balances}

    def _instruments(self, account: str, params: protocol.NoParams) -> Any:
        return {
            "instruments": [
                self._instrument_view(instrument)
                for _, instrument in sorted(self.state.instruments.items())
            ]
        }

    def _instrument_view(self, instrument: Instrument) -> dict[str, Any]:
        terms = instrument.terms
        currency, tick = terms.currency, terms.tick_size_minor

        def price(ticks: int) -> str | None:
            return protocol.ticks_to_price(ticks, currency, tick) if ticks else None

        return {
            "symbol": terms.symbol,
            "patent_id": terms.patent_id,
            "title": instrument.asset.listing.title,
            "currency": currency,
            "tick_size": protocol.minor_to_amount(tick, currency),
            "lot_size_units": terms.lot_size_units,
            "total_units": terms.total_units,
            "maker_fee_bps": terms.maker_fee_bps,
            "taker_fee_bps": terms.taker_fee_bps,
            "trading_mode": terms.trading_mode.value,
            "phase": instrument.phase.value,
            "reference_price": price(instrument.reference_price_ticks),
            "last_price": price(instrument.last_price_ticks),
            "price_band": [price(instrument.static_low), price(instrument.static_high)],
        }

    def _book(self, account: str, params: protocol.BookParams) -> Any:
        instrument = self._instrument(params.symbol)
        terms = instrument.terms
        bids, asks = instrument.book.l2(params.depth)

        def levels(side: list[tuple[int, int]]) -> list[list[Any]]:
            return [
                [protocol.ticks_to_price(price, terms.currency, terms.tick_size_minor), units]
                for price, units in side
            ]

        return {
            "symbol": terms.symbol,
            "phase": instrument.phase.value,
            "seq": self.sequencer.exchange.seq,
            "bids": levels(bids),
            "asks": levels(asks),
        }

    # Operator methods.

    def _op_open_account(self, account: str, params: protocol.OpenAccountParams) -> Any:
        return Sequenced(OpenAccount(account, params.account_id, params.role))

    def _op_deposit(self, account: str, params: protocol.DepositParams) -> Any:
        amount = protocol.amount_to_minor(params.amount, params.currency)
        return Sequenced(Deposit(account, params.account_id, params.currency, amount))

    def _op_list_asset(self, account: str, params: protocol.ListAssetParams) -> Any:
        trailing = protocol.amount_to_minor(
            params.trailing_royalties, params.currency, "trailing_royalties"
        )
        command = ListAsset(
            account,
            params.patent_id,
            params.title,
            params.jurisdiction,
            params.owner_account,
            params.filing_date,
            params.expiry_date,
            params.cpc_class,
            tuple(params.licensees),
            params.royalty_terms,
            params.currency,
            trailing,
            tuple(params.family),
        )
        return Sequenced(command)

    def _op_issue_shares(self, account: str, params: protocol.IssueSharesParams) -> Any:
        tick = protocol.amount_to_minor(params.tick_size, params.currency, "tick_size")
        if tick == 0:
            raise protocol.validation_error("the tick size must be positive")
        reference = protocol.price_to_ticks(params.reference_price, params.currency, tick)
        command = IssueShares(
            account,
            params.patent_id,
            params.symbol,
            params.issuer_account,
            params.total_units,
            params.currency,
            tick,
            params.lot_size_units,
            params.maker_fee_bps,
            params.taker_fee_bps,
            reference,
            params.static_band_bps,
            params.dynamic_band_bps,
            params.volatility_auction_ns,
            params.opening_auction_ns,
            params.trading_mode,
            params.auction_interval_ns,
        )
        return Sequenced(command)

    def _op_withdraw(self, account: str, params: protocol.WithdrawParams) -> Any:
        amount = protocol.amount_to_minor(params.amount, params.currency)
        return Sequenced(Withdraw(account, params.account_id, params.currency, amount))

    def _op_open_offering(self, account: str, params: protocol.OpenOfferingParams) -> Any:
        terms = self._instrument(params.symbol).terms
        minimum = protocol.price_to_ticks(params.min_price, terms.currency, terms.tick_size_minor)
        command = OpenOffering(
            account, params.symbol, params.units, minimum, params.end_ts_ns, params.all_or_none
        )
        return Sequenced(command)

    def _op_distribute_royalty(self, account: str, params: protocol.DistributeRoyaltyParams) -> Any:
        currency = self._instrument(params.symbol).terms.currency
        amount = protocol.amount_to_minor(params.amount, currency)
        command = DistributeRoyalty(
            account, params.symbol, amount, params.payer_account, params.period_id
        )
        return Sequenced(command)

    def _op_kill_switch(self, account: str, params: protocol.KillSwitchParams) -> Any:
        return Sequenced(KillSwitch(account, params.account_id, params.engaged))

    def _op_cancel_all(self, account: str, params: protocol.AccountCancelAllParams) -> Any:
        if params.symbol:  # As _cancel_all: a misspelt symbol is refused, not journaled.
            self._instrument(params.symbol)
        return Sequenced(CancelAll(account, params.account_id, params.symbol))

    def _op_start_auction(self, account: str, params: protocol.StartAuctionParams) -> Any:
        return Sequenced(StartAuction(account, params.symbol, params.duration_ns))

    def _op_close_market(self, account: str, params: protocol.SymbolParams) -> Any:
        return Sequenced(CloseMarket(account, params.symbol))

    def _op_halt(self, account: str, params: protocol.SymbolParams) -> Any:
        return Sequenced(Halt(account, params.symbol))

    def _op_resume(self, account: str, params: protocol.SymbolParams) -> Any:
        return Sequenced(Resume(account, params.symbol))

    def drain(self) -> None:
        """Write the answers that wait, before the connections are closed.

        Once the sequencer's task has ended, every command it took has been answered (its
        callback runs in the batch's release) or told SequencerStopped.
        """
        self._flush_answers()


SESSION_METHODS: dict[str, Callable[[Gateway, Session, Any], Any]] = {
    "executions.subscribe": lambda gateway, session, _: gateway._subscribe_executions(session),
    "md.subscribe": Gateway._subscribe_market_data,
    "md.unsubscribe": Gateway._unsubscribe_market_data,
    "order.place": Gateway._place,
    "order.cancel": Gateway._cancel,
    "session.cancel_on_disconnect": Gateway._set_cancel_on_disconnect,
    "subscribe": Gateway._subscribe_channel,
    "unsubscribe": Gateway._unsubscribe_channel,
}


def _refusal_code(error: Exception) -> str | None:
    """The code _error_answer refuses a request with; None for a failure (INTERNAL)."""
    if isinstance(error, ProtocolError):
        return error.code
    if isinstance(error, Overloaded):
        return "OVERLOADED"
    if isinstance(error, Unavailable):
        return "UNAVAILABLE"
    return None


def _raise_if_rejected(outcome: Outcome) -> None:
    reply = outcome.reply
    if isinstance(reply, CommandRejected):
        raise protocol.rejection(reply.reason, reply.message)


def _placed_or_refused(placing: dict[str, int], cl_ord_id: str) -> None:
    # An order.place is no longer in flight on its session (Session.placing).
    count = placing[cl_ord_id] - 1
    if count:
        placing[cl_ord_id] = count
    else:
        del placing[cl_ord_id]


def _fixed_answer(answer: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    _raise_if_rejected(outcome)
    return answer


@dataclass(slots=True)  # Not frozen: one per command, and a frozen __init__ costs more.
class Sequenced:
    """A method's command for the sequencer, and how its outcome becomes the answer."""

    command: Command
    # None: the reply event, with decimal strings beside its ticks and minor units.
    answer: Callable[[Outcome], Any] | None = None
    # Called once the command is answered: its outcome came, or it never reached the queue.
    done: Callable[[], None] | None = None


def _log_orders(outcomes: Sequence[Outcome], debug: bool) -> None:
    for outcome in outcomes:
        for event in outcome.events:
            if not isinstance(event, ORDER_EVENTS):
                continue
            fields: dict[str, Any] = {
                "journal_seq": outcome.seq,
                "order_id": event.order_id,
                "cl_ord_id": event.cl_ord_id,
                "account": event.account,
                "symbol": event.symbol,
            }
            if isinstance(event, OrderRejected):
                fields["reason"] = event.reason.value
                order_log.info("order rejected: %s", event.message, extra=fields)
            elif isinstance(event, OrderFilled):
                fields |= {
                    "trade_id": event.trade_id,
                    "side": event.side.value,
                    "price_ticks": event.price_ticks,
                    "quantity_units": event.quantity_units,
                    "liquidity": event.liquidity.value,
                }
                order_log.info("trade", extra=fields)
            elif debug:
                order_log.debug(type(event).__name__, extra=fields)


def _decode_text_frame(frame: str | bytes) -> protocol.Request:
    if not isinstance(frame, str):
        raise protocol.validation_error("binary frames are not accepted: send JSON text")
    return protocol.decode_request(frame)


def _require_reference(order_id: int, cl_ord_id: str) -> None:
    if (order_id == 0) == (cl_ord_id == ""):
        raise protocol.validation_error("name the order by exactly one of order_id or cl_ord_id")


def _bearer_token(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _authorization(headers: Headers | None) -> str | None:
    # The one Authorization header: process_request refused an upgrade with more than one.
    values = [] if headers is None else headers.get_all("Authorization")
    return values[0] if len(values) == 1 else None


def _text(payload: bytes) -> str:
    return payload.decode()


def _error_bytes(request_id: str | None, error: ProtocolError) -> bytes:
    return protocol.encode_error(
        request_id, error.status, error.code, error.message, error.retry_after_ms
    )


def _error_text(request_id: str | None, error: ProtocolError) -> str:
    return _text(_error_bytes(request_id, error))


# Running it.


@dataclass(slots=True)
class RunningServer:
    host: str
    port: int
    gateway: Gateway
    server: Server
    sequencer_task: asyncio.Task[None]
    tls: bool = False

    @property
    def url(self) -> str:
        """Where clients connect: ws://HOST:PORT/, or wss:// with TLS."""
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/"

    @property
    def http_url(self) -> str:
        """The same port's HTTP side (health, metrics, dashboard): http:// or https://."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/"


@contextlib.asynccontextmanager
async def run_server(
    data_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    logon_timeout_s: float = LOGON_TIMEOUT_S,
    frame_bytes_max: int = protocol.FRAME_BYTES_MAX,
    queue_max: int = QUEUE_MAX,
    order_rate_per_s: float = ORDER_RATE_PER_S,
    order_burst: int = ORDER_BURST,
    connections_per_token_max: int = CONNECTIONS_PER_TOKEN_MAX,
    outbox_max: int = OUTBOX_MAX,
    admission: Admission | None = None,
    redis_url: str | None = None,
    redis_prefix: str = "ipx",
    mqtt_url: str | None = None,
    mqtt_prefix: str = "ipx/v1",
    ssl_context: ssl.SSLContext | None = None,
    tls_handshake_timeout_s: float = TLS_HANDSHAKE_TIMEOUT_S,
) -> AsyncIterator[RunningServer]:
    """Recover the exchange under data_dir and serve it until the block exits, then shut down.

    With ssl_context (gateway/tls.py), everything on the port is served over TLS: wss:// and
    https://.

    admission caps the TCP connections before anything is read from them (gateway/
    admission.py; by default Admission() with its defaults). Over TLS a connection is admitted
    once its handshake is done; until then tls_handshake_timeout_s bounds how long it is held.

    With redis_url, every durable outcome and its market data also go to Redis Streams
    (gateway/redis_publisher.py); with mqtt_url, the market data goes to an MQTT v5 broker
    (gateway/mqtt_publisher.py). Without them the exchange runs on its embedded default.
    """
    exchange, journal, recovery = recover(data_dir)
    log.info(
        "recovered seq %d (snapshot %d + %d records) in %.3f s",
        recovery.last_seq,
        recovery.snapshot_seq,
        recovery.replayed_records,
        recovery.seconds,
    )
    heap.settle()  # The recovered state and everything imported live as long as the process.
    sequencer = Sequencer(exchange, journal, queue_max=queue_max)
    gateway = Gateway(
        sequencer,
        TokenStore(os.fspath(data_dir)),
        admission=admission,
        logon_timeout_s=logon_timeout_s,
        rate_limiter=OrderRateLimiter(order_rate_per_s, order_burst),
        connections_per_token_max=connections_per_token_max,
        outbox_max=outbox_max,
        recovery=recovery,
    )
    writers: list[Callable[[], object]] = []  # The publishers' writer tasks, to start.
    if redis_url:
        # With the journal's seq, Redis refusing a later entry is a loss, not a resend.
        redis = RedisPublisher(redis_url, prefix=redis_prefix, journal_seq=exchange.seq)
        gateway.add_publisher(redis)
        writers.append(redis.start)
    if mqtt_url:
        mqtt_host, mqtt_port, mqtt_username, mqtt_password = _mqtt_address(mqtt_url)
        mqtt = MqttPublisher(
            exchange,
            gateway.market_data,
            mqtt_host,
            mqtt_port,
            prefix=mqtt_prefix,
            identifier=mqtt_identifier(os.fspath(data_dir)),
            username=mqtt_username,
            password=mqtt_password,
        )
        gateway.add_publisher(_MqttFeed(mqtt))
        gateway.liquidity_sinks.append(mqtt.publish_liquidity)
        writers.append(mqtt.start)
    # Before anyone is served, and through the gateway's observers and publishers like any
    # batch: the last run's sessions end, and their cancel-on-disconnect is applied.
    try:
        ended = sequencer.end_stale_sessions()
    except BaseException:
        journal.close()
        raise
    if ended:
        log.info("ended %d sessions of the last run (their cancel-on-disconnect)", ended)
        gateway.recovery = dataclasses.replace(recovery, sessions_ended=ended)
    # The publishers' writers start only now: they send what was queued, that batch included,
    # and a failure above leaves nothing running.
    for start in writers:
        start()
    sequencer_task = asyncio.create_task(sequencer.run(), name="sequencer")
    # asyncio refuses a handshake timeout without TLS.
    tls_options: dict[str, Any] = (
        {"ssl_handshake_timeout": tls_handshake_timeout_s} if ssl_context else {}
    )
    try:
        server = await serve(
            gateway.handle_connection,
            host,
            port,
            process_request=gateway.process_request,
            max_size=frame_bytes_max,
            extensions=compression.server_extensions(),
            create_connection=type(
                "AdmittedConnection", (GatewayConnection,), {"admission": gateway.admission}
            ),
            # The transport's flow control marks the backlog: past it, websockets'
            # pause_writing (GatewayConnection.writable is False) until the kernel has taken
            # it all back down.
            write_limit=(WRITE_BACKLOG_MAX, WRITE_BACKLOG_MAX),
            ssl=ssl_context,
            **tls_options,
        )
    except BaseException:
        # Nothing was served (the port is taken, say): stop what started and release the
        # journal, so that a retry, in this process or another, can open it.
        await sequencer.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(sequencer_task, DRAIN_TIMEOUT_S)
        sequencer.close()
        for publisher in gateway.publishers:
            await publisher.close()
        raise
    heartbeats = asyncio.create_task(gateway.send_heartbeats(), name="heartbeats")
    token_watch = asyncio.create_task(gateway.watch_tokens(), name="token-watch")
    try:
        bound = server.sockets[0].getsockname()
        yield RunningServer(
            bound[0], bound[1], gateway, server, sequencer_task, ssl_context is not None
        )
    finally:
        heartbeats.cancel()
        token_watch.cancel()
        await _shut_down(server, gateway, sequencer, sequencer_task)
        for publisher in gateway.publishers:
            await publisher.close()


async def _shut_down(
    server: Server, gateway: Gateway, sequencer: Sequencer, task: asyncio.Task[None]
) -> None:
    # Stop taking connections and commands; drain the queue (fsynced); send those answers;
    # close every connection with 1001; snapshot and release the journal.
    server.server.close()  # The listening socket only; websockets' close() comes last.
    await sequencer.stop()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), DRAIN_TIMEOUT_S)
    gateway.drain()
    server.close()  # Closes every connection with 1001 (going away).
    await server.wait_closed()
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    sequencer.close()
