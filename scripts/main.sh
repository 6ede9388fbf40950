#!/usr/bin/env bash
# The main job on the single-host embedded default, from this checkout: set up (Debian
# packages, .venv), compile conf/, start Redis if none answers, run two executor instances,
# ingest the sample corpus (samples/corpus), and show search results. Everything it starts
# is stopped at the end; state stays in .demo/ (delete it to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --runtime

export RAGFLEET_STATE_DIR="$PWD/.demo/state"
mkdir -p "$RAGFLEET_STATE_DIR"
BIN=.venv/bin
CONFIG=out/hosts/localhost/etc/ragfleet/ragfleet.yaml

step() { printf '\n== %s\n' "$*"; }

step "compiling conf/ (configc)"
$BIN/configc build conf/ --overlay conf/examples/checkout.yaml -o out/

pids=()
started_redis=""
cleanup() {
    if [ "${#pids[@]}" -gt 0 ]; then
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    if [ -n "$started_redis" ]; then
        redis-cli -p 6379 shutdown >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

step "Redis"
if redis-cli -p 6379 ping >/dev/null 2>&1; then
    echo "using the Redis already answering on 127.0.0.1:6379"
else
    echo "starting redis-server on 127.0.0.1:6379 for this run (AOF in .demo/)"
    redis-server --port 6379 --bind 127.0.0.1 --dir "$PWD/.demo" --appendonly yes \
        --appendfsync everysec --maxmemory-policy noeviction --daemonize yes \
        --logfile "$PWD/.demo/redis.log"
    started_redis=1
    for _ in $(seq 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

step "task database"
$BIN/ragfleet --config "$CONFIG" db init

step "starting executors 1 and 2 (logs in .demo/)"
for n in 1 2; do
    $BIN/ragfleet --config "$CONFIG" run --instance "$n" >".demo/executor$n.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 100); do
    $BIN/ragfleet --config "$CONFIG" status >/dev/null 2>&1 && break
    sleep 0.2
done
$BIN/ragfleet --config "$CONFIG" status

step "ingesting samples/corpus into knowledge base 'samples'"
$BIN/ragfleet --config "$CONFIG" submit samples/corpus/* --kb samples --wait --quiet
$BIN/ragfleet --config "$CONFIG" tasks --limit 12

for query in "down the rabbit hole" "largest planet" "natural selection" \
             "life, liberty and the pursuit of happiness"; do
    step "ragfleet search \"$query\" --kb samples"
    $BIN/ragfleet --config "$CONFIG" search "$query" --kb samples --top 3
done

step "stopping the executors (SIGTERM: they drain and exit 0)"
kill -TERM "${pids[@]}"
wait "${pids[@]}"
pids=()
echo "done"
