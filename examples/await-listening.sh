# Sourced by the scripts that start routers in the background: defines
# await_listening LOG PID, which waits until the router that writes LOG
# says its control socket is listening, and fails the script (with the
# log) if the router exits first or is not ready within 20 s: a router
# that dies at start must fail CI, not hang it.
await_listening() {
  local log=$1 pid=$2 i
  for i in $(seq 400); do
    grep -q "listening" "$log" 2>/dev/null && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "FAILED: the router exited at start:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.05
  done
  echo "FAILED: the router was not listening after 20 s:" >&2
  cat "$log" >&2
  exit 1
}
