"""Admission of TCP connections, before anything is read from them (plain TCP; see TLS below).

A connection costs a descriptor and memory from its accept, while its WebSocket handshake
(websockets' open_timeout) and then its logon (the gateway's logon timeout) may take seconds.
The per-token limit counts only logged-on sessions, so without these caps one client could
hold every descriptor of the process with connections that never speak, and lock everyone
out, operators included.

Invariants:
- At most `connections_max` connections are open at once, and at most
  `pending_per_address_max` of one remote address have not logged on yet. A connection
  beyond either is aborted at its accept (a reset: nothing was read, nothing is answered) and
  counted in `refused`.
- `open` and `pending` count exactly the admitted connections not yet closed (and, for
  `pending`, not yet logged on): every admit is matched by one close, every logon by at most
  one `logged_on`.
- Nothing here does I/O; GatewayConnection calls it from connection_made, its logon and
  connection_lost.

Over TLS, asyncio calls connection_made only once the TLS handshake is done, so a connection
that never sends its ClientHello is not counted here: the server's TLS handshake timeout
(gateway/server.py, TLS_HANDSHAKE_TIMEOUT_S, 5 s against asyncio's 60) is what bounds it. A
deployment that faces the internet should still end TLS in front (a load balancer) or limit
connection rates at the firewall: a cap inside the process sees a connection only once it has
cost a descriptor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONNECTIONS_MAX = 10_000  # Half the 20,000 descriptors a process gets here (ulimit -n).
PENDING_PER_ADDRESS_MAX = 256  # Not yet logged on, from one address.


@dataclass
class Admission:
    """The connections open now, and those not logged on yet per remote address."""

    connections_max: int = CONNECTIONS_MAX
    pending_per_address_max: int = PENDING_PER_ADDRESS_MAX
    open: int = 0
    pending: dict[str, int] = field(default_factory=dict)  # address -> not logged on yet
    refused: int = 0

    def admit(self, address: str) -> bool:
        """Take a new connection from address (pending), or refuse it (False)."""
        waiting = self.pending.get(address, 0)
        if self.open >= self.connections_max or waiting >= self.pending_per_address_max:
            self.refused += 1
            return False
        self.open += 1
        self.pending[address] = waiting + 1
        return True

    def logged_on(self, address: str) -> None:
        """An admitted connection from address logged on: it no longer counts as pending."""
        self._unpend(address)

    def closed(self, address: str, logged_on: bool) -> None:
        """An admitted connection from address closed."""
        self.open -= 1
        if not logged_on:
            self._unpend(address)

    def _unpend(self, address: str) -> None:
        waiting = self.pending[address] - 1
        if waiting:
            self.pending[address] = waiting
        else:
            del self.pending[address]
