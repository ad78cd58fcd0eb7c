"""The public API as a user writes it, checked by mypy --strict; never run."""

from __future__ import annotations

import asyncio

import nanobanana_async as nb
from nanobanana_async.testing import (
    FakeClock,
    Latency,
    Outage,
    ServerLimits,
    Simulator,
    Simulators,
    SimulatorStats,
)


async def main(prompts: list[str]) -> None:
    async with nb.Client("apixo", limits=nb.Limits(requests=600, per=10.0)) as client:
        result: nb.ImageResult = await client.generate(
            "a cat", model="nano-banana-2", resolution="2K", aspect_ratio="16:9"
        )
        urls: tuple[str, ...] = result.urls
        task: nb.Task = await client.submit(nb.ImageRequest(prompt="a dog"))
        task_id: str | None = task.id
        state: nb.TaskState = task.state
        again: nb.ImageResult = await task.result(timeout=30.0)
        resumed: nb.Task = client.resume("abc", model="nano-banana-2")
        checked: nb.TaskStatus | None = task.status
        try:
            await client.submit(nb.ImageRequest(prompt="a fox"))
        except nb.StorageError as exc:
            kept: nb.Task | None = exc.task
            lost_id: str | None = exc.task_id
            print(kept, lost_id)
        done = await asyncio.gather(*(client.generate(p) for p in prompts), return_exceptions=True)
        async for finished in client.as_completed(prompts):
            try:
                await finished
            except nb.TaskError as exc:
                print(exc.task_id, exc.provider, exc.model)
            except nb.SubmitOutcomeUnknownError as exc:
                print(exc.request)
            except nb.WrongAccountError as exc:
                held: tuple[str, str, str | None] = (exc.provider, exc.account, exc.task_id)
                print(held, exc.key)
            except nb.DuplicateSubmitError as exc:
                racing: tuple[str, str] = (exc.key, exc.path)
                print(racing)
            except nb.APIError as exc:
                request_id: str | None = exc.request_id
                request_line: str | None = exc.request_line
                print(request_line)
                status: int = exc.status
                body: str = exc.body
                print(request_id, status, body)
        ratio: nb.AspectRatio = "21:9"
        model: nb.ModelName = "nano-banana-pro"
        native = nb.ImageRequest(prompt="x", model="google/nano-banana-2-lite", aspect_ratio=ratio)
        await client.generate("a bird", model=model, resolution="4k", output_format="jpg")
        stats: nb.ClientStatistics = client.statistics()
        print(
            urls, task_id, state, again, resumed, checked, done, stats.mean_checks_per_task, native
        )
    clients = [nb.Client("apixo", api_key="a"), nb.Client("crun", api_key="b")]
    hedge = nb.Hedge(after_quantile=0.99, max_share=0.05)
    async with nb.Router(clients, strategy="priority", hedge=hedge, owns_clients=True) as router:
        either: nb.ImageClient = router
        also: nb.ImageClient = clients[0]
        routed: nb.Task = await either.submit(nb.ImageRequest(prompt="x"), key="line-1")
        tried: tuple[nb.Attempt, ...] = routed.attempts
        picked: nb.ImageResult = await also.generate("y", model="nano-banana-2")
        again_: nb.Task = router.resume("abc", model="nano-banana-2", account="crun")
        router_stats: nb.RouterStatistics = router.statistics()
        per_account: tuple[nb.AccountStatistics, ...] = router_stats.accounts
        try:
            await router.generate("z")
        except nb.SubmitOutcomeUnknownError as exc:
            print([attempt.account for attempt in exc.attempts], exc.request)
        async for each in either.as_completed(["a", "b"]):
            print(each.attempts)
        print(tried, picked, again_, router.accounts, per_account[0].circuit, router_stats.hedges)
    async with Simulator("crun", latency=Latency(median=0.5)) as sim:
        print(sim.base_url, sim.api_key, sim.stats.max_window, FakeClock().now())
    limits = ServerLimits(requests=600, per=10.0, concurrent_tasks=50)
    async with Simulators(
        [
            Simulator("apixo", limits=limits),
            Simulator("crun", limits=limits, outages=[Outage(start=1.0, end=7.0)]),
        ]
    ) as sims:
        crun: Simulator = sims["crun"]
        env: dict[str, str] = sims.env()
        print(crun.base_url, env, crun.in_maintenance("create"))
    per_sim: dict[str, SimulatorStats] = sims.stats
    twice: dict[str, list[str]] = sims.prompts_on_several()
    print(per_sim["crun"].refused, twice)


async def watch_events(router: nb.Router) -> None:
    """The events API as a caller types it (issue 23)."""
    from nanobanana_async import events

    def on_event(event: events.Event) -> None:
        if isinstance(event, events.Resolved):
            latency: float = event.latency
            checks: int = event.checks
            print(latency, checks, event.result, event.error)

    async with nb.Client("apixo", on_event=on_event) as client:
        stream: events.EventStream = client.events(maxsize=100)
        task = await client.submit(nb.ImageRequest(prompt="x"), key="row-1")
        task.on_update(on_event)
        async for event in stream:
            kind: str = event.kind
            task_id: str | None = event.task_id
            if isinstance(event, events.RateLimited):
                scope: str = event.scope
                print(scope, event.retry_after, event.operation)
            print(kind, task_id, event.key, event.account, event.at, stream.dropped)
            stream.close()
    any_event: events.AnyEvent = events.HedgeSent(provider="apixo", at=0.0, account="a")
    print(any_event.kind, router.events(maxsize=10))
    nb.Router([client], on_event=on_event)


def telemetry_usage() -> None:
    """OpenTelemetry: explicit providers, off, and through a Router."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    from nanobanana_async.otel import Telemetry

    telemetry = Telemetry(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    traced = nb.Client("local", telemetry=telemetry)
    silent = nb.Client("local", telemetry=False)
    print(nb.Router([traced, silent], telemetry=telemetry), Telemetry())
