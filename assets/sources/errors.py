"""Which fetch failures are worth a retry.

A retry helps only when the failure is outside the data: the network, the hub's servers, a
timeout. A parse error, a read-only file system, a refused archive, a folder in the way or a
bad declaration fail the same way every time, so they fail at once with their message instead
of after minutes of backoff.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

# Exception type names of the HTTP stacks ``datasets``/``huggingface_hub`` use (requests,
# urllib3, httpx, aiohttp, fsspec), matched by name so none of them has to be importable.
_TRANSIENT_NAMES = frozenset(
    {
        "ConnectionError",
        "ConnectTimeout",
        "ReadTimeout",
        "Timeout",
        "TimeoutError",
        "TimeoutException",
        "ConnectError",
        "ReadError",
        "RemoteProtocolError",
        "NetworkError",
        "ProtocolError",
        "RemoteDisconnected",
        "IncompleteRead",
        "ChunkedEncodingError",
        "NewConnectionError",
        "MaxRetryError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ServerTimeoutError",
        "LocalEntryNotFoundError",  # huggingface_hub: offline and not in the cache
        "OfflineModeIsEnabled",
    }
)
_TRANSIENT_ERRNOS = frozenset(
    {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
     errno.ENETUNREACH, errno.ENETDOWN, errno.EPIPE, errno.EAGAIN}
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    return status if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """True for network errors, timeouts and 5xx/429 answers anywhere in the cause chain."""
    for e in _chain(exc):
        status = http_status(e)
        if status is not None:
            return status >= 500 or status in (408, 429)
        if isinstance(e, (socket.timeout, TimeoutError, ConnectionError)):
            return True
        if any(t.__name__ in _TRANSIENT_NAMES for t in type(e).__mro__):
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
            return True
    return False
