#!/bin/sh
# remove-dead-node: Removes a dead node from the swarm: demote (if a manager), then node rm --force. Run on a healthy manager.
# Parameters: SW_NODE (node id or hostname), SW_FORCE ("1" also removes a node that is not down).
# Last stdout line: {"removed": true, "node", "was_manager": bool}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. A node that is already gone: {"removed": false, "node"}.
# Never prints a join token.
set -eu
SCRIPT="remove-dead-node"
umask 077
step="starting"
finished=0
work=$(mktemp -d)

# $1 as a JSON string. Redacts anything that looks like a join token, as a last line of defence.
json_str() {
	printf '"%s"' "$(printf '%s' "$1" | sed -e 's/SWMTK[N]-[A-Za-z0-9-]*/<redacted>/g' -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr '\n\t\r' '   ')"
}

fail() {
	finished=1
	printf '{"error": %s}\n' "$(json_str "$SCRIPT: $1")"
	exit 1
}

emit() {
	finished=1
	printf '%s\n' "$1"
}

# Any exit without a result (set -e, a signal) still ends stdout with one JSON object.
on_exit() {
	rc=$?
	rm -rf "$work"
	if [ "$rc" -ne 0 ] && [ "$finished" -eq 0 ]; then
		printf '{"error": %s}\n' "$(json_str "$SCRIPT: failed while $step (exit $rc)")"
	fi
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 143' HUP INT TERM

require() {
	for name in "$@"; do
		eval "value=\${$name:-}"
		[ -n "$value" ] || fail "parameter $name is required"
	done
}

require_manager() {
	step="checking that this host is a swarm manager"
	control=$(docker info --format '{{.Swarm.ControlAvailable}}' 2>"$work/err") || fail "docker is not answering: $(cat "$work/err")"
	[ "$control" = true ] || fail "this host is not a swarm manager"
}

# Sets $node_id from SW_NODE, a node id or a hostname (empty when no node matches). After a
# replacement two nodes can share a hostname: then the one whose status is $1 is meant.
resolve_node() {
	step="looking up node $SW_NODE"
	docker node ls --format '{{.ID}} {{.Hostname}} {{.Status}}' >"$work/nodes" 2>"$work/err" ||
		fail "cannot list nodes: $(cat "$work/err")"
	node_id=$(awk -v n="$SW_NODE" -v s="$1" '
		$1 == n { print $1; found = 1; exit }
		$2 == n { all[++c] = $1; if ($3 == s) pick[++p] = $1 }
		END {
			if (found) exit
			if (c == 1) print all[1]; else if (p == 1) print pick[1]; else if (c > 1) print "ambiguous"
		}' "$work/nodes")
	[ "$node_id" != ambiguous ] || fail "hostname $SW_NODE matches several nodes; pass a node id"
}

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
