"""``rediq-tui [--redis-url URL] [--interval MS] [--no-mouse] [--read-only] [--theme light|dark]
[--demo] [--serve [--host 127.0.0.1] [--port 8000] [--token T]]``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rediq_tui.config import ConsoleConfig

if TYPE_CHECKING:
    # optional: the demo's own dependencies, only with --demo
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
    parser.add_argument("--serve", action="store_true", help="serve the console to a browser (textual-serve)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="with --serve: address to bind (default loopback)"
    )
    parser.add_argument("--port", type=int, default=8000, help="with --serve: port (default 8000)")
    parser.add_argument(
        "--token",
        default=None,
        help="with --serve off loopback: the token browsers must send (default: random)",
    )
    args = parser.parse_args(argv)
    if args.interval < 100:
        parser.error("--interval must be at least 100 ms")
    if args.serve and args.demo:
        parser.error("--serve and --demo cannot be combined (start the demo in its own console)")
    return ConsoleConfig(
        redis_url=args.redis_url,
        interval_ms=args.interval,
        mouse=not args.no_mouse,
        read_only=args.read_only,
        theme=args.theme,
        worker_app=args.app or (DEMO_APP if args.demo else ""),
        prefix=args.prefix,
        demo=args.demo,
        serve=args.serve,
        serve_host=args.host,
        serve_port=args.port,
        serve_token=args.token,
    )


DEMO_APP = "rediq_tui.demo.tasks:registry"


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    # start-up time: `rediq-tui --help` and the launcher load none of the console
    from dataclasses import replace

    from engine.client import AsyncClient
    from engine.config import load_config
    from engine.errors import RediqError
    from rediq_tui.app import RediqApp

    demo: Demo | None = None
    owned_server = False
    try:
        # the same configuration sources as the CLI and the workers (flags, env, .env, file)
        engine_config = load_config(redis_url=config.redis_url, rediq_prefix=config.prefix)
        config = replace(config, redis_url=engine_config.redis_url, prefix=engine_config.rediq_prefix)
        if config.serve:
            # optional dependency: textual-serve, only with --serve
            from rediq_tui.serve import serve

            args = list(sys.argv[1:] if argv is None else argv)
            return serve(args, config.serve_host, config.serve_port, config.redis_url, config.serve_token)
        if config.demo:
            demo, owned_server = _start_demo(config.redis_url)
            config = replace(config, redis_url=demo.url)
        client = AsyncClient(config.redis_url, settings=engine_config.engine_settings())
        app = RediqApp(config, client=client)
    except RediqError as exc:
        print(exc)
        if demo is not None:
            _stop_demo(demo, owned_server)
        return exc.exit_code
    try:
        app.run(mouse=config.mouse)
    except KeyboardInterrupt:
        pass
    finally:
        if demo is not None:  # quitting (q, Ctrl-C, SIGHUP) stops what the demo started
            _stop_demo(demo, owned_server)
    return 0


def _stop_demo(demo: Demo, owned_server: bool) -> None:
    """Stop the demo's workers and, when the demo started it, its Valkey. After a hang-up the
    terminal is gone: printing may fail, stopping must not."""
    # A hang-up from here on (an SSH link dropped while quitting) sends SIGHUP and SIGCONT. The
    # console's SIGHUP handler ended with its loop, and Textual's SIGCONT handler, still set,
    # raises without one: either would end this process halfway, with the Valkey left running.
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGCONT, signal.SIG_DFL)
    _say("stopping the demo's workers…")
    try:
        demo.stop()
    finally:
        if owned_server:
            _stop_embedded()
    if not owned_server and demo.url:
        _say(f"left the Redis/Valkey at {demo.url} running (it was running before the demo)")
        _say("  stop the embedded one with: rediq server stop")


def _stop_embedded() -> None:
    # start-up time: only with the embedded server
    from engine import embedded

    pid = embedded.stop_server()
    _say(f"stopped the demo's Valkey (pid {pid})" if pid else "the demo's Valkey had already stopped")


def _say(text: str) -> None:
    try:
        print(text, flush=True)
    except OSError:  # the terminal went away (SIGHUP): nobody to tell
        pass


def _start_demo(url: str | None) -> tuple[Demo, bool]:
    """The example order pipeline on the given server (default: the embedded one, started
    here and then stopped on exit unless it was already running)."""
    # start-up time: only with the embedded server
    from engine import embedded
    from engine.config import default_url  # pydantic-settings loads only when no URL is given

    try:
        # optional: the demo's own dependencies, only with --demo
        from rediq_tui.demo.demo import Demo
    except ImportError as exc:
        # only on this error path
        from engine.errors import ConsoleMissing

        raise ConsoleMissing(f"the demo app (rediq_tui.demo) is not installed: {exc}") from None
    was_running = embedded.status().running
    resolved = url or default_url()
    owned = url is None and not was_running and embedded.status().running
    if owned:
        print(f"rediq demo: order pipeline on {resolved}; q, Ctrl-C or a hang-up stops it and its Valkey")
    else:
        print(f"rediq demo: order pipeline on {resolved}; quit with q to stop the workers")
    return Demo(resolved).start(), owned


if __name__ == "__main__":
    raise SystemExit(main())
