// Three independent mistakes; `switchyard check` must report all three.
src :: InfiniteSource(LIMIT 1000, STOP yes please);
src -> hub :: Tee(2);
hub[0] -> old :: Countr -> [0]sel :: InputSwitch(0);
hub[1] -> new :: Counter -> [1]sel;
sel -> out :: Counter -> Discard;
out -> Discard;
