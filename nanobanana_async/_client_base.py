"""ClientBase: a Client's private side: the warning when one is dropped open, and the calls a
Router and the CLI make that are no public surface (does I/O)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._journal import request_key
from ._models import ImageRequest, TaskStatus
from ._scheduler._latency import LatencyModel
from ._scheduler._submit import check_resume
from ._task import Task

if TYPE_CHECKING:
    from ._lifetime import Lifetime
    from ._settings import Settings


class ClientBase:
    """What :class:`Client` holds and offers only to the package (set in its ``__init__``)."""

    _settings: Settings
    _life: Lifetime

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        # Like aiohttp's "Unclosed client session": a client that ran on a loop and was
        # dropped without aclose() leaks connections and stops tracking its tasks.
        life = getattr(self, "_life", None)
        if life is not None and life.loop is not None and not life.closed:
            _warn(
                f"unclosed {self!r}: use 'async with' or 'await client.aclose()'",
                ResourceWarning,
                source=self,
            )

    async def _routed_submit(
        self,
        request: ImageRequest,
        key: str | None,
        *,
        retry_refusals: bool,
        wanted: Callable[[], bool] | None = None,
    ) -> Task:
        """``submit`` for a Router, which decides what a refusal means (no public surface).

        Args:
            retry_refusals: False while another account can take the prompt: an answer that
                proves nothing was created is raised at once, not retried here.
            wanted: asked right before the create is sent; False (a hedge whose first task
                won) sends nothing and raises ``ClientClosedError``.
        """
        return await (await self._life.started()).submit(
            request, key, retry_refusals=retry_refusals, wanted=wanted
        )

    async def _journal_holds(self, request: ImageRequest, key: str | None) -> bool:
        """Whether this client's journal already holds ``request`` (by ``key``, else its
        default key here). A Router sends such a request back to this account only."""
        hooks = self._life.journal
        if hooks is None:
            return False
        journal_key = key or request_key(self._settings.driver.name, request)
        return await hooks.journal.get(journal_key) is not None

    def _learned_latency(self, request: ImageRequest) -> LatencyModel | None:
        """How long tasks of ``request``'s model took on this account, None until learned
        (or before the client started). Read by a Router to rank accounts and time hedges."""
        submitter = self._life.submitter
        if submitter is None:
            return None
        return submitter.scheduler.plan.learned_model(submitter.conn.group(request.model))

    def _request_wait(self) -> float:
        """Seconds until this account's request window lets the next request go (0 before
        the client started). Read by a Router's ``"soonest"`` strategy."""
        submitter = self._life.submitter
        if submitter is None:
            return 0.0
        ledger = submitter.conn.account.ledger
        return max(0.0, ledger.next_request_free() - self._settings.clock.now())

    async def _poll(self, task_id: str, *, model: str) -> TaskStatus:
        """Check a task's status once, now: no retry, no tracking (``resume`` waits for it).

        Private: ``nanobanana status`` needs one check that fails at once when the provider
        cannot be reached; users ``resume`` a task (no issue asked for a public check).

        Args:
            task_id: the provider's task id.
            model: the model it was submitted with (canonical name or provider id).

        Returns:
            what the provider answered (``urls`` set on success).

        Raises:
            InvalidRequestError: empty task id or a model the provider does not offer.
            TransportError: no answer (``ConnectError``: the provider could not be reached).
            APIError: the provider refused the check or answered nonsense.
        """
        model = check_resume(self._settings, task_id, model, None)
        return await (await self._life.started()).poll(task_id, model)

    async def _rejoin(self, key: str) -> Task:
        """The task this client's journal holds for ``key``, tracked again; never a create.

        Private: ``nanobanana resume`` uses it for a row whose recorded request no longer
        reads (its task id and model still resume it).
        """
        self._life.check_open()
        return await (await self._life.started()).rejoin(key)
