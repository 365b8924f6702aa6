#!/usr/bin/env bash
# Switchyard beside Click on issue #11's two IP chains, in one run, on
# 64-byte UDP frames in memory: the route-lookup chain (1002 routes in a
# RadixIPLookup) and a 100-rule IPFilter (and its 1-rule twin). Click runs
# the very configurations the benchmark runs, printed by
# `bench --print-config` (same frame, routes and rules; the source's frame
# as DATA, which Click needs). Needs a Click userlevel binary:
#
#   CLICK=/path/to/click/userlevel/click bash benches/click_ip_compare.sh
#
# Build one from github.com/kohler/click: ./configure --disable-linuxmodule
# --enable-userlevel && make. Compare the ratios: the machines are noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CLICK:?set CLICK to a Click userlevel binary}"
N=${N:-20000000}
REPEAT=${REPEAT:-3}
cargo build --release -q -p switchyard --bin bench
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
click_mpps() { # best of REPEAT runs, packets/s from wall time
  local best=0
  for _ in $(seq "$REPEAT"); do
    local s e; s=$(date +%s.%N); "$CLICK" -h out.count "$1" >/dev/null 2>&1; e=$(date +%s.%N)
    best=$(python3 -c "print(max($best, $N / ($e - $s) / 1e6))")
  done
  printf '%.2f' "$best"
}
sy_mpps() { target/release/bench "$N" --repeat "$REPEAT" --only "$1" | awk -v n="$1" 'index($0, n) == 1 && /best/ {print $(NF-1)}'; }
for case in "IP route, 1002 routes:route" "IPFilter, 100 rules:f100" "IPFilter, 1 rule:f1"; do
  name=${case%%:*} file=${case##*:}
  target/release/bench "$N" --print-config "$name" > "$T/$file.click"
  c=$(click_mpps "$T/$file.click"); s=$(sy_mpps "$name")
  printf '%-24s Click %6s Mpps   Switchyard %6s Mpps   %5.1fx\n' "$name" "$c" "$s" "$(python3 -c "print($s / $c)")"
done
