"""An asyncio client for the IPX gateway.

    async with await IpxClient.connect("ws://127.0.0.1:8700/", token) as client:
        order = await client.place("RS-US10123456B2", "buy", 10, "100.10")
        await client.cancel(order_id=order["order_id"])

Invariants:
- Every order gets a cl_ord_id (generated unless given): a random per-client prefix and a
  counter, so ids never repeat within an account's trading day.
- A place, cancel or amend that times out, or gets a 5xx (outcome unknown, or overloaded), is
  sent again with the SAME cl_ord_id and parameters: the exchange answers a resend of
  order.place with the first outcome, never a second order. 429 RATE_LIMITED is retried after
  its retry_after_ms. Other rejections (4xx) are raised at once as RequestFailed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import ssl
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from gateway import compression

TIMEOUT_S = 5.0
# The server's answers can be far larger than a request: account.fills holds up to 10,000
# fills (gateway/accounts.py, ~3 MB of JSON), a book.l3 snapshot every resting order.
# websockets' default of 1 MiB closed the session with 1009 under `ipx stress` at 2,500/s.
ANSWER_BYTES_MAX = 32 * 1024 * 1024
RETRIES = 2
RETRY_BACKOFF_S = 0.05


class ClientError(Exception):
    """Root of the client's errors.

    ClientError
    +-- RequestFailed      the server answered with an error (status, code, message)
    +-- RequestTimedOut    no answer in time (after the retries, for orders)
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


_encoder = msgspec.json.Encoder()


class IpxClient:
    """One authenticated WebSocket session; requests may be awaited concurrently."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.account: str | None = None
        self.role: str | None = None
        self.pushes: asyncio.Queue[Any] = asyncio.Queue()  # Messages without a request id.
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
            max_size=ANSWER_BYTES_MAX,
            extensions=compression.client_extensions(),
            **tls_options,
        )
        client = cls(connection)
        if not bearer:
            result = await client.request("session.logon", {"token": token}, timeout_s=timeout_s)
            client.account, client.role = result["account"], result["role"]
        return client

    async def __aenter__(self) -> IpxClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.connection.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    def next_cl_ord_id(self) -> str:
        return f"{self._cl_ord_prefix}-{next(self._cl_ord_ids)}"

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float = TIMEOUT_S
    ) -> Any:
        """Send one request and return its result.

        Raises:
            RequestFailed: the server answered with an error.
            RequestTimedOut: no answer within timeout_s.
        """
        request_id = str(next(self._request_ids))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        frame = {"id": request_id, "method": method, "params": params or {}}
        try:
            await self.connection.send(_encoder.encode(frame).decode())
            message = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise RequestTimedOut(f"{method} got no answer in {timeout_s} s") from None
        finally:
            self._pending.pop(request_id, None)
        if message["status"] != 200:
            error = message["error"]
            raise RequestFailed(
                message["status"], error["code"], error["message"], error.get("retry_after_ms")
            )
        return message["result"]

    async def _retrying(self, method: str, params: dict[str, Any], timeout_s: float) -> Any:
        # Safe to resend: the same cl_ord_id (or order reference) names the same order.
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                return await self.request(method, params, timeout_s=timeout_s)
            except RequestTimedOut:
                if last:
                    raise
            except RequestFailed as error:
                if attempt and method == "order.cancel" and error.code == "UNKNOWN_ORDER":
                    # The first attempt may have canceled it: report what became of it.
                    reference: dict[str, Any] = {
                        key: params[key] for key in ("order_id", "cl_ord_id") if key in params
                    }
                    return await self.request("order.status", reference, timeout_s=timeout_s)
                if error.status == 429 and error.retry_after_ms is not None and not last:
                    await asyncio.sleep(error.retry_after_ms / 1000)
                    continue
                if error.status < 500 or last:
                    raise
            await asyncio.sleep(RETRY_BACKOFF_S * (attempt + 1))
        raise AssertionError("unreachable")

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
        params: dict[str, Any] = {"price": price, "quantity": quantity}
        params.update({"order_id": order_id} if order_id else {"cl_ord_id": cl_ord_id})
        return await self._retrying("order.amend", params, timeout_s)

    async def status(self, *, order_id: int = 0, cl_ord_id: str = "") -> Any:
        params: dict[str, Any] = {"order_id": order_id} if order_id else {"cl_ord_id": cl_ord_id}
        return await self.request("order.status", params)

    async def subscribe_executions(self) -> Any:
        """Receive this account's execution reports in `pushes` from now on."""
        return await self.request("executions.subscribe")

    async def _read(self) -> None:
        try:
            async for frame in self.connection:
                message = msgspec.json.decode(frame)
                request_id = message.get("id") if isinstance(message, dict) else None
                future = self._pending.get(request_id) if request_id is not None else None
                if future is not None and not future.done():
                    future.set_result(message)
                elif request_id is None:
                    self.pushes.put_nowait(message)
        except Exception as error:  # The connection closed: fail whatever still waits.
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ClientError(f"connection lost: {error!r}"))
            return
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClientError("connection closed"))
