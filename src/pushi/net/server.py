"""PushiServer: the netius WebSocket server, bytes in and protocol messages out.

netius drives the sockets; RFC 6455 (handshake validation, framing, masking,
fragments, UTF-8, ping/pong, close) is wsproto's, a sans-I/O protocol core, so
no frame parser is written here. Each connection turns complete messages into
State calls and State's replies into frames; routing is State's alone.

Every input is bounded before it is buffered: the handshake's head by size and
line count (431), a message by its frame headers' declared lengths (1009, see
SizeLimit), and a connection being closed is not read any further.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
import typing

import appier
import netius
import wsproto
import wsproto.events as ws_events
import wsproto.extensions
import wsproto.frame_protocol
import wsproto.utilities

from ..base import strict_json
from ..base.session import Outgoing
from . import dialects

if typing.TYPE_CHECKING:
    from ..base.config import Settings
    from ..base.session import Session
    from ..base.state import State

LOGGER = logging.getLogger("pushi")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_UNKNOWN_APP = 4001
CLOSE_NO_PONG = 4201

MAX_HANDSHAKE = 16 * 1024
""" Default bytes of a handshake's request line and headers, blank line included """

MAX_HEADER_LINES = 100
""" Default header lines of a handshake (the request line not counted) """

HEAD_END = b"\r\n\r\n"
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)

MAX_EARLY = 10
""" Messages kept while the app key is looked up; a client sending more is rude """

ACTIVITY_TIMEOUT = 120
""" Seconds of silence before a ping: Pusher's recommendation, and the default """

SWEEPS_PER_TIMEOUT = 4
""" Liveness sweeps per activity (or pong) timeout: how late a probe may be """

PING_PAYLOAD = b"pushi"

# server frames are never masked and we negotiate no extension, so a message's
# frame is the same bytes for every recipient: encode it once for all of them
_FRAMER = wsproto.frame_protocol.FrameProtocol(client=False, extensions=[])


def text_frame(text: bytes) -> bytes:
    """One unfragmented, unmasked text frame holding `text` (UTF-8)."""
    return bytes(_FRAMER.send_data(text.decode("utf-8"), fin=True))


def valid_key(request) -> bool:
    """Whether the handshake carries one `Sec-WebSocket-Key`, base64 of 16 bytes."""
    keys = [v for n, v in request.extra_headers if n == b"sec-websocket-key"]
    if len(keys) != 1 or len(keys[0].strip()) != 24:
        return False
    try:
        return len(base64.b64decode(keys[0].strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


class SizeLimit(wsproto.extensions.Extension):
    """Refuses a message by its frame headers' declared lengths, before its payload.

    wsproto hands every frame header to its extensions as soon as it is parsed,
    before any payload byte is read: this one is never offered nor accepted in
    the handshake (no client asks for its name), it only watches those headers.
    A data frame that starts a message resets the running total, a continuation
    adds to it; past the limit wsproto fails the frame with 1009, which reaches
    the connection as a CloseConnection event. Control frames are 125 bytes at
    most (wsproto checks) and are not part of a message.
    """

    name = "x-pushi-size-limit"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False

    def frame_inbound_header(self, proto, opcode, rsv, payload_length):
        if opcode is wsproto.frame_protocol.Opcode.CONTINUATION:
            self.total += payload_length
        elif opcode.iscontrol():
            return wsproto.frame_protocol.RsvBits(False, False, False)
        else:
            self.total = payload_length
        if self.total > self.limit:
            return wsproto.frame_protocol.CloseReason.MESSAGE_TOO_BIG
        return wsproto.frame_protocol.RsvBits(False, False, False)


class PushiConnection(netius.Connection):
    """One WebSocket client: wsproto state, its dialect and its State session."""

    def __init__(self, *args, **kwargs) -> None:
        netius.Connection.__init__(self, *args, **kwargs)
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        self.dialect: dialects.Dialect = dialects.PUSHI
        self.session: Session | None = None
        self.upgraded = False
        self.parts: list[str] = []
        self.early: list[str] = []  # messages that came before the app was known
        self.dropping = False  # a close is scheduled for after this dispatch
        self.head: bytearray | None = bytearray()  # the handshake so far, bounded
        self.hanging_up = False  # closing: what arrives now is not read
        # liveness: when the peer last sent anything, when it was probed since
        self.heard = time.monotonic()
        self.probed: float | None = None

    # -- the Transport State talks to ---------------------------------------------

    def deliver(self, outgoing: Outgoing) -> None:
        """Writes a shared event frame (framed once, by its first recipient)."""
        if outgoing.frame is None:
            outgoing.frame = text_frame(outgoing.text)
        self._write(outgoing.frame)

    def subscribed(self, channel: str, info: dict) -> None:
        """Reports a successful subscription."""
        self.send_message(self.dialect.subscribed(channel, info))

    def unsubscribed(self, channel: str, info: dict) -> None:
        """Reports a finished unsubscription (if the dialect answers one)."""
        self.send_message(self.dialect.unsubscribed(channel, info))

    def member_added(self, channel: str, user_id: str, channel_data: dict) -> None:
        """Reports a new presence member."""
        self.send_message(self.dialect.member_added(channel, user_id, channel_data))

    def member_removed(self, channel: str, user_id: str, channel_data: dict) -> None:
        """Reports a presence member gone."""
        self.send_message(self.dialect.member_removed(channel, user_id, channel_data))

    def latest(self, channel: str, info: dict) -> None:
        """Answers `pusher:latest`."""
        self.send_message(self.dialect.latest(channel, info))

    def error(self, code: int, message: str, channel: str | None = None) -> None:
        """Reports a refused request."""
        self.send_message(self.dialect.error(code, message, channel))

    def subscription_error(self, code: int, message: str, channel: str | None) -> None:
        """Reports a refused subscription the dialect's way (Pusher dialect)."""
        self.send_message(self.dialect.subscription_error(code, message, channel))

    def signed_in(self, user_data: str) -> None:
        """Confirms a `pusher:signin`."""
        self.send_message(self.dialect.signed_in(user_data))

    def cache_miss(self, channel: str) -> None:
        """Tells a cache channel's subscriber nothing was cached."""
        self.send_message(self.dialect.cache_miss(channel))

    def terminate(self, code: int, message: str) -> None:
        """Closes with a close code once the current dispatch is over."""
        if self.dropping:
            return
        self.dropping = True
        self.owner.delay(lambda: self.close_ws(code, message))

    def drop(self) -> None:
        """Closes the connection on the next loop turn, never inside a dispatch.

        Closing at once would take the socket out of State while State walks
        the channel that decided it (a slow reader in a fan-out, say).
        """
        if self.dropping:
            return
        self.dropping = True
        self.owner.delay(self.close)

    # -- writing --------------------------------------------------------------------

    def send_message(self, message: dict | None) -> None:
        """Encodes and writes one message to this connection only (None: none)."""
        if message is not None:
            self._write(text_frame(dialects.dumps(message).encode()))

    def _write(self, data: bytes) -> None:
        if (
            self.dropping
            or not self.is_open()
            or self.ws.state != wsproto.ConnectionState.OPEN
        ):
            return
        if self.pending_s > self.owner.settings.max_send_buffer:
            # a reader this slow would hold the server's memory: drop it instead
            LOGGER.warning("dropping slow reader %s", self.address)
            self.drop()
            return
        self.send(data, delay=False)

    def _raw(self, data: bytes | bytearray) -> None:
        """Writes protocol bytes now (netius wants bytes, wsproto makes bytearrays)."""
        self.send(bytes(data), delay=False)

    def close_ws(self, code: int, reason: str = "") -> None:
        """Sends a close frame (when the protocol still allows one) and hangs up."""
        if self.ws.state in (
            wsproto.ConnectionState.OPEN,
            wsproto.ConnectionState.REMOTE_CLOSING,
        ):
            try:
                event = ws_events.CloseConnection(code=code, reason=reason)
                self._raw(self.ws.send(event))
            except wsproto.utilities.LocalProtocolError:
                pass
        self.hang_up()

    def hang_up(self) -> None:
        """Stops reading, writes what is pending and closes.

        netius reads a socket until it would block, and a flushing close waits
        for the writes: without stopping the reads, a peer that keeps sending
        would be read (and buffered by wsproto) until the close frame is out.
        """
        self.hanging_up = True
        self.disable_read()
        self.close(flush=True)

    # -- liveness -------------------------------------------------------------------

    def check_alive(self, now: float, idle: float, grace: float) -> None:
        """Probes a peer silent for `idle` seconds; closes it (4201) when the
        probe went unanswered for `grace` more.

        The dialect's ping message (Pusher: `pusher:ping`), or an RFC 6455
        ping frame when it has none (Pushi: its clients never see it, their
        WebSocket answers it). Without this, a half-open connection would
        stay a presence member until the kernel gave up on it.
        """
        if self.session is None or self.dropping or self.hanging_up:
            return
        if self.probed is not None:
            if now - self.probed >= grace:
                LOGGER.info("no pong from %s, closing", self.address)
                self.close_ws(CLOSE_NO_PONG, "pong reply not received")
            return
        if now - self.heard < idle:
            return
        self.probed = now
        message = self.dialect.ping()
        if message is not None:
            self.send_message(message)
        elif self.ws.state == wsproto.ConnectionState.OPEN:
            self._write(bytes(self.ws.send(ws_events.Ping(payload=PING_PAYLOAD))))

    # -- reading --------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Hands received bytes to wsproto and acts on what they complete."""
        if self.hanging_up:
            return  # read before the reads stopped: nobody will act on it
        # anything the peer sends proves it alive (Pusher's protocol says so)
        self.heard = time.monotonic()
        self.probed = None
        if self.head is not None and not self._bound_head(data):
            return
        try:
            self.ws.receive_data(data)
        except wsproto.utilities.RemoteProtocolError as error:
            self._reject(error)
            return
        for event in self.ws.events():
            if not self.is_open():
                return
            self._on_event(event)

    def _bound_head(self, data: bytes) -> bool:
        """Counts the handshake's bytes and lines; past a bound, 431 and close.

        Only the head (up to its blank line) is kept, at most the limit's size,
        until it is complete; wsproto (h11) parses it, this only bounds it.
        """
        owner = self.owner
        start = max(len(self.head) - 3, 0)
        self.head += data[: owner.max_handshake + 1 - len(self.head)]
        end = self.head.find(HEAD_END, start)
        head = self.head if end < 0 else self.head[: end + 4]
        # one newline per line: the request line's, one per header line, and
        # (once complete) the blank line's
        lines = head.count(b"\n") - (2 if end >= 0 else 1)
        if len(head) > owner.max_handshake or lines > owner.max_header_lines:
            LOGGER.info("handshake too large from %s", self.address)
            self.head = None
            self.send(TOO_LARGE, delay=False)
            self.hang_up()
            return False
        if end >= 0:
            self.head = None
        return True

    def _reject(self, error) -> None:
        hint = error.event_hint
        LOGGER.info("bad handshake from %s: %s", self.address, error)
        if isinstance(hint, ws_events.RejectConnection):
            try:
                self._raw(self.ws.send(hint))
            except wsproto.utilities.LocalProtocolError:
                pass
        self.hang_up()

    def _on_event(self, event) -> None:
        if isinstance(event, ws_events.Request):
            self._on_request(event)
        elif isinstance(event, ws_events.TextMessage):
            self._on_text(event)
        elif isinstance(event, ws_events.BytesMessage):
            self.close_ws(CLOSE_UNSUPPORTED, "binary messages are not supported")
        elif isinstance(event, ws_events.Ping):
            # through _write: a peer that pings and never reads is a slow reader
            self._write(bytes(self.ws.send(event.response())))
        elif isinstance(event, ws_events.CloseConnection):
            if self.ws.state == wsproto.ConnectionState.REMOTE_CLOSING:
                self._raw(self.ws.send(event.response()))
                self.hang_up()
            elif event.code == CLOSE_TOO_BIG:
                # SizeLimit refused a frame header (wsproto says "extension")
                self.close_ws(CLOSE_TOO_BIG, "message too big")
            else:
                # wsproto reports a protocol violation as a close in its name
                self.close_ws(event.code, event.reason or "")

    def _on_request(self, request) -> None:
        if not valid_key(request):
            LOGGER.info("bad Sec-WebSocket-Key from %s", self.address)
            self._raw(self.ws.send(ws_events.RejectConnection(status_code=400)))
            self.hang_up()
            return
        self.dialect, key, refusal = dialects.resolve(request.target)
        limit = SizeLimit(self.owner.settings.max_message)
        accept = ws_events.AcceptConnection(extensions=[limit])
        self._raw(self.ws.send(accept))
        self.upgraded = True
        if refusal is not None:
            # Pusher's way: the error as a message, then the close with its code
            code, message = refusal
            self.error(code, message)
            self.close_ws(code, message)
            return
        self.owner.state.connect(key, self, self._on_session, self.dialect.rules)

    def _on_session(self, session: Session | None) -> None:
        if not self.is_open():
            if session is not None:
                self.owner.state.disconnect(session)
            return
        if session is None:
            self.error(CLOSE_UNKNOWN_APP, "unknown app key")
            self.close_ws(CLOSE_UNKNOWN_APP, "unknown app key")
            return
        self.session = session
        # pusher-js needs a positive value; without probes, Pusher's default
        timeout = self.owner.settings.activity_timeout or ACTIVITY_TIMEOUT
        self.send_message(self.dialect.connected(session.socket_id, timeout))
        early, self.early = self.early, []
        for text in early:
            self._on_message(text)

    def _on_text(self, event) -> None:
        # its size is bounded by its frames' headers already (SizeLimit)
        if not event.message_finished:
            self.parts.append(event.data)
            return
        if self.parts:
            self.parts.append(event.data)
            text = "".join(self.parts)
            self.parts = []
        else:
            text = event.data
        if self.session is None:
            if len(self.early) >= MAX_EARLY:
                self.close_ws(CLOSE_POLICY, "too many messages before connect")
                return
            self.early.append(text)
        else:
            self._on_message(text)

    def _on_message(self, text: str) -> None:
        try:
            message = strict_json.loads(text)
        except ValueError:
            self.error(4000, "message is not valid JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            self.error(4000, "message needs an event name")
            return
        try:
            self._dispatch(message)
        except Exception:
            # a bug costs this one connection, never the loop or the others
            LOGGER.exception("failed handling %r", message.get("event"))
            self.error(4000, "internal error handling message")
            self.drop()

    def _dispatch(self, message: dict) -> None:
        state, session = self.owner.state, self.session
        event = message["event"]
        # the published server takes `:` and `_` alike in command names
        command = self.dialect.commands.get(event.replace(":", "_"))
        if command == "ping":
            self.send_message(self.dialect.pong())
            return
        if command == "pong":
            return
        if command is None:
            self._client_event(message)
            return
        data = message.get("data")
        if isinstance(data, str):
            try:
                data = strict_json.loads(data)
            except ValueError:
                data = None
        if not isinstance(data, dict):
            self.error(4000, "%s needs a data object" % event)
            return
        if command == "subscribe":
            state.subscribe(
                session, data.get("channel"), data.get("auth"), data.get("channel_data")
            )
        elif command == "unsubscribe":
            state.unsubscribe(session, data.get("channel"))
        elif command == "signin":
            state.signin(session, data.get("auth"), data.get("user_data"))
        else:
            state.latest(
                session, data.get("channel"), data.get("skip"), data.get("count")
            )

    def _client_event(self, message: dict) -> None:
        if "channel" not in message or "data" not in message:
            channel = message.get("channel")
            self.error(
                4000,
                "client events need a channel and data",
                channel if isinstance(channel, str) else None,
            )
            return
        self.owner.state.client_event(
            self.session,
            message["channel"],
            message["event"],
            message["data"],
            echo=bool(message.get("echo", False)),
            persist=bool(message.get("persist", True)),
        )


class PushiServer(netius.StreamServer):
    """The WebSocket side of Pushi: owns the event loop that owns State."""

    def __init__(self, state: State, settings: Settings, *args, **kwargs) -> None:
        kwargs.setdefault("name", "pushi-ws")
        netius.StreamServer.__init__(self, *args, **kwargs)
        self.state = state
        self.settings = settings
        # handshake bounds: fixed by HTTP rather than by use, so read here
        self.max_handshake = appier.conf("PUSHI_MAX_HANDSHAKE", MAX_HANDSHAKE, cast=int)
        self.max_header_lines = appier.conf(
            "PUSHI_MAX_HEADER_LINES", MAX_HEADER_LINES, cast=int
        )

    def build_connection(self, socket, address, ssl=False):
        """Every accepted socket becomes a PushiConnection."""
        return PushiConnection(owner=self, socket=socket, address=address, ssl=ssl)

    def on_serve(self) -> None:
        """Binds State to this loop once it runs; starts the liveness sweep."""
        netius.StreamServer.on_serve(self)
        self.state.attach_loop(self._call_soon, threading.get_ident())
        self.state.store.attach_loop(self._call_soon)
        if self.settings.activity_timeout > 0:
            self._schedule_sweep()  # PUSHI_ACTIVITY_TIMEOUT=0: never probe

    def _sweep_every(self) -> float:
        settings = self.settings
        shortest = min(settings.activity_timeout, max(settings.pong_timeout, 0.0))
        return max(0.05, shortest / SWEEPS_PER_TIMEOUT)

    def _schedule_sweep(self) -> None:
        self.delay(self._sweep, timeout=self._sweep_every())

    def _sweep(self) -> None:
        """One timer for every connection's liveness (no timer per connection)."""
        try:
            now = time.monotonic()
            idle = self.settings.activity_timeout
            grace = self.settings.pong_timeout
            for connection in list(self.connections):
                if isinstance(connection, PushiConnection) and connection.is_open():
                    connection.check_alive(now, idle, grace)
        except Exception:
            LOGGER.exception("liveness sweep failed")
        finally:
            self._schedule_sweep()

    def _call_soon(self, callable) -> None:
        self.delay_s(callable)

    def on_connection_c(self, connection) -> None:
        """Bounds the time a socket may take to finish its handshake."""
        netius.StreamServer.on_connection_c(self, connection)

        def expire() -> None:
            if connection.is_open() and not connection.upgraded:
                connection.close()

        self.delay(expire, timeout=self.settings.handshake_timeout)

    def on_data(self, connection, data) -> None:
        """Feeds the connection's protocol with what arrived."""
        netius.StreamServer.on_data(self, connection, data)
        connection.feed(data)

    def on_connection_d(self, connection) -> None:
        """Forgets a closed socket's memberships, on the next loop turn.

        netius may close a socket from inside a write that State is making in
        the middle of a fan-out; State must not change under its own feet.
        """
        netius.StreamServer.on_connection_d(self, connection)
        session, connection.session = connection.session, None
        if session is not None:
            self.delay(lambda: self.state.disconnect(session))

    def shutdown(self) -> None:
        """Closes every socket with 1001 and stops the loop (from any thread)."""

        def stop() -> None:
            for connection in list(self.connections):
                if isinstance(connection, PushiConnection) and connection.upgraded:
                    connection.close_ws(CLOSE_GOING_AWAY, "server shutting down")
            self.delay(self.stop, timeout=0.2)

        self.delay_s(stop)
