#!/usr/bin/env bash
# Make sure redis-server and redis-cli 7.x are on PATH: the real peers the tests compare against.
#
# Installing Debian's redis-server package starts its system service on 6379. The tests pick
# their own ports and need no service, so the install is told not to start it (a policy-rc.d
# that denies service starts, honoured by invoke-rc.d and deb-systemd-invoke). Should it start
# anyway, only that service is stopped, and only if it was not running before. No other
# redis-server process on the machine is touched.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if have redis-server && have redis-cli && have redis-benchmark; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && have apt-get; then
    echo "installing Debian's redis-server and redis-tools (without starting its service)"
    unit_was_active=no
    if have systemctl && systemctl is-active --quiet redis-server 2>/dev/null; then
        unit_was_active=yes
    fi
    policy=${KVREPL_POLICY_RC_D:-/usr/sbin/policy-rc.d}  # tests point it elsewhere
    own_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# written by kvrepl scripts/ensure-redis.sh for one install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=yes
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
    if [ "$own_policy" = yes ]; then
        rm -f "$policy"
        trap - EXIT
    fi
    # A policy-rc.d of someone else's may have let the service start: stop it only if this
    # install started it (the unit exists, is active now, and was not before).
    # (is-active fails for a unit that does not exist.)
    if [ "$unit_was_active" = no ] && have systemctl \
        && systemctl is-active --quiet redis-server 2>/dev/null; then
        echo "stopping the redis-server service the package install started"
        systemctl stop redis-server
    fi
else
    echo "redis-server and redis-tools 7.x are missing. Install them with:" >&2
    echo "    sudo apt-get install redis-server redis-tools" >&2
    if [ -n "${CI:-}" ]; then exit 1; fi
fi
