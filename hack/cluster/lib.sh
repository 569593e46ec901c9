# Shell functions shared by the cluster and node scripts. Expects $state (the cluster's state dir).
log() { echo "[${log_tag:-cluster}] $*" >&2; }

running() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

start() {  # name, then the command; detached so it outlives make
  local name=$1; shift
  if running "$name"; then return 0; fi
  setsid nohup "$@" >"$state/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$state/$name.pid"
}

terminate() {  # pids: SIGTERM to all, up to 5 s for all to exit, then SIGKILL
  [ $# -gt 0 ] || return 0
  kill "$@" 2>/dev/null || true
  local pid alive
  for _ in $(seq 50); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || break
    sleep 0.1
  done
  kill -9 "$@" 2>/dev/null || true
}

stop() {  # names: the processes their pid files name
  local name pids=()
  for name in "$@"; do
    [ -f "$state/$name.pid" ] || continue
    pids+=("$(cat "$state/$name.pid")")
    rm -f "$state/$name.pid"
  done
  terminate "${pids[@]}"
}

sweep() {  # the control-plane processes of this cluster that no pid file names any more (a component
  # restarted while an older copy still ran, a pid file lost): found by their binary and by "$state/"
  # on their command line, so another cluster's processes are never touched.
  local cmdline pid args pids=()
  for cmdline in /proc/[0-9]*/cmdline; do
    pid=${cmdline#/proc/}; pid=${pid%/cmdline}
    args=$(tr '\0' ' ' 2>/dev/null < "$cmdline") || continue
    case "$args" in *"$state/"*) ;; *) continue ;; esac
    case "$(basename "${args%% *}")" in
      etcd-*|kube-apiserver-*|kube-controller-manager-*|kube-scheduler-*|kwok-*) pids+=("$pid") ;;
    esac
  done
  [ ${#pids[@]} -eq 0 ] || log "stopping control-plane processes no pid file named: ${pids[*]}"
  terminate "${pids[@]}"
}

wait_for() {  # what, seconds, command...: returns 1 on time-out (callers decide whether that is fatal)
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      log "timed out waiting for $what; logs in $state/logs/"
      return 1
    fi
    sleep 0.2
  done
}
