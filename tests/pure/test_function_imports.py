"""An import inside a function hides a dependency from a reader (and once hid import cycles): it
is allowed only with a comment saying why (start-up time, an optional dependency, a child
process), on its line or on the line above its block of imports. Layers and cycles themselves
are checked by import-linter (`lint-imports`, pyproject's contracts)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def unexplained_function_imports(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[str] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        body_imports: list[ast.stmt] = []
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                body_imports.append(child)
                # the first import of a block (imports with only blank lines between them, as
                # isort groups them) carries the comment for the block
                first: ast.stmt = child
                for earlier in reversed(body_imports[:-1]):
                    between = lines[(earlier.end_lineno or earlier.lineno) : first.lineno - 1]
                    if all(not line.strip() for line in between):
                        first = earlier
                    else:
                        break
                above = lines[first.lineno - 2].strip() if first.lineno > 1 else ""
                if "#" not in lines[child.lineno - 1] and not above.startswith("#"):
                    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                    found.append(f"{name}:{child.lineno}: {lines[child.lineno - 1].strip()}")
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse("\n".join(lines)), False)
    return found


def test_every_import_inside_a_function_says_why() -> None:
    paths = sorted([*ROOT.glob("engine/**/*.py"), *ROOT.glob("rediq_tui/**/*.py")])
    assert len(paths) > 50
    found = [line for path in paths for line in unexplained_function_imports(path)]
    assert found == [], "imports inside functions without a comment saying why:\n" + "\n".join(found)


def test_the_check_finds_an_unexplained_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f():\n"
        "    # start-up time\n"
        "    import json\n"
        "    import os\n"
        "    x = 1\n"
        "    import sys\n"
        "    import re  # optional\n"
        "\n"
        "    import math\n"
        "    y = 2\n"
    )
    # math follows re across a blank line: one block with sys, which has no reason above it
    assert [line.rsplit(": ", 1)[1] for line in unexplained_function_imports(sample)] == [
        "import sys",
        "import math",
    ]
