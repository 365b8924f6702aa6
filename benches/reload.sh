#!/usr/bin/env bash
# Hot reload under full traffic, in memory: 100 reloads (alternating two
# versions of the new branch) of the hub/switch graph fed by a RatedSource,
# then the packets lost and VPP's "effective blocked time" (lost / offered
# rate), and the pause of the threads each reload replaced (paused between
# batches -> new threads running, as the router logs it). Two shapes:
#   1. one thread: the whole graph is replaced on each reload;
#   2. source | Queue | the rest: the source's thread is unchanged and
#      keeps running; only the consumer's thread is replaced.
#
#   bash benches/reload.sh            # RATE=2000000 RELOADS=100
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-2000000}
RELOADS=${RELOADS:-100}
cargo build --release -q -p switchyard
B=$PWD/target/release/switchyard
. examples/await-listening.sh
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"' EXIT
ctl() { "$B" ctl -s "$T/ctl.sock" "$@"; }

BRANCHES='hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> new :: Counter -> [1]sel;
sel -> check :: SeqCheck -> out :: Counter -> Discard;'

measure() { # label, config
  echo "$2" > "$T/a.click"
  sed 's/new :: Counter -> \[1\]sel/new :: Counter -> extra :: Counter -> [1]sel/' "$T/a.click" > "$T/b.click"
  RUST_LOG=info "$B" run "$T/a.click" --control "$T/ctl.sock" -q 2>"$T/log" &
  await_listening "$T/log" $!
  sleep 1
  local start end
  start=$(date +%s.%N)
  for i in $(seq 1 "$RELOADS"); do
    if [ $((i % 2)) = 1 ]; then ctl reload "$T/b.click"; else ctl reload "$T/a.click"; fi >/dev/null
  done
  end=$(date +%s.%N)
  ctl write src.active false
  sleep 0.5
  local sent got dup
  sent=$(ctl read src.count); got=$(ctl read check.unique); dup=$(ctl read check.duplicates)
  python3 - "$T/log" "$1" "$sent" "$got" "$dup" "$RATE" "$start" "$end" "$RELOADS" <<'PY'
import re, sys
log, label, sent, got, dup, rate, start, end, n = sys.argv[1:]
text = open(log).read()
pauses = sorted(int(m) for m in re.findall(r"pause_us=(\d+)", text))
kept = sorted(set(re.findall(r"threads_kept=(\d+) threads_replaced=(\d+)", text)))
lost, rate = int(sent) - int(got), int(rate)
print(f"{label}: {n} reloads in {float(end) - float(start):.2f} s under {rate} packets/s offered")
print(f"  packets offered {sent}, delivered {got}, duplicated {dup}, lost {lost}")
print(f"  effective blocked time: {lost / rate * 1e6:.1f} us in all ({lost / rate * 1e6 / int(n):.2f} us per reload)")
if pauses:
    p = lambda q: pauses[min(len(pauses) - 1, int(q * len(pauses)))]
    print(f"  threads kept/replaced {', '.join('/'.join(k) for k in kept)}; pause of the replaced: p50 {p(0.5)} us, p99 {p(0.99)} us, max {pauses[-1]} us")
PY
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
}

measure "one thread" "src :: RatedSource(LENGTH 64, RATE $RATE) -> $BRANCHES"
measure "source | Queue | branches" \
  "src :: RatedSource(LENGTH 64, RATE $RATE) -> Queue(65536) -> Unqueue -> $BRANCHES"
