"""``rediq-tui [--redis-url URL] [--interval MS] [--no-mouse] [--read-only] [--theme light|dark]
[--demo]``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rediq_tui.config import ConsoleConfig

if TYPE_CHECKING:
    from rediq_tui.demo.demo import Demo


def parse_args(argv: Sequence[str] | None = None) -> ConsoleConfig:
    parser = argparse.ArgumentParser(prog="rediq-tui", description="rediq operations console")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL"), help="Redis URL (default: REDIS_URL)"
    )
    parser.add_argument("--interval", type=int, default=2000, metavar="MS", help="refresh interval in ms")
    parser.add_argument("--no-mouse", action="store_true", help="keyboard only")
    parser.add_argument("--read-only", action="store_true", help="disable every action that writes")
    parser.add_argument("--theme", choices=("light", "dark"), default="dark")
    parser.add_argument("--app", default="", help="default app path when launching workers")
    parser.add_argument("--prefix", default=None, help="key prefix (default: rediq configuration)")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start the example order pipeline (workers and a stream of orders) and watch it live",
    )
    args = parser.parse_args(argv)
    if args.interval < 100:
        parser.error("--interval must be at least 100 ms")
    return ConsoleConfig(
        redis_url=args.redis_url,
        interval_ms=args.interval,
        mouse=not args.no_mouse,
        read_only=args.read_only,
        theme=args.theme,
        worker_app=args.app or (DEMO_APP if args.demo else ""),
        prefix=args.prefix,
        demo=args.demo,
    )


DEMO_APP = "rediq_tui.demo.tasks:registry"


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    from dataclasses import replace

    from engine.client import AsyncClient
    from engine.config import load_config
    from engine.errors import RediqError
    from rediq_tui.app import RediqApp

    try:
        # the same configuration sources as the CLI and the workers (flags, env, .env, file)
        engine_config = load_config(redis_url=config.redis_url, rediq_prefix=config.prefix)
        config = replace(config, redis_url=engine_config.redis_url, prefix=engine_config.rediq_prefix)
        demo = _start_demo(config.redis_url) if config.demo else None
        if demo is not None:
            config = replace(config, redis_url=demo.url)
        client = AsyncClient(config.redis_url, settings=engine_config.engine_settings())
        app = RediqApp(config, client=client)
    except RediqError as exc:
        print(exc)
        return exc.exit_code
    try:
        app.run(mouse=config.mouse)
    finally:
        if demo is not None:  # quitting stops what the demo started
            print("stopping the demo's workers…")
            demo.stop()
    return 0


def _start_demo(url: str | None) -> Demo:
    """The example order pipeline on the given server (default: the embedded one)."""
    from engine.embedded import default_url

    try:
        from rediq_tui.demo.demo import Demo
    except ImportError as exc:
        from engine.errors import ConsoleMissing

        raise ConsoleMissing(f"the demo app (rediq_tui.demo) is not installed: {exc}") from None
    resolved = url or default_url()
    print(f"rediq demo: order pipeline on {resolved}; quit with q to stop it")
    return Demo(resolved).start()


if __name__ == "__main__":
    raise SystemExit(main())
