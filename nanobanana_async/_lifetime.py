"""A client's lifetime: bound to the event loop it first runs on, connected to that loop's
scheduler on first use, closed once, with every resource released (does I/O)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ._download import Downloader
from ._errors import ClientClosedError, ConfigurationError
from ._scheduler._journaled import JournalHooks
from ._scheduler._submit import Submitter, connect
from ._settings import Settings
from .events import _Emitter

if TYPE_CHECKING:
    from .webhooks import CallbackReceiver

_log = logging.getLogger("nanobanana_async")


class Lifetime:
    """What a :class:`Client` has open: its loop, its scheduler connection, its journal and
    its downloads. ``name`` names the client in errors."""

    def __init__(
        self,
        settings: Settings,
        *,
        journal: str | Path | None,
        callbacks: CallbackReceiver | None,
        name: str,
        events: _Emitter | None = None,
    ) -> None:
        self._settings = settings
        events = events if events is not None else _Emitter()
        self.events = events
        self._journal = JournalHooks.open(journal, settings) if journal else None
        self._callbacks = callbacks
        self.downloader = Downloader(
            retry=settings.retry,
            clock=settings.clock,
            random=settings.random,
            journal=self._journal.journal if self._journal is not None else None,
            events=events,
        )
        self._name = name
        self.submitter: Submitter | None = None
        self._ready: Submitter | None = None  # connected, and the journal's slots held
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self._start_lock: asyncio.Lock | None = None

    @property
    def journal(self) -> JournalHooks | None:
        """The client's journal, if it has one (read by a Router to find where a request is)."""
        return self._journal

    def check_open(self, task_id: str | None = None) -> None:
        """Raise unless the client is open, on the loop it is bound to (binding it if new).

        Raises:
            ClientClosedError: the client was closed.
            ConfigurationError: the client runs on another event loop.
        """
        if self.closed:
            # Most often met from a second asyncio.run: the fix is a new client, in that loop.
            raise ClientClosedError(
                "the client is closed: create a new Client inside the running event loop",
                task_id=task_id,
            )
        self._bind_loop()

    def check_loop(self) -> None:
        """Raise if the client is bound to an event loop other than the running one (binds
        nothing; outside any loop nothing is checked).

        Raises:
            ConfigurationError: the client runs on another event loop.
        """
        if self.loop is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            if loop is not self.loop:
                self._other_loop()

    @property
    def loop_ended(self) -> bool:
        """True when the client ran on an event loop that is now closed (its asyncio.run
        returned): it can only be closed, from any loop (see :meth:`aclose`)."""
        return self.loop is not None and self.loop.is_closed()

    def check_closable(self) -> None:
        """Raise if :meth:`aclose` would: the client is open and bound to another event loop
        that has not ended.

        Raises:
            ConfigurationError: the client runs on another event loop, still open.
        """
        if not self.closed and not self.loop_ended:
            self.check_loop()

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif loop is not self.loop:
            self._other_loop()

    def _other_loop(self) -> None:
        # Its sessions, locks and scheduler belong to the first loop: on another loop
        # they would hang or fail with "Event loop is closed".
        raise ConfigurationError(
            f"{self._name} is bound to the event loop it started on; create one Client per "
            "event loop (for example inside each asyncio.run)"
        )

    def ready(self) -> Submitter | None:
        """The submitter when the client is started, open and on its own loop, else None
        (then :meth:`started` connects it or raises): the per-call path, without a coroutine."""
        ready = self._ready
        if ready is None or self.closed or asyncio.get_running_loop() is not self.loop:
            return None
        return ready

    async def started(self) -> Submitter:
        """The client's submitter, connected on first use (the journal's slots held first)."""
        self.check_open()
        if self._ready is not None:
            return self._ready
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._ready is None:
                submitter = self.connected()
                if self._journal is not None:
                    # Every caller waits for this, not only the first: a submit sent before
                    # the killed run's slots and recent sends are counted overfills the account.
                    await self._journal.hold_slots(submitter)
                self._ready = submitter
        return self._ready

    def connected(self) -> Submitter:
        """The client's submitter, connected now if it is not yet."""
        if self.submitter is None:
            self.submitter = connect(
                self._settings,
                closed=lambda: self.closed,
                journal=self._journal,
                callbacks=self._callbacks,
                emitter=self.events,
            )
        return self.submitter

    async def aclose(self) -> None:
        """See ``Client.aclose``."""
        if self.closed:
            return
        if self.loop_ended:
            await self._close_after_loop()
            return
        if self.loop is not None:
            self._bind_loop()
        self.closed = True
        # Every resource is closed even when an earlier step raises or this task is
        # cancelled again (a second Ctrl-C): callbacks run last-pushed first.
        async with contextlib.AsyncExitStack() as stack:
            # Last of all: the streams see the closing client's final events, then end.
            stack.callback(self.events.close)
            stack.push_async_callback(self.downloader.aclose)
            if self._journal is not None:
                stack.push_async_callback(self._journal.aclose)
            stack.push_async_callback(self._settings.transport.aclose)
            if self.submitter is not None:
                submitter, scheduler = self.submitter, self.submitter.scheduler
                # Callbacks run last-pushed first, and also when a step before them is
                # cancelled: checks stop now, the submits in flight are stopped, then the
                # pending tasks fail (a share per loop iteration) and the runner is released.
                stack.push_async_callback(scheduler.detach)
                stack.push_async_callback(scheduler.close_connection, submitter.conn)
                scheduler.stop_checking(submitter.conn)
                await submitter.stop()

    async def _close_after_loop(self) -> None:
        # Its loop has ended (a finished asyncio.run): the scheduler, its tasks and their
        # futures went with it and can never be resolved, so nothing is awaited on them.
        # What needs no loop of its own is released: the HTTP sessions (aiohttp closes a
        # connector of a closed loop without touching that loop) and the journal's file.
        self.closed = True
        pending = len(self.submitter.conn.entries) if self.submitter is not None else 0
        _log.debug(
            "%s closed after its event loop ended: its sessions and journal are released; "
            "%d task(s) it tracked there were left as that loop left them",
            self._name,
            pending,
        )
        async with contextlib.AsyncExitStack() as stack:
            # Each is released even when one before it raises.
            if self._journal is not None:
                stack.push_async_callback(self._journal.journal.aclose)
            stack.push_async_callback(self.downloader.aclose)
            await self._settings.transport.aclose()
