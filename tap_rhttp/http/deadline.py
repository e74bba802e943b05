"""One deadline per attempt, from connect to the last body byte.

``requests`` and urllib3 apply ``timeout`` to each socket operation, so a server that
drips its body (or its status line) a byte at a time would hold an attempt for as long
as it likes. Two mechanisms bound the whole exchange:

- :func:`read_body` reads a body with ``read1`` and shrinks the socket timeout to what
  is left of the deadline before every read, so a slow-drip body ends at the deadline
  with the exact "timed out" message;
- a :class:`Watchdog` shuts down the client's sockets when the deadline passes, which
  wakes a read blocked inside urllib3 (a dripped status line or header block).

Both are kept: the first gives the precise error for bodies, the second is the only
thing that can interrupt urllib3's header parsing. The connections also skip interim
(1xx) responses (see ``interim``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import typing as t
import weakref

import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from tap_rhttp.http.interim import InterimSkippingResponse

#: Bytes asked for per read.
READ_CHUNK = 1 << 16


class DeadlineExceeded(Exception):
    """The attempt's deadline passed while reading (mapped to r.http's timeout text)."""


class BodyTooLarge(Exception):
    """A body grew past the limit it was read with (``max_body_bytes``), after decoding.

    Attributes:
        limit: the limit, in decoded bytes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the body is larger than {limit} bytes")


class SinkError(Exception):
    """The body sink could not take the bytes (a full disk while spooling).

    Attributes:
        error: the OSError the sink raised.
    """

    def __init__(self, error: OSError) -> None:
        self.error = error
        super().__init__(str(error))


def _socket_of(raw: t.Any) -> socket.socket | None:
    connection = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def read_body(
    raw: t.Any,
    deadline: float | None,
    write: t.Callable[[bytes], None],
    *,
    limit: int | None = None,
    at_most: int | None = None,
) -> bool:
    """Read a (decoded) body into `write`, never past the deadline, in bounded memory.

    Each read asks urllib3 for at most :data:`READ_CHUNK` decoded bytes (urllib3 >= 2.6
    bounds decompression to what was asked, so a gzip bomb inflates a chunk at a time),
    and the decoded total is checked as it grows, as urllib3's ``read(amt=...)`` does.

    Args:
        raw: the urllib3 response.
        deadline: ``time.monotonic()`` by which the body must be complete, or None.
        write: takes each chunk.
        limit: the most decoded bytes a body may have; past it, :class:`BodyTooLarge`.
        at_most: stop quietly once this many decoded bytes were written (an error body:
            the envelope only shows its start).

    Returns:
        True when the body was read to its end, False when `at_most` stopped it.

    Raises:
        DeadlineExceeded: the deadline passed.
        BodyTooLarge: the body passed `limit`.
        SinkError: `write` raised an OSError (a full disk).
        Any transport error urllib3 raises (the client maps them).
    """
    sock = _socket_of(raw) if deadline is not None else None
    total = 0
    while True:
        if at_most is not None and total >= at_most:
            return False
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded
            if sock is not None:
                try:
                    sock.settimeout(remaining)
                except OSError:
                    sock = None
        want = READ_CHUNK if at_most is None else min(READ_CHUNK, at_most - total)
        try:
            chunk = raw.read1(want, decode_content=True)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
            if deadline is not None and deadline - time.monotonic() <= 0.05:
                raise DeadlineExceeded from None
            raise
        if not chunk:
            return True
        total += len(chunk)
        if limit is not None and total > limit:
            raise BodyTooLarge(limit)
        try:
            write(chunk)
        except OSError as exc:
            raise SinkError(exc) from None


#: How much of a body that is only in the way (a redirect's, a digest challenge's) is read
#: before the connection is dropped instead.
DROP_BODY_MAX = 1 << 16


def _discard(chunk: bytes) -> None:
    """A body sink that keeps nothing."""


def drop_body(raw: t.Any, deadline: float | None) -> None:
    """Read and forget a body nobody needs, up to :data:`DROP_BODY_MAX` decoded bytes.

    requests reads such bodies whole (``response.content``) before it goes on: a
    redirect's in ``resolve_redirects``, a digest challenge's in ``handle_401``. An
    endless or inflating body would fill memory; once it is read here, or the connection
    dropped after its first :data:`DROP_BODY_MAX` bytes, ``content`` finds nothing left.

    Raises:
        DeadlineExceeded: the deadline passed (any other failure only drops the body).
    """
    try:
        complete = read_body(raw, deadline, _discard, at_most=DROP_BODY_MAX)
    except DeadlineExceeded:
        raise
    except Exception:  # what follows the body matters, not the body
        complete = False
    if not complete:
        raw.close()


class Watchdog:
    """Shuts down a client's sockets when an attempt's deadline passes.

    The client's connection classes register every socket they open here; :meth:`arm`
    sets the attempt's deadline and, if it passes before :meth:`disarm`, every registered
    socket is shut down, which wakes the blocked read. One client makes one request at a
    time, so the sockets alive at the deadline belong to this attempt or are idle in the
    pool (urllib3 notices a dead idle connection and opens a new one).

    One long-lived thread per client waits on a condition for the current deadline (a
    new timer thread per request cost up to a few milliseconds each). ``disarm`` clears
    the deadline under the lock, so a deadline can never fire into the next attempt.
    The thread is woken only when it must look sooner than it already will: an attempt
    armed while it sleeps until an earlier deadline, or a disarm, leaves it asleep; it
    wakes at that earlier time, finds the later deadline (or none) and sleeps on. So
    attempts one after another, each well within its deadline, wake it about once per
    `timeout`, not twice per request.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        #: When the watching thread wakes on its own (None: not before it is notified).
        self._wakes: float | None = None
        self.fired = False

    def add(self, sock: socket.socket | None) -> None:
        """Watch a socket the client opened."""
        if sock is not None:
            with self._cond:
                self._sockets.add(sock)

    def arm(self, seconds: float) -> None:
        """Start an attempt's deadline, `seconds` from now."""
        with self._cond:
            self.fired = False
            deadline = self._deadline = time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="rhttp-watchdog", daemon=True
                )
                self._thread.start()
            elif self._wakes is None or deadline < self._wakes:
                self._cond.notify()  # it would sleep past this deadline

    def disarm(self) -> None:
        """The attempt is over: no deadline (the thread finds none when it wakes)."""
        with self._cond:
            self._deadline = None

    def close(self) -> None:
        """End the watching thread (the client is done)."""
        with self._cond:
            self._closed = True
            self._deadline = None
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._wakes = None
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._wakes = self._deadline
                    self._cond.wait(remaining)
                    continue
                self._wakes = None
                self._deadline = None
                self.fired = True
                for sock in list(self._sockets):
                    with contextlib.suppress(OSError):  # already closed
                        sock.shutdown(socket.SHUT_RDWR)


def _pool_classes(watchdog: Watchdog) -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """Connection pools whose connections register their sockets with ``watchdog``."""

    class Connection(urllib3.connection.HTTPConnection):
        response_class = InterimSkippingResponse

        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            watchdog.add(sock)
            return sock

    class HTTPSConnection(urllib3.connection.HTTPSConnection):
        response_class = InterimSkippingResponse

        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            watchdog.add(sock)  # covers the TLS handshake
            return sock

        def connect(self) -> None:
            super().connect()
            watchdog.add(self.sock)  # the TLS socket replaces the raw one

    class Pool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = Connection

    class HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
        ConnectionCls = HTTPSConnection

    return {"http": Pool, "https": HTTPSPool}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections the :class:`Watchdog` can interrupt.

    Args:
        watchdog: the client's deadline watcher.
        key_password: the password of an encrypted client key (requests has no
            setting for it; urllib3 takes it per connection pool).
    """

    def __init__(self, watchdog: Watchdog, *, key_password: str | None = None) -> None:
        self._pools = _pool_classes(watchdog)
        self._key_password = key_password
        super().__init__()

    def build_connection_pool_key_attributes(
        self, request: t.Any, verify: t.Any, cert: t.Any = None
    ) -> t.Any:
        """requests' pool key, plus the key password urllib3 needs for an encrypted key."""
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        if cert and self._key_password is not None:
            t.cast("dict[str, t.Any]", pool)["key_password"] = self._key_password
        return host, pool

    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: t.Any) -> t.Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools keep per-read timeouts
            manager.pool_classes_by_scheme = self._pools
        return manager
