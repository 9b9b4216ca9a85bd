#!/usr/bin/env bash
# Build and start LogFlow's distributed shape with Docker Compose, wait until the API is healthy,
# then print where everything is. Extra arguments go to `docker compose up`, e.g.
#   ./scripts/start-all-docker.sh --scale processor=4
#   COMPOSE_PROFILES=demo ./scripts/start-all-docker.sh          # + demo traffic
#   COMPOSE_PROFILES=demo,alerting ./scripts/start-all-docker.sh # + the alerting engine
# Without Docker: `make run` (embedded LogFlow, nothing else to install). Docs: docs/docker.md.
set -euo pipefail
cd "$(dirname "$0")/.."

API_URL=${LOGFLOW_API_URL:-http://localhost:8000}
TIMEOUT=${LOGFLOW_DOCKER_TIMEOUT:-120}   # seconds to wait for $API_URL/health

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

if ! command -v docker >/dev/null 2>&1; then
    die "docker not found. Install Docker (with Compose v2), or run LogFlow without Docker: make run"
fi
if ! docker compose version >/dev/null 2>&1; then
    die "'docker compose' does not work (Compose v2 plugin missing?). Install it, or run without Docker: make run"
fi
if ! docker info >/dev/null 2>&1; then
    die "cannot reach the Docker engine (is Docker running? may this user use it?). Without Docker: make run"
fi
command -v curl >/dev/null 2>&1 || die "curl not found; it is needed to wait for $API_URL/health"

echo "Building and starting LogFlow (first build and image pulls take a few minutes)..."
docker compose up -d --build "$@"

printf 'Waiting for %s/health (up to %ss)' "$API_URL" "$TIMEOUT"
deadline=$((SECONDS + TIMEOUT))
until curl -fsS --max-time 5 "$API_URL/health" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
        echo
        echo "LogFlow did not become healthy within ${TIMEOUT}s. State and recent logs:" >&2
        docker compose ps >&2 || true
        docker compose logs --tail 40 migrate api >&2 || true
        die "not healthy; see above (docker compose logs -f api), or raise LOGFLOW_DOCKER_TIMEOUT"
    fi
    printf '.'
    sleep 2
done
echo

cat <<EOF
✅ LogFlow is running!

Services:
  - API:                   $API_URL
  - API Docs:              $API_URL/docs
  - OpenSearch:            http://localhost:9200
  - OpenSearch Dashboards: http://localhost:5601

Try:   curl $API_URL/health
       curl '$API_URL/api/v1/logs/recent?limit=5'
Logs:  docker compose logs -f api processor
Stop:  docker compose down        (add -v to delete all data)
EOF
