#!/usr/bin/env bash
# One entry point for the README's two commands, on a fresh machine:
#   bash scripts/run.sh demo   set up, start the local engine, run the one-command demo
#   bash scripts/run.sh test   set up, start the local engine, run unit + integration tests
# Needs python3 (>= 3.10) and Java 17+ (plus mvn, or STAIR_ES_MAVEN_URL, for the engine download).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VENV="${STAIR_ES_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

setup() {  # $1: pip extras
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
  fi
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  python -m pip install -q --upgrade pip
  echo "== installing stair-es[$1] (first time: torch is large, a few minutes)"
  python -m pip install -q -e ".[$1]"
  if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ] && [ ! -d /usr/lib/jvm ]; then
    echo "error: Java 17+ is needed for the local engine (e.g. apt-get install openjdk-17-jre-headless)" >&2
    exit 4
  fi
}

case "${1:-}" in
  demo)
    shift
    setup "train"
    exec stair-es demo "$@"
    ;;
  test)
    shift
    setup "all"
    PORT="${STAIR_ES_TEST_PORT:-9250}"
    if [ -z "${STAIR_ES_URL:-}" ]; then
      stair-es engine up --port "$PORT"
      trap 'stair-es engine down --port "$PORT" || true' EXIT
      export STAIR_ES_URL="http://127.0.0.1:$PORT"
    fi
    export STAIR_ES_REQUIRE_INTEGRATION=1
    echo "== ruff"
    ruff check .
    echo "== pytest (engine: $STAIR_ES_URL)"
    python -m pytest -m "not gpu" "$@"
    ;;
  *)
    echo "usage: bash scripts/run.sh demo|test [args...]" >&2
    exit 2
    ;;
esac
