#!/usr/bin/env bash
# The main job on the single-host embedded default, from this checkout: set up (Debian
# packages, .venv), compile conf/ (configc generates the Redis password into
# conf/.secrets.yaml the first time), start Redis if none answers, run two executor instances,
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
    if [ -n "$started_redis" ] && [ -f .demo/redis.pid ]; then
        kill -TERM "$(cat .demo/redis.pid)" 2>/dev/null || true  # saves and exits
    fi
}
trap cleanup EXIT

# How Redis answers the compiled config: `ragfleet status` exits 3 when nothing answers, 2
# when Redis refuses the password (configc generated one into conf/.secrets.yaml).
redis_answer() {
    local rc=0
    $BIN/ragfleet --config "$CONFIG" status >/dev/null 2>&1 || rc=$?
    echo "$rc"
}

step "Redis"
case "$(redis_answer)" in
0 | 1) echo "using the Redis already answering on 127.0.0.1:6379" ;;
3)
    # The compiled fragment: bind, port, requirepass, AOF, noeviction. The password stays
    # out of the command line (and so out of ps).
    echo "starting redis-server on 127.0.0.1:6379 for this run (AOF in .demo/)"
    redis-server out/hosts/localhost/etc/redis/ragfleet.conf --dir "$PWD/.demo" \
        --daemonize yes --pidfile "$PWD/.demo/redis.pid" --logfile "$PWD/.demo/redis.log"
    started_redis=1
    for _ in $(seq 50); do [ "$(redis_answer)" != 3 ] && break; sleep 0.1; done
    ;;
*)
    echo "the Redis on 127.0.0.1:6379 refuses the password in conf/.secrets.yaml: stop it, or" >&2
    echo "set REDIS_PASSWORD to its password and run again (see docs/security.md)" >&2
    exit 2
    ;;
esac

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
