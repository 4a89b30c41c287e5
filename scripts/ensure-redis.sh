#!/usr/bin/env bash
# Make sure redis-server and redis-cli 7.x are on PATH: the real peers the tests compare against.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if have redis-server && have redis-cli && have redis-benchmark; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && have apt-get; then
    echo "installing Debian's redis-server and redis-tools"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
    # The package starts a system service on 6379; tests pick their own ports and need no service.
    if have systemctl; then systemctl stop redis-server >/dev/null 2>&1 || true; fi
    pkill -x redis-server >/dev/null 2>&1 || true
else
    echo "redis-server and redis-tools 7.x are missing. Install them with:" >&2
    echo "    sudo apt-get install redis-server redis-tools" >&2
    if [ -n "${CI:-}" ]; then exit 1; fi
fi
