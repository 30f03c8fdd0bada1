#!/usr/bin/env bash
# Set up and run the dashboard or its tests on a fresh machine.
#
#   ./run.sh app    install, fetch map assets and demo data, start the app
#   ./run.sh test   install with the test extras, then run the test suite
#
# Needs Python 3.11 (python3.11 or python3 on PATH). Re-running is cheap:
# what is already installed or fetched is kept.
set -euo pipefail
cd "$(dirname "$0")"

mode="${1:-app}"
shift || true
python_bin="${PYTHON:-$(command -v python3.11 || command -v python3)}"

# 1. A virtual environment with the project installed (editable).
if [[ ! -x .venv/bin/python ]]; then
  "$python_bin" -m venv .venv
fi
extras="dask"
[[ "$mode" == "test" ]] && extras="test,dask"
.venv/bin/python -m pip install --quiet -e ".[${extras}]"

# 2. Leaflet and its plugins for offline maps (the maps use CDNs without them).
.venv/bin/python -m ui.assets || echo "note: maps will load Leaflet from the internet"

# 3. The demo data, unless a data directory already holds it.
if [[ -z "${GREENBED_DATA_DIR:-}" ]]; then
  .venv/bin/python -m engine data fetch --all \
    || echo "note: demo data not fetched (offline?); see 'python -m engine data list'"
fi

case "$mode" in
  app)
    exec .venv/bin/python -m streamlit run app.py "$@"
    ;;
  test)
    if ! command -v chromium >/dev/null; then
      echo "note: browser tests skip without Debian's chromium (apt-get install chromium)"
    fi
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh app|test [extra arguments]" >&2
    exit 2
    ;;
esac
