#!/bin/sh
# drain: Drains a node: the swarm moves its tasks to other nodes.
# Parameters: SW_NODE (node id or hostname).
# Last stdout line: {"node", "availability": "drain"}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. An already drained node is left untouched.
# Never prints a join token.

require SW_NODE
require_manager
resolve_node Ready
[ -n "$node_id" ] || fail "there is no node $SW_NODE in this swarm"
step="draining node $node_id"
availability=$(docker node inspect --format '{{.Spec.Availability}}' "$node_id")
# Updating a node that is already drained would still bump its version: skip it.
if [ "$availability" != drain ]; then
	docker node update --availability drain "$node_id" >/dev/null 2>"$work/err" ||
		fail "cannot drain $node_id: $(cat "$work/err")"
fi
emit "{\"node\": $(json_str "$node_id"), \"availability\": \"drain\"}"
