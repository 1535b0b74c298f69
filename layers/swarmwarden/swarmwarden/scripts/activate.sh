#!/bin/sh
# activate: Puts nodes that a failed scale-in paused or drained back to work.
# Parameters: SW_NODES (space-separated node ids).
# Last stdout line: {"activated": [node ids], "absent": [node ids no longer in the swarm]}; on failure {"error": "..."} and a non-zero exit.
# Idempotent: an active node is left untouched.
# Never prints a join token.

require SW_NODES
require_manager
activated="" absent=""
for node in $SW_NODES; do
	step="activating node $node"
	if ! availability=$(docker node inspect --format '{{.Spec.Availability}}' "$node" 2>"$work/err"); then
		grep -qiE "no such node|node .* not found" "$work/err" || fail "cannot inspect $node: $(cat "$work/err")"
		# Removed before the failure: nothing to put back.
		absent="$absent${absent:+, }$(json_str "$node")"
		continue
	fi
	if [ "$availability" != active ]; then
		docker node update --availability active "$node" >/dev/null 2>"$work/err" ||
			fail "cannot activate $node: $(cat "$work/err")"
	fi
	activated="$activated${activated:+, }$(json_str "$node")"
done
emit "{\"activated\": [$activated], \"absent\": [$absent]}"
