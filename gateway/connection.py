"""The server side of one WebSocket connection: messages handed over as they are parsed.

websockets' ServerConnection queues each message for `recv()` / `async for`, which wakes the
handler's task, walks four coroutines and a queue per message: ~2 us of the gateway's ~37 us
per request. `GatewayConnection` (given to `serve(create_connection=...)`, as websockets
documents for customizing connections) assembles data frames itself in `process_event`, the
hook websockets calls for each parsed frame, and calls the gateway's callback synchronously.

Invariants:
- Every message goes to the callback exactly once, whole, in arrival order: the same messages
  recv() would have returned. Until a callback is set (`deliver_to`), messages are held, and
  `receive()` takes them one at a time (session.logon comes that way).
- A text message is given as str and must be UTF-8, else the connection fails with 1007; a
  binary message is given as bytes. A message over max_size was already refused by websockets'
  protocol (1009); more than FRAGMENTS_MAX fragments also fail it with 1009, as recv() does.
- The callback returns whether it takes another message now. When it says no, reading from
  the socket pauses and what one read already parsed is held (so held messages are bounded by
  one read); `resume()` hands them over, then reads again. Before a callback is set, reading
  pauses while HELD_MAX messages wait for receive() (websockets' own queue does the same).
  Control frames (ping, pong, close) are websockets' business, as before; once the
  connection is closing, reading is never paused, so the peer's close is always read.
- While more is written than the transport's write limit and not yet taken by the kernel,
  `writable` is False (websockets' flow control); once the kernel has taken it back down to the
  limit, the connection resumes: messages held because the callback said no are handed over.
  `unsent_bytes` is that backlog, in bytes.
- Once the connection is lost, nothing more is handed over: the messages held then are
  dropped, never answered (the session's end, with its cancel-on-disconnect, is the last
  thing it does).
- A callback that raises fails the connection with 1011: nothing a client sends can escape
  into the event loop's transport handling.
- With an `admission` (gateway/admission.py), a connection it refuses is aborted at its
  accept, before anything is read; an admitted one is counted until connection_lost.
- `write_texts` sends messages in one socket write, only while the connection is open. A
  message under COMPRESS_MIN_BYTES is framed here (FIN, text, no mask, its length: the bytes
  websockets' framing gives it, tested), at an eighth of the cost of websockets' send_text;
  longer ones go through websockets' protocol, compressed if negotiated.
- Frames are cut here, once the handshake is done and websockets' parser waits at a frame
  boundary, until the connection stops being open. A whole, unfragmented, uncompressed,
  masked text or binary frame within max_size is unmasked and delivered without websockets'
  parser (a generator per frame: ~11% of the gateway's CPU). Every other frame (control,
  fragment, compressed, malformed) is handed whole to websockets' protocol, in order, so its
  parser only ever sees whole frames and answers them as before (pongs, close codes). A frame
  whose header alone breaks a rule (no mask, over max_size) is handed over at once with
  everything after it, as websockets fails it at its header. Once the connection is closing
  or failed, everything goes to websockets.

Relies on websockets' asyncio implementation (13.0 to 17.x): data_received(data) per read,
process_event(event) per parsed frame, protocol.fail() + send_data() to fail a connection, as
its own recv() does; the protocol's reader, parser, current_size and max sizes.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event, State
from websockets.streams import StreamReader

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension.
    from websockets.utils import apply_mask

from gateway.admission import Admission
from gateway.compression import COMPRESS_MIN_BYTES

Message = str | bytes
# Returns whether it takes another message now; False pauses reading until resume().
OnMessage = Callable[[Message], bool]

FRAGMENTS_MAX = 4096  # As websockets' own assembler (MAX_FRAGMENTS).
HELD_MAX = 16  # Messages waiting for receive() before reading pauses (websockets' max_queue).

log = logging.getLogger("ipx.gateway")

# The header of an unfragmented, uncompressed text frame from a server, by payload length:
# FIN + opcode 1, then the length in 7 bits, or 126 and 16 bits (RFC 6455 §5.2).
_TEXT_HEADERS = [
    bytes((0x81, size)) if size < 126 else struct.pack("!BBH", 0x81, 126, size)
    for size in range(COMPRESS_MIN_BYTES)
]
# A client's frame this module delivers itself: FIN, no RSV bit (not compressed), text or binary.
_TEXT_FIN = 0x81
_BINARY_FIN = 0x82
_MASKED = 0x80
_NO_LIMIT = 1 << 64
# websockets' parser waits for the next frame in StreamReader.at_eof (never inside a frame).
_AT_FRAME_BOUNDARY = StreamReader.at_eof.__code__


class GatewayConnection(ServerConnection):
    """A ServerConnection that hands each whole message to a callback as it is parsed."""

    # The server's caps on connections (a subclass per server sets it); None admits all.
    admission: Admission | None = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._address = ""
        self._admitted = False
        self._logged_on = False
        self._on_message: OnMessage | None = None
        self._held: deque[Message] = deque()
        self._fragments: list[Frame] = []
        # Messages are held, not handed over: the callback said no (or, before deliver_to,
        # HELD_MAX wait for receive()). Reading from the socket is paused meanwhile.
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None  # receive() waiting for a message.
        # Frames cut here (see the invariants): on once the handshake is done and websockets'
        # parser waits at a frame boundary; off for good once the connection stops being open.
        self._cutting = False
        self._cutting_ended = False
        self._partial = b""  # The start of a frame not yet whole, while cutting.
        limits = [self.protocol.max_message_size, self.protocol.max_fragment_size]
        self._frame_size_max = min([_NO_LIMIT, *(limit for limit in limits if limit is not None)])

    # What the gateway calls.

    async def receive(self) -> Message:
        """Return the next message before a callback is set (as recv() would).

        Raises:
            websockets.ConnectionClosed: the connection closed first.
        """
        while not self._held:
            if self.connection_lost_waiter.done():
                raise self.close_exc
            waiter = self._waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        message = self._held.popleft()
        if self._paused and self._on_message is None and len(self._held) < HELD_MAX:
            self._read_again()
        return message

    def deliver_to(self, on_message: OnMessage) -> None:
        """Hand every message to on_message from now on, starting with those held."""
        self._on_message = on_message
        self._hand_over_held()

    def resume(self) -> None:
        """The callback takes messages again: hand over those held, then read again."""
        if self._paused and self._on_message is not None:
            self._hand_over_held()

    @property
    def cutting_frames(self) -> bool:
        """Whether frames are cut here now, rather than by websockets' parser (see above)."""
        return self._cutting

    @property
    def writable(self) -> bool:
        """False while the write backlog is over the write limit (the transport paused us)."""
        return not self.paused

    @property
    def unsent_bytes(self) -> int:
        """Bytes written and not yet taken by the kernel (the transport's write buffer)."""
        return self.transport.get_write_buffer_size()

    def write_texts(self, texts: Sequence[bytes]) -> bool:
        """Send these UTF-8 texts, in order, in one socket write; False if not open (none sent).

        As websockets' broadcast() for one message, without waiting for the socket: past the
        write limit `writable` turns False, and drain() waits until the kernel has taken it.
        """
        protocol = self.protocol
        if protocol.state is not State.OPEN:
            return False
        parts: list[bytes] = []
        headers = _TEXT_HEADERS
        for text in texts:
            size = len(text)
            if size < COMPRESS_MIN_BYTES:
                parts.append(headers[size])
                parts.append(text)
            else:  # Also whatever websockets had queued (a pong), in order before it.
                protocol.send_text(text)
                parts.extend(protocol.data_to_send())
        self.transport.write(b"".join(parts))
        return True

    # websockets' hooks.

    def data_received(self, data: bytes) -> None:
        if not self._cutting:
            if self._cutting_ended or not self._parser_at_frame_boundary():
                super().data_received(data)
                return
            self._cutting = True
        elif self.protocol.state is not State.OPEN:  # Closing: websockets parses the rest.
            self._stop_cutting(data)
            return
        if self._partial:
            data = self._partial + data
            self._partial = b""
        self._partial = self._cut_frames(data)

    def eof_received(self) -> None:
        self._stop_cutting(b"")  # websockets sees a partial frame, then the end, as before.
        super().eof_received()

    def process_event(self, event: Event) -> None:
        if not isinstance(event, Frame):  # The handshake request.
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
            self._frame(event)
        else:
            super().process_event(event)  # Control frames: pong acknowledgements.

    def resume_writing(self) -> None:
        super().resume_writing()
        self.resume()  # The callback may have said no for the backlog just taken.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        admission = self.admission
        if admission is None:
            return
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if peer else ""
        self._admitted = admission.admit(self._address)
        if not self._admitted:
            # Its handshake then fails at once, quietly. (uvloop's transports are not
            # asyncio.Transport subclasses: cast, as websockets' connection_made does.)
            cast(asyncio.Transport, transport).abort()

    def logged_on(self) -> None:
        """The session logged on: it no longer counts against its address's pending cap."""
        if self._admitted and not self._logged_on and self.admission is not None:
            self._logged_on = True
            self.admission.logged_on(self._address)

    def connection_lost(self, exc: Exception | None) -> None:
        # What is held was never handed over, so never answered: dropped, as bytes the kernel
        # had not yet delivered would be. Handed over later (by resume(), once the batch that
        # ended the session freed its in-flight slots) they ran after the session's end, and
        # orders it placed outlived its cancel-on-disconnect.
        self._held.clear()
        self._fragments.clear()
        self._on_message = None
        if self._admitted and self.admission is not None:
            self._admitted = False
            self.admission.closed(self._address, self._logged_on)
        super().connection_lost(exc)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # Inside.

    def _parser_at_frame_boundary(self) -> bool:
        protocol = self.protocol
        if protocol.state is not State.OPEN or protocol.reader.buffer:
            return False
        if protocol.current_size is not None:  # Inside a fragmented message.
            return False
        generator: Any = protocol.parser  # Generators nested by `yield from`.
        while (inner := generator.gi_yieldfrom) is not None:
            generator = inner
        return generator.gi_code is _AT_FRAME_BOUNDARY

    def _cut_frames(self, data: bytes) -> bytes:
        """Deliver or hand over each whole frame of data, in order; return the partial rest."""
        protocol = self.protocol
        size = len(data)
        start = 0  # Where the next frame starts.
        pending = -1  # Where frames for websockets start, not yet handed over (-1: none).
        while size - start >= 2:
            head = data[start]
            length = data[start + 1]
            if not length & _MASKED:
                return self._stop_cutting(data[pending if pending >= 0 else start :])
            length &= 0x7F
            mask = start + 2
            if length == 126:
                if size - start < 4:
                    break
                length = (data[mask] << 8) | data[mask + 1]
                mask += 2
            elif length == 127:
                if size - start < 10:
                    break
                length = int.from_bytes(data[mask : mask + 8], "big")
                mask += 8
            if length > self._frame_size_max:
                return self._stop_cutting(data[pending if pending >= 0 else start :])
            end = mask + 4 + length
            if end > size:
                break
            if head in (_TEXT_FIN, _BINARY_FIN):
                if pending >= 0:  # Frames before it go to websockets first, in order.
                    super().data_received(data[pending:start])
                    pending = -1
                    if protocol.state is not State.OPEN:
                        return self._stop_cutting(data[start:])
                if protocol.current_size is None:
                    payload = apply_mask(data[mask + 4 : end], data[mask : mask + 4])
                    self._message(head == _TEXT_FIN, payload)
                    start = end
                    if protocol.state is not State.OPEN:  # Failed: 1007 or 1011.
                        return self._stop_cutting(data[start:])
                    continue
            if pending < 0:
                pending = start
            start = end
        if pending >= 0:
            super().data_received(data[pending:start])
            if protocol.state is not State.OPEN:
                return self._stop_cutting(data[start:])
        return data[start:]

    def _stop_cutting(self, rest: bytes) -> bytes:
        """Hand websockets what is held and rest; from now on it parses everything."""
        held, self._partial = self._partial, b""
        if self._cutting and (held or rest):
            super().data_received(held + rest)
        self._cutting = False
        self._cutting_ended = True
        return b""

    def _frame(self, frame: Frame) -> None:
        fragments = self._fragments
        if not frame.fin or fragments:
            if len(fragments) >= FRAGMENTS_MAX:
                self._fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
                return
            fragments.append(frame)
            if not frame.fin:
                return
            first, data = fragments[0], b"".join(fragment.data for fragment in fragments)
            fragments.clear()
        else:
            first, data = frame, bytes(frame.data)
        self._message(first.opcode is Opcode.TEXT, data)

    def _message(self, text: bool, data: bytes) -> None:
        # One whole message, cut here or assembled from websockets' frames: a text must be
        # UTF-8, else the connection fails with 1007.
        if not text:
            self._arrived(data)
            return
        try:
            decoded = data.decode()
        except UnicodeDecodeError as error:
            self._fail(CloseCode.INVALID_DATA, f"{error.reason} at position {error.start}")
            return
        self._arrived(decoded)

    def _arrived(self, message: Message) -> None:
        on_message = self._on_message
        if on_message is None:  # Before deliver_to: receive() takes it.
            self._held.append(message)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if len(self._held) >= HELD_MAX:
                self._pause()
        elif self._paused:
            self._held.append(message)
        elif not self._call(on_message, message):
            self._pause()

    def _hand_over_held(self) -> None:
        held = self._held
        while held and self._on_message is not None:
            if not self._call(self._on_message, held.popleft()):
                self._pause()
                return
        if self._paused:
            self._read_again()

    def _pause(self) -> None:
        # Hold what comes next (in order); stop reading unless the connection is closing:
        # then its peer's close must still be read.
        if not self._paused:
            self._paused = True
            if self.protocol.state is State.OPEN and not self.transport.is_closing():
                self.transport.pause_reading()

    def _read_again(self) -> None:
        self._paused = False
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _call(self, on_message: OnMessage, message: Message) -> bool:
        try:
            return on_message(message)
        except Exception:
            log.exception("a message's handler failed: connection closed with 1011")
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")
            return False

    def _fail(self, code: CloseCode, reason: str) -> None:
        # As recv() does: fail the protocol (close frame, then the end of the stream), write
        # it out, and drop anything parsed after it.
        self._held.clear()
        self._fragments.clear()
        self._on_message = None
        self.protocol.fail(code, reason)
        self.send_data()
        if self.close_timeout is not None:  # A peer that never closes its end is cut off.
            self.loop.call_later(self.close_timeout, self.transport.abort)
