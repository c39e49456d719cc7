#!/usr/bin/env bash
# Matryoshka Lab: the two commands of the README.
#   ./lab.sh start   set up .venv (first time only) and start the app on http://127.0.0.1:8501
#   ./lab.sh test    set up .venv with the test tools, then ruff, mypy, lint-imports and the whole pytest suite
# Other: ./lab.sh setup [dev]   only install; extra arguments after `start` go to `streamlit run`,
# extra arguments after `test` go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${MLAB_VENV:-.venv}

pick_python() {
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else 1)'; then
      echo "$candidate"; return
    fi
  done
  echo "error: Python 3.11 or newer is required" >&2; exit 1
}

setup() {  # $1 = requirements file
  if [ ! -x "$VENV/bin/python" ]; then
    "$(pick_python)" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(cat requirements.txt "$1" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "Installing into $VENV (first run only) ..." >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch first and exactly: 2.13.0 is the CPU build; any other spec pulls a multi-GB CUDA build.
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -r "$1"
    touch "$stamp"
  fi
}

cmd=${1:-start}
shift || true
case "$cmd" in
  setup)
    if [ "${1:-}" = dev ]; then setup requirements-dev.txt; else setup requirements.txt; fi ;;
  start)
    setup requirements.txt
    exec "$VENV/bin/python" -m streamlit run app.py --server.address "${MLAB_ADDRESS:-127.0.0.1}" \
      --server.port "${MLAB_PORT:-8501}" --server.headless true --browser.gatherUsageStats false "$@" ;;
  test)
    setup requirements-dev.txt
    "$VENV/bin/python" -m ruff check .
    "$VENV/bin/python" -m ruff format --check .
    "$VENV/bin/python" -m mypy
    "$VENV/bin/lint-imports" --no-logo --no-cache
    exec "$VENV/bin/python" -m pytest "$@" ;;
  *)
    echo "usage: ./lab.sh start | test | setup [dev]" >&2; exit 2 ;;
esac
