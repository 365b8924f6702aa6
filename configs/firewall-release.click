// A firewall release, going live behind the switch on a real IPv4 router.
//
// This is configs/ip-router.click with the forwarding input put behind the
// hub: every checked IP packet goes to both branches, and the switch
// decides which branch's output is routed.
//   old: today's forwarding (no filter);
//   new: the same, plus the release's IPFilter rules. The release meant to
//        block telnet (tcp dst port 23), and by mistake also blocks every
//        ICMP packet (a rule written `deny icmp` instead of
//        `deny icmp type timestamp`).
// ShadowCompare sees both branches: while the old one is live, it counts
// every packet the new rules would drop (dropped_by_new), before anyone
// is affected. Going live is `ctl write sel.switch 1`; rolling back is
// `ctl write sel.switch 0`. examples/firewall-release.sh walks through it.

define(
    $IF0 r0, $ADDR0 10.1.0.1, $LEN0 24, $BCAST0 10.1.0.255, $MAC0 02:00:0a:01:00:01, $MTU0 1500,
    $IF1 r1, $ADDR1 10.2.0.1, $LEN1 24, $BCAST1 10.2.0.255, $MAC1 02:00:0a:02:00:01, $MTU1 1500
);

// Shared IP input path and routing table. Output 0 is the router itself.
ip :: Strip(14)
    -> CheckIPHeader(INTERFACES $ADDR0/$LEN0 $ADDR1/$LEN1)
    -> hub :: Tee(2);

// The release: old and new branch, compared, then selected.
hub[0] -> old :: Counter -> [0]cmp :: ShadowCompare(REORDER 64);
hub[1] -> fw :: IPFilter(
        deny tcp dst port 23,
        deny icmp,
        allow all)
    -> new :: Counter -> [1]cmp;
cmp[0] -> [0]sel :: InputSwitch(0);
cmp[1] -> [1]sel;
sel -> rt :: StaticIPLookup(
        $ADDR0/32 0,
        $BCAST0/32 0,
        $ADDR1/32 0,
        $BCAST1/32 0,
        255.255.255.255/32 0.0.0.0 0,
        0.0.0.0/32 0,
        $ADDR0/$LEN0 1,
        $ADDR1/$LEN1 2);

// ARP replies reach both queriers.
arpt :: Tee(2);

// Input and output paths for interface 0
c0 :: Classifier(12/0806 20/0001, 12/0806 20/0002, 12/0800, -);
FromDevice($IF0) -> c0;
out0 :: Queue(1000) -> todevice0 :: ToDevice($IF0);
c0[0] -> ar0 :: ARPResponder($ADDR0 $MAC0) -> out0;
arpq0 :: ARPQuerier($ADDR0, $MAC0) -> out0;
c0[1] -> arpt;
arpt[0] -> [1]arpq0;
c0[2] -> Paint(1) -> ip;
c0[3] -> Discard;

// Input and output paths for interface 1
c1 :: Classifier(12/0806 20/0001, 12/0806 20/0002, 12/0800, -);
FromDevice($IF1) -> c1;
out1 :: Queue(1000) -> todevice1 :: ToDevice($IF1);
c1[0] -> ar1 :: ARPResponder($ADDR1 $MAC1) -> out1;
arpq1 :: ARPQuerier($ADDR1, $MAC1) -> out1;
c1[1] -> arpt;
arpt[1] -> [1]arpq1;
c1[2] -> Paint(2) -> ip;
c1[3] -> Discard;

// Local delivery: the router answers pings to its addresses; replies go
// back through the route lookup with a fresh TTL.
rt[0] -> ping :: ICMPPingResponder -> rt;
ping[1] -> local :: Counter -> Discard;

// Forwarding path for interface 0
rt[1] -> DropBroadcasts
    -> cp0 :: PaintTee(1)
    -> gio0 :: IPGWOptions($ADDR0)
    -> FixIPSrc($ADDR0)
    -> dt0 :: DecIPTTL
    -> fr0 :: IPFragmenter($MTU0)
    -> [0]arpq0;
dt0[1] -> ICMPError($ADDR0, timeexceeded) -> rt;
fr0[1] -> ICMPError($ADDR0, unreachable, needfrag, PMTU $MTU0) -> rt;
gio0[1] -> ICMPError($ADDR0, parameterproblem) -> rt;
cp0[1] -> ICMPError($ADDR0, redirect, host) -> rt;

// Forwarding path for interface 1
rt[2] -> DropBroadcasts
    -> cp1 :: PaintTee(2)
    -> gio1 :: IPGWOptions($ADDR1)
    -> FixIPSrc($ADDR1)
    -> dt1 :: DecIPTTL
    -> fr1 :: IPFragmenter($MTU1)
    -> [0]arpq1;
dt1[1] -> ICMPError($ADDR1, timeexceeded) -> rt;
fr1[1] -> ICMPError($ADDR1, unreachable, needfrag, PMTU $MTU1) -> rt;
gio1[1] -> ICMPError($ADDR1, parameterproblem) -> rt;
cp1[1] -> ICMPError($ADDR1, redirect, host) -> rt;
