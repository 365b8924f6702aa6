# Sourced by examples/rollback-demo.sh, examples/firewall-release.sh and
# the netns benchmarks: builds the release binary and three network
# namespaces joined by veth pairs,
#
#   $G: gen0 ──── rtr0 :$R: rtr1 ──── sink0 :$S
#
# and removes everything (processes, namespaces, temp dir) on exit. Set
# NAMES (the three namespaces' stems, default "gen rtr sink") and LINKS
# (the four interfaces, left to right, default "gen0 rtr0 rtr1 sink0")
# before sourcing for other names. Sets B (the binary), T (a temp dir), G,
# R, S (namespace names: $1, the stem and the shell's pid); defines
# start NS NAME CONFIG [ARGS...] (runs a router on configuration text with a
# control socket $T/NAME.sock and its log in $T/NAME.log, and waits until
# it is ready), start_file NS NAME FILE [ARGS...] (the same, on a file) and
# ctl NAME ARGS... (switchyard ctl on that socket).
cargo build --release -q -p switchyard
. examples/await-listening.sh
B=$PWD/target/release/switchyard
T=$(mktemp -d)
read -r G R S <<< "${NAMES:-gen rtr sink}"
G=$1$G$$ R=$1$R$$ S=$1$S$$
read -r TOPO_G TOPO_RL TOPO_RR TOPO_S <<< "${LINKS:-gen0 rtr0 rtr1 sink0}"
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  wait 2>/dev/null || true
  for n in $G $R $S; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT

for n in $G $R $S; do
  ip netns add "$n"
  # No IPv6 chatter (router solicitations) on the test links.
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$n" link set lo up
done
ip link add "$TOPO_G" netns "$G" type veth peer name "$TOPO_RL" netns "$R"
ip link add "$TOPO_RR" netns "$R" type veth peer name "$TOPO_S" netns "$S"
for x in "$G $TOPO_G" "$R $TOPO_RL" "$R $TOPO_RR" "$S $TOPO_S"; do set -- $x; ip -n "$1" link set "$2" up; done

run_router() { # namespace, name, switchyard run arguments
  local ns=$1 name=$2
  shift 2
  ip netns exec "$ns" "$B" run "$@" --control "$T/$name.sock" 2>"$T/$name.log" &
  echo $! > "$T/$name.pid"
  await_listening "$T/$name.log" $!
}
start() { local ns=$1 name=$2 config=$3; shift 3; run_router "$ns" "$name" -e "$config" "$@"; }
start_file() { local ns=$1 name=$2 file=$3; shift 3; run_router "$ns" "$name" "$file" "$@"; }
ctl() { local s=$1; shift; "$B" ctl -s "$T/$s.sock" "$@"; }
