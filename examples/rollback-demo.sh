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
. examples/netns-topology.sh sydemo

start $S sink 'FromDevice(sink0) -> c :: Classifier(22/40, 22/07, -);
               c[0] -> from_old :: Counter -> Discard; c[1] -> from_new :: Counter -> Discard; c[2] -> Discard;'
start $R rtr 'FromDevice(rtr0) -> hub :: Tee(2);
              hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
              hub[1] -> StoreData(22, \<07>) -> new :: Counter -> [1]sel;
              sel -> ToDevice(rtr1);' --audit "$T/rtr.audit"
start $G gen 'RatedSource(RATE 20000) -> ToDevice(gen0);'

show() {
  printf '%-28s sel.switch=%s  sink: from_old=%-7s from_new=%-7s\n' "$1" \
    "$(ctl rtr read sel.switch)" "$(ctl sink read from_old.count)" "$(ctl sink read from_new.count)"
}
sleep 1; show "old branch in production"
ctl rtr write sel.switch 1; sleep 1; show "went live with new branch"
ctl rtr write sel.switch 0; sleep 1; show "rolled back"
ctl rtr write sel.switch 7 || true; sleep 1; show "a typo changed nothing"
# A new version of the new branch (TTL 9), hot-reloaded: first ask what the
# reload would do, then do it; the position and the counts carry over.
cat > "$T/v2.click" <<'CFG'
FromDevice(rtr0) -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> StoreData(22, \<09>) -> new :: Counter -> [1]sel;
sel -> ToDevice(rtr1);
CFG
ctl rtr reload --check "$T/v2.click"
ctl rtr reload "$T/v2.click"; sleep 1; show "hot-reloaded the new branch"
echo "audit log of the router:"; cat "$T/rtr.audit"
