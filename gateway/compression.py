"""permessage-deflate (RFC 7692) that sends small messages uncompressed: the gateway's, and
IpxClient's.

Invariants:
- Negotiated exactly as websockets' default extensions (the server's: window bits 12 both
  ways, memLevel 5; the client's: memLevel 5), so either side meets any peer as before.
- A message of fewer than COMPRESS_MIN_BYTES goes out uncompressed, with RSV1 clear: RFC 7692
  §6 lets an endpoint choose per message, and the peer's decoder reads RSV1 to know which
  (websockets' does). Longer messages, and every frame of a fragmented one, are compressed as
  before, with the same compression context.
- Decoding is untouched: what clients send is inflated as before.

Why: requests, answers and most pushes are 150-400 bytes of JSON, and deflating each one (a
compress and a sync flush) cost the gateway ~1.5 us per message, ~5% of its CPU per order; a few
hundred bytes on the wire cost less than that. HTTP clients in the field do the same
(OkHttp leaves messages under 1,024 bytes uncompressed by default); book snapshots and other
large messages are still compressed.
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.extensions.base import ClientExtensionFactory, Extension, ServerExtensionFactory
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode
from websockets.typing import ExtensionParameter

COMPRESS_MIN_BYTES = 1024
# websockets' own defaults (enable_server_permessage_deflate), kept so negotiation is unchanged.
WINDOW_BITS = 12
COMPRESS_SETTINGS = {"memLevel": 5}


class SmallMessagesPlain(PerMessageDeflate):
    """PerMessageDeflate whose short, unfragmented messages are sent as they are."""

    def encode(self, frame: Frame) -> Frame:
        opcode = frame.opcode
        if (
            (opcode is Opcode.TEXT or opcode is Opcode.BINARY)
            and frame.fin
            and len(frame.data) < COMPRESS_MIN_BYTES
        ):
            return frame
        return super().encode(frame)


class ServerDeflateFactory(ServerPerMessageDeflateFactory):
    """Negotiates as websockets' default; the extension it makes is SmallMessagesPlain."""

    def __init__(self) -> None:
        super().__init__(
            server_max_window_bits=WINDOW_BITS,
            client_max_window_bits=WINDOW_BITS,
            compress_settings=dict(COMPRESS_SETTINGS),
        )

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, agreed = super().process_request_params(params, accepted_extensions)
        return response, _small_messages_plain(agreed)


class ClientDeflateFactory(ClientPerMessageDeflateFactory):
    """Offers as websockets' default client; the extension it makes is SmallMessagesPlain."""

    def __init__(self) -> None:
        super().__init__(compress_settings=dict(COMPRESS_SETTINGS))

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> PerMessageDeflate:
        return _small_messages_plain(super().process_response_params(params, accepted_extensions))


def _small_messages_plain(agreed: PerMessageDeflate) -> SmallMessagesPlain:
    # The same terms as websockets agreed; only encode differs.
    return SmallMessagesPlain(
        agreed.remote_no_context_takeover,
        agreed.local_no_context_takeover,
        agreed.remote_max_window_bits,
        agreed.local_max_window_bits,
        agreed.compress_settings,
    )


def server_extensions() -> list[ServerExtensionFactory]:
    """The extensions to give websockets' serve(): one factory per server."""
    return [ServerDeflateFactory()]


def client_extensions() -> list[ClientExtensionFactory]:
    """The extensions to give websockets' connect(): one factory per connection."""
    return [ClientDeflateFactory()]
