"""A supervised child that exits at once (nothing imported: spawning it stays cheap)."""


def exit_with(code: int) -> None:
    """Exit with ``code`` (a crash loop when non-zero, a finished ``--burst`` worker when 0)."""
    raise SystemExit(code)
