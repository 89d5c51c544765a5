"""Command palette (Ctrl+P): jump to any queue or worker the console has seen, or open
whatever was typed as a task id."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from rediq_tui import safe
from rediq_tui.messages import Jump

MAX_HITS = 50


class Known(Protocol):
    def known_names(self) -> Iterable[tuple[str, str]]:
        """(kind, name) of every queue and worker seen."""
        ...


class JumpProvider(Provider):
    def _post(self, text: str) -> None:
        self.app.post_message(Jump(text))

    def _known(self) -> list[tuple[str, str]]:
        return list(cast(Known, self.app).known_names())

    async def discover(self) -> Hits:
        for kind, name in self._known()[:MAX_HITS]:
            yield DiscoveryHit(f"Go to {kind}: {safe.clean(name, 60)}", partial(self._post, name))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        shown = 0
        for kind, name in self._known():
            label = f"Go to {kind}: {safe.clean(name, 60)}"
            score = matcher.match(label)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(label), cast(Callable[[], None], partial(self._post, name))
                )
                shown += 1
                if shown >= MAX_HITS:
                    break
        if query.strip():
            text = query.strip()
            yield Hit(
                0.01,
                f"Find {safe.clean(text, 60)!r} (queue, worker or task id in any queue)",
                partial(self._post, text),
            )
