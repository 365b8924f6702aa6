#!/usr/bin/env bash
# Hot reload under full traffic: 100 reloads of the hub/switch graph fed
# by a RatedSource, then prints the packets lost and VPP's "effective
# blocked time" (lost / offered rate), and the pause of each reload (from
# stop requested to the new router started, as the router logs it).
#
#   bash benches/reload.sh            # RATE=2000000 RELOADS=100
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-2000000}
RELOADS=${RELOADS:-100}
cargo build --release -q -p switchyard
B=$PWD/target/release/switchyard
T=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"' EXIT

cat > "$T/a.click" <<CFG
src :: RatedSource(LENGTH 64, RATE $RATE);
src -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> new :: Counter -> [1]sel;
sel -> check :: SeqCheck -> out :: Counter -> Discard;
CFG
sed 's/new :: Counter -> \[1\]sel/new :: Counter -> extra :: Counter -> [1]sel/' "$T/a.click" > "$T/b.click"

RUST_LOG=info "$B" run "$T/a.click" --control "$T/ctl.sock" -q 2>"$T/log" &
until grep -q "listening" "$T/log" 2>/dev/null; do sleep 0.05; done
ctl() { "$B" ctl -s "$T/ctl.sock" "$@"; }
sleep 1
start=$(date +%s.%N)
for i in $(seq 1 "$RELOADS"); do
  if [ $((i % 2)) = 1 ]; then ctl reload "$T/b.click"; else ctl reload "$T/a.click"; fi
done
end=$(date +%s.%N)
ctl write src.active false
sleep 0.5
sent=$(ctl read src.count); got=$(ctl read check.unique); dup=$(ctl read check.duplicates)
lost=$((sent - got))
python3 - "$T/log" "$sent" "$got" "$dup" "$lost" "$RATE" "$start" "$end" "$RELOADS" <<'PY'
import re, sys
log, sent, got, dup, lost, rate, start, end, n = sys.argv[1:]
pauses = sorted(int(m) for m in re.findall(r"pause_us=(\d+)", open(log).read()))
lost, rate = int(lost), int(rate)
print(f"{n} reloads in {float(end) - float(start):.2f} s under {rate} packets/s offered")
print(f"packets offered {sent}, delivered {got}, duplicated {dup}, lost {lost}")
print(f"effective blocked time: {lost / rate * 1e6:.1f} us in all ({lost / rate * 1e6 / int(n):.2f} us per reload)")
if pauses:
    p = lambda q: pauses[min(len(pauses) - 1, int(q * len(pauses)))]
    print(f"pause per reload (stop requested -> new router running): p50 {p(0.5)} us, p99 {p(0.99)} us, max {pauses[-1]} us")
PY
