#!/usr/bin/env bash
# Branch coverage of the test suites, reported per package (docs/testing.md).
#
#   scripts/coverage.sh          the default suite (~9 min under load on 2 cores)
#   scripts/coverage.sh --all    the default suite, then the marked ones (~25 min)
#
# Every Python process the tests start (workers, the CLI, the console) records its own data
# file ([tool.coverage.run] patch = subprocess in pyproject.toml); they are combined at the end.
# Lua (engine/scripts) is not Python and not measured: tests/lua holds its transition tables.
set -uo pipefail
cd "$(dirname "$0")/.."
coverage erase
status=0
coverage run -m pytest -q -p no:cacheprovider || status=$?
if [ "${1:-}" = "--all" ]; then
  coverage run -m pytest -q -p no:cacheprovider -m "slow or cluster or chaos or e2e" -n 0 || status=$?  # serial as in .ci/run
fi
coverage combine -q
coverage report --include='engine/*' --skip-covered
for package in engine rediq_tui; do
  printf '%-10s %s\n' "$package" "$(coverage report --include="$package/*" | tail -1)"
done
exit "$status"
