#!/bin/sh
# drain: Drains a node: the swarm moves its tasks to other nodes.
# Parameters: SW_NODE (node id or hostname).
# Last stdout line: {"node", "availability": "drain"}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. An already drained node is left untouched.
# Never prints a join token.
set -eu
SCRIPT="drain"
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
