#!/bin/sh
# evacuate: Moves the service tasks off nodes that are about to leave, without a dip in replicas.
# Parameters: SW_NODES (space-separated node ids).
# Last stdout line: {"paused": [node ids], "updated": [service names]}; on failure {"error": "..."} and a non-zero exit.
# Idempotent: a paused node stays paused; a service with no task left on the nodes is not updated again.
# Never prints a join token.
#
# Draining stops a node's tasks before their replacements start, so replicas would dip. Instead the
# nodes are paused (no new tasks land there) and each replicated service with a task on them gets a
# forced update in start-first order: every replacement runs before the task it replaces stops, and
# none can land on a paused node. The service keeps update-order start-first afterwards.

require SW_NODES
require_manager
paused=""
for node in $SW_NODES; do
	step="pausing node $node"
	availability=$(docker node inspect --format '{{.Spec.Availability}}' "$node" 2>"$work/err") ||
		fail "there is no node $node in this swarm: $(cat "$work/err")"
	# A drained node takes no tasks either; only an active one needs pausing.
	if [ "$availability" = active ]; then
		docker node update --availability pause "$node" >/dev/null 2>"$work/err" ||
			fail "cannot pause $node: $(cat "$work/err")"
	fi
	paused="$paused${paused:+, }$(json_str "$node")"
done

step="reading the services"
docker service ls -q --filter mode=replicated >"$work/services" 2>"$work/err" ||
	fail "cannot list services: $(cat "$work/err")"
updated=""
while read -r service; do
	step="finding the tasks of service $service"
	tasks=$(docker service ps -q --filter desired-state=running "$service")
	[ -n "$tasks" ] || continue
	# shellcheck disable=SC2086 # one argument per task id
	docker inspect --type task --format '{{.NodeID}}' $tasks >"$work/task-nodes"
	on_leaving=false
	for node in $SW_NODES; do
		grep -qxF "$node" "$work/task-nodes" && on_leaving=true
	done
	[ "$on_leaving" = true ] || continue
	name=$(docker service inspect --format '{{.Spec.Name}}' "$service")
	step="moving the tasks of $name"
	# Detached: the update rolls on after we return; the workflow waits for it with the tasks script.
	docker service update --detach --force --update-order start-first "$service" >/dev/null 2>"$work/err" ||
		fail "cannot update $name: $(cat "$work/err")"
	updated="$updated${updated:+, }$(json_str "$name")"
done <"$work/services"
emit "{\"paused\": [$paused], \"updated\": [$updated]}"
