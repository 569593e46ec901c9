# Shell functions shared by the cluster and node scripts. Expects $state (the cluster's state dir).
log() { echo "[${log_tag:-cluster}] $*" >&2; }

running() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

start() {  # name, then the command; detached so it outlives make
  local name=$1; shift
  if running "$name"; then return 0; fi
  setsid nohup "$@" >"$state/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$state/$name.pid"
}

stop() {  # names: SIGTERM to all, up to 5 s for all to exit, then SIGKILL
  local name pids=()
  for name in "$@"; do
    [ -f "$state/$name.pid" ] || continue
    pids+=("$(cat "$state/$name.pid")")
    rm -f "$state/$name.pid"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  local pid alive
  for _ in $(seq 50); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || break
    sleep 0.1
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
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
