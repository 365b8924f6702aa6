// The hub/switch benchmark graph (see benches/pipeline.rs):
//   switchyard run configs/bench-hub-switch.click N=10000000 -H out.count
define($N 1000000);

InfiniteSource(LENGTH 64, LIMIT $N, STOP true) -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0);
hub[1] -> new :: Counter -> [1]sel;
sel -> out :: Counter -> Discard;
