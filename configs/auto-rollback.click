// Shadow, canary and an automatic rollback gate together. Both branches
// see all traffic (the hub); ShadowCompare checks the new one against the
// old; the canary picks, flow by flow, whose output reaches production; the
// gate moves every flow back to the old branch when the new one diverges.
//   switchyard run configs/auto-rollback.click --control /tmp/sy.sock --audit /tmp/audit.jsonl
//   switchyard ctl -s /tmp/sy.sock write canary.weights 90 10   # 10% of flows on new
//   switchyard ctl -s /tmp/sy.sock write bug.switch -1          # the release goes bad
//   switchyard ctl -s /tmp/sy.sock read gate.reason             # ...and was rolled back
//   switchyard ctl -s /tmp/sy.sock read canary.weights          # 100 0
define($RATE 100000);

src :: RatedSource(RATE $RATE, LENGTH 64, FLOWS 1000);
src -> FlowHash -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]cmp :: ShadowCompare(MASK 24/2, REORDER 256);
// The new release; `bug` lets you make it misbehave on purpose.
hub[1] -> bug :: Switch(0); bug[0] -> new :: Counter -> [1]cmp;
cmp[0] -> [0]canary :: CanarySwitch(WEIGHTS 99 1);
cmp[1] -> [1]canary;
canary -> out :: Counter -> Discard;
gate :: Watchdog(CONDITION "cmp.divergence_rate > 0.01", FOR 200ms,
                 WRITE "canary.weights 100 0", INTERVAL 50ms);
