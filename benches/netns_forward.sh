#!/usr/bin/env bash
# Forwarding benchmark on real interfaces: builds gen -> rtr -> sink
# network namespaces with veth pairs and measures, in one run, frames/s
# delivered to the sink for
#   1. the kernel's own IP forwarding (the reference),
#   2. Switchyard FromDevice -> ToDevice, ring backend,
#   3. the same, pnet backend,
#   4. the same, xdp backend (AF_XDP, copy mode on veth),
#   5. Switchyard's hub/switch rollback graph, ring backend, and xdp;
#   6. on veths rebuilt with 2 queues, the hub/switch graph as 1 and as 2
#      copies (Copies(2): ring with FANOUT, xdp with one XSK per queue),
#      fed by two generators of 64 flows each, pinned one per core (a
#      ring sender's frames take the queue of its core, as RSS would).
# The generator is Switchyard itself (InfiniteSource -> ToDevice, ring) in
# the gen namespace; loss is exact: frames sent minus frames received,
# counted after the generator stops and the path drains. With the router's
# own CPU time it also prints frames per router CPU-second: on 2 cores
# shared by generator, router and sink that is the fair per-core figure
# (the kernel's forwarding runs in the senders' softirq, not in a process).
#   GENS=2 offers more load (two generator processes).
#
#   bash benches/netns_forward.sh            # needs root; DUR=3 seconds each
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-3}
GENS=${GENS:-1}   # generator processes sharing gen0 (more offered load)
. examples/netns-topology.sh syb

ip -n $G addr add 10.77.1.2/24 dev gen0; ip -n $R addr add 10.77.1.1/24 dev rtr0
ip -n $R addr add 10.77.2.1/24 dev rtr1; ip -n $S addr add 10.77.2.2/24 dev sink0
mac() { ip netns exec "$1" cat "/sys/class/net/$2/address"; }
ip -n $R neigh replace 10.77.2.2 lladdr "$(mac $S sink0)" dev rtr1
# A 64-byte IPv4/UDP frame gen0 -> rtr0, 10.77.1.2 -> 10.77.2.2.
FRAME=$(python3 - "$(mac $G gen0)" "$(mac $R rtr0)" <<'PY'
import sys, struct
src, dst = (bytes.fromhex(m.replace(':', '')) for m in sys.argv[1:3])
ip = bytearray(struct.pack('!BBHHHBBH4s4s', 0x45, 0, 50, 0, 0, 64, 17, 0, bytes([10,77,1,2]), bytes([10,77,2,2])))
s = sum(struct.unpack('!10H', ip)); s = (s & 0xffff) + (s >> 16); s = (s & 0xffff) + (s >> 16)
ip[10:12] = struct.pack('!H', ~s & 0xffff)
udp = struct.pack('!HHHH', 1234, 5678, 30, 0) + bytes(22)
print((dst + src + b'\x08\x00' + bytes(ip) + udp).hex())
PY
)

# CPU time (user + system, clock ticks) of a process so far.
cpu() { awk '{print $14 + $15}' "/proc/$(cat "$T/$1.pid")/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
rd() { ctl "$1" read "$2"; }

SINK='FromDevice(sink0) -> c :: Classifier(12/0800 23/11, -); c[0] -> got :: Counter -> Discard; c[1] -> Discard;'
GEN="src :: InfiniteSource(DATA \\<$FRAME>, ACTIVE false) -> out :: ToDevice(gen0);"

measure() { # label: the router (if any) is already running
  start $S sink "$SINK"
  for g in $(seq 1 "$GENS"); do start $G gen$g "$GEN"; done
  for g in $(seq 1 "$GENS"); do "$B" ctl -s "$T/gen$g.sock" write src.active true; done
  sleep 1
  local a b ca cb
  a=$(rd sink got.count); ca=$( [ -f "$T/rtr.pid" ] && cpu rtr || echo 0 )
  sleep "$DUR"
  b=$(rd sink got.count); cb=$( [ -f "$T/rtr.pid" ] && cpu rtr || echo 0 )
  for g in $(seq 1 "$GENS"); do "$B" ctl -s "$T/gen$g.sock" write src.active false; done
  sleep 0.5
  local sent=0 recv
  for g in $(seq 1 "$GENS"); do sent=$((sent + $(rd gen$g out.count))); done
  recv=$(rd sink got.count)
  local rate=$(( (b - a) / DUR ))
  local percore="-"
  if [ "$cb" -gt "$ca" ]; then percore=$(( (b - a) * HZ / (cb - ca) )); fi
  printf '%-34s %8d frames/s  %8s per router CPU-second   sent %d, received %d, lost %d\n' \
    "$1" "$rate" "$percore" "$sent" "$recv" $((sent - recv))
  echo "$rate" > "$T/rate.$2"
  echo "${percore/-/0}" > "$T/cpu.$2"
  jobs -p | xargs -r kill 2>/dev/null || true; wait 2>/dev/null || true
  rm -f "$T"/*.sock "$T"/*.log "$T"/*.pid
}

echo "64-byte frames, gen -> rtr -> sink over veth, ${DUR}s each (2 cores shared by all three)"
ip netns exec $R sysctl -qw net.ipv4.ip_forward=1
measure "kernel IP forwarding" kernel
ip netns exec $R sysctl -qw net.ipv4.ip_forward=0
start $R rtr 'FromDevice(rtr0) -> ToDevice(rtr1);'
measure "switchyard ring FromDevice->ToDevice" ring
start $R rtr 'FromDevice(rtr0, METHOD pnet) -> ToDevice(rtr1, METHOD pnet);'
measure "switchyard pnet FromDevice->ToDevice" pnet
start $R rtr 'FromDevice(rtr0, METHOD xdp) -> ToDevice(rtr1, METHOD xdp);'
measure "switchyard xdp FromDevice->ToDevice" xdp
HUB='hub :: Tee(2); hub[0] -> old :: Counter -> [0]sel :: InputSwitch(0); hub[1] -> new :: Counter -> [1]sel;'
start $R rtr "FromDevice(rtr0) -> $HUB sel -> ToDevice(rtr1);"
measure "switchyard ring hub/switch graph" hubswitch
start $R rtr "FromDevice(rtr0, METHOD xdp) -> $HUB sel -> ToDevice(rtr1, METHOD xdp);"
measure "switchyard xdp hub/switch graph" xdphub
k=$(cat "$T/rate.kernel")
for x in ring pnet xdp hubswitch xdphub; do
  printf '%-10s %5.2f x kernel forwarding\n' "$x" "$(python3 -c "print($(cat "$T/rate.$x") / max($k, 1))")"
done
# Per router CPU-second, the issue's measure: xdp against ring.
for pair in "xdp ring" "xdphub hubswitch"; do
  set -- $pair
  printf '%-10s %5.2f x %s per router CPU-second\n' "$1" \
    "$(python3 -c "print($(cat "$T/cpu.$1") / max($(cat "$T/cpu.$2"), 1))")" "$2"
done

# Several cores behind one switch: the links again, with 2 queues each
# (same addresses), and 64 flows per generator.
requeue() {
  local a b ma mb
  for x in "$G $TOPO_G $R $TOPO_RL" "$R $TOPO_RR $S $TOPO_S"; do
    set -- $x
    ma=$(mac "$1" "$2"); mb=$(mac "$3" "$4")
    ip -n "$1" link del "$2"
    ip link add "$2" netns "$1" address "$ma" numtxqueues 2 numrxqueues 2 type veth \
      peer name "$4" netns "$3" address "$mb" numtxqueues 2 numrxqueues 2
    ip -n "$1" link set "$2" up; ip -n "$3" link set "$4" up
  done
  ip -n $G addr add 10.77.1.2/24 dev gen0; ip -n $R addr add 10.77.1.1/24 dev rtr0
  ip -n $R addr add 10.77.2.1/24 dev rtr1; ip -n $S addr add 10.77.2.2/24 dev sink0
  ip -n $R neigh replace 10.77.2.2 lladdr "$(mac $S sink0)" dev rtr1
}
requeue
GENS=2
GEN="src :: InfiniteSource(DATA \\<$FRAME>, FLOWS 64, ACTIVE false) -> out :: ToDevice(gen0);"
# Each generator on a core of its own, so each fills one queue.
start() {
  local ns=$1 name=$2 config=$3; shift 3
  case $name in
    gen1) PIN="taskset -c 0" ;;
    gen2) PIN="taskset -c 1" ;;
    *) PIN="" ;;
  esac
  ip netns exec "$ns" $PIN "$B" run -e "$config" "$@" --control "$T/$name.sock" 2>"$T/$name.log" &
  echo $! > "$T/$name.pid"
  await_listening "$T/$name.log" $!
}
echo "-- 2 queues per link, 2 generators of 64 flows, pinned one per core"
start $R rtr "FromDevice(rtr0) -> $HUB sel -> ToDevice(rtr1);"
measure "ring hub/switch, 1 copy" copies1
start $R rtr "Copies(2); FromDevice(rtr0, FANOUT 3) -> $HUB sel -> ToDevice(rtr1);"
measure "ring hub/switch, 2 copies (FANOUT)" copies2
start $R rtr "Copies(2); FromDevice(rtr0, METHOD xdp, QUEUE \$COPY) -> $HUB sel -> ToDevice(rtr1, METHOD xdp, QUEUE \$COPY);"
measure "xdp hub/switch, 2 copies (2 queues)" xdpcopies2
for pair in "copies2 copies1" "xdpcopies2 copies1"; do
  set -- $pair
  printf '%-10s %5.2f x %s per router CPU-second\n' "$1" \
    "$(python3 -c "print($(cat "$T/cpu.$1") / max($(cat "$T/cpu.$2"), 1))")" "$2"
done
for x in copies2 xdpcopies2; do
  printf '%-10s %5.2f x copies1 frames/s\n' "$x" \
    "$(python3 -c "print($(cat "$T/rate.$x") / max($(cat "$T/rate.copies1"), 1))")"
done
