// Canary release: a flow-consistent share of traffic to the new branch.
//   switchyard run configs/canary.click --control /tmp/sy.sock --state /tmp/state.json
//   switchyard ctl -s /tmp/sy.sock write canary.weights 90 10    # 10% of flows
//   switchyard ctl -s /tmp/sy.sock write canary.weights 100 0    # roll back
// Raising the new branch's weight only moves flows to it (rendezvous
// hashing); weights are persistent and audited like switch positions.
define($RATE 100000);

src :: RatedSource(RATE $RATE, LENGTH 64);
src -> canary :: CanarySwitch(WEIGHTS 99 1);
canary[0] -> old :: Counter -> out :: Counter -> Discard;
canary[1] -> new :: Counter -> out;
