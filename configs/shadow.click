// Shadow comparison: the new branch runs on live traffic, switched off,
// and every frame it makes is compared with what the old branch made of
// the same input packet.
//   switchyard run configs/shadow.click --control /tmp/sy.sock
//   switchyard ctl -s /tmp/sy.sock read cmp.divergence_rate
//   switchyard ctl -s /tmp/sy.sock read cmp.differences
// Here the new branch rewrites the TTL, so every pair differs at byte 22;
// MASK 24/2 ignores the IPv4 checksum.
define($RATE 100000);

src :: RatedSource(RATE $RATE, LENGTH 64);
src -> hub :: Tee(2);
hub[0] -> old :: Counter -> [0]cmp :: ShadowCompare(MASK 24/2);
hub[1] -> StoreData(22, \<3f>) -> new :: Counter -> [1]cmp;
cmp[0] -> [0]sel :: InputSwitch(0);
cmp[1] -> [1]sel;
sel -> out :: Counter -> Discard;
