// The rollback graph: live traffic feeds both branches, the switch picks
// which one reaches production. Built-in default of `switchyard run`.
//
//   switchyard run                        # this file, synthetic traffic
//   switchyard run configs/rollback.click RATE=1000000 LIVE=1
//
// Going live with the new branch is one write to sel.switch (1); rolling
// back is another (0).

define($RATE 100000, $LIVE 0);

src :: RatedSource(RATE $RATE, LENGTH 64);
src -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]sel :: InputSwitch($LIVE);
hub[1] -> new :: Counter -> [1]sel;
sel -> out :: Counter -> Discard;
