"""The standalone receiver's server: aiohttp with a cap on open connections (does I/O).

aiohttp closes a connection whose request head has not arrived within ``keepalive_timeout``
(since 3.14.4) and the handler bounds the body read, but nothing bounds how many connections a
peer may open: past ``max_connections`` a new one is closed at once, so memory stays bounded
whatever peers do (F38).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class _Capped(asyncio.Protocol):
    """One connection: aiohttp's handler, or an immediate close when the site is full."""

    def __init__(self, site: CappedSite, inner: RequestHandler) -> None:
        self._site = site
        self._inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self._site.open) >= self._site.max_connections:
            transport.close()
            return
        self._site.open.add(self)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> None:
        self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self in self._site.open:  # else refused over the cap: aiohttp never saw it
            self._site.open.discard(self)
            self._inner.connection_lost(exc)


class CappedSite(web.TCPSite):
    """A TCP site that holds at most ``max_connections`` connections at once."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, max_connections: int) -> None:
        super().__init__(runner, host, port)
        self.max_connections = max_connections
        self.open: set[_Capped] = set()

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would also listen
        server = self._runner.server
        assert server is not None
        self._server = self._listening = await asyncio.get_running_loop().create_server(
            lambda: _Capped(self, server()), self._host, self._port
        )

    @property
    def port(self) -> int:
        """The port the site listens on (the one the OS chose when asked for port 0)."""
        return int(self._listening.sockets[0].getsockname()[1])
