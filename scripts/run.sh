#!/usr/bin/env bash
# One entry point for the README's two commands, on a fresh machine:
#   bash scripts/run.sh demo   set up, start the local engine, run the one-command demo
#   bash scripts/run.sh test   set up, start the local engine, run unit + integration tests
# Needs python3 (>= 3.10) and Java 21+ for OpenSearch 3 and Elasticsearch 9 (Java 17 runs the 2.19, ES 7 and ES 8 nodes; plus mvn, or STAIR_ES_MAVEN_URL, for the engine download).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VENV="${STAIR_ES_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

setup() {  # $1: pip extras ("" for the runtime only)
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
  fi
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  python -m pip install -q --upgrade pip
  if [ -n "$1" ]; then
    echo "== installing stair-es[$1] (first time: torch is large, a few minutes)"
    python -m pip install -q -e ".[$1]"
  else
    echo "== installing stair-es (runtime only: onnxruntime, engine clients; no torch)"
    python -m pip install -q -e .
  fi
  if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ] && [ ! -d /usr/lib/jvm ]; then
    echo "error: Java 21+ is needed for the local engine, OpenSearch 3 (e.g. a Temurin or OpenJDK 21+ JDK under /usr/lib/jvm)" >&2
    exit 4
  fi
}

case "${1:-}" in
  demo)
    shift
    setup ""
    exec stair-es demo "$@"
    ;;
  test)
    shift
    setup "all"
    export STAIR_ES_REQUIRE_INTEGRATION=1
    # the browser test drives Debian's Chromium (Playwright's own browser download is not used)
    if [ ! -x "${STAIR_ES_CHROMIUM:-/usr/bin/chromium}" ]; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing chromium (apt) for the browser test"
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
      else
        echo "warning: no Chromium (sudo apt-get install chromium); the browser test will fail" >&2
      fi
    fi
    echo "== ruff"
    ruff check .
    ruff format --check .
    echo "== mypy"
    python -m mypy  # stair_es/ and cli/, settings in pyproject.toml
    if [ -n "${STAIR_ES_URL:-}" ]; then
      echo "== pytest (engine: $STAIR_ES_URL)"
      python -m pytest -m "not gpu" "$@"
      exit 0
    fi
    # the same integration tests run on local OpenSearch 3.x (default) and 2.x nodes and local
    # Elasticsearch 7.17 (rank_features), 8.x and 9.x (sparse_vector) nodes
    OS_PORT="${STAIR_ES_TEST_PORT:-9250}"
    OS2_PORT="${STAIR_ES_TEST_OS2_PORT:-9255}"
    ES_PORT="${STAIR_ES_TEST_ES_PORT:-9260}"
    ES8_PORT="${STAIR_ES_TEST_ES8_PORT:-9262}"
    ES9_PORT="${STAIR_ES_TEST_ES9_PORT:-9264}"
    # fault and cluster tests start (and kill) their own nodes on FAULT_PORT, +2 and +3; once, on the default engine
    export STAIR_ES_FAULT_PORTS="${STAIR_ES_FAULT_PORTS:-9270}"
    FAULT_PORT="$STAIR_ES_FAULT_PORTS"
    # the secured Elasticsearch node (TLS, users) of test_secure_engine.py; once, in the first pass
    export STAIR_ES_SECURE_TEST_PORT="${STAIR_ES_SECURE_TEST_PORT:-9275}"
    SECURE_PORT="$STAIR_ES_SECURE_TEST_PORT"
    ONCE="not gpu and not browser and not readme and not faults and not ray and not secure"
    # fresh data folders: tests never see indexes left by an earlier run (the engine binaries stay cached)
    DATA="$(mktemp -d "${TMPDIR:-/tmp}/stair-es-test-data.XXXXXX")"
    chmod 755 "$DATA"  # the node may run as the unprivileged stair-es user
    trap 'for p in "$OS_PORT" $((OS_PORT + 1)) "$OS2_PORT" "$ES_PORT" "$ES8_PORT" "$ES9_PORT" "$SECURE_PORT" "$FAULT_PORT" $((FAULT_PORT + 2)) $((FAULT_PORT + 3)); do stair-es engine down --port "$p" >/dev/null 2>&1 || true; done; rm -rf "$DATA"' EXIT
    # the default engine is a 2-node local cluster (the twin of the compose demo cluster): the first
    # pass, with the browser and README tests, runs against both nodes
    stair-es engine up --nodes 2 --port "$OS_PORT" --data-dir "$DATA/opensearch"
    stair-es engine up --version 2.19.6 --port "$OS2_PORT" --data-dir "$DATA/opensearch2"
    stair-es engine up --engine elasticsearch --version 7.17.29 --port "$ES_PORT" --data-dir "$DATA/elasticsearch"
    stair-es engine up --engine elasticsearch --version 8.15.0 --port "$ES8_PORT" --data-dir "$DATA/elasticsearch8"
    stair-es engine up --engine elasticsearch --version 9.1.0 --port "$ES9_PORT" --data-dir "$DATA/elasticsearch9"
    echo "== pytest: unit + integration on a 2-node OpenSearch cluster (http://127.0.0.1:$OS_PORT,$((OS_PORT + 1)))"
    STAIR_ES_URL="http://127.0.0.1:$OS_PORT,http://127.0.0.1:$((OS_PORT + 1))" python -m pytest -m "not gpu" "$@"
    echo "== pytest: integration on OpenSearch 2.19 (http://127.0.0.1:$OS2_PORT)"
    STAIR_ES_URL="http://127.0.0.1:$OS2_PORT" python -m pytest -m "$ONCE" integration_tests "$@"
    echo "== pytest: integration on Elasticsearch 7.17 (http://127.0.0.1:$ES_PORT)"
    STAIR_ES_URL="http://127.0.0.1:$ES_PORT" python -m pytest -m "$ONCE" integration_tests "$@"
    echo "== pytest: integration on Elasticsearch 8.15 (http://127.0.0.1:$ES8_PORT)"
    STAIR_ES_URL="http://127.0.0.1:$ES8_PORT" python -m pytest -m "$ONCE" integration_tests "$@"
    echo "== pytest: integration on Elasticsearch 9.1 (http://127.0.0.1:$ES9_PORT)"
    STAIR_ES_URL="http://127.0.0.1:$ES9_PORT" python -m pytest -m "$ONCE" integration_tests "$@"
    ;;
  *)
    echo "usage: bash scripts/run.sh demo|test [args...]" >&2
    exit 2
    ;;
esac
