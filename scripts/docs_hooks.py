"""MkDocs hooks (mkdocs.yml ``hooks:``): pages generated from the code at build time.

``<!-- console-keys -->`` in a page becomes the table of every key binding of the console, read
from the ``BINDINGS`` of each class in ``rediq_tui`` (the same rows the console's ``?`` screen
shows, through its ``binding_rows``), so a binding added or changed in the console changes the
documentation with it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

CONSOLE_KEYS = "<!-- console-keys -->"


def binding_owners() -> list[tuple[str, str, list[Any]]]:
    """(module, class name, its own BINDINGS) of every class in rediq_tui that declares any."""
    import rediq_tui

    owners = []
    for info in pkgutil.walk_packages(rediq_tui.__path__, "rediq_tui."):
        if info.name.startswith("rediq_tui.demo") or info.name == "rediq_tui.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and "BINDINGS" in vars(cls):
                owners.append((module.__name__, name, list(vars(cls)["BINDINGS"])))
    return sorted(owners, key=lambda owner: (owner[0] != "rediq_tui.app", owner[0], owner[1]))


def _summary(cls: type) -> str:
    """The first line of a class's own docstring, or where it lives."""
    doc = (vars(cls).get("__doc__") or "").strip()
    return doc.splitlines()[0] if doc else f"`{cls.__module__}.{cls.__name__}`"


def console_keys_markdown() -> str:
    from rediq_tui.screens.help import binding_rows

    lines: list[str] = []
    for module_name, class_name, bindings in binding_owners():
        rows = binding_rows([(class_name, bindings)])
        if not rows:
            continue
        cls = getattr(importlib.import_module(module_name), class_name)
        lines += [f"### {class_name}", "", _summary(cls), ""]
        lines += ["| Keys | Action |", "|---|---|"]
        for _, keys, action in rows:
            shown = ", ".join(f"`{k.strip()}`" for k in keys.split(",") if k.strip()) or f"`{keys}`"
            lines.append(f"| {shown} | {action.replace('|', '&#124;')} |")
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if CONSOLE_KEYS in markdown:
        markdown = markdown.replace(CONSOLE_KEYS, console_keys_markdown())
    return markdown
