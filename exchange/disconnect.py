"""Cancel-on-disconnect: what the end of a gateway session cancels, kept in the journaled state.

A gateway session (one WebSocket connection) may ask that its end cancel the open orders it
placed (scope "session") or every open order of its account (scope "account"). The gateway
names its sessions (PlaceOrder.session_id, SetCancelOnDisconnect) and says when one ended
(EndSession); the exchange keeps which session placed which open order. Being state, this
survives a restart: the server's sessions all end when it stops, and the restarted server
ends every session the state still holds before it serves anyone (gateway/sequencer.py,
end_stale_sessions), so no order of a session that asked to be protected outlives it, crash
or not.

Invariants:
- state.sessions holds exactly the sessions with an open order placed through them or a
  cancel scope; state.order_sessions maps each such open order to its session, and an order
  leaves both when it leaves the book (trading.forget_session_order, from _finish).
- A session belongs to one account: no command of another account can see, set or end it
  (an EndSession of someone else's session id does nothing, like one of an unknown id).
- EndSession is idempotent: ending a session that is gone cancels nothing.
- Its cancels carry CancelReason.DISCONNECT, are made in the order the orders were placed
  (scope "session") or as CancelAll makes them (scope "account"), and never touch an
  offering's own order.
"""

from __future__ import annotations

from exchange.commands import EndSession, SetCancelOnDisconnect
from exchange.context import Context
from exchange.events import CancelOnDisconnectSet, Event, SessionEnded
from exchange.reasons import Reject
from exchange.state import ExchangeState, GatewaySession
from exchange.trading import (
    SESSION_ID_LENGTH_MAX,
    Rejection,
    cancel_open_orders,
    cancel_orders_of,
    report,
)
from matching.orders import CancelReason

SCOPES = ("", "session", "account")
_DISCONNECT = CancelReason.DISCONNECT


def set_cancel_on_disconnect(
    state: ExchangeState, ctx: Context, command: SetCancelOnDisconnect
) -> Event:
    """Set (scope "session" or "account") or clear (scope "") what the session's end cancels."""
    _require_account(state, command.actor)
    session_id = _checked_session_id(command.session_id)
    scope = command.scope
    if scope not in SCOPES:
        raise Rejection(Reject.VALIDATION_ERROR, f"scope {scope!r} is not session or account")
    session = state.sessions.get(session_id)
    if session is None:
        if scope:
            state.sessions[session_id] = GatewaySession(command.actor, scope)
    elif session.account != command.actor:
        raise Rejection(Reject.VALIDATION_ERROR, f"session {session_id!r} is not this account's")
    else:
        session.cancel_scope = scope
        if not scope and not session.open_orders:
            del state.sessions[session_id]
    event = CancelOnDisconnectSet(command.actor, session_id, scope)
    report(state, ctx, command.actor, event)
    return event


def end_session(state: ExchangeState, ctx: Context, command: EndSession) -> Event:
    """Apply the session's cancel-on-disconnect and forget the session."""
    _require_account(state, command.actor)
    session_id = _checked_session_id(command.session_id)
    session = state.sessions.get(session_id)
    canceled = 0
    if session is not None and session.account == command.actor:
        if session.cancel_scope == "account":
            canceled = cancel_orders_of(state, ctx, command.actor, "", _DISCONNECT)
        elif session.cancel_scope == "session":
            canceled = cancel_open_orders(state, ctx, list(session.open_orders), "", _DISCONNECT)
        # What stays open (no scope, or an offering's order) is no longer any session's.
        for order_id in session.open_orders:
            del state.order_sessions[order_id]
        del state.sessions[session_id]
    event = SessionEnded(command.actor, session_id, canceled)
    report(state, ctx, command.actor, event)
    return event


def _require_account(state: ExchangeState, actor: str) -> None:
    if actor not in state.accounts:
        raise Rejection(Reject.FORBIDDEN, f"no account {actor!r}")


def _checked_session_id(session_id: str) -> str:
    if not 0 < len(session_id) <= SESSION_ID_LENGTH_MAX:
        raise Rejection(
            Reject.VALIDATION_ERROR,
            f"a session id has 1 to {SESSION_ID_LENGTH_MAX} characters",
        )
    return session_id
