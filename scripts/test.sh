#!/usr/bin/env bash
# The whole test suite: unit, contract, integration and end-to-end tests on both shapes.
# Starts the real engines (scripts/stack.sh up) and points the distributed tests at them.
# In CI (CI=true) a distributed test can never skip: a missing engine fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin

# The private PostgreSQL cluster runs as user postgres, which must be able to read the stack dir.
# A checkout under a private home directory cannot host it: use /tmp then (a colder first start).
if [ -z "${LOGFLOW_STACK_DIR:-}" ] && ! su postgres -s /bin/sh -c "test -x '$PWD'" 2>/dev/null; then
  export LOGFLOW_STACK_DIR=/tmp/logflow-stack
fi
scripts/stack.sh tools
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
export LOGFLOW_TEST_KAFKA_URL=$LOGFLOW_QUEUE_URL
export LOGFLOW_TEST_OPENSEARCH_URL=$LOGFLOW_STORE_URL
export LOGFLOW_TEST_POSTGRES_URL=${LOGFLOW_DATABASE_URL%/*}/logflow_test
export LOGFLOW_TEST_REDIS_URL=${LOGFLOW_CACHE_URL%/*}/1
export LOGFLOW_REQUIRE_DISTRIBUTED=1
# The application itself must not pick these up: tests build their settings explicitly.
unset LOGFLOW_QUEUE_URL LOGFLOW_STORE_URL LOGFLOW_DATABASE_URL LOGFLOW_CACHE_URL

"$BIN/pytest" -q "$@"
