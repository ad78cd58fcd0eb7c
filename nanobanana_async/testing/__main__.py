"""``python -m nanobanana_async.testing``: run provider simulators until Ctrl-C (does I/O)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys

from ._sim_config import Latency, Outage, ServerLimits
from ._simulator import Simulator
from ._simulators import Simulators
from ._wire import PROTOCOLS


def _names(providers: str) -> list[tuple[str, str]]:
    """(account name, provider) for ``apixo,crun,apixo``: a repeated provider is ``apixo-2``."""
    named: list[tuple[str, str]] = []
    for provider in (p.strip() for p in providers.split(",")):
        if provider not in PROTOCOLS:
            raise ValueError(
                f"unknown provider {provider!r}; one of {', '.join(sorted(PROTOCOLS))}"
            )
        count = sum(1 for _, p in named if p == provider)
        named.append((provider if count == 0 else f"{provider}-{count + 1}", provider))
    return named


def _outage(text: str) -> tuple[str, Outage]:
    """``NAME:START-END`` (maintenance) or ``NAME:START-END:refuse`` (refused connections)."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "refuse"):
            raise ValueError("expected NAME:START-END or NAME:START-END:refuse")
        start, end = (float(v) for v in parts[1].split("-"))
        return parts[0], Outage(start=start, end=end, refuse_connections=len(parts) == 3)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--outage {text!r}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m nanobanana_async.testing",
        description="Serve Nano Banana provider simulators on 127.0.0.1.",
    )
    parser.add_argument(
        "--provider",
        default="apixo",
        help=f"one of {', '.join(sorted(PROTOCOLS))}, or several comma-separated "
        "(apixo,crun): one account each, on its own port; a repeated one is named NAME-2",
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="the first account's port; the next count up"
    )
    parser.add_argument("--api-key", default=None, help="the key to accept (random if unset)")
    parser.add_argument("--median", type=float, default=2.0, help="median task seconds")
    parser.add_argument("--requests", type=int, default=None, help="requests per window")
    parser.add_argument("--per", type=float, default=60.0, help="the window in seconds")
    parser.add_argument("--concurrent", type=int, default=None, help="tasks running at once")
    parser.add_argument(
        "--outage",
        type=_outage,
        action="append",
        default=[],
        metavar="NAME:START-END[:refuse]",
        help="seconds after the start during which NAME answers creates with its maintenance "
        "refusal (or, with :refuse, refuses connections); may be repeated",
    )
    args = parser.parse_args(argv)
    try:
        named = _names(args.provider)
    except ValueError as exc:
        parser.error(str(exc))
    unknown = sorted({name for name, _ in args.outage} - {name for name, _ in named})
    if unknown:
        parser.error(f"--outage names no account: {', '.join(unknown)}")
    limits = ServerLimits(requests=args.requests, per=args.per, concurrent_tasks=args.concurrent)

    async def serve() -> None:
        sims = Simulators(
            {
                name: Simulator(
                    provider,
                    port=args.port + i if args.port else 0,
                    api_key=args.api_key,
                    latency=Latency(median=args.median, sigma=0.3),
                    limits=limits,
                    outages=[outage for where, outage in args.outage if where == name],
                    # Ids unique per run, like a real provider's (a seed would repeat them).
                    seed=secrets.randbits(64),
                )
                for i, (name, provider) in enumerate(named)
            }
        )
        async with sims:
            lines: list[str] = []
            if len(sims) == 1:
                ((name, simulator),) = sims.items()
                lines += [
                    f"{name} simulator at {simulator.base_url}",
                    f"export NANOBANANA_PROVIDER={simulator.provider}",
                    f"export NANOBANANA_BASE_URL={simulator.base_url}",
                    f"export NANOBANANA_API_KEY={simulator.api_key}",
                ]
            else:
                lines += [f"{name} simulator at {sim.base_url}" for name, sim in sims.items()]
                lines += [f"export {var}={value}" for var, value in sims.env().items()]
            sys.stdout.write("\n".join([*lines, "(Ctrl-C stops it)", ""]))
            sys.stdout.flush()
            await asyncio.Event().wait()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
    except OSError as exc:
        sys.stderr.write(f"error: cannot serve on 127.0.0.1:{args.port}: {exc.strerror}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
