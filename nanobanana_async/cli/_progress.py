"""The batch's progress table and summary, counted from the batch's own events (pure)."""

from __future__ import annotations

import collections
import math
import statistics
from typing import Any, Final

import attrs
from rich.console import Group, RenderableType
from rich.table import Table

from ._inputs import lines_text


@attrs.frozen(kw_only=True)
class AccountProgress:
    """One account of a batch over several: what progress shows of it."""

    name: str
    accepted: int
    running: int
    circuit: str
    """``closed``, ``open`` or ``half-open``."""
    set_aside: bool
    """Its key or credits were refused: it takes no more prompts this run."""

    def text(self) -> str:
        """``crun 12 accepted, 3 running (circuit open)``."""
        text = f"{self.name} {self.accepted} accepted, {self.running} running"
        if self.set_aside:
            return text + " (set aside)"
        return text if self.circuit == "closed" else f"{text} (circuit {self.circuit})"


@attrs.define
class BatchState:
    """What the progress display shows, counted from the batch's own events (pure: every
    time is passed in).

    Each prompt moves forward only: waiting → running (accepted) → downloading (finished)
    → done, or → failed / not submitted from any step; so ``submitted``, ``done`` and
    ``failed`` never go backwards.
    """

    total: int
    started: float
    submitted: int = 0
    running: int = 0
    downloading: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    requests_in_window: int = 0
    request_limit: int = 0
    retries: int = 0
    accounts: list[AccountProgress] = attrs.field(factory=list)
    """Each account's counts, when the batch runs on several (else empty)."""
    _accepted_at: dict[int, float] = attrs.field(factory=dict)
    _last_accept: float = attrs.field(default=-math.inf)
    _ended: collections.deque[float] = attrs.field(factory=lambda: collections.deque(maxlen=500))
    _durations: collections.deque[float] = attrs.field(
        factory=lambda: collections.deque(maxlen=200)
    )

    def accepted(self, line: int, now: float) -> None:
        """The provider accepted the prompt's task (or the journal re-attached it)."""
        self.submitted += 1
        self.running += 1
        self._accepted_at[line] = now
        self._last_accept = now

    def finished(self, line: int, now: float) -> None:
        """Its task succeeded; its images are downloading."""
        self.running -= 1
        self.downloading += 1
        accepted = self._accepted_at.pop(line, None)
        if accepted is not None:
            self._durations.append(now - accepted)

    def saved(self, now: float, *, ok: bool) -> None:
        """Its download ended: done, or failed (a full disk, an expired URL)."""
        self.downloading -= 1
        self._end(now, ok=ok)

    def task_failed(self, line: int, now: float) -> None:
        """Its task failed or timed out after it was accepted."""
        self.running -= 1
        self._accepted_at.pop(line, None)
        self._end(now, ok=False)

    def refused(self, now: float) -> None:
        """Its submit failed (refused, or of unknown outcome)."""
        self._end(now, ok=False)

    def not_submitted(self) -> None:
        """Not sent: the account ran out of credits."""
        self.skipped += 1

    def _end(self, now: float, *, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        self._ended.append(now)

    def eta(self, now: float) -> str:
        """Time left as ``3m05s`` (see :meth:`eta_seconds`); ``-`` when it has none."""
        seconds = self.eta_seconds(now)
        if seconds is None:
            return "-"
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"

    def rate(self, now: float) -> float:
        """Prompts ended per second over the last ``ETA_WINDOW`` seconds (or since the start)."""
        span = min(ETA_WINDOW, now - self.started)
        if self._ended and len(self._ended) == self._ended.maxlen:
            # The deque forgets older ends: measure only over the ends it still holds.
            span = min(span, now - self._ended[0])
        if span <= 0:
            return 0.0
        return sum(1 for t in self._ended if t > now - span) / span

    def eta_seconds(self, now: float) -> float | None:
        """Time left: the prompts left at the rate they recently ended, and never less than
        a typical task's duration after the last accept (the tail still running).

        None before any prompt ended and once none is left.
        """
        left = self.total - self.done - self.failed - self.skipped
        if left <= 0 or not self._ended:
            return None
        recent = [t for t in self._ended if t > now - ETA_WINDOW]
        if len(recent) >= 2:
            # Measured from the first recent end, not the start: the first tasks' latency
            # (no end at all for a while) would read as a rate near zero (20m for 30 s).
            seconds = left * max(now - recent[0], 1e-9) / (len(recent) - 1)
        else:  # one end or none lately: the whole run's rate
            seconds = left * max(now - self.started, 1e-9) / (self.done + self.failed)
        if self._durations and self.running:
            typical = statistics.median(self._durations)
            seconds = max(seconds, self._last_accept + typical - now)
        return max(1.0, seconds)  # something is left: never 0m00s


# Seconds of recent ends the ETA's rate is measured over.

ETA_WINDOW: Final = 60.0


def render_progress(state: BatchState, now: float) -> RenderableType:
    """The live progress table (also rendered to a string in tests)."""
    table = Table(title="nanobanana batch", show_header=True, header_style="bold")
    cells = {
        "submitted": f"{state.submitted}/{state.total}",
        "running": str(state.running),
        "downloading": str(state.downloading),
        "done": str(state.done),
        "failed": str(state.failed),
        "requests/window": f"{state.requests_in_window}/{state.request_limit}",
    }
    if state.retries:
        # Only once there are any: climbing, it is the sign of a provider that is down.
        cells["retries"] = str(state.retries)
    cells["ETA"] = state.eta(now)
    for column in cells:
        table.add_column(column, justify="right")
    table.add_row(*cells.values())
    if not state.accounts:
        return table
    # A row per account under the totals: where the prompts went, and which circuit is open.
    per_account = Table(show_header=True, header_style="bold")
    for column in ("account", "accepted", "running", "circuit"):
        per_account.add_column(column, justify="left" if column == "account" else "right")
    for account in state.accounts:
        circuit = "set aside" if account.set_aside else account.circuit
        per_account.add_row(account.name, str(account.accepted), str(account.running), circuit)
    return Group(table, per_account)


def render_summary(rows: list[dict[str, Any]]) -> RenderableType:
    """The end-of-run summary: counts by status and the first failures."""
    table = Table(title="summary")
    table.add_column("status")
    table.add_column("count", justify="right")
    for status in ("succeeded", "failed", "unknown", "not_submitted"):
        table.add_row(status, str(sum(1 for r in rows if r["status"] == status)))
    # One row per distinct problem (a bad key is one row for 120 prompts, not ten alike).
    problems: dict[str, list[int]] = {}
    for row in rows:
        if row["status"] != "succeeded":
            problems.setdefault(str(row["error"]), []).append(row["line"])
    for error, numbers in list(problems.items())[:10]:
        table.add_row(lines_text(numbers), error[:80])
    return table


# Seconds between two lines of plain or JSON progress: a log shows the batch moving every few
# seconds, and a line stays within 5 s of the last even when the event loop runs late.

PROGRESS_INTERVAL: Final = 3.0


def progress_record(state: BatchState, now: float) -> dict[str, Any]:
    """The progress as one flat JSON object (``--progress json``, one per line).

    Fields: ``elapsed`` (s), ``total``, ``submitted``, ``running``, ``downloading``, ``done``,
    ``failed``, ``not_submitted``, ``rate`` (prompts ended per second, recently), ``eta`` (s, or
    null), ``requests_in_window``, ``request_limit``, ``retries``; over several accounts also
    ``accounts``: a list of ``{name, accepted, running, circuit, set_aside}``.
    """
    eta = state.eta_seconds(now)
    record: dict[str, Any] = {
        "elapsed": round(now - state.started, 1),
        "total": state.total,
        "submitted": state.submitted,
        "running": state.running,
        "downloading": state.downloading,
        "done": state.done,
        "failed": state.failed,
        "not_submitted": state.skipped,
        "rate": round(state.rate(now), 2),
        "eta": None if eta is None else round(eta),
        "requests_in_window": state.requests_in_window,
        "request_limit": state.request_limit,
        "retries": state.retries,
    }
    if state.accounts:
        record["accounts"] = [attrs.asdict(account) for account in state.accounts]
    return record


def render_plain(state: BatchState, now: float) -> str:
    """The progress as one line of text, for a log or CI (``--progress plain``)."""
    record = progress_record(state, now)
    text = (
        f"[{record['elapsed']:.0f}s] {state.done}/{state.total} done, {state.failed} failed, "
        f"{state.running} running, {state.downloading} downloading, "
        f"{state.submitted} submitted"
    )
    if state.skipped:
        text += f", {state.skipped} not submitted"
    text += (
        f" | {record['rate']:.1f}/s | ETA {state.eta(now)} | requests "
        f"{state.requests_in_window}/{state.request_limit}"
    )
    if state.retries:
        text += f" | {state.retries} retries"
    if state.accounts:
        text += " | " + "; ".join(account.text() for account in state.accounts)
    return text
