#!/usr/bin/env bash
# The whole rollback story on one screen, on real interfaces:
#
#   gen ──veth── rtr (switchyard: hub -> old | new -> switch) ──veth── sink
#
# The new branch rewrites the IPv4 TTL to 7 (StoreData: the header checksum
# is left as is, the sink only counts); the sink counts frames by TTL,
# so you can see which branch is in production while we flip the switch
# from another process, as an operator would. Needs root; cleans up after.
#
#   sudo bash examples/rollback-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p switchyard
B=$PWD/target/release/switchyard
T=$(mktemp -d)
G=sydemogen$$ R=sydemortr$$ S=sydemosink$$
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  wait 2>/dev/null || true
  for n in $G $R $S; do ip netns del $n 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT

for n in $G $R $S; do
  ip netns add $n
  ip netns exec $n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add gen0 netns $G type veth peer name rtr0 netns $R
ip link add rtr1 netns $R type veth peer name sink0 netns $S
for x in "$G gen0" "$R rtr0" "$R rtr1" "$S sink0"; do set -- $x; ip -n $1 link set $2 up; done

start() { # namespace, name, config
  ip netns exec "$1" "$B" run -e "$3" --control "$T/$2.sock" --audit "$T/$2.audit" 2>"$T/$2.log" &
  until grep -q "listening" "$T/$2.log" 2>/dev/null; do sleep 0.05; done
}
ctl() { local s=$1; shift; "$B" ctl -s "$T/$s.sock" "$@"; }

start $S sink 'FromDevice(sink0) -> c :: Classifier(22/40, 22/07, -);
               c[0] -> from_old :: Counter -> Discard; c[1] -> from_new :: Counter -> Discard; c[2] -> Discard;'
start $R rtr 'FromDevice(rtr0) -> hub :: Tee(2);
              hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
              hub[1] -> StoreData(22, \<07>) -> new :: Counter -> [1]sel;
              sel -> ToDevice(rtr1);'
start $G gen 'RatedSource(RATE 20000) -> ToDevice(gen0);'

show() {
  printf '%-28s sel.switch=%s  sink: from_old=%-7s from_new=%-7s\n' "$1" \
    "$(ctl rtr read sel.switch)" "$(ctl sink read from_old.count)" "$(ctl sink read from_new.count)"
}
sleep 1; show "old branch in production"
ctl rtr write sel.switch 1; sleep 1; show "went live with new branch"
ctl rtr write sel.switch 0; sleep 1; show "rolled back"
ctl rtr write sel.switch 7 || true; sleep 1; show "a typo changed nothing"
echo "audit log of the router:"; cat "$T/rtr.audit"
