#!/bin/sh
# tasks: Counts the running tasks on each node and the running and desired replicas of each service.
# Parameters: SW_NODES (optional: space-separated node ids; only these nodes are counted, default all).
# Last stdout line: {"nodes": [{"id", "tasks"}], "services": [{"name", "running", "desired", "update"}]}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. Read-only. Run on a manager.
# Never prints a join token.

require_manager
step="counting the tasks on each node"
ids=${SW_NODES:-$(docker node ls -q)}
nodes=""
for id in $ids; do
	# Every task the node has run is listed; only those whose current state is Running count.
	count=$(docker node ps --format '{{.CurrentState}}' "$id" 2>/dev/null | grep -c '^Running' || true)
	nodes="$nodes${nodes:+, }{\"id\": $(json_str "$id"), \"tasks\": ${count:-0}}"
done

step="reading the services"
# Jobs run to completion, so their replicas never stay "running": only long-running modes count.
: >"$work/services"
for mode in replicated global; do
	docker service ls --filter "mode=$mode" --format '{{.ID}} {{.Replicas}}' >>"$work/services" 2>"$work/err" ||
		fail "cannot list services: $(cat "$work/err")"
done
services=""
while read -r id replicas _; do
	info=$(docker service inspect --format '{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{else}}none{{end}}' "$id" 2>"$work/err") ||
		fail "cannot inspect service $id: $(cat "$work/err")"
	# shellcheck disable=SC2086 # two words
	set -- $info
	services="$services${services:+, }{\"name\": $(json_str "$1"), \"running\": ${replicas%%/*}, \"desired\": ${replicas#*/}, \"update\": $(json_str "$2")}"
done <"$work/services"
emit "{\"nodes\": [$nodes], \"services\": [$services]}"
