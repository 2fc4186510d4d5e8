#!/usr/bin/env bash
# Local scale-out: Redis, N SweetieChat replicas sharing it, and the smg gateway in front, which sends every turn of a
# session to the same replica (the one whose vLLM prefix cache already holds the conversation).
#
#   bash deploy/gateway/fleet.sh                               # 2 replicas of the embedded default, gateway :8000
#   REPLICAS=3 bash deploy/gateway/fleet.sh --kv-cache-gb 2    # arguments go to every `python -m app`
#   GATEWAY_POLICY=round_robin bash deploy/gateway/fleet.sh    # the baseline loadtest/gateway_bench.py compares
#
# Clients use base_url http://127.0.0.1:8000/v1 and send, on every turn of a session, BOTH the header X-Session-Id
# (the gateway routes on it and does not forward it) and the body field session_id (what the replica reads). Routes
# the gateway does not forward (/v1/sessions/..., Responses, Conversations, /metrics, /ready) go to any replica: they
# all share Redis. Details and the measured facts: deploy/gateway/README.md.
#
# Settings (environment):
#   REPLICAS=2  FIRST_REPLICA_PORT=8001 (then 8002, ...)  GATEWAY_PORT=8000  GATEWAY_METRICS_PORT=29000
#   GATEWAY_POLICY=manual (manual | consistent_hashing | round_robin)
#   SWEETIE_REDIS_URL=redis://127.0.0.1:6379/0: when it is this default and nothing answers on 127.0.0.1:6379, a
#     redis-server without persistence is started here (and stopped on exit); a Redis already running is left alone
#   FLEET_LOG_DIR (default: a new temporary folder)  READY_TIMEOUT_S=900  PYTHON=.venv/bin/python  SMG=.venv/bin/smg
#
# Ctrl-C, or the end of any child, stops everything this script started: the gateway first, then each replica with
# SIGTERM to its main process (it drains its streams, then stops its engine), then a Redis started here. Every child
# runs in its own session (setsid), so the terminal's Ctrl-C reaches only this script, never a vLLM engine directly.
set -euo pipefail
cd "$(dirname "$0")/../.."

REPLICAS=${REPLICAS:-2}
FIRST_REPLICA_PORT=${FIRST_REPLICA_PORT:-8001}
GATEWAY_PORT=${GATEWAY_PORT:-8000}
GATEWAY_METRICS_PORT=${GATEWAY_METRICS_PORT:-29000}
GATEWAY_POLICY=${GATEWAY_POLICY:-manual}
DEFAULT_REDIS_URL=redis://127.0.0.1:6379/0
REDIS_URL=${SWEETIE_REDIS_URL:-$DEFAULT_REDIS_URL}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-900}
STOP_TIMEOUT_S=${STOP_TIMEOUT_S:-60}  # per stage; the replicas' drain grace is 30 s by default
PYTHON=${PYTHON:-.venv/bin/python}
SMG=${SMG:-.venv/bin/smg}

case "$GATEWAY_POLICY" in
  # One gateway process: pins each session id in memory; a new id goes to the replica with the fewest requests.
  manual) POLICY_ARGS=(--policy manual --routing-key-headers x-session-id --assignment-mode min_load) ;;
  # Stateless: the same placement from every gateway process (what the Kubernetes overlay runs, 2 gateway pods).
  consistent_hashing) POLICY_ARGS=(--policy consistent_hashing --routing-key-headers x-session-id) ;;
  round_robin) POLICY_ARGS=(--policy round_robin) ;;
  *) echo "error: GATEWAY_POLICY must be manual, consistent_hashing or round_robin, not '$GATEWAY_POLICY'" >&2; exit 2 ;;
esac
[[ "$REPLICAS" =~ ^[1-9][0-9]*$ ]] || { echo "error: REPLICAS must be a positive integer, not '$REPLICAS'" >&2; exit 2; }
for tool in "$PYTHON" "$SMG"; do
  [ -x "$tool" ] || { echo "error: $tool not found: run 'bash scripts/install.sh' (extras include gateway)" >&2; exit 2; }
done
for tool in curl setsid; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed (curl; setsid from util-linux)" >&2; exit 2; }
done

LOG_DIR=${FLEET_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sweetie-fleet-XXXXXX")}
mkdir -p "$LOG_DIR"

PIDS=()   # in start order: [redis], replicas, gateway
NAMES=()

stop_all() {
  local status=$?
  trap - EXIT INT TERM
  echo "==> stopping (logs in $LOG_DIR)"
  # Reverse start order, one stage at a time: the gateway stops sending, replicas drain, then Redis goes.
  local gateway_first=() replicas=() redis=() i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    case "${NAMES[i]}" in
      gateway) gateway_first+=("${PIDS[i]}") ;;
      redis) redis+=("${PIDS[i]}") ;;
      *) replicas+=("${PIDS[i]}") ;;
    esac
  done
  stop_stage "${gateway_first[@]}"
  stop_stage "${replicas[@]}"
  stop_stage "${redis[@]}"
  exit "$status"
}

stop_stage() {  # SIGTERM each main process; after STOP_TIMEOUT_S, SIGKILL its whole process group
  local pid deadline=$((SECONDS + STOP_TIMEOUT_S))
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
  done
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

redis_answers() {  # PING over bash's /dev/tcp: no redis-cli needed
  (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && IFS= read -r -t 2 reply <&3 && [[ $reply == +PONG* ]]) \
    2>/dev/null
}

wait_ready() {  # URL PID LOG NAME: until URL answers 200; fail at once if the process ends
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until curl -fsS -o /dev/null --max-time 5 "$1" 2>/dev/null; do
    if ! kill -0 "$2" 2>/dev/null; then
      echo "error: $4 exited before it was ready; last lines of $3:" >&2
      tail -n 30 "$3" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      echo "error: $4 not ready after ${READY_TIMEOUT_S} s (log: $3)" >&2
      exit 1
    fi
    sleep 1
  done
}

if [ "$REDIS_URL" = "$DEFAULT_REDIS_URL" ] && ! redis_answers; then
  command -v redis-server >/dev/null || { echo "error: nothing answers on 127.0.0.1:6379 and redis-server is not installed (apt-get install redis-server)" >&2; exit 2; }
  echo "==> starting redis-server on 127.0.0.1:6379 (no persistence; stopped on exit)"
  # In the foreground as our child (not --daemonize) so that it is stopped with the rest.
  setsid redis-server --bind 127.0.0.1 --port 6379 --save "" --appendonly no >"$LOG_DIR/redis.log" 2>&1 &
  PIDS+=($!) NAMES+=(redis)
  for _ in $(seq 1 50); do redis_answers && break; sleep 0.1; done
  redis_answers || { echo "error: redis-server did not start; see $LOG_DIR/redis.log" >&2; exit 1; }
fi

echo "==> starting $REPLICAS replicas (session store $REDIS_URL); model load takes a while on CPU"
REPLICA_URLS=()
for ((n = 0; n < REPLICAS; n++)); do
  port=$((FIRST_REPLICA_PORT + n))
  SWEETIE_REDIS_URL="$REDIS_URL" setsid "$PYTHON" -m app "$@" --host 127.0.0.1 --port "$port" \
    >"$LOG_DIR/replica-$port.log" 2>&1 &
  PIDS+=($!) NAMES+=("replica-$port")
  REPLICA_URLS+=("http://127.0.0.1:$port")
done
for ((n = 0; n < REPLICAS; n++)); do
  port=$((FIRST_REPLICA_PORT + n))
  wait_ready "${REPLICA_URLS[n]}/ready" "${PIDS[${#PIDS[@]} - REPLICAS + n]}" "$LOG_DIR/replica-$port.log" "replica :$port"
  echo "    replica ${REPLICA_URLS[n]} ready"
done

# smg learns a worker's model from GET /v1/models, which needs an API key when the replicas have keys; unanswered, it
# registers the replica as model "unknown" and refuses every request. The manifest names the model instead; /ready
# tells it without a key. smg rereads the file when it changes: edit it to add or remove replicas at run time.
MANIFEST="$LOG_DIR/workers.json"
{
  printf '{"version": 1, "workers": ['
  for ((n = 0; n < REPLICAS; n++)); do
    model=$(curl -fsS "${REPLICA_URLS[n]}/ready" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["model"])')
    printf '%s{"url": "%s", "model_id": "%s"}' "$([ "$n" -gt 0 ] && echo ', ')" "${REPLICA_URLS[n]}" "$model"
  done
  printf ']}\n'
} >"$MANIFEST"

# The control plane (POST /workers: register a backend by URL) shares the gateway's port: keep it behind a key.
ADMIN_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))')
(umask 077 && printf '%s\n' "$ADMIN_KEY" >"$LOG_DIR/gateway-admin-key")

echo "==> starting the smg gateway (policy $GATEWAY_POLICY)"
# --health-check-endpoint /ready: a loading or draining replica is taken out, not only a dead one.
# --disable-retries: smg would retry a replica's 429/503 five times (500 twice), on other replicas.
# --disable-circuit-breaker: ten 503s (Redis down) would cut a healthy replica off for a minute.
# --disable-load-monitoring, --disable-worker-overload-protection: no polling of vLLM load endpoints the replicas do
#   not serve; the replicas do their own admission (a queue, then 429).
setsid "$SMG" launch --host 127.0.0.1 --port "$GATEWAY_PORT" \
  --prometheus-host 127.0.0.1 --prometheus-port "$GATEWAY_METRICS_PORT" \
  "${POLICY_ARGS[@]}" \
  --discovery-provider file --discovery-file "$MANIFEST" \
  --health-check-endpoint /ready --health-check-interval-secs 5 --health-failure-threshold 2 \
  --disable-retries --disable-circuit-breaker --disable-load-monitoring --disable-worker-overload-protection \
  --disable-tokenizer-autoload --shutdown-grace-period-secs 30 \
  --control-plane-api-keys "local:local:admin:$ADMIN_KEY" --log-level warn \
  >"$LOG_DIR/gateway.log" 2>&1 &
PIDS+=($!) NAMES+=(gateway)
GATEWAY_PID=$!
deadline=$((SECONDS + 60))
until curl -fsS --max-time 2 "http://127.0.0.1:$GATEWAY_PORT/readiness" 2>/dev/null | grep -q "\"healthy_workers\":$REPLICAS,"; do
  kill -0 "$GATEWAY_PID" 2>/dev/null || { echo "error: smg exited; last lines of $LOG_DIR/gateway.log:" >&2; tail -n 30 "$LOG_DIR/gateway.log" >&2; exit 1; }
  ((SECONDS < deadline)) || { echo "error: smg did not see $REPLICAS healthy replicas in 60 s (log: $LOG_DIR/gateway.log)" >&2; exit 1; }
  sleep 0.5
done

cat <<EOF

SweetieChat: $REPLICAS replicas behind smg (policy $GATEWAY_POLICY)
  gateway    http://127.0.0.1:$GATEWAY_PORT/v1   chat completions; per session send header X-Session-Id AND body session_id
  replicas   ${REPLICA_URLS[*]}   /v1/sessions/{id}, Responses, Conversations, /metrics (any replica)
  metrics    http://127.0.0.1:$GATEWAY_METRICS_PORT/metrics   the gateway's own
  logs       $LOG_DIR   (gateway admin key: gateway-admin-key)
Ctrl-C stops everything.
EOF

# Until Ctrl-C, or until a child ends (then everything stops and the exit status says so).
set +e
wait -n
code=$?
set -e
for ((i = 0; i < ${#PIDS[@]}; i++)); do
  kill -0 "${PIDS[i]}" 2>/dev/null || echo "error: ${NAMES[i]} exited (status $code); see $LOG_DIR" >&2
done
exit 1
