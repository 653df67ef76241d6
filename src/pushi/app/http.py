"""The API's HTTP server: netius's WSGI server with every input bounded as it is read.

netius parses a request whole before the application sees it, so the limits are
applied in its parser's callbacks, on the event loop, before anything is buffered:

- a body declared (`Content-Length`) over `max_body` is refused from the header, a
  chunked body as soon as its running total is over it (413, in Appier's error shape:
  the request goes to the app with its body dropped and a length over the limit);
- the request line (`PUSHI_MAX_REQUEST_LINE`, 8 KiB: 414) and the header section
  (`PUSHI_MAX_REQUEST_HEADERS`, 16 KiB, and `PUSHI_MAX_HEADER_LINES`, 100 lines: 431)
  are netius's own bounds, made tighter; their answers get Appier's error body too.

After a refusal the connection takes no further request: what the peer still sends is
read and dropped, the answer is followed by an end of stream (half-close), and the
socket is closed when the peer closes or `LINGER_SECONDS` later. Closing at once, with
unread input, would reset the connection and could destroy the answer in flight.
HTTP/2 is never offered (its parser is not bounded here).
"""

from __future__ import annotations

import socket
import sys

import netius
import netius.servers
import netius.servers.http2

LINGER_SECONDS = 2.0
""" How long a refused connection's input is still read (and dropped) """


class BodyTooLarge(Exception):
    """Stops the parser: the body is over the limit (not a netius ParserError,
    so that netius's own error answer does not catch it)."""

    def __init__(self, size: int) -> None:
        Exception.__init__(self, size)
        self.size = size


class BoundedConnection(netius.servers.http2.HTTP2Connection):
    """An HTTP/1.x connection whose request bodies are bounded while read."""

    def open(self, *args, **kwargs):
        self.refused = False
        self.body_l = 0
        netius.servers.http2.HTTP2Connection.open(self, *args, **kwargs)
        if not self.is_open():
            return
        # bodies are bounded by max_body: kept in memory, never spooled to a
        # temporary file (netius makes one from the header's length alone)
        self.parser.file_limit = sys.maxsize
        self.parser.bind("on_headers", self._on_headers)
        self.parser.bind("on_partial", self._on_partial)

    def _on_headers(self):
        self.body_l = 0
        if self.parser.content_l > self.owner.max_body:
            raise BodyTooLarge(self.parser.content_l)

    def _on_partial(self, data):
        if not self.parser.chunked:
            return  # its length was checked from the header
        self.body_l += len(data)
        if self.body_l > self.owner.max_body:
            raise BodyTooLarge(self.body_l)

    def parse(self, data):
        if self.refused:
            return None  # the rest of a refused request: read and dropped
        try:
            return netius.servers.http2.HTTP2Connection.parse(self, data)
        except BodyTooLarge as error:
            self._refuse_body(error.size)
        return None

    def _refuse_body(self, size: int) -> None:
        """Hands the request to the app without its body; the app answers 413
        from the length (see `PushiApp.application_wsgi`), then no more requests."""
        self.refused = True
        parser = self.parser
        parser.content_l = size
        parser.keep_alive = False
        parser.message = []
        self.on_data()

    def send_error(self, error):
        """netius's answer to a request it cannot parse, in Appier's error shape."""
        from .base import error_body

        self.refused = True
        code = getattr(error, "code", None) or 400
        status, headers, body = error_body(code, str(error) or "Malformed request")
        headers = dict(headers)
        headers["Connection"] = "close"
        self.send_response(
            data=body,
            headers=headers,
            code=code,
            code_s=status.split(" ", 1)[1],
            apply=True,
            callback=lambda connection: connection.linger(),
        )

    def linger(self):
        """Half-closes after the answer, then closes (see the module's text)."""
        if not self.is_open():
            return
        try:
            # on TLS this drops the TLS layer: what is read afterwards is
            # dropped anyway, and the peer sees the end of the stream
            self.socket.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        self.owner.delay(self.close, timeout=LINGER_SECONDS)


class BoundedWSGIServer(netius.servers.WSGIServer):
    """netius's WSGI server over `BoundedConnection`, HTTP/1.x only."""

    def __init__(
        self,
        app,
        max_body: int,
        line_limit: int = 8192,
        headers_limit: int = 16384,
        headers_count: int = 100,
        **kwargs,
    ) -> None:
        netius.servers.WSGIServer.__init__(
            self,
            app,
            safe=True,
            line_limit=line_limit,
            headers_limit=headers_limit,
            headers_count=headers_count,
            **kwargs,
        )
        self.safe = True  # netius reads SAFE from the environment: never h2
        self.max_body = max_body

    def build_connection(self, socket, address, ssl=False):
        return BoundedConnection(
            owner=self,
            socket=socket,
            address=address,
            ssl=ssl,
            encoding=self.encoding,
            legacy=True,
            settings=self.settings,
        )

    def _close(self, connection):
        if getattr(connection, "refused", False):
            connection.linger()
            return
        netius.servers.WSGIServer._close(self, connection)
