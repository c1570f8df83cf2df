#!/usr/bin/env bash
# Create .venv (once), install the requirements into it and the package itself (editable); cheap when
# nothing changed.
# Usage: bash setup.sh [extra requirements files...]
# Example: bash setup.sh requirements-test.txt     (what test.sh runs)
set -euo pipefail
cd "$(dirname "$0")"
case ${1:-} in
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
files=(requirements.txt "$@")
for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "error: $f: requirements file not found" >&2; exit 2; }
done
stamp=.venv/.installed-$(cat "${files[@]}" pyproject.toml | sha1sum | cut -c1-12)
if [ ! -e "$stamp" ]; then
    args=()
    for f in "${files[@]}"; do args+=(-r "$f"); done
    .venv/bin/python -m pip install --disable-pip-version-check -q "${args[@]}"
    .venv/bin/python -m pip install --disable-pip-version-check -q --no-deps -e .
    touch "$stamp"
fi
