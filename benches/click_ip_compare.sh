#!/usr/bin/env bash
# Switchyard beside Click in one run, on 64-byte UDP frames in memory:
# the hub/switch graph and a source into Discard (issue #16's one-core
# figures), and issue #11's two IP chains: the route-lookup chain (1002
# routes in a RadixIPLookup) and a 100-rule IPFilter (and its 1-rule
# twin). Click runs
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
    local s e; s=$(date +%s.%N); "$CLICK" -h "$2" "$1" >/dev/null 2>&1; e=$(date +%s.%N)
    best=$(python3 -c "print(max($best, $N / ($e - $s) / 1e6))")
  done
  printf '%.2f' "$best"
}
sy_mpps() { target/release/bench "$N" --repeat "$REPEAT" --case "$1" | awk '/ best +[0-9.]+ Mpps$/ {print $(NF-1)}'; }
for case in "hub/switch:hub:out.count" "source -> discard:discard:d.count" \
  "IP route, 1002 routes:route:out.count" "IPFilter, 100 rules:f100:out.count" "IPFilter, 1 rule:f1:out.count"; do
  IFS=: read -r name file handler <<< "$case"
  target/release/bench "$N" --print-config "$name" > "$T/$file.click"
  c=$(click_mpps "$T/$file.click" "$handler"); s=$(sy_mpps "$name")
  printf '%-24s Click %6s Mpps   Switchyard %6s Mpps   %5.1fx\n' "$name" "$c" "$s" "$(python3 -c "print($s / $c)")"
done
