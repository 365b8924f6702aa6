# Sourced by examples/rollback-demo.sh and benches/netns_forward.sh: builds
# the release binary and three network namespaces joined by veth pairs,
#
#   $G: gen0 ──── rtr0 :$R: rtr1 ──── sink0 :$S
#
# and removes everything (processes, namespaces, temp dir) on exit.
# Sets B (the binary), T (a temp dir), G, R, S (namespace names, prefixed
# with $1 and the shell's pid); defines start NS NAME CONFIG [ARGS...]
# (runs a router with a control socket $T/NAME.sock and waits until it is
# ready) and ctl NAME ARGS... (switchyard ctl on that socket).
cargo build --release -q -p switchyard
B=$PWD/target/release/switchyard
T=$(mktemp -d)
G=${1}gen$$ R=${1}rtr$$ S=${1}sink$$
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
done
ip link add gen0 netns "$G" type veth peer name rtr0 netns "$R"
ip link add rtr1 netns "$R" type veth peer name sink0 netns "$S"
for x in "$G gen0" "$R rtr0" "$R rtr1" "$S sink0"; do set -- $x; ip -n "$1" link set "$2" up; done

start() { # namespace, name, config, extra run arguments
  local ns=$1 name=$2 config=$3
  shift 3
  ip netns exec "$ns" "$B" run -e "$config" --control "$T/$name.sock" "$@" 2>"$T/$name.log" &
  echo $! > "$T/$name.pid"
  until grep -q "listening" "$T/$name.log" 2>/dev/null; do sleep 0.05; done
}
ctl() { local s=$1; shift; "$B" ctl -s "$T/$s.sock" "$@"; }
