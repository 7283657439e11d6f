"""HTTP GETs for status's checks (RabbitMQ's management API, Flower), on Python's http.client.

Status asks a handful of GETs of hosts it names itself; requests cost about 35 ms of
import for that, on the path of every ``qsetup status``. This client keeps one
connection per host and port open for the calls of one ``with`` block, checks TLS
servers against the given CA (and their name), follows no redirect and uses no proxy:
status asks the host itself, as a deploy reaches it. Every failure to get an answer is
:class:`NoAnswer` with its kind (``timeout``, ``tls``, ``connect``).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit


class NoAnswer(Exception):
    """No HTTP answer: ``kind`` is ``timeout``, ``tls`` or ``connect``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class Reply:
    """An HTTP answer: its status code and body."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.body = body

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body.decode("utf-8"))


def _basic(auth: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()


class Client:
    """GETs with optional basic auth, TLS checked against ``cafile`` when given."""

    def __init__(self, auth: tuple[str, str] | None = None, cafile: str | None = None) -> None:
        self.auth = auth
        self._context = ssl.create_default_context(cafile=cafile) if cafile else None
        self._open: dict[tuple[str, str, int], http.client.HTTPConnection] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every open connection."""
        for conn in self._open.values():
            conn.close()
        self._open.clear()

    def _connection(self, scheme: str, host: str, port: int, timeout: float) -> Any:
        key = (scheme, host, port)
        conn = self._open.get(key)
        if conn is None:
            if scheme == "https":
                context = self._context or ssl.create_default_context()
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            self._open[key] = conn
        conn.timeout = timeout
        return conn

    def get(
        self,
        url: str,
        *,
        timeout: float,
        params: dict[str, str] | None = None,
        auth: tuple[str, str] | None | bool = True,
    ) -> Reply:
        """GET ``url`` (``auth``: True for the client's, None for none, or a pair)."""
        parts = urlsplit(url)
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        host = parts.hostname or ""
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params)
        creds = self.auth if auth is True else auth if isinstance(auth, tuple) else None
        headers = {"Accept": "application/json"}
        if creds is not None:
            headers["Authorization"] = _basic(creds)
        for attempt in (1, 2):
            conn = self._connection(scheme, host, port, timeout)
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                return Reply(resp.status, resp.read())
            except TimeoutError as exc:
                self._drop(scheme, host, port)
                raise NoAnswer("timeout", str(exc)) from None
            except ssl.SSLError as exc:
                self._drop(scheme, host, port)
                raise NoAnswer("tls", str(exc)) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept connection the server closed meanwhile: once more on a new one.
                self._drop(scheme, host, port)
                if attempt == 2:
                    raise NoAnswer("connect", "the connection was closed") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(scheme, host, port)
                raise NoAnswer("connect", str(exc)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self, scheme: str, host: str, port: int) -> None:
        conn = self._open.pop((scheme, host, port), None)
        if conn is not None:
            conn.close()
