#!/usr/bin/env bash
# Set up .venv, then run the whole test suite (slow tests included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh requirements-test.txt
exec .venv/bin/python -m pytest "$@"
