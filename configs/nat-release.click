// A NAT release behind the switch, with flows pinned to their branch.
//
// configs/ip-router.click with a source NAT in front of the route lookup:
// connections from interface 0's side (the clients) leave interface 1
// from $ADDR1, with a port the NAT chose.
//   old: today's NAT, ports 10000-19999;
//   new: the release, ports 20000-29999 (a server can tell the branches
//        apart by the port it sees).
// Both branches see every packet (the hubs); the selectors decide which
// branch reaches production. `flows` pins each connection to the branch
// that took its first packet, in both directions: the forward key is the
// 5-tuple as it arrives, the reply key what the pinned branch sent out,
// reversed. So
//   switchyard ctl write fsel.switch 1     (new connections only; fsel and
//                                           rsel share the position)
//   switchyard ctl read fsel.pinned        (established flows per branch)
//   switchyard ctl read fsel.drained 0     (true once branch 0 holds none)
//   switchyard ctl write fsel.force 0      (emergency: everything at once)
// SeqCheck on production proves every packet leaves exactly once.

define(
    $IF0 r0, $ADDR0 10.1.0.1, $LEN0 24, $BCAST0 10.1.0.255, $MAC0 02:00:0a:01:00:01, $MTU0 1500,
    $IF1 r1, $ADDR1 10.2.0.1, $LEN1 24, $BCAST1 10.2.0.255, $MAC1 02:00:0a:02:00:01, $MTU1 1500,
    $OLD_PORTS 10000-19999, $NEW_PORTS 20000-29999,
    $FLOWS 100000, $DONE_TIMEOUT 2s
);

rt :: StaticIPLookup(
    $ADDR0/32 0,
    $BCAST0/32 0,
    $ADDR1/32 0,
    $BCAST1/32 0,
    255.255.255.255/32 0.0.0.0 0,
    0.0.0.0/32 0,
    $ADDR0/$LEN0 1,
    $ADDR1/$LEN1 2);

// Checked IP packets, by the interface they came in on (Paint below).
ip :: Strip(14)
    -> CheckIPHeader(INTERFACES $ADDR0/$LEN0 $ADDR1/$LEN1)
    -> side :: PaintSwitch;
side[0] -> Discard;

// The pin table both directions share.
flows :: FlowTable(CAPACITY $FLOWS, DONE_TIMEOUT $DONE_TIMEOUT);

// Clients to servers: to the router itself as before, the rest through
// both NATs' forward inputs.
side[1] -> tome :: IPClassifier(dst host $ADDR0 or dst host $ADDR1, -);
tome[0] -> rt;
tome[1] -> [0]flows[0] -> fhub :: Tee(2);
fhub[0] -> [0]oldnat :: IPRewriter(pattern $ADDR1 $OLD_PORTS - - 0 1, drop);
fhub[1] -> [0]newnat :: IPRewriter(pattern $ADDR1 $NEW_PORTS - - 0 1, drop);
oldnat[0] -> [0]fsel :: InputSwitch(0, PIN flows);
newnat[0] -> [1]fsel;
fsel -> fseq :: SeqCheck -> rt;

// Servers to clients: replies to $ADDR1 through both NATs' reply inputs;
// what neither NAT maps (pings to the router) is dropped by the NATs.
side[2] -> [1]flows[1] -> rhub :: Tee(2);
rhub[0] -> [1]oldnat;
rhub[1] -> [1]newnat;
oldnat[1] -> [0]rsel :: InputSwitch(0, PIN flows);
newnat[1] -> [1]rsel;
rsel -> rseq :: SeqCheck -> rt;

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
