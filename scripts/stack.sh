#!/usr/bin/env bash
# LogFlow local service stack: real PostgreSQL, Redis, Kafka (KRaft) and OpenSearch on loopback.
#
#   scripts/stack.sh up     [SERVICE...]   install what is missing, start, wait until healthy
#   scripts/stack.sh down   [SERVICE...]   stop what this script started
#   scripts/stack.sh status [SERVICE...]   print each service's state; exit 1 if any is down
#   scripts/stack.sh env                   print export lines for the LOGFLOW_*_URL variables
#   scripts/stack.sh logs   SERVICE        tail the service's log
#   scripts/stack.sh smoke  [SERVICE...]   functional check of running services (bulk, aggs, produce/consume...)
#   scripts/stack.sh clean                 down + delete all data (keeps downloaded jars)
#   scripts/stack.sh tools                 install the real clients the tests drive (rsyslog, kcat, chromium)
#
# SERVICE is one of: postgres redis kafka opensearch (default: all).
# See docs/stack.md for ports, environment variables and troubleshooting.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
STACK_SRC=$SCRIPT_DIR/stack
STACK_DIR=${LOGFLOW_STACK_DIR:-$REPO_DIR/.stack}
case $STACK_DIR in /*) ;; *) STACK_DIR=$PWD/$STACK_DIR ;; esac

HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
OPENSEARCH_PORT=${OPENSEARCH_PORT:-9200}
OPENSEARCH_TRANSPORT_PORT=${OPENSEARCH_TRANSPORT_PORT:-9300}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
OPENSEARCH_HEAP_OPTS=${OPENSEARCH_HEAP_OPTS:--Xms512m -Xmx1g}
KAFKA_AUTO_CREATE_TOPICS=${KAFKA_AUTO_CREATE_TOPICS:-false}
UP_TIMEOUT=${LOGFLOW_STACK_TIMEOUT:-180}

PG_USER=logflow
PG_PASSWORD=logflow
PG_DATABASES=(logflow logflow_test)

ALL_SERVICES=(postgres redis kafka opensearch)

PG_DIR=$STACK_DIR/postgres
PG_DATA=$PG_DIR/data
PG_RUN=$PG_DIR/run
PG_LOG=$PG_DIR/postgres.log
RD_DIR=$STACK_DIR/redis
RD_CONF=$RD_DIR/redis.conf
RD_PID=$RD_DIR/redis.pid
RD_LOG=$RD_DIR/redis.log
KF_DIR=$STACK_DIR/kafka
KF_PROPS=$KF_DIR/server.properties
KF_PID=$KF_DIR/kafka.pid
KF_LOG=$KF_DIR/kafka.log
OS_DIR=$STACK_DIR/opensearch
OS_HOME=$OS_DIR/home
OS_PID=$OS_DIR/opensearch.pid
OS_LOG=$OS_DIR/opensearch.log
LOG_DIR=$STACK_DIR/logs

# ---------------------------------------------------------------------------- helpers

say() { printf '[stack] %s\n' "$*"; }
slog() { local svc=$1; shift; printf '[%s] %s\n' "$svc" "$*"; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

port_open() { # host port
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

pid_of() { # pidfile -> prints pid if the process is alive and its cmdline contains $2
    local file=$1 marker=${2:-} pid
    [ -s "$file" ] || return 1
    pid=$(head -n1 "$file" 2>/dev/null | tr -dc '0-9')
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    if [ -n "$marker" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"; then
        return 1
    fi
    echo "$pid"
}

stop_pid() { # svc pidfile marker timeout_s
    local svc=$1 file=$2 marker=$3 wait_s=$4 pid i
    if ! pid=$(pid_of "$file" "$marker"); then
        rm -f "$file"
        slog "$svc" "not running"
        return 0
    fi
    slog "$svc" "stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        slog "$svc" "still running after ${wait_s}s, killing"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$file"
    slog "$svc" "stopped"
}

# Daemons must not inherit our lock or any pipe of the caller (a CI runner reading our
# output would otherwise never see EOF): close every fd above 2 before exec.
CLOSE_FDS='for f in /proc/$$/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done; '

spawn() { # pidfile logfile cmd... : start detached, the pid file holds the final (exec'd) pid
    local pidfile=$1 logfile=$2
    shift 2
    setsid bash -c 'echo $$ >"$0"; '"$CLOSE_FDS"'exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
    local i
    for ((i = 0; i < 50; i++)); do [ -s "$pidfile" ] && return 0; sleep 0.1; done
    return 1
}

with_timeout() { # seconds probe-fn args... (probe returns 0 when ready)
    local limit=$1 start=$SECONDS
    shift
    while ! "$@" >/dev/null 2>&1; do
        ((SECONDS - start < limit)) || return 1
        sleep 0.3
    done
}

fail_with_log() { # svc logfile msg
    slog "$1" "ERROR: $3"
    if [ -f "$2" ]; then
        slog "$1" "last lines of $2:"
        tail -n 30 "$2" | sed "s/^/[$1]   /" >&2
    fi
    return 1
}

pg_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

as_pg() { # run a PostgreSQL server tool as the postgres OS user when root (initdb/pg_ctl refuse root)
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

# ---------------------------------------------------------------------------- installation

apt_install() { # packages...  (serialised: both start-up lanes may need apt)
    is_root || die "missing packages: $* (run as root, or: sudo apt-get install -y $*)"
    mkdir -p "$LOG_DIR"
    say "apt-get install $* (log: $LOG_DIR/apt.log)"
    local rc=0
    (
        exec 9>/var/lock/logflow-stack-apt.lock
        flock 9
        created=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            # Keep apt from starting the system-wide redis/postgres services (they would take our ports).
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            created=1
        fi
        r=0
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" || r=$?
        [ "$created" = 1 ] && rm -f /usr/sbin/policy-rc.d
        exit $r
    ) >>"$LOG_DIR/apt.log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 20 "$LOG_DIR/apt.log" >&2
        die "apt-get install $* failed"
    fi
}

ensure_native() { # services... : install redis-server / postgresql if absent
    local need=() s
    for s in "$@"; do
        case $s in
        postgres) pg_bindir >/dev/null || need+=(postgresql) ;;
        redis) command -v redis-server >/dev/null && command -v redis-cli >/dev/null || need+=(redis-server) ;;
        esac
    done
    if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi
}

ensure_java_tools() {
    local need=()
    command -v java >/dev/null || need+=(openjdk-17-jdk-headless)
    command -v javac >/dev/null || need+=(openjdk-17-jdk-headless)
    command -v mvn >/dev/null || need+=(maven)
    command -v curl >/dev/null || need+=(curl)
    command -v python3 >/dev/null || need+=(python3)
    if [ ${#need[@]} -gt 0 ]; then
        mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
        apt_install "${need[@]}"
    fi
}

pom_stamp() { # module -> checksum of the poms that define its classpath
    cat "$STACK_SRC/pom.xml" "$STACK_SRC/$1/pom.xml" | sha256sum | cut -c1-16
}

jars_ready() { # module
    [ -f "$STACK_DIR/$1/lib/.complete" ] && [ "$(cat "$STACK_DIR/$1/lib/.complete")" = "$(pom_stamp "$1")" ]
}

ensure_jars() { # modules... : one Maven run copies every missing runtime classpath
    local todo=() m
    for m in "$@"; do jars_ready "$m" || todo+=("$m"); done
    [ ${#todo[@]} -eq 0 ] && return 0
    mkdir -p "$LOG_DIR"
    for m in "${todo[@]}"; do rm -rf "${STACK_DIR:?}/${m:?}/lib"; done
    local pl
    pl=$(IFS=,; echo "${todo[*]}")
    say "fetching jars for ${todo[*]} with Maven (log: $LOG_DIR/maven.log)"
    if ! mvn -B -q -f "$STACK_SRC/pom.xml" -pl "$pl" -Dlogflow.stack.dir="$STACK_DIR" \
        dependency:copy-dependencies >>"$LOG_DIR/maven.log" 2>&1; then
        tail -n 30 "$LOG_DIR/maven.log" >&2
        die "mvn dependency:copy-dependencies failed for ${todo[*]}"
    fi
    for m in "${todo[@]}"; do pom_stamp "$m" >"$STACK_DIR/$m/lib/.complete"; done
}

ensure_launcher() { # compile the OpenSearch launcher once per source/classpath change
    local src=$STACK_SRC/opensearch/OsLauncher.java classes=$OS_DIR/classes stamp
    stamp=$( (cat "$src"; cat "$OS_DIR/lib/.complete") | sha256sum | cut -c1-16)
    if [ -f "$classes/.stamp" ] && [ "$(cat "$classes/.stamp")" = "$stamp" ]; then return 0; fi
    rm -rf "$classes"
    mkdir -p "$classes"
    javac -nowarn -encoding UTF-8 -d "$classes" -cp "$OS_DIR/lib/*" "$src" >>"$LOG_DIR/javac.log" 2>&1 ||
        { tail -n 30 "$LOG_DIR/javac.log" >&2; die "javac OsLauncher.java failed"; }
    echo "$stamp" >"$classes/.stamp"
}

# ---------------------------------------------------------------------------- postgres

pg_url() { echo "postgresql://$PG_USER:$PG_PASSWORD@$HOST:$POSTGRES_PORT/logflow"; }

pg_ours_running() {
    [ -s "$PG_DATA/postmaster.pid" ] || return 1
    local bindir
    bindir=$(pg_bindir) || return 1
    as_pg "$bindir/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_app_ok() { # the app login works
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=3 psql -X -q -h "$HOST" -p "$POSTGRES_PORT" -U "$PG_USER" \
        -d logflow -tAc 'select 1' 2>/dev/null | grep -q 1
}

pg_bootstrap_db() { # role + databases, idempotent (superuser over our private socket)
    local db sql
    sql="DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') THEN
    CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;"
    for db in "${PG_DATABASES[@]}"; do
        sql+="
SELECT 'CREATE DATABASE $db OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db')
\\gexec"
    done
    psql -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$POSTGRES_PORT" -U postgres -d postgres <<<"$sql" >/dev/null
}

up_postgres() {
    local bindir
    mkdir -p "$PG_DIR"
    bindir=$(pg_bindir) || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
    if pg_ours_running; then
        pg_bootstrap_db
        pg_app_ok || fail_with_log postgres "$PG_LOG" "running but login as $PG_USER fails" || return 1
        slog postgres "already running"
        return 0
    fi
    rm -f "$PG_DIR/external"
    if port_open "$HOST" "$POSTGRES_PORT"; then
        if pg_app_ok; then
            echo "$HOST:$POSTGRES_PORT" >"$PG_DIR/external"
            slog postgres "reusing the PostgreSQL already serving $HOST:$POSTGRES_PORT (has db logflow)"
            return 0
        fi
        fail_with_log postgres /dev/null "port $POSTGRES_PORT is busy and is not a PostgreSQL with db logflow (set POSTGRES_PORT)"
        return 1
    fi
    mkdir -p "$PG_DIR" "$PG_RUN"
    if is_root; then
        chown postgres: "$PG_DIR" "$PG_RUN"
        runuser -u postgres -- test -x "$PG_DIR" ||
            die "user postgres cannot reach $PG_DIR (make its parent directories world-executable or set LOGFLOW_STACK_DIR)"
    fi
    if [ ! -s "$PG_DATA/PG_VERSION" ]; then
        slog postgres "initdb $PG_DATA"
        rm -rf "$PG_DATA"
        as_pg "$bindir/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 --no-sync >>"$PG_LOG" 2>&1 ||
            fail_with_log postgres "$PG_LOG" "initdb failed" || return 1
        echo "include_if_exists = 'logflow_stack.conf'" >>"$PG_DATA/postgresql.conf"
    fi
    # Regenerated on every start so that POSTGRES_PORT etc. can change between runs.
    cat >"$PG_DATA/logflow_stack.conf" <<EOF
# written by scripts/stack.sh
listen_addresses = '$HOST'
port = $POSTGRES_PORT
unix_socket_directories = '$PG_RUN'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_min_messages = warning
EOF
    is_root && chown postgres: "$PG_DATA/logflow_stack.conf" && touch "$PG_LOG" && chown postgres: "$PG_LOG"
    slog postgres "starting on $HOST:$POSTGRES_PORT"
    as_pg bash -c "$CLOSE_FDS"'exec "$@"' _ "$bindir/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start \
        </dev/null >/dev/null 2>&1 ||
        fail_with_log postgres "$PG_LOG" "pg_ctl start failed" || return 1
    pg_bootstrap_db || fail_with_log postgres "$PG_LOG" "creating role/databases failed" || return 1
    with_timeout 30 pg_app_ok || fail_with_log postgres "$PG_LOG" "login as $PG_USER failed" || return 1
    slog postgres "ready: $(pg_url) (+ database logflow_test)"
}

down_postgres() {
    if [ -f "$PG_DIR/external" ]; then
        slog postgres "was reused from $(cat "$PG_DIR/external"), leaving it running"
        rm -f "$PG_DIR/external"
        return 0
    fi
    if ! pg_ours_running; then slog postgres "not running"; return 0; fi
    slog postgres "stopping"
    as_pg "$(pg_bindir)/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    slog postgres "stopped"
}

status_postgres() {
    local pid
    if pg_ours_running; then
        pid=$(head -n1 "$PG_DATA/postmaster.pid")
        if pg_app_ok; then echo "up|$HOST:$POSTGRES_PORT|pid $pid|$(pg_url)"; else echo "unhealthy|$HOST:$POSTGRES_PORT|pid $pid|login as $PG_USER fails"; fi
    elif [ -f "$PG_DIR/external" ] && pg_app_ok; then
        echo "up|$HOST:$POSTGRES_PORT|external|$(pg_url)"
    else
        echo "down|$HOST:$POSTGRES_PORT||"
    fi
}

# ---------------------------------------------------------------------------- redis

redis_ping() { [ "$(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

up_redis() {
    local pid
    mkdir -p "$RD_DIR"
    if pid=$(pid_of "$RD_PID" redis-server) && redis_ping; then
        slog redis "already running (pid $pid)"
        return 0
    fi
    rm -f "$RD_DIR/external"
    if port_open "$HOST" "$REDIS_PORT"; then
        if redis_ping; then
            echo "$HOST:$REDIS_PORT" >"$RD_DIR/external"
            slog redis "reusing the Redis already serving $HOST:$REDIS_PORT"
            return 0
        fi
        fail_with_log redis /dev/null "port $REDIS_PORT is busy and does not answer PING (set REDIS_PORT)"
        return 1
    fi
    mkdir -p "$RD_DIR"
    cat >"$RD_CONF" <<EOF
# written by scripts/stack.sh
bind $HOST
port $REDIS_PORT
daemonize yes
pidfile $RD_PID
logfile $RD_LOG
dir $RD_DIR
save ""
appendonly no
databases 16
maxmemory 256mb
maxmemory-policy noeviction
EOF
    slog redis "starting on $HOST:$REDIS_PORT"
    bash -c "$CLOSE_FDS"'exec "$@"' _ redis-server "$RD_CONF" </dev/null >>"$RD_LOG" 2>&1 || fail_with_log redis "$RD_LOG" "redis-server failed" || return 1
    with_timeout 30 redis_ping || fail_with_log redis "$RD_LOG" "no PONG within 30s" || return 1
    slog redis "ready: redis://$HOST:$REDIS_PORT/0"
}

down_redis() {
    if [ -f "$RD_DIR/external" ]; then
        slog redis "was reused from $(cat "$RD_DIR/external"), leaving it running"
        rm -f "$RD_DIR/external"
        return 0
    fi
    stop_pid redis "$RD_PID" redis-server 15
}

status_redis() {
    local pid
    if pid=$(pid_of "$RD_PID" redis-server); then
        if redis_ping; then echo "up|$HOST:$REDIS_PORT|pid $pid|redis://$HOST:$REDIS_PORT/0"; else echo "unhealthy|$HOST:$REDIS_PORT|pid $pid|no PONG"; fi
    elif [ -f "$RD_DIR/external" ] && redis_ping; then
        echo "up|$HOST:$REDIS_PORT|external|redis://$HOST:$REDIS_PORT/0"
    else
        echo "down|$HOST:$REDIS_PORT||"
    fi
}

# ---------------------------------------------------------------------------- kafka

kafka_probe() { python3 "$STACK_SRC/kafka_probe.py" "$HOST" "$KAFKA_PORT"; }

kafka_write_config() {
    cat >"$KF_PROPS" <<EOF
# written by scripts/stack.sh: single-node KRaft broker+controller
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KF_DIR/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=$KAFKA_AUTO_CREATE_TOPICS
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
controller.quorum.election.timeout.ms=200
controller.quorum.election.backoff.max.ms=200
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
}

up_kafka() {
    local pid java_opts
    mkdir -p "$KF_DIR"
    if pid=$(pid_of "$KF_PID" "$KF_PROPS"); then
        if with_timeout 60 kafka_probe; then slog kafka "already running (pid $pid)"; return 0; fi
        fail_with_log kafka "$KF_LOG" "pid $pid is running but the broker does not answer" || return 1
    fi
    rm -f "$KF_DIR/external"
    if port_open "$HOST" "$KAFKA_PORT"; then
        if kafka_probe >/dev/null 2>&1; then
            echo "$HOST:$KAFKA_PORT" >"$KF_DIR/external"
            slog kafka "reusing the Kafka broker already serving $HOST:$KAFKA_PORT"
            return 0
        fi
        fail_with_log kafka /dev/null "port $KAFKA_PORT is busy and is not a Kafka broker (set KAFKA_PORT)"
        return 1
    fi
    port_open "$HOST" "$KAFKA_CONTROLLER_PORT" &&
        { fail_with_log kafka /dev/null "controller port $KAFKA_CONTROLLER_PORT is busy (set KAFKA_CONTROLLER_PORT)"; return 1; }
    mkdir -p "$KF_DIR/data"
    kafka_write_config
    cp "$STACK_SRC/kafka/log4j2.properties" "$KF_DIR/log4j2.properties"
    java_opts=(-Dlog4j2.configurationFile="$KF_DIR/log4j2.properties" -Djava.awt.headless=true
        -Dkafka.logs.dir="$KF_DIR")
    if [ ! -f "$KF_DIR/data/meta.properties" ]; then
        [ -s "$KF_DIR/cluster.id" ] ||
            python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))' >"$KF_DIR/cluster.id"
        slog kafka "formatting storage $KF_DIR/data (cluster id $(cat "$KF_DIR/cluster.id"))"
        java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "${java_opts[@]}" -cp "$KF_DIR/lib/*" \
            kafka.tools.StorageTool format -t "$(cat "$KF_DIR/cluster.id")" -c "$KF_PROPS" >>"$KF_LOG" 2>&1 ||
            fail_with_log kafka "$KF_LOG" "kafka-storage format failed" || return 1
    fi
    slog kafka "starting on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT)"
    # shellcheck disable=SC2086  # heap options are a word list on purpose
    spawn "$KF_PID" "$KF_LOG" java $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent "${java_opts[@]}" \
        -cp "$KF_DIR/lib/*" kafka.Kafka "$KF_PROPS" ||
        fail_with_log kafka "$KF_LOG" "could not spawn the broker" || return 1
}

wait_kafka() {
    local start=$SECONDS
    [ -f "$KF_DIR/external" ] && return 0
    while ! kafka_probe >/dev/null 2>&1; do
        pid_of "$KF_PID" "$KF_PROPS" >/dev/null || { fail_with_log kafka "$KF_LOG" "broker exited"; return 1; }
        ((SECONDS - start < UP_TIMEOUT)) || { fail_with_log kafka "$KF_LOG" "not ready after ${UP_TIMEOUT}s"; return 1; }
        sleep 0.3
    done
    slog kafka "ready: kafka://$HOST:$KAFKA_PORT ($((SECONDS - start))s)"
}

down_kafka() {
    if [ -f "$KF_DIR/external" ]; then
        slog kafka "was reused from $(cat "$KF_DIR/external"), leaving it running"
        rm -f "$KF_DIR/external"
        return 0
    fi
    stop_pid kafka "$KF_PID" "$KF_PROPS" 40
}

status_kafka() {
    local pid
    if pid=$(pid_of "$KF_PID" "$KF_PROPS"); then
        if kafka_probe >/dev/null 2>&1; then echo "up|$HOST:$KAFKA_PORT|pid $pid|kafka://$HOST:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT)"; else echo "unhealthy|$HOST:$KAFKA_PORT|pid $pid|metadata request fails"; fi
    elif [ -f "$KF_DIR/external" ] && kafka_probe >/dev/null 2>&1; then
        echo "up|$HOST:$KAFKA_PORT|external|kafka://$HOST:$KAFKA_PORT"
    else
        echo "down|$HOST:$KAFKA_PORT||"
    fi
}

# ---------------------------------------------------------------------------- opensearch

os_url() { echo "http://$HOST:$OPENSEARCH_PORT"; }

os_healthy() {
    curl -sf -m 5 "$(os_url)/_cluster/health?wait_for_status=yellow&timeout=2s" >/dev/null 2>&1
}

os_is_opensearch() {
    curl -sf -m 3 "$(os_url)/" 2>/dev/null | grep -q '"distribution" *: *"opensearch"'
}

up_opensearch() {
    local pid
    mkdir -p "$OS_DIR"
    if pid=$(pid_of "$OS_PID" OsLauncher); then
        if with_timeout 60 os_healthy; then slog opensearch "already running (pid $pid)"; return 0; fi
        fail_with_log opensearch "$OS_LOG" "pid $pid is running but the cluster is not yellow/green" || return 1
    fi
    rm -f "$OS_DIR/external"
    if port_open "$HOST" "$OPENSEARCH_PORT"; then
        if os_is_opensearch && os_healthy; then
            echo "$HOST:$OPENSEARCH_PORT" >"$OS_DIR/external"
            slog opensearch "reusing the OpenSearch already serving $(os_url)"
            return 0
        fi
        fail_with_log opensearch /dev/null "port $OPENSEARCH_PORT is busy and is not a healthy OpenSearch (set OPENSEARCH_PORT)"
        return 1
    fi
    port_open "$HOST" "$OPENSEARCH_TRANSPORT_PORT" &&
        { fail_with_log opensearch /dev/null "transport port $OPENSEARCH_TRANSPORT_PORT is busy (set OPENSEARCH_TRANSPORT_PORT)"; return 1; }
    mkdir -p "$OS_HOME" "$OS_DIR/tmp"
    slog opensearch "starting on $(os_url) (transport $HOST:$OPENSEARCH_TRANSPORT_PORT)"
    # shellcheck disable=SC2086
    spawn "$OS_PID" "$OS_LOG" java $OPENSEARCH_HEAP_OPTS -XX:+UseG1GC -XX:G1ReservePercent=25 \
        -XX:InitiatingHeapOccupancyPercent=30 -XX:-OmitStackTraceInFastThrow \
        -Dfile.encoding=UTF-8 -Djava.awt.headless=true -Djna.nosys=true \
        -Djava.locale.providers=SPI,COMPAT -Djava.io.tmpdir="$OS_DIR/tmp" \
        -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true \
        -Dio.netty.recycler.maxCapacityPerThread=0 -Dio.netty.allocator.numDirectArenas=0 \
        -Dopensearch.set.netty.runtime.available.processors=false \
        -Dlog4j2.disable.jmx=true -Dlog4j.shutdownHookEnabled=false \
        -cp "$OS_DIR/lib/*:$OS_DIR/classes" OsLauncher "$OS_HOME" "$OPENSEARCH_PORT" "$OPENSEARCH_TRANSPORT_PORT" "$HOST" ||
        fail_with_log opensearch "$OS_LOG" "could not spawn the node" || return 1
}

wait_opensearch() {
    local start=$SECONDS
    [ -f "$OS_DIR/external" ] && return 0
    while ! os_healthy; do
        pid_of "$OS_PID" OsLauncher >/dev/null || { fail_with_log opensearch "$OS_LOG" "node exited"; return 1; }
        ((SECONDS - start < UP_TIMEOUT)) || { fail_with_log opensearch "$OS_LOG" "not yellow after ${UP_TIMEOUT}s"; return 1; }
        sleep 0.3
    done
    slog opensearch "ready: $(os_url) ($((SECONDS - start))s)"
}

down_opensearch() {
    if [ -f "$OS_DIR/external" ]; then
        slog opensearch "was reused from $(cat "$OS_DIR/external"), leaving it running"
        rm -f "$OS_DIR/external"
        return 0
    fi
    stop_pid opensearch "$OS_PID" OsLauncher 30
}

status_opensearch() {
    local pid
    if pid=$(pid_of "$OS_PID" OsLauncher); then
        if os_healthy; then echo "up|$HOST:$OPENSEARCH_PORT|pid $pid|$(os_url) (transport :$OPENSEARCH_TRANSPORT_PORT)"; else echo "unhealthy|$HOST:$OPENSEARCH_PORT|pid $pid|cluster not yellow/green"; fi
    elif [ -f "$OS_DIR/external" ] && os_healthy; then
        echo "up|$HOST:$OPENSEARCH_PORT|external|$(os_url)"
    else
        echo "down|$HOST:$OPENSEARCH_PORT||"
    fi
}

# ---------------------------------------------------------------------------- commands

parse_services() { # args -> SERVICES array
    SERVICES=()
    local a s ok
    if [ $# -eq 0 ] || { [ $# -eq 1 ] && [ "$1" = all ]; }; then
        SERVICES=("${ALL_SERVICES[@]}")
        return
    fi
    for a in "$@"; do
        ok=0
        for s in "${ALL_SERVICES[@]}"; do [ "$a" = "$s" ] && ok=1; done
        [ $ok = 1 ] || die "unknown service '$a' (choose from: ${ALL_SERVICES[*]})"
        SERVICES+=("$a")
    done
}

wants() { local s; for s in "${SERVICES[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

lock_stack() {
    mkdir -p "$STACK_DIR"
    exec 8>"$STACK_DIR/.lock"
    flock -w 600 8 || die "another scripts/stack.sh is running on $STACK_DIR"
}

print_status_table() { # -> returns 1 if any selected service is not up
    local s line state addr pidinfo detail rc=0
    for s in "${SERVICES[@]}"; do
        line=$("status_$s")
        IFS='|' read -r state addr pidinfo detail <<<"$line"
        printf '%-11s %-10s %-16s %-12s %s\n' "$s" "$state" "$addr" "$pidinfo" "$detail"
        [ "$state" = up ] || rc=1
    done
    return $rc
}

cmd_up() {
    parse_services "$@"
    lock_stack
    mkdir -p "$LOG_DIR"
    local t0=$SECONDS native=() java_mods=() pids=() rc=0 p
    wants postgres && native+=(postgres)
    wants redis && native+=(redis)
    wants kafka && java_mods+=(kafka)
    wants opensearch && java_mods+=(opensearch)
    say "stack dir: $STACK_DIR"

    # Two parallel lanes: Debian services (apt if needed) and JVM services (Maven if needed).
    if [ ${#native[@]} -gt 0 ]; then
        (
            ensure_native "${native[@]}"
            r=0
            for s in "${native[@]}"; do "up_$s" || r=1; done
            exit $r
        ) &
        pids+=($!)
    fi
    if [ ${#java_mods[@]} -gt 0 ]; then
        (
            ensure_java_tools
            # Never swap the jars of a running JVM: refresh only the services that are stopped.
            fetch=()
            if wants kafka && ! pid_of "$KF_PID" "$KF_PROPS" >/dev/null; then fetch+=(kafka); fi
            if wants opensearch && ! pid_of "$OS_PID" OsLauncher >/dev/null; then fetch+=(opensearch); fi
            if [ ${#fetch[@]} -gt 0 ]; then ensure_jars "${fetch[@]}"; fi
            if [[ " ${fetch[*]} " == *" opensearch "* ]]; then ensure_launcher; fi
            r=0 started=()
            for s in "${java_mods[@]}"; do if "up_$s"; then started+=("$s"); else r=1; fi; done
            for s in "${started[@]}"; do "wait_$s" || r=1; done
            exit $r
        ) &
        pids+=($!)
    fi
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    echo
    print_status_table || rc=1
    if [ $rc != 0 ]; then
        say "some services failed to start (logs under $STACK_DIR)"
        exit 1
    fi
    say "all requested services healthy in $((SECONDS - t0))s; eval \"\$(scripts/stack.sh env)\" to export the URLs"
}

cmd_down() {
    parse_services "$@"
    lock_stack
    local pids=() s rc=0 p
    for s in "${SERVICES[@]}"; do
        "down_$s" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    return $rc
}

cmd_status() {
    parse_services "$@"
    print_status_table
}

cmd_env() {
    cat <<EOF
export LOGFLOW_QUEUE_URL=kafka://$HOST:$KAFKA_PORT
export LOGFLOW_STORE_URL=opensearch://$HOST:$OPENSEARCH_PORT
export LOGFLOW_DATABASE_URL=$(pg_url)
export LOGFLOW_CACHE_URL=redis://$HOST:$REDIS_PORT/0
EOF
}

cmd_logs() {
    [ $# -eq 1 ] || die "usage: $0 logs SERVICE"
    local f
    case $1 in
    postgres) f=$PG_LOG ;;
    redis) f=$RD_LOG ;;
    kafka) f=$KF_LOG ;;
    opensearch) f=$OS_LOG ;;
    *) die "unknown service '$1'" ;;
    esac
    [ -f "$f" ] || die "no log yet: $f"
    tail -n "${LINES_TO_SHOW:-60}" "$f"
}

cmd_smoke() {
    parse_services "$@"
    local py=() s rc=0
    for s in "${SERVICES[@]}"; do [ "$s" = kafka ] || py+=("$s"); done
    if [ ${#py[@]} -gt 0 ]; then
        OPENSEARCH_PORT=$OPENSEARCH_PORT REDIS_PORT=$REDIS_PORT POSTGRES_PORT=$POSTGRES_PORT \
            python3 "$STACK_SRC/smoke.py" "${py[@]}" || rc=1
    fi
    if wants kafka; then
        echo "kafka $HOST:$KAFKA_PORT"
        java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$STACK_SRC/kafka/log4j2-quiet.properties" \
            -cp "$KF_DIR/lib/*" "$STACK_SRC/kafka/KafkaSmoke.java" "$HOST:$KAFKA_PORT" || { echo "  FAIL kafka"; rc=1; }
    fi
    [ $rc = 0 ] && say "smoke test passed" || say "smoke test FAILED"
    return $rc
}

cmd_tools() { # the real clients the tests drive: rsyslog with omelasticsearch, kcat, a headless browser
    local need=()
    command -v rsyslogd >/dev/null || need+=(rsyslog)
    [ -e /usr/lib/x86_64-linux-gnu/rsyslog/omelasticsearch.so ] || ls /usr/lib/*/rsyslog/omelasticsearch.so \
        >/dev/null 2>&1 || need+=(rsyslog-elasticsearch)
    command -v kcat >/dev/null || need+=(kcat)
    command -v chromium >/dev/null || need+=(chromium)
    if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi
    say "test clients ready: $(command -v rsyslogd) (with omelasticsearch), $(command -v kcat), $(command -v chromium)"
}

cmd_clean() {
    cmd_down
    say "deleting data under $STACK_DIR (jars are kept)"
    rm -rf "$PG_DIR" "$RD_DIR" "$KF_DIR/data" "$KF_DIR/cluster.id" "$KF_DIR"/*.log "$KF_DIR"/*.properties \
        "$OS_HOME" "$OS_DIR/tmp" "$OS_DIR"/*.log "$LOG_DIR"
}

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    [ $# -gt 0 ] && shift
    case $cmd in
    up) cmd_up "$@" ;;
    down | stop) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env ;;
    logs) cmd_logs "$@" ;;
    smoke) cmd_smoke "$@" ;;
    clean) cmd_clean ;;
    tools) cmd_tools ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
    esac
}

main "$@"
