#!/bin/sh
# service-list: Lists the swarm's services, each with its running tasks per node.
# Parameters: SW_NAME (optional: only the service of exactly this name).
# Last stdout line: {"services": [{"name", "id", "image", "mode", "replicas", "running", "tasks": {node id: running tasks}}]}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. Read-only. Run on a manager.
# Never prints a join token.

require_manager
step="listing the services"
if [ -n "${SW_NAME:-}" ]; then
	# `service ls --filter name=` matches prefixes, and inspect also takes ids: keep an exact name only.
	docker service inspect --format '{{.ID}} {{.Spec.Name}}' "$SW_NAME" 2>/dev/null |
		awk -v n="$SW_NAME" '$2 == n { print $1 }' >"$work/ids" || true
else
	docker service ls -q >"$work/ids" 2>"$work/err" || fail "cannot list services: $(cat "$work/err")"
fi

services=""
while read -r id; do
	step="reading service $id"
	info=$(docker service inspect --format '{{.ID}} {{.Spec.Name}} {{.Spec.TaskTemplate.ContainerSpec.Image}} {{if .Spec.Mode.Replicated}}replicated {{.Spec.Mode.Replicated.Replicas}}{{else}}global null{{end}}' \
		"$id" 2>"$work/err") || fail "cannot inspect service $id: $(cat "$work/err")"
	# shellcheck disable=SC2086 # five words: ids, names and image references hold no spaces
	set -- $info
	tasks=$(docker service ps -q --filter desired-state=running "$1" 2>/dev/null || true)
	: >"$work/tasks"
	if [ -n "$tasks" ]; then
		# shellcheck disable=SC2086 # one argument per task id
		docker inspect --type task --format '{{.NodeID}} {{.Status.State}}' $tasks >"$work/tasks" 2>/dev/null || true
	fi
	per_node=$(awk '$2 == "running" && $1 != "" { n[$1]++ }
		END { for (k in n) { printf "%s\"%s\": %d", sep, k, n[k]; sep = ", " } }' "$work/tasks")
	running=$(awk '$2 == "running" { c++ } END { print c + 0 }' "$work/tasks")
	services="$services${services:+, }{\"name\": $(json_str "$2"), \"id\": $(json_str "$1"), \"image\": $(json_str "$3"), \"mode\": \"$4\", \"replicas\": $5, \"running\": $running, \"tasks\": {$per_node}}"
done <"$work/ids"
emit "{\"services\": [$services]}"
