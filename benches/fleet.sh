#!/usr/bin/env bash
# A fleet moved as one: the time from `switchyard fleet set` to the last
# router's ack, both phases (prepare: every router checks; commit: every
# router applies), with N routers carrying traffic, through a real etcd
# (Debian's etcd-server on a loopback port, a scratch data directory).
# Each router is its own process; SETS sets alternate sel.switch 1 and 0.
# Prints p50, p90 and max of the set's own figure ("after the set
# began": from the first write of the desired state to the last ack) and
# of the whole command (process start, connect, read, both phases).
#
#   bash benches/fleet.sh              # ROUTERS="20 100" SETS=20
set -euo pipefail
cd "$(dirname "$0")/.."
ROUTERS=${ROUTERS:-"20 100"}
SETS=${SETS:-20}
RATE=${RATE:-1000}   # packets/s through each router
command -v etcd >/dev/null || { echo "etcd not installed (apt-get install etcd-server)"; exit 1; }
cargo build --release -q -p switchyard
B=$PWD/target/release/switchyard
T=$(mktemp -d "$PWD/target/fleet.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CP=$(port); PP=$(port)
etcd --name bench --data-dir "$T/etcd" \
  --listen-client-urls "http://127.0.0.1:$CP" --advertise-client-urls "http://127.0.0.1:$CP" \
  --listen-peer-urls "http://127.0.0.1:$PP" --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
  --initial-cluster "bench=http://127.0.0.1:$PP" >"$T/etcd.log" 2>&1 &
python3 - "$CP" <<'PY'
import sys, time, urllib.request
for _ in range(100):
    try:
        if b'"true"' in urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1).read():
            break
    except OSError:
        pass
    time.sleep(0.1)
PY

cat > "$T/r.click" <<CLICK
src :: RatedSource(RATE $RATE, LENGTH 64);
src -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> new :: Counter -> [1]sel;
sel -> out :: Counter -> Discard;
CLICK

registered() { "$B" fleet --etcd "$1" status 2>/dev/null | sed -n 's/^routers: \([0-9]*\) registered.*/\1/p'; }

for n in $ROUTERS; do
  url="etcd://127.0.0.1:$CP/bench-$n"
  pids=()
  for i in $(seq -w 1 "$n"); do
    "$B" run "$T/r.click" -q --fleet "$url" --fleet-name "r$i" 2>>"$T/routers-$n.log" &
    pids+=($!)
  done
  for _ in $(seq 600); do [ "$(registered "$url")" = "$n" ] && break; sleep 0.1; done
  [ "$(registered "$url")" = "$n" ] || { echo "only $(registered "$url") of $n routers registered"; exit 1; }
  : > "$T/times"
  for k in $(seq "$SETS"); do
    v=$((k % 2))
    start=$(date +%s%N)
    out=$("$B" fleet --etcd "$url" set sel.switch "$v" --timeout 10)
    end=$(date +%s%N)
    set_ms=$(sed -n 's/.* \([0-9.]*\) ms after the set began.*/\1/p' <<<"$out")
    [ -n "$set_ms" ] || { echo "$out"; exit 1; }
    echo "$set_ms $(( (end - start) / 1000 ))" >> "$T/times"
  done
  python3 - "$n" "$T/times" <<'PY'
import sys
n, path = sys.argv[1], sys.argv[2]
rows = [line.split() for line in open(path)]
def stats(xs):
    xs = sorted(xs)
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    return f"p50 {pick(0.5):7.1f} ms  p90 {pick(0.9):7.1f} ms  max {xs[-1]:7.1f} ms"
print(f"{n:>4} routers, {len(rows)} sets: set to last ack   {stats([float(r[0]) for r in rows])}")
print(f"{'':>4}             whole command       {stats([int(r[1]) / 1000 for r in rows])}")
PY
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
done
