#!/usr/bin/env bash
# Hot reload on real interfaces: gen -> rtr -> sink over veth pairs in
# network namespaces, a fixed offered rate, and RELOADS reloads of the
# router (alternating two versions of its new branch) while traffic flows.
# Loss is exact: frames the generator sent minus frames the sink received,
# counted after the path drains. Prints, for each router shape, the loss,
# VPP's "effective blocked time" (lost / offered rate) and the pause of the
# threads each reload replaced (from the router's log):
#   1. Queue-buffered: FromDevice -> Queue | Unqueue -> hub/switch -> ToDevice
#      (the device thread is unchanged, so it keeps running; the Queue
#      holds what arrives while the consumer thread is swapped);
#      measured with and without reloads, to separate reload loss from
#      the path's own;
#   2. one thread: FromDevice -> hub/switch -> ToDevice, replaced as a
#      whole on each reload (frames wait in the kernel's receive ring).
#
#   bash benches/reload_netns.sh     # needs root; RATE=200000 RELOADS=100
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-200000}
RELOADS=${RELOADS:-100}
export RUST_LOG=info
. examples/netns-topology.sh syr

# 64-byte broadcast frames of an experimental EtherType (0x88b5).
FRAME=ffffffffffff02000000000188b5$(printf '%0100d' 0)
GEN="src :: RatedSource(DATA \\<$FRAME>, RATE $RATE, ACTIVE false) -> out :: ToDevice(gen0);"
SINK='FromDevice(sink0) -> c :: Classifier(12/88b5, -); c[0] -> got :: Counter -> Discard; c[1] -> Discard;'
BRANCHES='hub :: Tee(2); hub[0] -> old :: Counter -> [0]sel :: InputSwitch(1); hub[1] -> new :: Counter -> [1]sel; sel -> ToDevice(rtr1);'
QUEUED="FromDevice(rtr0) -> q :: Queue(65536) -> Unqueue -> $BRANCHES"
SINGLE="FromDevice(rtr0) -> $BRANCHES"

measure() { # label, router config, reloads
  local label=$1 config=$2 n=$3
  echo "$config" > "$T/a.click"
  sed 's/new :: Counter -> \[1\]sel/new :: Counter -> extra :: Counter -> [1]sel/' "$T/a.click" > "$T/b.click"
  start $S sink "$SINK"
  start $R rtr "$config"
  start $G gen "$GEN"
  ctl gen write src.active true
  sleep 0.5
  local t0 t1
  t0=$(date +%s.%N)
  for i in $(seq 1 "$n"); do
    if [ $((i % 2)) = 1 ]; then ctl rtr reload "$T/b.click"; else ctl rtr reload "$T/a.click"; fi >/dev/null
  done
  [ "$n" -gt 0 ] || sleep 2
  t1=$(date +%s.%N)
  sleep 0.5
  ctl gen write src.active false
  sleep 0.5
  local sent recv
  sent=$(ctl gen read out.count); recv=$(ctl sink read got.count)
  python3 - "$T/rtr.log" "$label" "$n" "$sent" "$recv" "$RATE" "$t0" "$t1" <<'PY'
import re, sys
log, label, n, sent, recv, rate, t0, t1 = sys.argv[1:]
n, sent, recv, rate = int(n), int(sent), int(recv), int(rate)
lost = sent - recv
text = open(log).read()
pauses = sorted(int(m) for m in re.findall(r"pause_us=(\d+)", text))
kept = sorted(set(re.findall(r"threads_kept=(\d+) threads_replaced=(\d+)", text)))
line = f"{label:<34} {n:>3} reloads in {float(t1) - float(t0):5.2f} s: sent {sent}, received {recv}, lost {lost}"
if n:
    line += f"; effective blocked time {lost / rate * 1e6 / n:.1f} us per reload"
print(line)
if pauses:
    p = lambda q: pauses[min(len(pauses) - 1, int(q * len(pauses)))]
    print(f"{'':<34} threads kept/replaced {', '.join('/'.join(k) for k in kept)}; pause of the replaced p50 {p(0.5)} us, p99 {p(0.99)} us, max {pauses[-1]} us")
PY
  jobs -p | xargs -r kill 2>/dev/null || true; wait 2>/dev/null || true
  rm -f "$T"/*.sock "$T"/*.log "$T"/*.pid
}

echo "64-byte frames at $RATE frames/s, gen -> rtr -> sink over veth (2 cores shared by all three)"
measure "queue-buffered, no reloads" "$QUEUED" 0
measure "queue-buffered" "$QUEUED" "$RELOADS"
measure "one thread (kernel ring buffers)" "$SINGLE" "$RELOADS"
