#!/usr/bin/env bash
# The network namespace and TAP device for echo-smoltcp's tests against the Linux kernel's TCP.
#
#   tap-netns.sh up      create namespace echo-test with tap0 = 192.168.69.1/24 (the kernel's
#                        side; the stack under test takes 192.168.69.2)
#   tap-netns.sh down    delete the namespace (and tap0 with it)
#   tap-netns.sh run CMD run CMD inside the namespace
#   tap-netns.sh test    build, then run the #[ignore]d TAP tests inside a fresh namespace:
#                        tests/tap.rs twice, over a clean link, then over a lossy one (10% of
#                        the frames dropped and 1% corrupted each way, ECHO_TAP_LOSS /
#                        ECHO_TAP_CORRUPT), and tests/tap_check.rs (echo-std check against the
#                        tap example); remove the namespace afterwards; fails if any step fails
#
# Needs root (ip netns, /dev/net/tun). All traffic stays inside the namespace.
set -euo pipefail

NS=${ECHO_NETNS:-echo-test}
TAP=tap0
HOST_IP=192.168.69.1/24
CRATE_DIR=$(cd "$(dirname "$0")/.." && pwd)

die() { printf 'tap-netns.sh: %s\n' "$*" >&2; exit 1; }

up() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  [ -c /dev/net/tun ] || die "/dev/net/tun is missing"
  if ip netns list | grep -qw "$NS"; then
    ip netns del "$NS"
  fi
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  ip netns exec "$NS" ip tuntap add dev "$TAP" mode tap
  ip -n "$NS" addr add "$HOST_IP" dev "$TAP"
  ip -n "$NS" link set "$TAP" up
  echo "namespace $NS: $TAP at $HOST_IP"
}

down() {
  if ip netns list | grep -qw "$NS"; then
    ip netns del "$NS"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  run)
    shift
    exec ip netns exec "$NS" "$@"
    ;;
  test)
    cd "$CRATE_DIR"
    # Build outside the namespace (the registry is reachable there), run inside it.
    cargo build -p echo-smoltcp --examples
    cargo test -p echo-smoltcp --test tap --test tap_check --no-run
    up
    trap down EXIT
    ip netns exec "$NS" cargo test --offline -p echo-smoltcp --test tap --test tap_check -- --ignored --test-threads=1
    echo "== tests/tap.rs again, over a lossy link: 10% of the frames dropped, 1% corrupted, each way"
    ip netns exec "$NS" env ECHO_TAP_LOSS="${ECHO_TAP_LOSS:-10}" ECHO_TAP_CORRUPT="${ECHO_TAP_CORRUPT:-1}" \
        cargo test --offline -p echo-smoltcp --test tap -- --ignored --test-threads=1
    ;;
  *)
    sed -n '2,14p' "$0" >&2
    exit 2
    ;;
esac
