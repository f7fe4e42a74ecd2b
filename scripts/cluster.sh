#!/usr/bin/env bash
# Training on a cluster, tried on one machine: a parameter server and WORKERS workers
# (default 2) as local processes on 127.0.0.1, each `python train.py` with its own
# TF_CONFIG and the same flags (the arguments of this script).  Worker 0, the chief, runs
# in the foreground and writes --save_dir as one process would; the others' lines are
# prefixed with their name.  Every task ends when the chief does.
#
#   bash scripts/cluster.sh --data_dir data --save_dir save/cluster --batch_size 32
#   bash scripts/cluster.sh --data_dir data --save_dir save/cluster --batch_size 32 --keep
#   WORKERS=3 PORT=2300 bash scripts/cluster.sh ...
#
# On N machines: the same TF_CONFIG's "cluster" on every machine, each with its own
# "task" (README, "Training on a cluster").  Also: PYTHON (default .venv/bin/python),
# NO_SETUP=1 (skip scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${NO_SETUP:-}" ] || bash scripts/setup.sh requirements.txt >/dev/null
py="${PYTHON:-.venv/bin/python}"
workers="${WORKERS:-2}"
port="${PORT:-2222}"
case "$workers" in ''|*[!0-9]*|0) echo "cluster.sh: WORKERS must be a whole number above 0, not '$workers'" >&2; exit 2;; esac
case "$port" in ''|*[!0-9]*) echo "cluster.sh: PORT must be a port number, not '$port'" >&2; exit 2;; esac

ps="\"127.0.0.1:$port\""
list=""
for ((i = 0; i < workers; i++)); do
  list="$list${list:+, }\"127.0.0.1:$((port + 1 + i))\""
done
spec="{\"ps\": [$ps], \"worker\": [$list]}"
tf_config() { echo "{\"cluster\": $spec, \"task\": {\"type\": \"$1\", \"index\": $2}}"; }

pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The parameter server and the workers besides the chief, in the background.
TF_CONFIG="$(tf_config ps 0)" "$py" -u train.py "$@" > >(sed -u 's/^/[ps 0] /') 2>&1 &
pids+=($!)
for ((i = 1; i < workers; i++)); do
  TF_CONFIG="$(tf_config worker "$i")" "$py" -u train.py "$@" \
    > >(sed -u "s/^/[worker $i] /") 2>&1 &
  pids+=($!)
done
echo "cluster.sh: ps 0 at 127.0.0.1:$port, workers at $list; worker 0 (the chief) here"
set +e
TF_CONFIG="$(tf_config worker 0)" "$py" train.py "$@"
rc=$?
set -e
# the others end by themselves once the chief has (it releases the workers, and the
# parameter server stops when every worker has said it ended); give them a moment
for p in "${pids[@]}"; do
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
done
exit "$rc"
