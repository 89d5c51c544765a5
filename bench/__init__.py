"""rediq's benchmark suite: ``python -m bench`` (see bench/README.md).

Nothing in this package imports ``engine`` at module level: the runner also executes inside
other libraries' virtualenvs (a peer whose redis-py pin clashes with rediq's).
"""
