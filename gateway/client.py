"""An asyncio client for the IPX gateway.

    async with await IpxClient.connect("ws://127.0.0.1:8700/", token) as client:
        order = await client.place("RS-US10123456B2", "buy", 10, "100.10")
        await client.cancel(order_id=order["order_id"])
        book = await client.follow_book("RS-US10123456B2")   # A LocalBook kept up to date.
        orders = await client.open_orders()                  # Every page of orders.open.
        await book.next_change()
        async for report in await client.follow_executions():
            ...                                              # report.gap: one was missed.

Invariants:
- Every order gets a cl_ord_id (generated unless given): a random per-client prefix and a
  counter, so ids never repeat within an account's trading day.
- A place, cancel or amend that times out, or gets a 5xx (outcome unknown, or overloaded), is
  sent again with the SAME cl_ord_id and parameters: the exchange answers a resend of
  order.place with the first outcome, never a second order. 429 RATE_LIMITED is retried after
  its retry_after_ms. Other rejections (4xx) are raised at once as RequestFailed, except
  404 UNKNOWN_ORDER to a resent cancel or amend: an earlier attempt may have been done (the
  order canceled, or amended to a crossing price and filled), so the answer is then the
  order's order.status, which tells what became of it.
- "Nothing was done" (429, 503) is never reported for a request an earlier attempt of which
  got no answer (or a 500): the client asks order.status, and returns it when it shows the
  request done (the order placed; canceled or ended), else raises OutcomeUnknown.
- One reader task reads every frame, in order. An answer goes to its request; a push goes to
  its follower when one claims it, else to `pushes` (in arrival order, as before followers):
  - book.l2 messages and heartbeats of a followed symbol go to its FollowedBook, which
    applies them as gateway/local_book.py says. Whenever the book is out of sync (a gap, a
    heartbeat ahead of it, a checksum that differs) and no snapshot is awaited, the client
    sends md.subscribe again, which queues a fresh snapshot (gateway/server.py), and counts
    it in `resyncs`; a resubscription that fails is tried again on the next message.
  - execution reports go to the FollowedExecutions, if any. Each report whose prev_seq is
    not the seq of the report before it (or, first, the seq executions.subscribe answered)
    is handed over with `gap` set: a report was missed and is never silently skipped.
    Nothing else is assumed of the numbering than that seqs rise.
- When the connection ends, every request still waiting, every later request and every
  follower's waiter gets a ClientError (never one of websockets' exceptions).
- A request's timeout covers sending it as well as waiting for its answer.
- open_orders() and fills() walk every page of orders.open and account.fills (each page's
  `next` is the next one's `after`; the cursor only rises, so the walk ends). A walk that sees
  the fill log start a new day (its complete_from_seq changes) starts again, at most
  WALK_RESTARTS_MAX times.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway import compression, market_data
from gateway.local_book import LocalBook

TIMEOUT_S = 5.0
# How long close() waits for the server's half of the closing handshake before dropping the
# TCP connection. websockets' default of 10 s made a bot with many sessions on a stalled
# server take minutes to stop; a server that answers at all answers well within this.
CLOSE_TIMEOUT_S = 1.0
# The server's answers can be far larger than a request: a page of account.fills holds up to
# 10,000 fills (~3 MB of JSON), a book.l3 snapshot every resting order.
# websockets' default of 1 MiB closed the session with 1009 under `ipx stress` at 2,500/s.
ANSWER_BYTES_MAX = 32 * 1024 * 1024
RETRIES = 2
RETRY_BACKOFF_S = 0.05
# Resent after no answer, these get 404 UNKNOWN_ORDER once an earlier attempt ended the order.
_RESOLVED_BY_STATUS = ("order.cancel", "order.amend")
# Answers that say the gateway refused this request before the exchange saw it (rate limit,
# a full queue, shutting down): nothing done by THIS attempt, whatever an earlier one did.
_REFUSED_AT_THE_DOOR = (429, 503)
_OPEN_STATUSES = ("open", "partially_filled")
WALK_RESTARTS_MAX = 3


class ClientError(Exception):
    """Root of the client's errors.

    ClientError
    +-- RequestFailed      the server answered with an error (status, code, message)
    +-- RequestTimedOut    no answer in time (after the retries, for orders)
        +-- OutcomeUnknown an order request's first attempt got no answer and its resends
                           were refused at the door (429, 503): it may have been done
    """


class RequestFailed(ClientError):
    def __init__(
        self, status: int, code: str, message: str, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


class RequestTimedOut(ClientError):
    pass


class OutcomeUnknown(RequestTimedOut):
    """A place, cancel or amend whose first attempt got no answer, and whose resends were
    refused before reaching the exchange (429, 503): the first may have been done."""


_encoder = msgspec.json.Encoder()
BookMessage = market_data.BookL2 | market_data.Heartbeat
BookListener = Callable[["FollowedBook", BookMessage], None]


class FollowedBook(LocalBook):
    """A LocalBook that an IpxClient keeps up to date from book.l2 (IpxClient.follow_book).

    Read it at any time (bids, asks, seq, in_sync, problem) or await next_change(); `resyncs`
    counts the fresh snapshots asked for after it fell out of sync.
    """

    def __init__(self, symbol: str, listener: BookListener | None = None) -> None:
        super().__init__(symbol)
        self.resyncs = 0
        self._listener = listener
        self._awaiting_snapshot = True  # Asked for one (subscribed) and not yet applied.
        self._changed = asyncio.Event()
        self._ended = ""  # Why it is no longer followed; "" while it is.

    async def next_change(self) -> None:
        """Wait until a book.l2 message or a heartbeat changes the book or its sync state.

        Raises:
            ClientError: the book is no longer followed (unfollowed, or the connection ended).
        """
        if not self._ended:
            await self._changed.wait()
        if self._ended:
            raise ClientError(f"book {self.symbol} is no longer followed: {self._ended}")

    def _handle(self, message: BookMessage) -> bool:
        # Apply a book.l2 message or check a heartbeat; return whether to ask for a snapshot.
        before = (self.seq, self.problem)
        if isinstance(message, market_data.BookL2):
            self.apply(message)
            if message.type == "snapshot":
                self._awaiting_snapshot = False
        else:
            self.check_heartbeat(message)
        resync = not self.in_sync and not self._awaiting_snapshot
        if resync:
            self.resyncs += 1
            self._awaiting_snapshot = True
        if (self.seq, self.problem) != before:
            self._wake()
        if self._listener is not None:
            self._listener(self, message)
        return resync

    def _end(self, reason: str) -> None:
        if not self._ended:
            self._ended = reason
            self._wake()

    def _wake(self) -> None:
        # A fresh Event per change: waiters of this one wake, later ones wait for the next.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """One execution report as pushed, and whether reports were missed just before it."""

    message: dict[str, Any]  # channel, type, seq, prev_seq, journal_seq, event.
    gap: bool  # Its prev_seq is not the seq of the report before it: one or more were missed.

    @property
    def seq(self) -> int:
        return int(self.message["seq"])

    @property
    def prev_seq(self) -> int:
        return int(self.message["prev_seq"])

    @property
    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = self.message["event"]
        return event


class FollowedExecutions:
    """This account's execution reports, in order (IpxClient.follow_executions).

    `async for report in executions` (it ends when unfollowed) or `await executions.get()`.
    `seq` is the last report's (at first, the one executions.subscribe answered); `gaps`
    counts the reports handed over with `gap` set.
    """

    def __init__(self) -> None:
        self.seq: int | None = None
        self.gaps = 0
        self._queue: asyncio.Queue[dict[str, Any] | str] = asyncio.Queue()  # str: ended.
        self._unfollowed = False
        self._ended = False

    async def get(self) -> ExecutionReport:
        """Return the next report, its `gap` set when its prev_seq is not the last seq.

        Raises:
            ClientError: no longer followed (unfollowed, or the connection ended).
        """
        item = await self._queue.get()
        if isinstance(item, str):
            self._queue.put_nowait(item)  # Every later get() ends the same way.
            raise ClientError(f"executions are no longer followed: {item}")
        assert self.seq is not None, "set before follow_executions returns"
        if item["seq"] <= self.seq:
            # Pushed before executions.subscribe answered, so within the seq it answered.
            return ExecutionReport(item, gap=False)
        report = ExecutionReport(item, gap=item["prev_seq"] != self.seq)
        self.gaps += report.gap
        self.seq = report.seq
        return report

    def __aiter__(self) -> FollowedExecutions:
        return self

    async def __anext__(self) -> ExecutionReport:
        try:
            return await self.get()
        except ClientError:
            if self._unfollowed:
                raise StopAsyncIteration from None
            raise

    def _end(self, reason: str, *, unfollowed: bool = False) -> None:
        # Reports queued before the end are still handed over, then get() raises.
        if not self._ended:
            self._ended, self._unfollowed = True, unfollowed
            self._queue.put_nowait(reason)


def _book_params(symbol: str) -> dict[str, Any]:
    return {"symbol": symbol, "channels": [market_data.L2]}


class IpxClient:
    """One authenticated WebSocket session; requests may be awaited concurrently."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.account: str | None = None
        self.role: str | None = None
        # Messages without a request id that no follower claims.
        self.pushes: asyncio.Queue[Any] = asyncio.Queue()
        self._books: dict[str, FollowedBook] = {}
        self._executions: FollowedExecutions | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # Resubscriptions under way.
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._request_ids = itertools.count(1)
        self._cl_ord_prefix = secrets.token_hex(6)
        self._cl_ord_ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        bearer: bool = True,
        timeout_s: float = TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> IpxClient:
        """Open a session: the token as a bearer header on the upgrade, or by session.logon.

        A wss:// url verifies the server against the system's CAs, or against ssl_context's
        (gateway.tls.client_context(ca_file) trusts a self-signed server certificate).
        """
        headers = {"Authorization": f"Bearer {token}"} if bearer else None
        # Only when given: ssl=None would turn TLS off for a wss:// url, not choose a default.
        tls_options: dict[str, Any] = {} if ssl_context is None else {"ssl": ssl_context}
        connection = await connect(
            url,
            additional_headers=headers,
            open_timeout=timeout_s,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=ANSWER_BYTES_MAX,
            extensions=compression.client_extensions(),
            **tls_options,
        )
        client = cls(connection)
        if not bearer:
            try:
                result = await client.request(
                    "session.logon", {"token": token}, timeout_s=timeout_s
                )
            except BaseException:
                await client.close()  # A refused logon leaves no connection open behind it.
                raise
            client.account, client.role = result["account"], result["role"]
        return client

    async def __aenter__(self) -> IpxClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.connection.close()
        for task in (self._reader, *self._tasks):
            task.cancel()
        for task in (self._reader, *self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._end_followers("client closed")

    def next_cl_ord_id(self) -> str:
        return f"{self._cl_ord_prefix}-{next(self._cl_ord_ids)}"

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float = TIMEOUT_S
    ) -> Any:
        """Send one request and return its result.

        Raises:
            RequestFailed: the server answered with an error.
            RequestTimedOut: not sent and answered within timeout_s.
            ClientError: the connection is closed, or closed before the answer came.
        """
        request_id = str(next(self._request_ids))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        frame = {"id": request_id, "method": method, "params": params or {}}
        try:
            # Sending is under the timeout too: send() waits while the server reads nothing
            # (its socket buffers full) and while a closing connection finishes closing.
            # Canceling it then is safe: a whole frame is written before send() waits.
            async with asyncio.timeout(timeout_s):
                await self.connection.send(_encoder.encode(frame).decode())
                message = await future
        except TimeoutError:
            raise RequestTimedOut(f"{method} got no answer in {timeout_s} s") from None
        except ConnectionClosed as closed:
            raise ClientError(f"{method}: connection closed: {closed}") from None
        finally:
            self._pending.pop(request_id, None)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # Seen: the reader may have ended it while send() waited.
        if message["status"] != 200:
            error = message["error"]
            raise RequestFailed(
                message["status"], error["code"], error["message"], error.get("retry_after_ms")
            )
        return message["result"]

    async def _retrying(self, method: str, params: dict[str, Any], timeout_s: float) -> Any:
        # Safe to resend: the same cl_ord_id (or order reference) names the same order.
        unknown = False  # An earlier attempt may have been done: no answer, or a 500.
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                return await self.request(method, params, timeout_s=timeout_s)
            except RequestTimedOut:
                if last:
                    raise
                unknown = True
            except RequestFailed as error:
                if attempt and method in _RESOLVED_BY_STATUS and error.code == "UNKNOWN_ORDER":
                    # An earlier attempt may have done it: canceled the order, or amended it
                    # to a price that crossed, so that it filled. Report what became of it.
                    reference: dict[str, Any] = {
                        key: params[key] for key in ("order_id", "cl_ord_id") if key in params
                    }
                    return await self.request("order.status", reference, timeout_s=timeout_s)
                if error.status == 429 and error.retry_after_ms is not None and not last:
                    await asyncio.sleep(error.retry_after_ms / 1000)
                    continue
                if error.status < 500 or last:
                    if unknown and error.status in _REFUSED_AT_THE_DOOR:
                        # This attempt was refused before the exchange saw it: that says
                        # nothing of the earlier one, which may have been done. Never report
                        # "nothing was done" for it: find out, or say it is unknown.
                        return await self._outcome_after_refusal(method, params, error, timeout_s)
                    raise
                unknown = unknown or error.status not in _REFUSED_AT_THE_DOOR
            await asyncio.sleep(RETRY_BACKOFF_S * (attempt + 1))
        raise AssertionError("unreachable")

    async def _outcome_after_refusal(
        self, method: str, params: dict[str, Any], refusal: RequestFailed, timeout_s: float
    ) -> Any:
        # The order's status tells what an earlier attempt did when it shows the request done:
        # the order exists (a place), or has ended (a cancel, or an amend that filled it, as
        # for 404 UNKNOWN_ORDER above). Anything else may still be on its way.
        reference = {key: params[key] for key in ("order_id", "cl_ord_id") if params.get(key)}
        try:
            status = await self.request("order.status", reference, timeout_s=timeout_s)
        except RequestFailed:
            status = None
        if status is not None and (
            method == "order.place" or status.get("status") not in _OPEN_STATUSES
        ):
            return status
        raise OutcomeUnknown(
            f"{method} {reference}: an earlier attempt got no answer and the last was refused "
            f"({refusal}): it may have been done; ask order.status"
        ) from refusal

    async def place(
        self,
        symbol: str,
        side: str,
        quantity: int,
        price: str | None = None,
        *,
        cl_ord_id: str | None = None,
        timeout_s: float = TIMEOUT_S,
        **options: Any,
    ) -> Any:
        """Place an order (options: type, time_in_force, post_only, stp_mode, expire_ts_ns)."""
        params: dict[str, Any] = {
            "symbol": symbol,
            "cl_ord_id": cl_ord_id or self.next_cl_ord_id(),
            "side": side,
            "quantity": quantity,
            **options,
        }
        if price is not None:
            params["price"] = price
        return await self._retrying("order.place", params, timeout_s)

    async def cancel(
        self, *, order_id: int = 0, cl_ord_id: str = "", timeout_s: float = TIMEOUT_S
    ) -> Any:
        params: dict[str, Any] = {"order_id": order_id} if order_id else {"cl_ord_id": cl_ord_id}
        return await self._retrying("order.cancel", params, timeout_s)

    async def amend(
        self,
        price: str,
        quantity: int,
        *,
        order_id: int = 0,
        cl_ord_id: str = "",
        timeout_s: float = TIMEOUT_S,
    ) -> Any:
        """Amend an open order's price and quantity; return the order as it is then.

        Resent after no answer, an amend that finds the order no longer open returns its
        order.status instead: the first attempt may have filled it. Compare price and quantity
        (and status) with what was asked to know whether the amend was done.
        """
        params: dict[str, Any] = {"price": price, "quantity": quantity}
        params.update({"order_id": order_id} if order_id else {"cl_ord_id": cl_ord_id})
        return await self._retrying("order.amend", params, timeout_s)

    async def status(self, *, order_id: int = 0, cl_ord_id: str = "") -> Any:
        params: dict[str, Any] = {"order_id": order_id} if order_id else {"cl_ord_id": cl_ord_id}
        return await self.request("order.status", params)

    async def open_orders(
        self, symbol: str = "", *, page_limit: int | None = None, timeout_s: float = TIMEOUT_S
    ) -> list[Any]:
        """Every open order of the account (in symbol), in order_id order: orders.open's pages.

        page_limit: orders per page (the server's default when None). Each page is read when
        it is answered: an order that ends during the walk may be in it, one placed during
        it is.
        """
        orders, _ = await self._walk("orders.open", "orders", symbol, page_limit, timeout_s)
        return orders

    async def fills(
        self, symbol: str = "", *, page_limit: int | None = None, timeout_s: float = TIMEOUT_S
    ) -> Any:
        """The day's fills of the account (in symbol), every page of account.fills in one.

        Returns account.fills' answer with every page's fills, and `truncated` if any page
        said so. A new trading day during the walk starts it again.
        """
        for _ in range(WALK_RESTARTS_MAX + 1):
            fills, pages = await self._walk("account.fills", "fills", symbol, page_limit, timeout_s)
            if len({page["complete_from_seq"] for page in pages}) == 1:
                return pages[-1] | {
                    "fills": fills,
                    "truncated": any(page["truncated"] for page in pages),
                    "next": None,
                }
        raise ClientError(f"account.fills: the fill log started anew {WALK_RESTARTS_MAX} times")

    async def _walk(
        self, method: str, key: str, symbol: str, page_limit: int | None, timeout_s: float
    ) -> tuple[list[Any], list[Any]]:
        # Every page of a paged method: the items under key, and the pages' answers.
        params: dict[str, Any] = {"symbol": symbol}
        if page_limit is not None:
            params["limit"] = page_limit
        items: list[Any] = []
        pages: list[Any] = []
        after = 0
        while True:
            page = await self.request(method, params | {"after": after}, timeout_s=timeout_s)
            pages.append(page)
            items += page[key]
            if page["next"] is None:
                return items, pages
            if page["next"] <= after:  # The cursor must rise, else the walk would not end.
                raise ClientError(f"{method}: page cursor {page['next']} after {after}")
            after = page["next"]

    async def cancel_on_disconnect(self, scope: str = "session", *, enabled: bool = True) -> Any:
        """Have this connection's end (a server restart included) cancel the open orders it
        placed (scope "session") or every open order of the account ("account")."""
        params = {"enabled": enabled, "scope": scope}
        return await self.request("session.cancel_on_disconnect", params)

    async def subscribe_executions(self) -> Any:
        """Receive this account's execution reports in `pushes` from now on."""
        return await self.request("executions.subscribe")

    async def follow_book(
        self, symbol: str, *, listener: BookListener | None = None, timeout_s: float = TIMEOUT_S
    ) -> FollowedBook:
        """Follow symbol's L2 book: subscribe to book.l2, return once its snapshot is applied.

        From then on the reader applies each update and checks each heartbeat of the symbol
        (they no longer reach `pushes`), resubscribes by itself when the book falls out of
        sync, and calls listener(book, message), if given, after each one; the listener runs
        in the reader, so it must neither block nor raise. Following a followed symbol
        returns the same book (its first listener stays), once it has its snapshot: a call
        made while an earlier one still waits for the snapshot waits for it too.

        Raises:
            RequestFailed: the server refused (an unknown symbol, market data unavailable).
            RequestTimedOut: no answer, or no snapshot, within timeout_s.
            ClientError: the earlier call this one waited with failed, or the connection ended.
        """
        book = self._books.get(symbol)
        subscribing = book is None
        if book is None:
            # Claim its messages before subscribing: the snapshot may come before the answer.
            book = self._books[symbol] = FollowedBook(symbol, listener)
        try:
            async with asyncio.timeout(timeout_s):
                if subscribing:
                    await self.request("md.subscribe", _book_params(symbol), timeout_s=timeout_s)
                while book.seq is None:
                    await book.next_change()
        except TimeoutError:
            if subscribing:  # A later call's shorter wait leaves the book to the first.
                self._forget(book, "no snapshot")
            message = f"no {market_data.L2} snapshot of {symbol} in {timeout_s} s"
            raise RequestTimedOut(message) from None
        except BaseException:
            if subscribing:
                self._forget(book, "following failed")
            raise
        return book

    async def unfollow_book(self, symbol: str) -> None:
        """Stop following symbol's book: unsubscribe from book.l2; next_change() raises."""
        book = self._books.get(symbol)
        if book is not None:
            self._forget(book, "unfollowed")
            await self.request("md.unsubscribe", _book_params(symbol))

    async def follow_executions(self, *, timeout_s: float = TIMEOUT_S) -> FollowedExecutions:
        """Subscribe to this account's execution reports and hand them over, gaps flagged.

        From the call on, reports go to the returned follower instead of `pushes`. Following
        again returns the same follower.
        """
        if self._executions is not None:
            return self._executions
        executions = self._executions = FollowedExecutions()
        try:
            answer = await self.request("executions.subscribe", timeout_s=timeout_s)
        except BaseException:
            self._executions = None
            while not executions._queue.empty():  # Claimed meanwhile: hide none of them.
                self.pushes.put_nowait(executions._queue.get_nowait())
            raise
        executions.seq = answer["seq"]
        return executions

    async def unfollow_executions(self) -> None:
        """Unsubscribe from execution reports; the follower hands over those it holds, then ends."""
        executions, self._executions = self._executions, None
        if executions is not None:
            executions._end("unfollowed", unfollowed=True)
            await self.request("unsubscribe", {"channel": "executions"})

    def _forget(self, book: FollowedBook, reason: str) -> None:
        if self._books.get(book.symbol) is book:
            del self._books[book.symbol]
        book._end(reason)

    def _end_followers(self, reason: str) -> None:
        for book in list(self._books.values()):
            self._forget(book, reason)
        if self._executions is not None:
            self._executions._end(reason)

    async def _resubscribe(self, book: FollowedBook) -> None:
        # The server queues a fresh snapshot on every md.subscribe, even of a channel the
        # session has: no unsubscribe first, so heartbeats keep coming if this one fails.
        if self._books.get(book.symbol) is not book:
            return  # Unfollowed meanwhile: do not subscribe again.
        try:
            await self.request("md.subscribe", _book_params(book.symbol))
        except ClientError:
            book._awaiting_snapshot = False  # The book's next message asks again.

    def _route(self, message: Any, frame: str | bytes) -> None:
        # A push: to the follower that claims it, else to `pushes`.
        channel = message.get("channel") if isinstance(message, dict) else None
        if channel == "executions" and self._executions is not None:
            self._executions._queue.put_nowait(message)
            return
        if channel in (market_data.L2, market_data.HEARTBEAT):
            book = self._books.get(message.get("symbol", ""))
            if book is not None:
                typed = market_data.decode(frame)
                assert isinstance(typed, market_data.BookL2 | market_data.Heartbeat)
                if book._handle(typed):
                    task = asyncio.create_task(self._resubscribe(book))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                return
        self.pushes.put_nowait(message)

    async def _read(self) -> None:
        reason = "connection closed"
        try:
            async for frame in self.connection:
                message = msgspec.json.decode(frame)
                request_id = message.get("id") if isinstance(message, dict) else None
                if request_id is None:
                    self._route(message, frame)
                    continue
                future = self._pending.get(request_id)
                if future is not None and not future.done():
                    future.set_result(message)
        except Exception as error:  # The connection closed, or a frame could not be handled.
            reason = f"connection lost: {error!r}"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClientError(reason))
        self._end_followers(reason)
        # Nothing reads answers any more: close, so later requests fail at once, not by timing
        # out (a no-op when the connection is already closed).
        await self.connection.close(1011, "the client stopped reading")
