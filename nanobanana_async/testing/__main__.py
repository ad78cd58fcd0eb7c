"""``python -m nanobanana_async.testing``: run a provider simulator until Ctrl-C (does I/O)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys

from ._sim_config import Latency
from ._simulator import Simulator
from ._wire import PROTOCOLS


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m nanobanana_async.testing",
        description="Serve a Nano Banana provider simulator on 127.0.0.1.",
    )
    parser.add_argument("--provider", choices=sorted(PROTOCOLS), default="apixo")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", default=None, help="the key to accept (random if unset)")
    parser.add_argument("--median", type=float, default=2.0, help="median task seconds")
    args = parser.parse_args(argv)

    async def serve() -> None:
        simulator = Simulator(
            args.provider,
            port=args.port,
            api_key=args.api_key,
            latency=Latency(median=args.median, sigma=0.3),
            # Ids unique per run, like a real provider's (a seed would repeat them).
            seed=secrets.randbits(64),
        )
        async with simulator:
            sys.stdout.write(
                f"{args.provider} simulator at {simulator.base_url}\n"
                f"export NANOBANANA_PROVIDER={args.provider}\n"
                f"export NANOBANANA_BASE_URL={simulator.base_url}\n"
                f"export NANOBANANA_API_KEY={simulator.api_key}\n"
                "(Ctrl-C stops it)\n"
            )
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
