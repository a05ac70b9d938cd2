#!/usr/bin/env bash
# driftrec local services: a single-node Apache Kafka (KRaft) broker and Redis,
# both bound to 127.0.0.1 only. Used by humans and by CI (.ci/run).
#
#   scripts/services.sh up [kafka|redis]...   start (idempotent), print addresses
#   scripts/services.sh down [kafka|redis]... stop what `up` started, remove data
#   scripts/services.sh stop [kafka|redis]... stop, keeping the data (`up` brings it back)
#   scripts/services.sh restart kafka|redis   stop and start, keeping the data
#   scripts/services.sh status                running/answering? exit 0 = all up
#   scripts/services.sh env                   print `export ...` lines for eval
#   scripts/services.sh up-secure             the secured pair (also: DRIFTREC_SECURE=1 ... up):
#       a second broker, SASL_SSL + SCRAM-SHA-512 only (KAFKA_SECURE_PORT [9094],
#       KAFKA_SECURE_CONTROLLER_PORT [9095]) and a second redis-server, TLS only with an
#       ACL user and password (REDIS_SECURE_PORT [6380]); throwaway CA and keystores
#       (openssl, keytool) and random passwords under $DRIFTREC_RUN/secure
#   scripts/services.sh env-secure            `export ...` lines for the secured pair
#   scripts/services.sh status-secure         exit 0 = the secured pair answers
#   scripts/services.sh up-cluster            a Redis Cluster of 3 masters + 3 replicas
#       (REDIS_CLUSTER_BASE_PORT [7000] and the five ports after it), prints REDIS_CLUSTER_URL=...
#   scripts/services.sh down-cluster          stop it and remove its data
#   scripts/services.sh stop-cluster          stop it, keeping the data (`up-cluster` brings it back)
#   scripts/services.sh status-cluster        exit 0 = every node answers and the cluster is ok
#   scripts/services.sh env-cluster           `export REDIS_CLUSTER_URL=...` for eval
#   scripts/services.sh pki [DIR]             CA, keystores, passwords for docker-compose.secure.yml
#                                             (DIR [secrets], empty or new: DIR/pki, DIR/secrets)
#   (`down` with no service named stops the secured pair too; the cluster has down-cluster)
#
# Env knobs (defaults in brackets):
#   KAFKA_VERSION [see DEFAULT_KAFKA_VERSION; scripts/KAFKA_COMPAT.md says why]
#   KAFKA_PORT [9092]  KAFKA_CONTROLLER_PORT [9093]  REDIS_PORT [6379]
#   KAFKA_HEAP_OPTS [-Xms256m -Xmx512m]
#   DRIFTREC_CACHE [$HOME/.cache/driftrec]  jar cache: kafka-<version>/libs
#   DRIFTREC_RUN   [/tmp/driftrec-services] data dirs, logs, pid files
#   KAFKA_START_TIMEOUT [90]  REDIS_START_TIMEOUT [20]   seconds
#   REDIS_CLUSTER_BASE_PORT [7000]  REDIS_CLUSTER_NODE_TIMEOUT [5000] ms (failover after it)
#
# Kafka jars come from Maven Central once (mvn + scripts/kafka-pom.xml);
# later runs reuse the cache. Redis comes from Debian (apt-get) if missing.
# Exit codes: 0 ok; 1 failed (the message says what to do); 2 usage error;
#             3 (status) a service is not running/answering.
# `up` prints KAFKA_BOOTSTRAP=... REDIS_URL=... on stdout; progress on stderr.
# `down` keeps the logs in $DRIFTREC_RUN/{kafka,redis}/ for post-mortems.
# Redis persists with an append-only file (appendonly yes, fsync every second, as in
# docker-compose.yml) in $DRIFTREC_RUN/redis/data: a Redis that crashed or was restarted
# (`restart redis`, `stop` then `up`, or `up` after it died) comes back with the scorer's
# offsets, user state and the model registry. Kafka likewise comes back with its topics,
# records and committed offsets (`driftrec faults` restarts both this way). `down`
# removes both services' data, so offsets never outlive the topics they point into.
set -Eeuo pipefail

DEFAULT_KAFKA_VERSION=4.3.1   # see scripts/KAFKA_COMPAT.md before changing

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-$DEFAULT_KAFKA_VERSION}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${REDIS_PORT:-6379}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
REDIS_START_TIMEOUT="${REDIS_START_TIMEOUT:-20}"
REDIS_CLUSTER_BASE_PORT="${REDIS_CLUSTER_BASE_PORT:-7000}"
REDIS_CLUSTER_NODE_TIMEOUT="${REDIS_CLUSTER_NODE_TIMEOUT:-5000}"
DRIFTREC_CACHE="${DRIFTREC_CACHE:-${HOME:-/root}/.cache/driftrec}"
DRIFTREC_RUN="${DRIFTREC_RUN:-/tmp/driftrec-services}"

KAFKA_HOME="$DRIFTREC_CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_RUN="$DRIFTREC_RUN/kafka"
KAFKA_DATA="$KAFKA_RUN/data"
KAFKA_PROPS="$KAFKA_RUN/server.properties"
KAFKA_LOG="$KAFKA_RUN/kafka.log"
KAFKA_PID="$KAFKA_RUN/kafka.pid"
REDIS_RUN="$DRIFTREC_RUN/redis"
REDIS_LOG="$REDIS_RUN/redis.log"
REDIS_PID="$REDIS_RUN/redis.pid"
REDIS_DATA="$REDIS_RUN/data"
CLUSTER_RUN="$DRIFTREC_RUN/redis-cluster"
# the secured pair (up-secure): own ports, own run dir
KAFKA_SECURE_PORT="${KAFKA_SECURE_PORT:-9094}"
KAFKA_SECURE_CONTROLLER_PORT="${KAFKA_SECURE_CONTROLLER_PORT:-9095}"
REDIS_SECURE_PORT="${REDIS_SECURE_PORT:-6380}"
SECURE_RUN="$DRIFTREC_RUN/secure"
SECURE_PKI="$SECURE_RUN/pki"
SECURE_SECRETS="$SECURE_RUN/secrets"
SKAFKA_RUN="$SECURE_RUN/kafka"
SKAFKA_DATA="$SKAFKA_RUN/data"
SKAFKA_PROPS="$SKAFKA_RUN/server.properties"
SKAFKA_LOG="$SKAFKA_RUN/kafka.log"
SKAFKA_PID="$SKAFKA_RUN/kafka.pid"
SREDIS_RUN="$SECURE_RUN/redis"
SREDIS_LOG="$SREDIS_RUN/redis.log"
SREDIS_PID="$SREDIS_RUN/redis.pid"

KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

log()  { printf '[services] %s\n' "$*" >&2; }
die()  { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers ---

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive PIDFILE PATTERN: pid file names a live process whose command line
# contains PATTERN (guards against a recycled pid). Prints the pid.
pid_alive() {
  local pidfile=$1 pattern=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern" || return 1
  echo "$pid"
}

find_python() {
  local p
  for p in "${DRIFTREC_PYTHON:-}" python3 "$DRIFTREC_CACHE/venv/bin/python"; do
    [[ -n $p ]] && command -v "$p" >/dev/null 2>&1 && { echo "$p"; return 0; }
  done
  return 1
}

# kafka_answers: the broker on KAFKA_PORT answers ApiVersions and lists itself
# in a Metadata response (i.e. it is started and unfenced). Stdlib-only Python,
# so it works before any venv exists. Falls back to a TCP check without python.
kafka_answers() {
  local py
  if ! py=$(find_python); then
    port_open "$KAFKA_PORT"
    return
  fi
  "$py" - "$KAFKA_PORT" <<'PY' 2>/dev/null
import socket, struct, sys

port = int(sys.argv[1])

def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b

def call(s, key, ver, corr, body):
    cid = b"driftrec-services"
    msg = struct.pack(">hhih", key, ver, corr, len(cid)) + cid + body
    s.sendall(struct.pack(">i", len(msg)) + msg)
    data = recvn(s, struct.unpack(">i", recvn(s, 4))[0])
    assert struct.unpack(">i", data[:4])[0] == corr
    return data[4:]

s = socket.create_connection(("127.0.0.1", port), timeout=3)
s.settimeout(3)
r = call(s, 18, 0, 1, b"")                       # ApiVersions v0
err, n = struct.unpack(">hi", r[:6])
assert err == 0, err
ranges = {}
for i in range(n):
    k, lo, hi = struct.unpack(">hhh", r[6 + 6 * i: 12 + 6 * i])
    ranges[k] = (lo, hi)
lo, hi = ranges[3]                                # Metadata
v = max(lo, 1)
assert v <= min(hi, 8), (lo, hi)
body = struct.pack(">i", -1)                      # all topics
if v >= 4:
    body += b"\x00"                               # allow_auto_topic_creation
if v >= 8:
    body += b"\x00\x00"                           # authorized operations flags
r = call(s, 3, v, 2, body)
off = 4 if v >= 3 else 0                          # throttle_time_ms
nb = struct.unpack(">i", r[off:off + 4])[0]
assert nb >= 1, "no live broker in metadata"
PY
}

redis_answers() {
  command -v redis-cli >/dev/null 2>&1 || { port_open "$REDIS_PORT"; return; }
  [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

# stop_pidfile NAME PIDFILE PATTERN: TERM, wait, KILL. Only our own process.
stop_pidfile() {
  local name=$1 pidfile=$2 pattern=$3 pid i
  if pid=$(pid_alive "$pidfile" "$pattern"); then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do         # up to 30 s
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not exit after TERM within 30 s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  else
    log "$name: not started by this script (no live pid in $pidfile); nothing to stop"
  fi
  rm -f "$pidfile"
}

# ------------------------------------------------------------------ kafka ---

kafka_fetch() {
  if [[ -f $KAFKA_HOME/.complete ]] && compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found; needed once to fetch Kafka $KAFKA_VERSION jars. Install it: apt-get update && apt-get install -y maven"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS (one time)..."
  local t0=$SECONDS tmp="$KAFKA_HOME/libs.tmp.$$"
  mkdir -p "$KAFKA_HOME"
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/kafka-pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime \
      >"$KAFKA_HOME/mvn.log" 2>&1; then
    tail -n 30 "$KAFKA_HOME/mvn.log" >&2
    rm -rf "$tmp"
    die "mvn could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (output above, full log $KAFKA_HOME/mvn.log). Check that the version exists on Maven Central (KAFKA_VERSION=$KAFKA_VERSION) and that Maven Central is reachable, then rerun."
  fi
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  touch "$KAFKA_HOME/.complete"
  log "fetched $(find "$KAFKA_LIBS" -name "*.jar" | wc -l) jars in $((SECONDS - t0)) s"
}

kafka_write_config() {
  mkdir -p "$KAFKA_RUN"
  cat >"$KAFKA_PROPS" <<EOF
# generated by scripts/services.sh -- single-node KRaft broker+controller
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=67108864
EOF
  cat >"$KAFKA_RUN/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.kafka_cfg.name = org.apache.kafka.common.config.AbstractConfig
logger.kafka_cfg.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

kafka_up() {
  local pid
  if pid=$(pid_alive "$KAFKA_PID" "$KAFKA_PROPS"); then
    if kafka_answers; then
      log "kafka: already running (pid $pid) and answering on $KAFKA_BOOTSTRAP"
      return 0
    fi
    log "kafka: pid $pid is running but not answering yet; waiting"
    kafka_wait "$pid"
    return
  fi
  if port_open "$KAFKA_PORT"; then
    if kafka_answers; then
      log "kafka: WARNING a Kafka broker not started by this script already answers on $KAFKA_BOOTSTRAP; using it as is ('down' will not stop it)"
      return 0
    fi
    die "port $KAFKA_PORT is taken by a process that is not a Kafka broker. Stop it, or choose another port: KAFKA_PORT=19092 $0 up"
  fi
  if port_open "$KAFKA_CONTROLLER_PORT"; then
    die "controller port $KAFKA_CONTROLLER_PORT is taken (a stale broker?). Stop that process (ss -ltnp | grep $KAFKA_CONTROLLER_PORT), or set KAFKA_CONTROLLER_PORT"
  fi

  command -v "$JAVA" >/dev/null 2>&1 ||
    die "java not found; Kafka needs Java 17+. Install it (apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME"
  kafka_fetch

  local cp="$KAFKA_LIBS/*" cluster_id
  if [[ -f $KAFKA_DATA/meta.properties && -f $KAFKA_PROPS ]]; then
    # stopped (`stop`, `restart`) or crashed: the same broker comes back with its data
    log "kafka: starting Kafka $KAFKA_VERSION on $KAFKA_BOOTSTRAP with the data in $KAFKA_DATA, log $KAFKA_LOG"
    kafka_launch
    return
  fi
  rm -rf "$KAFKA_DATA"
  mkdir -p "$KAFKA_DATA"
  kafka_write_config
  # Kafka cluster ids are 16 random bytes, url-safe base64 without padding
  # (what `kafka-storage random-uuid` prints); python saves a JVM start.
  local py
  if py=$(find_python); then
    cluster_id=$("$py" -c 'import base64, uuid
while True:
    u = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not u.startswith("-"):
        print(u); break')
  else
    cluster_id=$("$JAVA" -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
  fi
  [[ -n $cluster_id ]] || die "kafka: could not generate a cluster id with kafka.tools.StorageTool (is $KAFKA_LIBS complete? delete $KAFKA_HOME to refetch)"
  if ! "$JAVA" -Dlog4j2.configurationFile="$KAFKA_RUN/log4j2.properties" -cp "$cp" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_PROPS" >"$KAFKA_RUN/format.log" 2>&1; then
    cat "$KAFKA_RUN/format.log" >&2
    die "kafka: formatting KRaft storage in $KAFKA_DATA failed (output above)"
  fi

  log "kafka: starting Kafka $KAFKA_VERSION on $KAFKA_BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT), log $KAFKA_LOG"
  kafka_launch
}

kafka_launch() {
  local cp="$KAFKA_LIBS/*" pid
  # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM flags
  nohup "$JAVA" $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_RUN/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_RUN" \
    -cp "$cp" kafka.Kafka "$KAFKA_PROPS" \
    </dev/null >>"$KAFKA_LOG" 2>&1 &
  pid=$!
  echo "$pid" >"$KAFKA_PID"
  kafka_wait "$pid"
}

kafka_wait() {
  local pid=$1 t0=$SECONDS
  while ((SECONDS - t0 < KAFKA_START_TIMEOUT)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$KAFKA_LOG" >&2 || true
      rm -f "$KAFKA_PID"
      die "kafka: the broker exited during startup (last log lines above; full log: $KAFKA_LOG)"
    fi
    if kafka_answers; then
      log "kafka: ready on $KAFKA_BOOTSTRAP after $((SECONDS - t0)) s (pid $pid)"
      return 0
    fi
    sleep 0.5
  done
  tail -n 40 "$KAFKA_LOG" >&2 || true
  die "kafka: not answering on $KAFKA_BOOTSTRAP after ${KAFKA_START_TIMEOUT}s (pid $pid still running; log $KAFKA_LOG). Raise KAFKA_START_TIMEOUT, or run '$0 down' and retry"
}

kafka_down() {
  kafka_stop
  rm -rf "$KAFKA_DATA"
}

# kafka_stop / redis_stop: stop, keeping the data for the next `up`
kafka_stop() {
  stop_pidfile kafka "$KAFKA_PID" "$KAFKA_PROPS"
}

kafka_restart() {
  kafka_stop
  kafka_up
}

kafka_status() {
  local pid
  if pid=$(pid_alive "$KAFKA_PID" "$KAFKA_PROPS"); then
    if kafka_answers; then
      echo "kafka: running (pid $pid), answering on $KAFKA_BOOTSTRAP"; return 0
    fi
    echo "kafka: running (pid $pid) but NOT answering on $KAFKA_BOOTSTRAP (starting? see $KAFKA_LOG)"; return 1
  fi
  if kafka_answers; then
    echo "kafka: answering on $KAFKA_BOOTSTRAP, but not started by this script"; return 0
  fi
  echo "kafka: not running (start it: $0 up)"; return 1
}

# ------------------------------------------------------------------ redis ---

redis_install() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "redis-server not found. Install it (Debian: sudo apt-get install -y redis-server) and rerun"
  fi
  log "redis-server not found; installing it with apt-get (one time)..."
  # Debian's package may try to start its own service; policy-rc.d keeps it
  # from doing so (we run our own instance on REDIS_PORT).
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
  fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; } >&2 || rc=$?
  ((made_policy)) && rm -f "$policy"
  ((rc == 0)) || die "apt-get install redis-server failed (exit $rc); install it by hand and rerun"
  command -v redis-server >/dev/null 2>&1 || die "redis-server still not on PATH after apt-get install"
}

redis_up() {
  local pid
  if pid=$(pid_alive "$REDIS_PID" "redis-server"); then
    if redis_answers; then
      log "redis: already running (pid $pid) and answering on $REDIS_URL"
      return 0
    fi
    redis_wait "$pid"
    return
  fi
  if port_open "$REDIS_PORT"; then
    if redis_answers; then
      log "redis: WARNING a Redis not started by this script already answers on 127.0.0.1:$REDIS_PORT; using it as is ('down' will not stop it)"
      return 0
    fi
    die "port $REDIS_PORT is taken by a process that is not Redis. Stop it, or choose another port: REDIS_PORT=16379 $0 up"
  fi
  redis_install
  mkdir -p "$REDIS_RUN" "$REDIS_DATA"
  if [[ -d $REDIS_DATA/appendonlydir ]]; then
    log "redis: starting on 127.0.0.1:$REDIS_PORT with the data in $REDIS_DATA, log $REDIS_LOG"
  else
    log "redis: starting on 127.0.0.1:$REDIS_PORT (empty; data in $REDIS_DATA), log $REDIS_LOG"
  fi
  # AOF as in docker-compose.yml (appendfsync everysec): a killed redis-server or a lost
  # machine loses at most the last second or two of writes. A batch's state and the offsets
  # it covers are one MULTI/EXEC, so the scorer resumes where the kept state ends.
  nohup redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize no \
    --save '' --appendonly yes --appendfsync everysec --dir "$REDIS_DATA" \
    </dev/null >>"$REDIS_LOG" 2>&1 &
  pid=$!
  echo "$pid" >"$REDIS_PID"
  redis_wait "$pid"
}

redis_wait() {
  local pid=$1 t0=$SECONDS
  while ((SECONDS - t0 < REDIS_START_TIMEOUT)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$REDIS_LOG" >&2 || true
      rm -f "$REDIS_PID"
      die "redis: redis-server exited during startup (log above: $REDIS_LOG)"
    fi
    if redis_answers; then
      log "redis: ready on $REDIS_URL (pid $pid)"
      return 0
    fi
    sleep 0.2
  done
  die "redis: no PONG on 127.0.0.1:$REDIS_PORT after ${REDIS_START_TIMEOUT}s (log $REDIS_LOG)"
}

redis_down() {
  stop_pidfile redis "$REDIS_PID" "redis-server"
  rm -rf "$REDIS_DATA" "$REDIS_RUN"/*.rdb "$REDIS_RUN"/appendonly* 2>/dev/null || true
}

redis_stop() {
  stop_pidfile redis "$REDIS_PID" "redis-server"
}

# redis_restart: stop and start again; the data (AOF) stays
redis_restart() {
  redis_stop
  redis_up
}

redis_status() {
  local pid
  if pid=$(pid_alive "$REDIS_PID" "redis-server"); then
    if redis_answers; then
      echo "redis: running (pid $pid), answering on $REDIS_URL"; return 0
    fi
    echo "redis: running (pid $pid) but NOT answering PING on port $REDIS_PORT"; return 1
  fi
  if redis_answers; then
    echo "redis: answering on $REDIS_URL, but not started by this script"; return 0
  fi
  echo "redis: not running (start it: $0 up)"; return 1
}

# ---------------------------------------------------------- redis cluster ---
# `up-cluster`: six redis-servers with --cluster-enabled yes on REDIS_CLUSTER_BASE_PORT and
# the five ports after it (127.0.0.1 only), made into 3 masters + 3 replicas by
# `redis-cli --cluster create --cluster-replicas 1`; append-only files as the single Redis.
# A node that died (or `stop-cluster`) comes back with its nodes.conf and data: it rejoins
# the cluster (as a replica if its replica was promoted meanwhile).

cluster_ports() {
  local i
  for ((i = 0; i < 6; i++)); do echo $((REDIS_CLUSTER_BASE_PORT + i)); done
}

cluster_url() {
  local p nodes=()
  for p in $(cluster_ports | head -n 3); do nodes+=("127.0.0.1:$p"); done
  local IFS=,
  echo "redis+cluster://${nodes[*]}"
}

cluster_node_answers() {
  [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]
}

# cluster_ok: every node answers and says cluster_state:ok with six nodes known, and every
# replica is in sync with its master (a replica that never synced cannot take over)
cluster_ok() {
  local p info repl
  for p in $(cluster_ports); do
    info=$(redis-cli -h 127.0.0.1 -p "$p" cluster info 2>/dev/null) || return 1
    grep -q "^cluster_state:ok" <<<"$info" && grep -q "^cluster_known_nodes:6" <<<"$info" || return 1
    repl=$(redis-cli -h 127.0.0.1 -p "$p" info replication 2>/dev/null) || return 1
    if grep -q "^role:slave" <<<"$repl"; then grep -q "^master_link_status:up" <<<"$repl" || return 1; fi
  done
}

cluster_node_up() {
  local port=$1 dir="$CLUSTER_RUN/$1" pid
  if pid=$(pid_alive "$dir/redis.pid" "redis-server") && cluster_node_answers "$port"; then
    return 0
  fi
  if [[ -z ${pid:-} ]] && port_open "$port"; then
    die "port $port is taken by a process this script did not start. Stop it, or move the cluster: REDIS_CLUSTER_BASE_PORT=17000 $0 up-cluster"
  fi
  mkdir -p "$dir"
  if [[ -z ${pid:-} ]]; then
    nohup redis-server --port "$port" --bind 127.0.0.1 --daemonize no \
      --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
      --cluster-node-timeout "$REDIS_CLUSTER_NODE_TIMEOUT" --repl-diskless-sync-delay 0 \
      --save '' --appendonly yes --appendfsync everysec --dir "$dir" \
      </dev/null >>"$dir/redis.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/redis.pid"
  fi
  local t0=$SECONDS
  while ((SECONDS - t0 < REDIS_START_TIMEOUT)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$dir/redis.log" >&2 || true
      rm -f "$dir/redis.pid"
      die "redis-cluster: the node on port $port exited during startup (log above: $dir/redis.log)"
    fi
    cluster_node_answers "$port" && return 0
    sleep 0.2
  done
  die "redis-cluster: no PONG on 127.0.0.1:$port after ${REDIS_START_TIMEOUT}s (log $dir/redis.log)"
}

cluster_up() {
  redis_install
  mkdir -p "$CLUSTER_RUN"
  local p
  for p in $(cluster_ports); do cluster_node_up "$p"; done
  local known
  known=$(redis-cli -h 127.0.0.1 -p "$REDIS_CLUSTER_BASE_PORT" cluster info 2>/dev/null |
    sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')
  if [[ ${known:-1} == 1 ]]; then
    local nodes=()
    for p in $(cluster_ports); do nodes+=("127.0.0.1:$p"); done
    log "redis-cluster: creating 3 masters + 3 replicas on ${nodes[*]}"
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
      >"$CLUSTER_RUN/create.log" 2>&1 ||
      { cat "$CLUSTER_RUN/create.log" >&2; die "redis-cli --cluster create failed (output above). Run '$0 down-cluster' and retry"; }
  fi
  local t0=$SECONDS
  while ((SECONDS - t0 < REDIS_START_TIMEOUT + REDIS_CLUSTER_NODE_TIMEOUT / 1000)); do
    if cluster_ok; then
      log "redis-cluster: ready, $(cluster_url)"
      return 0
    fi
    sleep 0.3
  done
  redis-cli -h 127.0.0.1 -p "$REDIS_CLUSTER_BASE_PORT" cluster info >&2 || true
  die "redis-cluster: not cluster_state:ok with 6 nodes after waiting (logs in $CLUSTER_RUN/PORT/redis.log). Run '$0 down-cluster' and retry"
}

cluster_stop() {
  local p
  for p in $(cluster_ports); do stop_pidfile "redis-cluster:$p" "$CLUSTER_RUN/$p/redis.pid" "redis-server"; done
}

cluster_down() {
  cluster_stop
  rm -rf "$CLUSTER_RUN"
}

cluster_status() {
  local rc=0 p pid
  for p in $(cluster_ports); do
    if pid=$(pid_alive "$CLUSTER_RUN/$p/redis.pid" "redis-server") && cluster_node_answers "$p"; then
      echo "redis-cluster: node 127.0.0.1:$p running (pid $pid), $(redis-cli -h 127.0.0.1 -p "$p" role 2>/dev/null | head -n 1)"
    else
      echo "redis-cluster: node 127.0.0.1:$p not running (start it: $0 up-cluster)"; rc=3
    fi
  done
  if cluster_ok; then
    echo "redis-cluster: cluster_state:ok, $(cluster_url)"
  else
    echo "redis-cluster: not ok (start it: $0 up-cluster)"; rc=3
  fi
  return $rc
}

# ----------------------------------------------------------- secured pair ---
# `up-secure` (or DRIFTREC_SECURE=1 ... up): a throwaway CA and keystores (openssl,
# keytool) under $SECURE_RUN/pki, a SECOND broker (own ports, own data dir) whose only
# client listener is SASL_SSL with SCRAM-SHA-512 users (created at format time with
# kafka-storage --add-scram), and a second redis-server with TLS only and an ACL user
# with a password. Passwords are random, in files under $SECURE_RUN/secrets (mode 600);
# `env-secure` prints the settings that reach them (password *files*, never passwords).

# pki_make: CA, broker and redis certificates (SAN 127.0.0.1, localhost), PKCS12
# keystore and truststore for the broker. Made once per run dir; `down` removes them.
pki_make() {
  [[ -e $SECURE_PKI/.complete && -s $SECURE_SECRETS/kafka-client.password ]] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found; the secured mode needs it (apt-get install -y openssl)"
  command -v keytool >/dev/null 2>&1 || die "keytool not found; it comes with Java 17 (openjdk-17-jre-headless)"
  rm -rf "$SECURE_PKI" "$SECURE_SECRETS"
  mkdir -p "$SECURE_PKI" "$SECURE_SECRETS"
  chmod 700 "$SECURE_SECRETS"
  local p
  for p in kafka-admin kafka-client redis-client store; do
    (umask 077; openssl rand -hex 16 >"$SECURE_SECRETS/$p.password")
  done
  local store_pw
  store_pw=$(<"$SECURE_SECRETS/store.password")
  (
    set -e
    cd "$SECURE_PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=driftrec throwaway CA" \
      -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign"
    local name
    for name in server client; do
      openssl req -newkey rsa:2048 -nodes -subj "/CN=$name.driftrec.local" -keyout "$name.key" -out "$name.csr"
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kafka,DNS:redis\nextendedKeyUsage=serverAuth,clientAuth\n' >"$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$name.ext" -out "$name.pem"
    done
    # a second CA nobody trusts (tests: an untrusted certificate is a TLS error)
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=driftrec untrusted CA" \
      -keyout other-ca.key -out other-ca.pem
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name broker \
      -out broker.p12 -passout "pass:$store_pw"
    keytool -importcert -noprompt -alias ca -file ca.pem -keystore truststore.p12 \
      -storetype PKCS12 -storepass "$store_pw"
    rm -f ./*.csr ./*.ext ca.key other-ca.key ca.srl
    chmod 600 ./*.key ./*.p12
    # for docker-compose.secure.yml: the keystore password as the image reads it, the ACL file
    printf '%s' "$store_pw" >"$SECURE_SECRETS/store.creds"
    printf 'user default off\nuser driftrec on >%s ~* &* +@all\n' "$(<"$SECURE_SECRETS/redis-client.password")" \
      >"$SECURE_SECRETS/redis.acl"
    chmod 600 "$SECURE_SECRETS/store.creds" "$SECURE_SECRETS/redis.acl"
  ) >"$SECURE_RUN/pki.log" 2>&1 || { cat "$SECURE_RUN/pki.log" >&2; die "secure: making the throwaway CA and keystores failed (output above)"; }
  touch "$SECURE_PKI/.complete"
  log "secure: throwaway CA and keystores in $SECURE_PKI"
}

kafka_secure_write_config() {
  local store_pw admin_pw
  store_pw=$(<"$SECURE_SECRETS/store.password")
  admin_pw=$(<"$SECURE_SECRETS/kafka-admin.password")
  mkdir -p "$SKAFKA_RUN"
  (umask 077; cat >"$SKAFKA_PROPS" <<EOP
# generated by scripts/services.sh up-secure -- single-node KRaft, SASL_SSL only for clients
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_SECURE_CONTROLLER_PORT
listeners=SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT,CONTROLLER://127.0.0.1:$KAFKA_SECURE_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_SECURE_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin_pw";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$SECURE_PKI/broker.p12
ssl.keystore.password=$store_pw
ssl.key.password=$store_pw
ssl.truststore.type=PKCS12
ssl.truststore.location=$SECURE_PKI/truststore.p12
ssl.truststore.password=$store_pw
ssl.client.auth=requested
ssl.endpoint.identification.algorithm=https
log.dirs=$SKAFKA_DATA
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=1
num.io.threads=2
log.retention.hours=24
log.segment.bytes=16777216
EOP
  )
  cat >"$SKAFKA_RUN/log4j2.properties" <<'EOL'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.auth.name = org.apache.kafka.common.network.Selector
logger.auth.level = INFO
EOL
}

# skafka_answers: the secured broker accepts TLS with our CA (a TCP+TLS handshake)
skafka_answers() {
  command -v openssl >/dev/null 2>&1 || { port_open "$KAFKA_SECURE_PORT"; return; }
  timeout 5 openssl s_client -connect "127.0.0.1:$KAFKA_SECURE_PORT" -CAfile "$SECURE_PKI/ca.pem" \
    -verify_return_error -brief </dev/null >/dev/null 2>&1 &&
    grep -q "Kafka Server started\|\[KafkaRaftServer nodeId=1\] Kafka Server started" "$SKAFKA_LOG" 2>/dev/null
}

kafka_secure_up() {
  local pid
  if pid=$(pid_alive "$SKAFKA_PID" "$SKAFKA_PROPS") && skafka_answers; then
    log "kafka-secure: already running (pid $pid) on SASL_SSL 127.0.0.1:$KAFKA_SECURE_PORT"
    return 0
  fi
  if [[ -z ${pid:-} ]] && { port_open "$KAFKA_SECURE_PORT" || port_open "$KAFKA_SECURE_CONTROLLER_PORT"; }; then
    die "port $KAFKA_SECURE_PORT or $KAFKA_SECURE_CONTROLLER_PORT is taken; set KAFKA_SECURE_PORT / KAFKA_SECURE_CONTROLLER_PORT"
  fi
  if [[ -z ${pid:-} ]]; then
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found; Kafka needs Java 17+"
    kafka_fetch
    pki_make
    rm -rf "$SKAFKA_DATA"
    mkdir -p "$SKAFKA_DATA"
    kafka_secure_write_config
    local cp="$KAFKA_LIBS/*" cluster_id admin_pw client_pw
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ ${#cluster_id} -eq 22 && $cluster_id != -* ]] || cluster_id="drIftRecSecUre0000000A"
    admin_pw=$(<"$SECURE_SECRETS/kafka-admin.password")
    client_pw=$(<"$SECURE_SECRETS/kafka-client.password")
    if ! "$JAVA" -Dlog4j2.configurationFile="$SKAFKA_RUN/log4j2.properties" -cp "$cp" \
          kafka.tools.StorageTool format -t "$cluster_id" -c "$SKAFKA_PROPS" \
          --add-scram "SCRAM-SHA-512=[name=admin,password=$admin_pw]" \
          --add-scram "SCRAM-SHA-512=[name=driftrec,password=$client_pw]" \
          --add-scram "SCRAM-SHA-256=[name=driftrec,password=$client_pw]" \
          >"$SKAFKA_RUN/format.log" 2>&1; then
      sed "s/$admin_pw/***/g; s/$client_pw/***/g" "$SKAFKA_RUN/format.log" >&2
      die "kafka-secure: formatting KRaft storage with SCRAM users failed (output above)"
    fi
    log "kafka-secure: starting on SASL_SSL 127.0.0.1:$KAFKA_SECURE_PORT (SCRAM-SHA-512), log $SKAFKA_LOG"
    # shellcheck disable=SC2086
    nohup "$JAVA" ${KAFKA_SECURE_HEAP_OPTS:--Xms128m -Xmx384m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
      -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$SKAFKA_RUN/log4j2.properties" -Dkafka.logs.dir="$SKAFKA_RUN" \
      -cp "$cp" kafka.Kafka "$SKAFKA_PROPS" </dev/null >"$SKAFKA_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$SKAFKA_PID"
  fi
  local t0=$SECONDS
  while ((SECONDS - t0 < KAFKA_START_TIMEOUT)); do
    kill -0 "$pid" 2>/dev/null || { tail -n 40 "$SKAFKA_LOG" >&2; rm -f "$SKAFKA_PID"; die "kafka-secure: the broker exited during startup (log $SKAFKA_LOG)"; }
    if skafka_answers; then log "kafka-secure: ready after $((SECONDS - t0)) s (pid $pid)"; return 0; fi
    sleep 0.5
  done
  tail -n 40 "$SKAFKA_LOG" >&2 || true
  die "kafka-secure: not ready on 127.0.0.1:$KAFKA_SECURE_PORT after ${KAFKA_START_TIMEOUT}s (log $SKAFKA_LOG)"
}

redis_secure_answers() {
  command -v redis-cli >/dev/null 2>&1 || { port_open "$REDIS_SECURE_PORT"; return; }
  [[ $(REDISCLI_AUTH=$(<"$SECURE_SECRETS/redis-client.password") redis-cli --tls --cacert "$SECURE_PKI/ca.pem" \
        -h 127.0.0.1 -p "$REDIS_SECURE_PORT" --user driftrec ping 2>/dev/null) == PONG ]]
}

redis_secure_up() {
  local pid
  if pid=$(pid_alive "$SREDIS_PID" "redis-server") && redis_secure_answers; then
    log "redis-secure: already running (pid $pid) with TLS on 127.0.0.1:$REDIS_SECURE_PORT"
    return 0
  fi
  if [[ -z ${pid:-} ]]; then
    port_open "$REDIS_SECURE_PORT" && die "port $REDIS_SECURE_PORT is taken; set REDIS_SECURE_PORT"
    redis_install
    redis-server --help 2>&1 | grep -q -- "--tls-port" || redis-server --version | grep -q . ||
      die "redis-server was built without TLS (no --tls-port); the secured Redis needs a TLS build"
    pki_make
    mkdir -p "$SREDIS_RUN"
    local pw
    pw=$(<"$SECURE_SECRETS/redis-client.password")
    # the default user is off: only the ACL user with its password gets in
    (umask 077; cat >"$SREDIS_RUN/redis.conf" <<EOR
port 0
bind 127.0.0.1
tls-port $REDIS_SECURE_PORT
tls-cert-file $SECURE_PKI/server.pem
tls-key-file $SECURE_PKI/server.key
tls-ca-cert-file $SECURE_PKI/ca.pem
tls-auth-clients optional
save ""
appendonly no
dir $SREDIS_RUN
user default off
user driftrec on >$pw ~* &* +@all
EOR
    )
    log "redis-secure: starting with TLS on 127.0.0.1:$REDIS_SECURE_PORT (ACL user driftrec), log $SREDIS_LOG"
    nohup redis-server "$SREDIS_RUN/redis.conf" </dev/null >>"$SREDIS_LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$SREDIS_PID"
  fi
  local t0=$SECONDS
  while ((SECONDS - t0 < REDIS_START_TIMEOUT)); do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$SREDIS_LOG" >&2; rm -f "$SREDIS_PID"; die "redis-secure: redis-server exited during startup (log $SREDIS_LOG; built without TLS?)"; }
    if redis_secure_answers; then log "redis-secure: ready (pid $pid)"; return 0; fi
    sleep 0.2
  done
  die "redis-secure: no PONG over TLS on 127.0.0.1:$REDIS_SECURE_PORT after ${REDIS_START_TIMEOUT}s (log $SREDIS_LOG)"
}

secure_down() {
  stop_pidfile kafka-secure "$SKAFKA_PID" "$SKAFKA_PROPS"
  stop_pidfile redis-secure "$SREDIS_PID" "redis-server"
  rm -rf "$SKAFKA_DATA" "$SECURE_PKI" "$SECURE_SECRETS" "$SKAFKA_PROPS" "$SREDIS_RUN/redis.conf" "$SREDIS_RUN"/*.rdb
}

secure_status() {
  local rc=0 pid
  if pid=$(pid_alive "$SKAFKA_PID" "$SKAFKA_PROPS") && skafka_answers; then
    echo "kafka-secure: running (pid $pid), SASL_SSL on 127.0.0.1:$KAFKA_SECURE_PORT"
  else
    echo "kafka-secure: not running (start it: $0 up-secure)"; rc=3
  fi
  if pid=$(pid_alive "$SREDIS_PID" "redis-server") && redis_secure_answers; then
    echo "redis-secure: running (pid $pid), TLS on 127.0.0.1:$REDIS_SECURE_PORT"
  else
    echo "redis-secure: not running (start it: $0 up-secure)"; rc=3
  fi
  return $rc
}

print_env_secure() {
  echo "export KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_SECURE_PORT"
  echo "export KAFKA_SECURITY_PROTOCOL=SASL_SSL"
  echo "export KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
  echo "export KAFKA_SASL_USERNAME=driftrec"
  echo "export KAFKA_SASL_PASSWORD_FILE=$SECURE_SECRETS/kafka-client.password"
  echo "export KAFKA_SSL_CAFILE=$SECURE_PKI/ca.pem"
  echo "export REDIS_URL=rediss://driftrec@127.0.0.1:$REDIS_SECURE_PORT/0"
  echo "export STATE_URL=rediss://driftrec@127.0.0.1:$REDIS_SECURE_PORT/0"
  echo "export REDIS_PASSWORD_FILE=$SECURE_SECRETS/redis-client.password"
  echo "export REDIS_SSL_CAFILE=$SECURE_PKI/ca.pem"
}

# ------------------------------------------------------------------- main ---

print_env() {
  echo "export KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
  echo "export REDIS_URL=$REDIS_URL"
}

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
  exit "${1:-2}"
}

select_services() {
  SERVICES=()
  local s
  for s in "$@"; do
    case $s in
      kafka|redis) SERVICES+=("$s") ;;
      *) printf '[services] unknown service %q (expected kafka or redis)\n' "$s" >&2; exit 2 ;;
    esac
  done
  ((${#SERVICES[@]})) || SERVICES=(kafka redis)
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    up)
      select_services "$@"
      mkdir -p "$DRIFTREC_RUN"
      local s
      for s in "${SERVICES[@]}"; do "${s}_up"; done
      if [[ ${DRIFTREC_SECURE:-0} == 1 ]]; then kafka_secure_up; redis_secure_up; fi
      echo "KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP REDIS_URL=$REDIS_URL"
      ;;
    up-secure)
      mkdir -p "$DRIFTREC_RUN"
      kafka_secure_up
      redis_secure_up
      echo "KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_SECURE_PORT (SASL_SSL) REDIS_URL=rediss://driftrec@127.0.0.1:$REDIS_SECURE_PORT/0"
      ;;
    down)
      local all=$(( $# == 0 ))
      select_services "$@"
      local s
      for s in "${SERVICES[@]}"; do "${s}_down"; done
      ((all)) && secure_down
      rmdir "$SKAFKA_RUN" "$SREDIS_RUN" "$SECURE_RUN" "$KAFKA_RUN" "$REDIS_RUN" "$DRIFTREC_RUN" 2>/dev/null || true
      ;;
    down-secure)
      secure_down
      rmdir "$SKAFKA_RUN" "$SREDIS_RUN" "$SECURE_RUN" 2>/dev/null || true
      ;;
    status-secure) secure_status ;;
    up-cluster)
      mkdir -p "$DRIFTREC_RUN"
      cluster_up
      echo "REDIS_CLUSTER_URL=$(cluster_url)"
      ;;
    down-cluster)
      cluster_down
      rmdir "$DRIFTREC_RUN" 2>/dev/null || true
      ;;
    stop-cluster) cluster_stop ;;
    status-cluster) cluster_status ;;
    env-cluster) echo "export REDIS_CLUSTER_URL=$(cluster_url)" ;;
    pki)  # the CA, keystores and passwords of docker-compose.secure.yml, into an empty folder
      local dir=${1:-secrets}
      [[ ! -e $dir || -z $(ls -A "$dir") ]] || { printf '[services] pki: %s is not empty\n' "$dir" >&2; exit 2; }
      mkdir -p "$dir"
      dir=$(cd "$dir" && pwd)
      SECURE_RUN=$dir SECURE_PKI=$dir/pki SECURE_SECRETS=$dir/secrets pki_make
      # the apache/kafka image reads its keystores, their password and a JAAS file from one folder
      mkdir -p "$dir/kafka"
      cp "$dir/pki/broker.p12" "$dir/pki/truststore.p12" "$dir/secrets/store.creds" "$dir/kafka/"
      (umask 077; printf 'KafkaServer {\n  org.apache.kafka.common.security.scram.ScramLoginModule required\n  username="admin" password="%s";\n};\n' \
        "$(<"$dir/secrets/kafka-admin.password")" >"$dir/kafka/kafka_jaas.conf")
      echo "$dir"
      ;;
    env-secure) print_env_secure ;;
    stop)
      select_services "$@"
      local s
      for s in "${SERVICES[@]}"; do "${s}_stop"; done
      ;;
    restart)
      [[ $# -eq 1 && ( $1 == redis || $1 == kafka ) ]] ||
        { printf '[services] restart takes one service: kafka or redis\n' >&2; exit 2; }
      mkdir -p "$DRIFTREC_RUN"
      "${1}_restart"
      echo "KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP REDIS_URL=$REDIS_URL"
      ;;
    status)
      local rc=0
      kafka_status || rc=3
      redis_status || rc=3
      return $rc
      ;;
    env) print_env ;;
    -h|--help|help) usage 0 ;;
    *) usage ;;
  esac
}

main "$@"
