#!/usr/bin/env bash
# A real single-node SLURM cluster with accounting on this machine, for development and CI.
#
#   slurm/local-cluster.sh start    # idempotent; prints `export SLURM_CONF=...` on stdout
#   slurm/local-cluster.sh status   # exit 0 when every daemon runs and the node is usable
#   slurm/local-cluster.sh stop     # stops the daemons by their PID files
#
#   eval "$(slurm/local-cluster.sh start)"   # start it and point sbatch, sacct and submitit at it
#
# Daemons: munged, MariaDB (127.0.0.1, its own port and datadir), slurmdbd, slurmctld and slurmd,
# each started by hand with a PID file and a log in <state>/log/<daemon>.log (containers have no systemd). Everything they write lives
# under one state folder. As root, `start` installs the missing Debian packages first.
# Running jobs survive `stop` (their slurmstepd keeps going) and are picked up by the next start.
#
# Environment:
#   AUTODP_SLURM_DIR      state folder: configs, databases, spool, logs, PID files (/tmp/autodp-slurm)
#   AUTODP_SLURM_CPUS     CPUs the node declares (default: the machine's, at least 8)
#   AUTODP_SLURM_PORT     first of four TCP ports: slurmctld, slurmd, slurmdbd, MariaDB (6817)
#   AUTODP_SLURM_TIMEOUT  seconds to wait for each step before giving up (60)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${AUTODP_SLURM_DIR:-/tmp/autodp-slurm}
TIMEOUT=${AUTODP_SLURM_TIMEOUT:-60}
PORT=${AUTODP_SLURM_PORT:-6817}
CLUSTER=autodp
PARTITION=debug
ACCOUNT=autodp
ETC=$STATE/etc
RUN=$STATE/run
LOG=$STATE/log
MUNGE_SOCKET=$STATE/munge/munge.socket.2
DB_SOCKET=$RUN/mariadb.sock
USER_NAME=$(id -un)
# slurmd and sbatch find the config here; slurmdbd reads slurmdbd.conf from the same folder.
export SLURM_CONF=$ETC/slurm.conf
# Start order; `stop` goes backwards. The PID file of each is $RUN/<name>.pid and the name is
# also the process's /proc/<pid>/comm, which guards against a stale file naming a reused PID.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { echo "local-cluster: $*" >&2; }

die() {
    log "ERROR: $*"
    exit 1
}

# The PID of a running daemon, from its PID file; fails when it is not running.
pid_of() {
    local file=$RUN/$1.pid pid
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
    echo "$pid"
}

# wait_for WHAT LOGFILE CMD...: run CMD until it succeeds; after $TIMEOUT s fail with the log's tail.
wait_for() {
    local what=$1 logfile=$2 deadline=$((SECONDS + TIMEOUT))
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "ERROR: $what not ready after ${TIMEOUT}s (AUTODP_SLURM_TIMEOUT). Last lines of $logfile:"
            tail -n 20 "$logfile" >&2 2>/dev/null || log "(no log written)"
            exit 1
        fi
        sleep 0.5
    done
}

install_packages() {
    local -A package_of=([munged]=munge [slurmctld]=slurmctld [slurmd]=slurmd [sbatch]=slurm-client
        [sacct]=slurm-client [slurmdbd]=slurmdbd [mariadbd]=mariadb-server [mariadb-install-db]=mariadb-server
        [mariadb]=mariadb-client)
    local missing=() cmd
    for cmd in "${!package_of[@]}"; do
        command -v "$cmd" >/dev/null || missing+=("${package_of[$cmd]}")
    done
    ((${#missing[@]})) || return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if ((EUID != 0)); then
        die "missing commands; as root run: apt-get install --no-install-recommends ${missing[*]}"
    fi
    log "installing ${missing[*]}"
    local apt=(timeout 900 apt-get install -y -q --no-install-recommends "${missing[@]}")
    export DEBIAN_FRONTEND=noninteractive
    # A fresh container often has no package lists yet: update once, then try again.
    if ! "${apt[@]}" >"$LOG/apt.log" 2>&1; then
        timeout 600 apt-get update -q >>"$LOG/apt.log" 2>&1 || true
        "${apt[@]}" >>"$LOG/apt.log" 2>&1 || { tail -n 20 "$LOG/apt.log" >&2; die "apt-get install failed ($LOG/apt.log)"; }
    fi
}

# Usable memory in MB: the cgroup limit where one is set, else physical memory.
memory_mb() {
    local mb limit
    mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    limit=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || echo max)
    if [[ $limit =~ ^[0-9]+$ ]] && ((limit / 1048576 < mb)); then
        mb=$((limit / 1048576))
    fi
    echo "$mb"
}

# Renders slurm/templates/NAME.in into $ETC/NAME. A running cluster keeps the file it started
# with: the new one would only take effect after a restart, so say so instead.
render() {
    local name=$1 mode=$2 running=$3 tmp
    tmp=$(mktemp "$ETC/.$name.XXXXXX")
    sed -e "s|@STATE@|$STATE|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@PARTITION@|$PARTITION|g" \
        -e "s|@USER@|$USER_NAME|g" -e "s|@MUNGE_SOCKET@|$MUNGE_SOCKET|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@CTLD_PORT@|$PORT|g" -e "s|@SLURMD_PORT@|$((PORT + 1))|g" \
        -e "s|@DBD_PORT@|$((PORT + 2))|g" -e "s|@DB_PORT@|$((PORT + 3))|g" -e "s|@DB_PASS@|$DB_PASS|g" \
        "$HERE/templates/$name.in" >"$tmp"
    chmod "$mode" "$tmp"
    if cmp -s "$tmp" "$ETC/$name"; then
        rm -f "$tmp"
    elif [[ -n $running && -e $ETC/$name ]]; then
        rm -f "$tmp"
        log "WARNING: $name from slurm/templates/$name.in differs from the running one; '$0 stop && $0 start' applies it"
    else
        mv "$tmp" "$ETC/$name"
    fi
}

write_configs() {
    mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/state" "$STATE/spool" "$STATE/munge"
    chmod 755 "$STATE" "$ETC" "$STATE/munge"  # munged refuses a socket folder others may write to
    CPUS=${AUTODP_SLURM_CPUS:-$(nproc)}
    ((CPUS >= 8)) || CPUS=8
    # RealMemory above what slurmd measures drains the node; leave 10% to the system.
    MEM_MB=$(($(memory_mb) * 9 / 10))
    [[ -s $ETC/db.pass ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$ETC/db.pass")
    DB_PASS=$(<"$ETC/db.pass")
    local running="" d
    for d in "${DAEMONS[@]}"; do
        if pid_of "$d" >/dev/null; then running=yes; fi
    done
    render slurm.conf 644 "$running"
    render slurmdbd.conf 600 "$running"  # slurmdbd refuses a readable one: it holds the DB password
}

start_munged() {
    local key=$STATE/munge/munge.key
    if [[ ! -s $key ]]; then
        (umask 277 && head -c 1024 /dev/urandom >"$key")
    fi
    setsid munged --socket="$MUNGE_SOCKET" --key-file="$key" --pid-file="$RUN/munged.pid" \
        --log-file="$LOG/munged.log" --seed-file="$STATE/munge/munge.seed" </dev/null >>"$LOG/munged.log" 2>&1 9>&- ||
        die "munged did not start; see $LOG/munged.log"
    wait_for "munged" "$LOG/munged.log" bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"
}

db() { timeout 30 mariadb --no-defaults --socket="$DB_SOCKET" -u "$USER_NAME" "$@"; }

start_mariadbd() {
    local data=$STATE/mysql
    if [[ ! -d $data/mysql ]]; then
        mariadb-install-db --no-defaults --datadir="$data" --user="$USER_NAME" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed; see $LOG/mariadb-install.log"
    fi
    # The InnoDB settings are the least slurmdbd accepts without logging an error; the buffer
    # pool is reserved address space, the tables of a test cluster stay small.
    setsid mariadbd --no-defaults --datadir="$data" --user="$USER_NAME" --bind-address=127.0.0.1 \
        --port=$((PORT + 3)) --socket="$DB_SOCKET" --pid-file="$RUN/mariadbd.pid" --log-error="$LOG/mariadbd.log" \
        --skip-name-resolve --innodb-buffer-pool-size=512M --innodb-log-file-size=64M \
        --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 9>&- &
    wait_for "MariaDB" "$LOG/mariadbd.log" db -e "SELECT 1"
    db -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1'; ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'" || die "could not create the slurm database user"
}

start_slurmdbd() {
    setsid slurmdbd </dev/null >>"$LOG/slurmdbd.log" 2>&1 9>&- || die "slurmdbd did not start; see $LOG/slurmdbd.log"
    wait_for "slurmdbd" "$LOG/slurmdbd.log" timeout 10 sacctmgr -n list cluster
}

# Cluster, account and user in the accounting database; each only if missing.
register() {
    local q=(timeout 30 sacctmgr -n -P)
    [[ -n $("${q[@]}" list cluster "$CLUSTER" format=cluster) ]] ||
        "${q[@]}" -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr could not add cluster $CLUSTER"
    [[ -n $("${q[@]}" list account "$ACCOUNT" format=account) ]] ||
        "${q[@]}" -i add account "$ACCOUNT" cluster="$CLUSTER" description="autodp development" \
            organization=autodp >/dev/null || die "sacctmgr could not add account $ACCOUNT"
    [[ -n $("${q[@]}" list assoc cluster="$CLUSTER" account="$ACCOUNT" user="$USER_NAME" format=user) ]] ||
        "${q[@]}" -i add user "$USER_NAME" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null ||
        die "sacctmgr could not add user $USER_NAME to account $ACCOUNT"
}

start_slurmctld() {
    setsid slurmctld </dev/null >>"$LOG/slurmctld.log" 2>&1 9>&- || die "slurmctld did not start; see $LOG/slurmctld.log"
    wait_for "slurmctld" "$LOG/slurmctld.log" timeout 10 sinfo -h
}

start_slurmd() {
    setsid slurmd -N localhost </dev/null >>"$LOG/slurmd.log" 2>&1 9>&- || die "slurmd did not start; see $LOG/slurmd.log"
}

# Fails when something other than our stopped daemon already listens on its port: it would
# otherwise die at start with the reason buried in its log.
check_port() {
    local daemon=$1 port=$2
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port, which $daemon needs, is taken by another process (another cluster? set AUTODP_SLURM_PORT)"
    fi
}

node_state() { timeout 10 sinfo -h -n localhost -o %T 2>/dev/null; }

# The node takes jobs: idle, or busy with jobs that survived a restart.
node_usable() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }

start() {
    mkdir -p "$STATE" "$LOG"
    # One start or stop at a time. Daemons get `9>&-`: one that inherited fd 9 would hold the lock.
    exec 9>"$STATE/.lock"
    flock -w "$TIMEOUT" 9 || die "another start/stop holds $STATE/.lock"
    install_packages
    write_configs
    local d pid
    local -A port_of=([slurmctld]=$PORT [slurmd]=$((PORT + 1)) [slurmdbd]=$((PORT + 2)) [mariadbd]=$((PORT + 3)))
    for d in "${!port_of[@]}"; do
        if ! pid_of "$d" >/dev/null; then check_port "$d" "${port_of[$d]}"; fi
    done
    for d in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$d"); then
            log "$d already running (pid $pid)"
        else
            rm -f "$RUN/$d.pid"
            log "starting $d"
            "start_$d"
            wait_for "$d's PID file" "$LOG/$d.log" pid_of "$d"
        fi
        if [[ $d == slurmdbd ]]; then register; fi
    done
    wait_for "node localhost (state: $(node_state || echo unknown))" "$LOG/slurmd.log" node_usable
    wait_for "sacct" "$LOG/slurmdbd.log" timeout 10 sacct -n -X -S now-1minute
    log "up: partition $PARTITION, node localhost with $(timeout 10 sinfo -h -n localhost -o '%c CPUs, %m MB'), accounting on (logs in $LOG)"
    echo "export SLURM_CONF=$SLURM_CONF"
}

stop() {
    [[ -d $RUN ]] || { log "nothing to stop under $STATE"; return 0; }
    exec 9>"$STATE/.lock"
    flock -w "$TIMEOUT" 9 || die "another start/stop holds $STATE/.lock"
    local i d pid deadline
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        d=${DAEMONS[i]}
        if pid=$(pid_of "$d"); then
            log "stopping $d (pid $pid)"
            kill -TERM "$pid"
            deadline=$((SECONDS + TIMEOUT))
            while pid_of "$d" >/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
            if pid_of "$d" >/dev/null; then
                log "$d ignored SIGTERM for ${TIMEOUT}s: SIGKILL"
                kill -KILL "$pid"
            fi
        fi
        rm -f "$RUN/$d.pid"
    done
}

status() {
    local d pid up=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$d"); then echo "$d: running (pid $pid)"; else echo "$d: stopped"; up=1; fi
    done
    if ((up == 0)) && node_usable; then
        sinfo
        echo "export SLURM_CONF=$SLURM_CONF"
    else
        echo "node localhost: $(node_state || echo 'not reachable')"
        up=1
    fi
    return $up
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status   (state folder: $STATE)" >&2
    exit 2
    ;;
esac
