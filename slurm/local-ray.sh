#!/usr/bin/env bash
# A local Ray cluster (one head node) on this machine, for development and CI: the cluster that
# slurm/ray-apply.sbatch starts inside a SLURM allocation, here kept up between runs. `make test`
# starts it and the Ray tests join it (process.address=$AUTODP_RAY_ADDRESS).
#
#   slurm/local-ray.sh start    # idempotent; prints `export AUTODP_RAY_ADDRESS=... RAY_AUTH_MODE=token`
#   slurm/local-ray.sh status   # exit 0 when the head answers
#   slurm/local-ray.sh stop     # ends this cluster's head (not `ray stop`: that ends every Ray here)
#
#   eval "$(slurm/local-ray.sh start)"
#
# Its Ray workers inherit this shell's environment (AUTODP_CACHE, HF_HOME: the shared caches) and
# its `ray`'s Python. Environment:
#   AUTODP_RAY_DIR    state folder: Ray's sessions, the log and the PID file (/tmp/autodp-ray)
#   AUTODP_RAY_PORT   the head's port (6390)
#   AUTODP_RAY_CPUS   CPUs the head offers (default: the machine's)
#   AUTODP_RAY_TIMEOUT  seconds to wait for the head (120)
set -euo pipefail

STATE=${AUTODP_RAY_DIR:-/tmp/autodp-ray}
PORT=${AUTODP_RAY_PORT:-6390}
CPUS=${AUTODP_RAY_CPUS:-$(nproc)}
TIMEOUT=${AUTODP_RAY_TIMEOUT:-120}
ADDRESS=127.0.0.1:$PORT
# Ray 2.60's `ray start` runs in token mode: its clients must send the token it keeps in ~/.ray
export RAY_AUTH_MODE=token

log() { echo "local-ray: $*" >&2; }

pid() {
    local p
    p=$(cat "$STATE/ray.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null && echo "$p"
}

# `ray status` retries an address where nothing listens for half a minute: ask only while ours runs
up() { [[ -n $(pid) ]] && ray status --address "$ADDRESS" >/dev/null 2>&1; }

case ${1:-} in
start)
    command -v ray >/dev/null || { log "ERROR: no ray on PATH (make install, then run with .venv/bin on PATH)"; exit 1; }
    # Its workers run the Python (and the autodp) of the `ray` that started the head: another
    # checkout's head would run that checkout's code
    if up && [[ $(cat "$STATE/ray.bin" 2>/dev/null) != "$(command -v ray)" ]]; then
        log "ERROR: the Ray head at $ADDRESS was started by $(cat "$STATE/ray.bin" 2>/dev/null || echo 'another ray'), not $(command -v ray): stop it first ($0 stop)"
        exit 1
    fi
    if ! up; then
        mkdir -p "$STATE"
        log "starting a Ray head at $ADDRESS with $CPUS CPUs (log: $STATE/ray.log)"
        # --block keeps `ray start` in the foreground: its PID stands for the cluster, and a TERM to it
        # stops this head and its workers only
        setsid ray start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus="$CPUS" \
            --temp-dir="$STATE/tmp" --include-dashboard=false --disable-usage-stats --block \
            >"$STATE/ray.log" 2>&1 </dev/null &
        echo $! >"$STATE/ray.pid"
        command -v ray >"$STATE/ray.bin"
        deadline=$((SECONDS + TIMEOUT))
        until up; do
            if [[ -z $(pid) ]] || ((SECONDS > deadline)); then
                log "ERROR: the Ray head did not come up; the end of $STATE/ray.log:"
                tail -20 "$STATE/ray.log" >&2
                exit 1
            fi
            sleep 1
        done
    fi
    echo "export AUTODP_RAY_ADDRESS=$ADDRESS RAY_AUTH_MODE=token"
    ;;
status)
    up
    ;;
stop)
    if p=$(pid); then
        kill -TERM "$p"
        for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
    fi
    rm -f "$STATE/ray.pid"
    ;;
*)
    echo "usage: $0 start|status|stop" >&2
    exit 2
    ;;
esac
