#!/usr/bin/env bash
# Records real Redis traffic on loopback and turns it into the seed corpus of every fuzz target
# (fuzz/corpus/<target>/seed-*). Needs root (tcpdump), redis-server, redis-benchmark, python3
# with redis-py. Re-running replaces the seed-* files only; the fuzzers' own finds are kept.
#
# usage: fuzz/make_seeds.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
scenarios=$here/../tests/scripts/scenarios.py
work=$(mktemp -d)
redis_pid=
dump_pid=

cleanup() {
    [[ -n $dump_pid ]] && kill "$dump_pid" 2>/dev/null && wait "$dump_pid" 2>/dev/null
    [[ -n $redis_pid ]] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    if [[ -n ${KEEP_PCAPS:-} ]]; then echo "captures kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "redis-server on 127.0.0.1:$port"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
done

record() { # NAME COMMAND...
    local name=$1
    shift
    tcpdump -i lo -s 0 -B 65536 -U --immediate-mode -w "$work/$name.pcap" "tcp port $port" >"$work/$name.tcpdump.log" 2>&1 &
    dump_pid=$!
    sleep 1 # tcpdump attaches
    "$@" || echo "warning: $name exited with $?" >&2
    sleep 1 # the last packets reach the file
    kill "$dump_pid"
    wait "$dump_pid" 2>/dev/null || true
    dump_pid=
    echo "recorded $name: $(stat -c %s "$work/$name.pcap") bytes"
}

for s in inline pubsub multi client_reply resp3 bigvalues errors; do
    record "$s" python3 "$scenarios" "$s" 127.0.0.1 "$port"
done
record benchmark redis-benchmark -p "$port" -n 200 -P 16 -q

python3 "$here/seeds.py" --port "$port" --out "$here/corpus" "$work"/*.pcap
du -sh "$here/corpus"
