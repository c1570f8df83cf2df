#!/usr/bin/env bash
# Create .venv (once) and install the requirements into it; cheap when nothing changed.
# Usage: bash setup.sh [extra requirements files...]
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
files=(requirements.txt "$@")
stamp=.venv/.installed-$(cat "${files[@]}" | sha1sum | cut -c1-12)
if [ ! -e "$stamp" ]; then
    args=()
    for f in "${files[@]}"; do args+=(-r "$f"); done
    .venv/bin/python -m pip install --disable-pip-version-check -q "${args[@]}"
    touch "$stamp"
fi
