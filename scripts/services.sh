# Sourced by scripts/test.sh: make sure each external service the tests need is reachable on
# loopback, starting it (or installing it from Debian's packages) when it is not. Every
# function fails loudly instead of letting a test skip.

log() { printf '[services] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    log "cannot install $* automatically (no apt-get): install it and re-run"; return 1
  fi
  if [ -z "${MECHA_APT_UPDATED:-}" ]; then
    as_root apt-get update -qq; export MECHA_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # wait_for NAME SECONDS COMMAND...
  local name=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 10))); do "$@" && return 0; sleep 0.1; done
  log "$name did not come up within ${secs}s"; return 1
}

redis_ping() { # redis_ping HOST PORT
  local reply
  exec 3<>"/dev/tcp/$1/$2" || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 2 reply <&3 || true
  exec 3<&- 3>&-
  [[ "$reply" == +PONG* ]]
}

ensure_redis() {
  local host=127.0.0.1 port=${REDIS_PORT:-6379}
  # The binary is needed even when a server already answers: the failure tests start,
  # kill and restart private redis-servers of their own.
  command -v redis-server >/dev/null || { log "redis: installing"; apt_install redis-server; }
  if redis_ping "$host" "$port" 2>/dev/null; then log "redis: up on $host:$port"; return 0; fi
  log "redis: starting on $host:$port"
  redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
    --logfile "${TMPDIR:-/tmp}/mecha-redis-$port.log" >/dev/null
  wait_for redis 15 redis_ping "$host" "$port"
}

nats_jetstream() { # nats_jetstream HOST PORT: the server's INFO line announces JetStream
  local info
  { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
  IFS= read -r -t 2 info <&3 || true
  exec 3<&- 3>&-
  [[ "$info" == INFO* && "$info" == *'"jetstream":true'* ]]
}

ensure_nats() {
  local host=127.0.0.1 port=${NATS_PORT:-4222}
  # The binary is needed even when a server already answers: a failure test starts, kills
  # and restarts a private nats-server of its own.
  command -v nats-server >/dev/null || { log "nats: installing"; apt_install nats-server; }
  if nats_jetstream "$host" "$port" 2>/dev/null; then log "nats: up with JetStream on $host:$port"; return 0; fi
  if tcp_open "$host" "$port"; then
    log "nats: something listens on $host:$port but does not announce JetStream; start nats-server with -js"
    return 1
  fi
  local dir="${TMPDIR:-/tmp}/mecha-nats-$port"
  mkdir -p "$dir"
  log "nats: starting on $host:$port (JetStream in $dir)"
  nohup nats-server -a "$host" -p "$port" -js -sd "$dir" -l "$dir/nats.log" >/dev/null 2>&1 &
  disown || true
  wait_for nats 15 nats_jetstream "$host" "$port"
}

etcd_health() { # etcd_health HOST PORT: the member answers /health with "health":"true"
  local reply
  { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
  printf 'GET /health HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
  reply=$(timeout 2 cat <&3 || true)
  exec 3<&- 3>&-
  [[ "$reply" == *'"health":"true"'* ]]
}

# etcd for the state.etcd tests: a three-member cluster on private ports (client
# ${ETCD_BASE_PORT:-2379}1..3, peer ${ETCD_BASE_PORT:-2380}1..3 by default: 23791-23793 / 23801-23803),
# data in a temp dir, unless ETCD_ENDPOINTS names a cluster already. The binary is needed even
# when a cluster answers: the failover tests kill and restart members of their own.
ensure_etcd() {
  command -v etcd >/dev/null || { log "etcd: installing"; apt_install etcd-server; }
  if [ -n "${ETCD_ENDPOINTS:-}" ]; then log "etcd: using ETCD_ENDPOINTS=$ETCD_ENDPOINTS"; return 0; fi
  local host=127.0.0.1 client_base=${ETCD_CLIENT_BASE:-2379} peer_base=${ETCD_PEER_BASE:-2380}
  local i endpoints="" cluster="" all_up=1
  for i in 1 2 3; do
    endpoints+="${endpoints:+,}http://$host:$client_base$i"
    cluster+="${cluster:+,}m$i=http://$host:$peer_base$i"
    etcd_health "$host" "$client_base$i" || all_up=0
  done
  export ETCD_ENDPOINTS="$endpoints"
  if [ "$all_up" = 1 ]; then log "etcd: three members up at $ETCD_ENDPOINTS"; return 0; fi
  local dir="${TMPDIR:-/tmp}/mecha-etcd-$client_base"
  log "etcd: starting a three-member cluster at $ETCD_ENDPOINTS (data in $dir)"
  for i in 1 2 3; do
    if etcd_health "$host" "$client_base$i"; then continue; fi
    mkdir -p "$dir/m$i"
    local state=new
    [ -d "$dir/m$i/member" ] && state=existing
    nohup etcd --name "m$i" --data-dir "$dir/m$i" \
      --listen-client-urls "http://$host:$client_base$i" --advertise-client-urls "http://$host:$client_base$i" \
      --listen-peer-urls "http://$host:$peer_base$i" --initial-advertise-peer-urls "http://$host:$peer_base$i" \
      --initial-cluster "$cluster" --initial-cluster-state "$state" --initial-cluster-token mecha-test \
      >"$dir/m$i.log" 2>&1 &
    disown || true
  done
  for i in 1 2 3; do wait_for "etcd member $i" 30 etcd_health "$host" "$client_base$i" || return 1; done
}

# Redis Cluster for the redisType=cluster tests: six nodes (three primaries, three replicas) on
# private ports ${REDIS_CLUSTER_BASE:-2700}1..6 (cluster bus on port + 10000), data in a temp dir,
# unless REDIS_CLUSTER_NODES names a cluster already. Idempotent: a cluster whose nodes all
# answer and whose state is ok is reused; otherwise the missing nodes are started and, when the
# nodes are not yet one cluster, it is created with redis-cli --cluster create.
redis_cluster_ok() { # redis_cluster_ok PORT: the node reports cluster_state:ok
  redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

ensure_redis_cluster() {
  command -v redis-server >/dev/null || { log "redis: installing"; apt_install redis-server; }
  command -v redis-cli >/dev/null || { log "redis-cli: installing"; apt_install redis-tools; }
  if [ -n "${REDIS_CLUSTER_NODES:-}" ]; then log "redis cluster: using REDIS_CLUSTER_NODES=$REDIS_CLUSTER_NODES"; return 0; fi
  local host=127.0.0.1 base=${REDIS_CLUSTER_BASE:-2700} i nodes="" all_up=1
  for i in 1 2 3 4 5 6; do
    nodes+="${nodes:+,}$host:$base$i"
    redis_cluster_ok "$base$i" || all_up=0
  done
  export REDIS_CLUSTER_NODES="$nodes"
  if [ "$all_up" = 1 ]; then log "redis cluster: six nodes up at $REDIS_CLUSTER_NODES"; return 0; fi
  local dir="${TMPDIR:-/tmp}/mecha-redis-cluster-$base"
  log "redis cluster: starting six nodes at $REDIS_CLUSTER_NODES (data in $dir)"
  for i in 1 2 3 4 5 6; do
    if redis_ping "$host" "$base$i" 2>/dev/null; then continue; fi
    mkdir -p "$dir/n$i"
    redis-server --daemonize yes --bind "$host" --port "$base$i" --dir "$dir/n$i" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 --repl-diskless-sync-delay 0 \
      --save "" --appendonly no --logfile "$dir/n$i.log" >/dev/null
  done
  for i in 1 2 3 4 5 6; do wait_for "redis cluster node $i" 15 redis_ping "$host" "$base$i" || return 1; done
  # A node that knows no other node has not joined a cluster yet: create it.
  if [ "$(redis-cli -h "$host" -p "${base}1" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = 1 ]; then
    log "redis cluster: creating (3 primaries, 3 replicas)"
    # shellcheck disable=SC2046
    redis-cli --cluster create $(for i in 1 2 3 4 5 6; do printf '%s:%s ' "$host" "$base$i"; done) \
      --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 || { log "redis cluster: create failed, see $dir/create.log"; return 1; }
  fi
  for i in 1 2 3 4 5 6; do wait_for "redis cluster state ok on node $i" 30 redis_cluster_ok "$base$i" || return 1; done
}

pg_ready() { tcp_open 127.0.0.1 "${PGPORT:-5432}"; }

ensure_postgres() {
  if ! pg_ready; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then log "postgres: installing"; apt_install postgresql; fi
    local version; version=$(ls /etc/postgresql | sort -V | tail -n1)
    log "postgres: starting cluster $version/main"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
    wait_for postgres 30 pg_ready
  fi
  # A fresh Debian cluster uses password auth on TCP: give the postgres role a known
  # password and make sure the test database exists (both no-ops under trust auth).
  if command -v psql >/dev/null; then
    if ! PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
      as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    fi
    if ! PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -Atqc "select 1 from pg_database where datname='test'" | grep -q 1; then
      PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test' >/dev/null
    fi
  fi
  log "postgres: up on 127.0.0.1:${PGPORT:-5432}"
}

mariadb_ready() { mariadb -h127.0.0.1 -P"${MYSQL_PORT:-3306}" -uroot -e 'select 1' >/dev/null 2>&1; }

# MariaDB on 127.0.0.1:3306 for state.mysql: root over TCP without a password, database test.
ensure_mariadb() {
  if ! tcp_open 127.0.0.1 "${MYSQL_PORT:-3306}"; then
    if [ ! -x /usr/sbin/mariadbd ]; then log "mariadb: installing"; apt_install mariadb-server; fi
    as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    log "mariadb: starting"
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_for "mariadb port" 60 tcp_open 127.0.0.1 "${MYSQL_PORT:-3306}" || return 1
  fi
  if ! mariadb_ready; then
    # A fresh Debian install authenticates root by unix socket only: allow TCP without a password.
    as_root mariadb -uroot -e "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; CREATE USER IF NOT EXISTS root@'127.0.0.1'; GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES" >/dev/null 2>&1 || true
  fi
  wait_for "mariadb (select 1 as root)" 30 mariadb_ready || return 1
  mariadb -h127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null
  log "mariadb: up on 127.0.0.1:${MYSQL_PORT:-3306}"
}

# Python 3 with venv and pip, for the official Python SDK compatibility test.
ensure_python_venv() {
  if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then
    log "python: $(python3 --version 2>&1) with venv"; return 0
  fi
  log "python: installing python3-venv"
  apt_install python3 python3-venv python3-pip
}

# The openssl command, which the Python SDK TLS test uses to make its certificates.
ensure_openssl() {
  if command -v openssl >/dev/null; then
    log "openssl: $(openssl version)"; return 0
  fi
  log "openssl: installing openssl"
  apt_install openssl
}

# Node.js with npm, for the official JavaScript SDK compatibility test.
ensure_node() {
  if command -v node >/dev/null && command -v npm >/dev/null; then
    log "node: $(node --version) with npm $(npm --version)"; return 0
  fi
  log "node: installing nodejs and npm"
  apt_install nodejs npm
}

# promtool (Debian's prometheus package), which tests/telemetry/promtool.rs runs on a scrape
# of a running Mecha; the test fails when it is missing.
ensure_promtool() {
  if command -v promtool >/dev/null; then
    log "promtool: $(promtool --version 2>&1 | head -n 1)"; return 0
  fi
  log "promtool: installing prometheus"
  # Only its promtool is wanted: RUNLEVEL=1 keeps the package's init script from starting a
  # Prometheus server (which would take 9090, Mecha's default metrics port).
  (export RUNLEVEL=1; apt_install --no-install-recommends prometheus)
  command -v promtool >/dev/null || { log "promtool: not found after installing prometheus"; return 1; }
}

# mdbook, to build the book (docs/): installed with cargo into ~/.cargo/bin once (a few minutes),
# then reused.
ensure_mdbook() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if command -v mdbook >/dev/null; then
    log "mdbook: $(mdbook --version)"; return 0
  fi
  log "mdbook: installing with cargo (once)"
  CARGO_TARGET_DIR="$HOME/.cache/mecha/mdbook-build" cargo install --locked --quiet mdbook
  rm -rf "$HOME/.cache/mecha/mdbook-build"
  command -v mdbook >/dev/null || { log "mdbook: not found after cargo install"; return 1; }
}

# cargo-deny, for the dependency checks of .ci/run (deny.toml): installed with cargo once.
ensure_cargo_deny() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if command -v cargo-deny >/dev/null; then
    log "cargo-deny: $(cargo-deny --version)"; return 0
  fi
  log "cargo-deny: installing with cargo (once)"
  CARGO_TARGET_DIR="$HOME/.cache/mecha/cargo-deny-build" cargo install --locked --quiet cargo-deny
  rm -rf "$HOME/.cache/mecha/cargo-deny-build"
  command -v cargo-deny >/dev/null || { log "cargo-deny: not found after cargo install"; return 1; }
}

# The load generators of scripts/bench.sh: wrk (HTTP) and h2load (gRPC; Debian's
# nghttp2-client), and redis-benchmark (with Redis's tools).
ensure_load_generators() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v h2load >/dev/null || missing+=(nghttp2-client)
  command -v redis-benchmark >/dev/null || missing+=(redis-tools)
  if [ ${#missing[@]} -eq 0 ]; then
    log "load generators: wrk, h2load, redis-benchmark"; return 0
  fi
  log "load generators: installing ${missing[*]}"
  apt_install "${missing[@]}"
}

# The environment both scripts/test.sh and scripts/bench.sh run in: a target directory outside
# the clone (reused between runs), Redis, Redis Cluster, PostgreSQL, NATS (with JetStream) and etcd up, and their
# URLs exported.
prepare_test_environment() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mecha/target}"
  export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
  ensure_redis
  ensure_postgres
  ensure_mariadb
  ensure_nats
  ensure_etcd
  ensure_redis_cluster
  export NATS_URL="${NATS_URL:-nats://127.0.0.1:${NATS_PORT:-4222}}"
  export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
  export DATABASE_URL="${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}"
  export MYSQL_URL="${MYSQL_URL:-root:@tcp(127.0.0.1:3306)/test}"
}
