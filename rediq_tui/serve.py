"""``rediq-tui --serve``: the same console in a browser, through ``textual-serve`` (the
``rediq[serve]`` extra). Each browser tab runs its own console process. Bound to loopback by
default; bound anywhere else, every request needs the token printed at start (``?token=`` once,
then an HttpOnly cookie), so a port opened on a shared network is not an open console."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

TOKEN_COOKIE = "rediq_token"
TOKEN_ENV = "REDIQ_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_command(argv: Sequence[str]) -> str:
    """The console each browser tab runs: the same flags, without ``--serve``/``--host``/
    ``--port``. The Redis URL travels in the environment, never on a command line."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--host", "--port", "--token"):
            skip = True
            continue
        if arg == "--serve" or arg.startswith(("--host=", "--port=", "--token=", "--redis-url")):
            if arg == "--redis-url":
                skip = True
            continue
        out.append(arg)
    return shlex.join([sys.executable, "-m", "rediq_tui", *out])


def token_middleware(token: str) -> Any:
    # optional dependency: textual-serve brings aiohttp, only with --serve
    from aiohttp import web

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/static/"):
            return await handler(request)
        given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE, "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(status=403, text="rediq console: a token is required (?token=...)\n")
        response = await handler(request)
        if request.query.get("token") and not response.prepared:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        return response

    return check


def make_server(command: str, host: str, port: int, token: str | None) -> Any:
    """A textual-serve server; with ``token``, every page and websocket request must carry it."""
    # optional dependency: textual-serve, only with --serve
    from textual_serve.server import Server

    class TokenServer(Server):
        async def _make_app(self) -> Any:
            app = await super()._make_app()
            if token:
                app.middlewares.append(token_middleware(token))
            return app

    return TokenServer(command, host=host, port=port, title="rediq")


def serve(argv: Sequence[str], host: str, port: int, redis_url: str | None, token: str | None) -> int:
    try:
        import textual_serve  # noqa: F401
    except ImportError:
        print("rediq-tui --serve needs textual-serve: pip install 'rediq[serve]'")
        return 2
    if not is_loopback(host):
        token = token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(24)
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    server = make_server(console_command(argv), host, port, token)
    where = f"http://{host}:{port}/"
    if token:
        print(f"rediq console served on {where}?token={token} (bound to {host}: token required)")
    else:
        print(f"rediq console served on {where} (loopback only); Ctrl+C stops it")
    server.serve()
    return 0
