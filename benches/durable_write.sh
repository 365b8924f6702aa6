#!/usr/bin/env bash
# Durable control writes under full traffic: the round trip of
# `WRITE sel.switch N` (apply, append to the state journal and fdatasync,
# append to the audit log and fdatasync, reply) while the hub/switch
# graph forwards at full rate on the other core. Prints p50, p99 and max
# of WRITES writes on one connection, for the state file and audit log on
# the working directory's disk, then with neither (the protocol alone).
#
#   bash benches/durable_write.sh         # WRITES=2000
set -euo pipefail
cd "$(dirname "$0")/.."
WRITES=${WRITES:-2000}
cargo build --release -q -p switchyard
B=$PWD/target/release/switchyard
. examples/await-listening.sh
T=$(mktemp -d "$PWD/target/durable.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"' EXIT

cat > "$T/r.click" <<'CLICK'
src :: InfiniteSource(LENGTH 64, BURST 32);
src -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> new :: Counter -> [1]sel;
sel -> out :: Counter -> Discard;
CLICK

measure() { # label, router options...
  local label=$1; shift
  rm -f "$T/ctl.sock"
  "$B" run "$T/r.click" --control "$T/ctl.sock" -q "$@" 2>"$T/log" &
  local pid=$!
  await_listening "$T/log" "$pid"
  python3 - "$T/ctl.sock" "$WRITES" "$label" <<'PY'
import socket, sys, time
path, n, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_UNIX)
s.connect(path)
f = s.makefile("rb")
f.readline()  # greeting
lat = []
for i in range(n):
    t = time.perf_counter()
    s.sendall(b"WRITE sel.switch %d\r\n" % (i % 2))
    line = f.readline()
    lat.append(time.perf_counter() - t)
    assert line.startswith(b"200 "), line
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] * 1e3
print(f"{label}: {n} writes under traffic: p50 {pct(0.50):.3f} ms, p99 {pct(0.99):.3f} ms, max {lat[-1]*1e3:.3f} ms")
PY
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
}

measure "durable (--state, --audit)" --state "$T/state.json" --audit "$T/audit.jsonl"
measure "no state, no audit" 
echo "state journal: $(wc -l < "$T/state.json.journal") lines (compacted into the state file every 4096 writes)"
