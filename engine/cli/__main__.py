"""``python -m engine.cli`` is ``rediq`` (the console launches workers this way)."""

from engine.cli import main

main()
