"""The HTTP front of the fake Bot API: ``/bot<token>/<method>``, Telegram's envelopes.

Why the standard library's ``ThreadingHTTPServer`` and not a framework's server: the
fake must keep HTTP/1.1 connections alive as Telegram does (PTB's httpx pool reuses
them, and a reset pooled connection is part of what an outage looks like), hold many
long polls open at once, and drop dead on ``go_down`` (listening socket closed, live
connections reset) then listen again on the same port. Werkzeug's development server
closes every connection after one response and exits the process when a bind fails;
nothing else installed here serves HTTP. Request bodies are parsed by Werkzeug's form
parser (url-encoded and multipart, as PTB sends them through httpx) and ``json``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import select
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from werkzeug.formparser import parse_form_data

from tests.fake_telegram.errors import ApiError, ConnectionDropped, bad_request
from tests.fake_telegram.methods import METHODS, NOT_IMPLEMENTED, Args, Call, Described
from tests.fake_telegram.recording import Recorder
from tests.fake_telegram.world import World

log = logging.getLogger("tests.fake_telegram")

_PATH = re.compile(r"/bot(?P<token>[^/]*)/(?P<method>[^/]+)")
#: A token of Telegram's shape ("<bot id>:<secret>"): a wrong one gets 401, anything else 404.
TOKEN_FORMAT = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,100}")


class _HtmlAnswer(Exception):
    def __init__(self, status: int, page: bytes) -> None:
        self.status, self.page = status, page


def parse_params(content_type: str, query: str, body: bytes) -> dict[str, str]:
    """Every parameter as the string Telegram's server sees: query string, then the body
    (url-encoded or multipart form, or a JSON object whose non-string values are JSON text).

    Raises:
        ApiError: 400 for a JSON body that is not a JSON object.
    """
    raw = dict(parse_qsl(query, keep_blank_values=True))
    mimetype = content_type.split(";", 1)[0].strip().lower()
    if mimetype == "application/json" and body.strip():
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise bad_request(f"can't parse JSON body: {exc}") from None
        if not isinstance(document, dict):
            raise bad_request("JSON body must be an object of parameters")
        raw.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in document.items()})
    elif mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        environ = {
            "REQUEST_METHOD": "POST",
            "CONTENT_TYPE": content_type,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }
        _, form, files = parse_form_data(environ)
        raw.update(form.items())
        # No implemented method takes a file; keep a trace so a test can see one was sent.
        raw.update({name: f"<file {f.filename or name}>" for name, f in files.items()})
    return raw


class BotApiHttp:
    """Routes one HTTP request to a Bot API method and renders Telegram's answer."""

    def __init__(self, *, token: str, world: World, recorder: Recorder, down: threading.Event) -> None:
        self.token = token
        self.world = world
        self.recorder = recorder
        self._down = down

    def handle(
        self, http_method: str, target: str, content_type: str, body: bytes, client_gone: Callable[[], bool]
    ) -> tuple[int, bytes, str]:
        """Returns (status, body, content type).

        Raises:
            ConnectionDropped: the exchange ends without an answer.
        """
        url = urlsplit(target)
        match = _PATH.fullmatch(url.path)
        record = self.recorder.begin(match.group("method") if match else url.path, {}, http_method, content_type)
        answer: Any
        try:
            record.raw.update(parse_params(content_type, url.query, body))
            result = self._dispatch(match, record.raw, record.params, client_gone)
            answer = {"ok": True, "result": result}
            if isinstance(result, Described):
                answer = {"ok": True, "result": result.result, "description": result.description}
            status = 200
        except ApiError as error:
            status, answer = error.code, error.envelope()
        except _HtmlAnswer as page:
            self.recorder.finish(record, status=page.status, response=page.page.decode(), outcome="answered")
            return page.status, page.page, "text/html"
        except ConnectionDropped as dropped:
            self.recorder.finish(record, status=None, response=None, outcome=str(dropped))
            raise
        except Exception as bug:  # a defect of the fake: loud in the log, a 500 for the bot
            log.exception("fake Bot API failed on %s", target)
            status, answer = 500, {"ok": False, "error_code": 500, "description": f"Internal Server Error: fake Bot API bug: {bug!r}"}
        delay = self.recorder.take_delay(record.method) if match else 0.0
        if delay and self._down.wait(delay):
            self.recorder.finish(record, status=None, response=answer, outcome="server down")
            raise ConnectionDropped("server down")
        outcome = "client disconnected" if delay and client_gone() else "answered"
        self.recorder.finish(record, status=status, response=answer, outcome=outcome)
        return status, json.dumps(answer, ensure_ascii=False).encode(), "application/json"

    def _dispatch(
        self, match: re.Match[str] | None, raw: dict[str, str], params: dict[str, Any], client_gone: Callable[[], bool]
    ) -> Any:
        if match is None:
            raise ApiError(404, "Not Found")
        token, name = match.group("token"), match.group("method")
        if token != self.token:
            raise ApiError(401, "Unauthorized") if TOKEN_FORMAT.fullmatch(token) else ApiError(404, "Not Found")
        entry = METHODS.get(name.lower())
        if entry is None:
            if name.lower() in NOT_IMPLEMENTED:
                raise ApiError(404, f"Not Found: {name} is a Bot API method that tests/fake_telegram does not implement")
            raise ApiError(404, "Not Found")
        fault = self.recorder.take_fault(name)
        if fault is not None:
            if fault.html:
                raise _HtmlAnswer(fault.status, fault.html_page())
            raise fault.error()
        return entry[1](self.world, Call(Args(raw, params), client_gone))


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; every answer carries a Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = "nginx/1.18.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.live_connections.add(self.connection)

    def finish(self) -> None:
        self.server.live_connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass  # the connection was reset by go_down or by the client

    def do_POST(self) -> None:
        try:
            body = self._read_body()
            status, payload, content_type = self.server.app.handle(
                self.command, self.path, self.headers.get("Content-Type", ""), body, self._client_gone
            )
        except (ConnectionDropped, OSError):
            self.close_connection = True  # no answer: the server went down or the client left
            return
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    do_GET = do_POST

    def _read_body(self) -> bytes:
        """The request body, de-chunked. Raises OSError for a malformed framing."""
        try:
            return self._read_framed_body()
        except ValueError as exc:
            raise OSError(f"malformed request body framing: {exc}") from exc

    def _read_framed_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _client_gone(self) -> bool:
        """True once the client closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never wait for long polls at server_close
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: BotApiHttp) -> None:
        self.app = app
        self.live_connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("fake Bot API: error while serving %s", client_address)


class HttpFront:
    """Starts, stops, takes down and brings back the listening server on one port."""

    def __init__(self, app: BotApiHttp, host: str, port: int, down: threading.Event) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._down = down
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def listening(self) -> bool:
        return self._server is not None

    def listen(self) -> int:
        """Listen (again) on the port; returns it.

        Raises:
            OSError: the port is taken by another process.
        """
        with self._lock:
            if self._server is not None:
                return self._port
            self._server = _Server((self._host, self._port), self._app)
            self._port = self._server.server_address[1]
            self._down.clear()
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"fake-telegram:{self._port}", daemon=True,
            )  # fmt: skip
            self._thread.start()
            return self._port

    def drop(self) -> None:
        """Stop listening and reset every live connection: new connections are refused,
        requests in flight (long polls included) end without an answer."""
        with self._lock:
            server, thread, self._server, self._thread = self._server, self._thread, None, None
            if server is None:
                return
            self._down.set()
            server.shutdown()
            server.server_close()
            self._app.world.updates.server_down()
            for connection in list(server.live_connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed
            if thread is not None:
                thread.join(timeout=5)
