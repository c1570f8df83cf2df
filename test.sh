#!/usr/bin/env bash
# Set up .venv (as setup.sh does, with the test requirements), then run the whole test suite, slow tests
# included.
# Usage: bash test.sh [pytest arguments...]
# Example: bash test.sh -q -m "not slow"     (the quick tests only)
set -euo pipefail
cd "$(dirname "$0")"
case ${1:-} in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
bash setup.sh requirements-test.txt
exec .venv/bin/python -m pytest "$@"
