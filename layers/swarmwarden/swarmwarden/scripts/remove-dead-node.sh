#!/bin/sh
# remove-dead-node: Removes a dead node from the swarm: demote (if a manager), then node rm --force. Run on a healthy manager.
# Parameters: SW_NODE (node id or hostname), SW_FORCE ("1" also removes a node that is not down).
# Last stdout line: {"removed": true, "node", "was_manager": bool}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. A node that is already gone: {"removed": false, "node"}.
# Never prints a join token.

require SW_NODE
require_manager
resolve_node Down
if [ -z "$node_id" ]; then
	emit "{\"removed\": false, \"node\": $(json_str "$SW_NODE")}"
	exit 0
fi
[ "$node_id" != "$(docker info --format '{{.Swarm.NodeID}}')" ] ||
	fail "refusing to remove $node_id: it is the node this runs on"

step="inspecting node $node_id"
# "raft" while the node is still a Raft member, even when a demotion is already under way.
info=$(docker node inspect --format '{{.Spec.Role}} {{.Status.State}} {{if .ManagerStatus}}raft{{else}}-{{end}}' \
	"$node_id" 2>"$work/err") || fail "cannot inspect $node_id: $(cat "$work/err")"
# shellcheck disable=SC2086 # three words
set -- $info
role=$1 status=$2 member=$3
if [ "$status" != down ] && [ "${SW_FORCE:-0}" != 1 ]; then
	fail "node $node_id ($SW_NODE) is $status, not down; set SW_FORCE=1 to remove it anyway"
fi

was_manager=false
if [ "$role" = manager ] || [ "$member" = raft ]; then
	was_manager=true
	step="demoting node $node_id"
	docker node demote "$node_id" >/dev/null 2>"$work/err" || fail "cannot demote $node_id: $(cat "$work/err")"
fi

step="removing node $node_id"
# The demotion takes effect once Raft has dropped the member; until then rm refuses.
i=0
while ! docker node rm --force "$node_id" >/dev/null 2>"$work/err"; do
	grep -q "must be demoted" "$work/err" || fail "cannot remove $node_id: $(cat "$work/err")"
	[ "$i" -lt 60 ] || fail "node $node_id is still a Raft member 60s after its demotion"
	i=$((i + 1))
	sleep 1
done
emit "{\"removed\": true, \"node\": $(json_str "$node_id"), \"was_manager\": $was_manager}"
