#!/bin/sh
# status: Lists the nodes of the swarm, as seen by this manager.
# Parameters: (none).
# Last stdout line: {"swarm_id", "nodes": [{"id", "hostname", "addr", "role", "status", "availability", "leader", "reachability", "tasks"}]}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. Read-only.
# Never prints a join token.

require_manager
step="reading the swarm"
swarm_id=$(docker info --format '{{.Swarm.Cluster.ID}}')
ids=$(docker node ls -q 2>"$work/err") || fail "cannot list nodes: $(cat "$work/err")"
# shellcheck disable=SC2086 # one argument per node id
docker node inspect --format '{"id": {{json .ID}}, "hostname": {{json .Description.Hostname}}, "addr": {{json .Status.Addr}}, "role": {{json .Spec.Role}}, "status": {{json .Status.State}}, "availability": {{json .Spec.Availability}}, "leader": {{if .ManagerStatus}}{{.ManagerStatus.Leader}}{{else}}false{{end}}, "reachability": {{if .ManagerStatus}}{{json .ManagerStatus.Reachability}}{{else}}null{{end}}}' \
	$ids >"$work/nodes.json" 2>"$work/err" || fail "cannot inspect nodes: $(cat "$work/err")"
step="counting the tasks of each node"
# Tasks meant to run there (desired state running), whatever state they are in right now.
for id in $ids; do
	printf '%s %s\n' "$id" "$(docker node ps -q --filter desired-state=running "$id" 2>/dev/null | wc -l)"
done >"$work/tasks"
nodes=$(awk 'NR == FNR { tasks[$1] = $2 + 0; next }
	{
		id = $0; sub(/^\{"id": "/, "", id); sub(/".*/, "", id)
		sub(/\}$/, ", \"tasks\": " ((id in tasks) ? tasks[id] : "null") "}")
		printf "%s%s", (FNR > 1 ? ", " : ""), $0
	}' "$work/tasks" "$work/nodes.json")
emit "{\"swarm_id\": $(json_str "$swarm_id"), \"nodes\": [$nodes]}"
