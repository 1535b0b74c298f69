#!/bin/sh
# status: Lists the nodes of the swarm, as seen by this manager.
# Parameters: (none).
# Last stdout line: {"swarm_id", "nodes": [{"id", "hostname", "addr", "role", "status", "availability", "leader", "reachability"}]}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. Read-only.
# Never prints a join token.
set -eu
SCRIPT="status"
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

require_manager
step="reading the swarm"
swarm_id=$(docker info --format '{{.Swarm.Cluster.ID}}')
ids=$(docker node ls -q 2>"$work/err") || fail "cannot list nodes: $(cat "$work/err")"
# shellcheck disable=SC2086 # one argument per node id
docker node inspect --format '{"id": {{json .ID}}, "hostname": {{json .Description.Hostname}}, "addr": {{json .Status.Addr}}, "role": {{json .Spec.Role}}, "status": {{json .Status.State}}, "availability": {{json .Spec.Availability}}, "leader": {{if .ManagerStatus}}{{.ManagerStatus.Leader}}{{else}}false{{end}}, "reachability": {{if .ManagerStatus}}{{json .ManagerStatus.Reachability}}{{else}}null{{end}}}' \
	$ids >"$work/nodes.json" 2>"$work/err" || fail "cannot inspect nodes: $(cat "$work/err")"
nodes=$(awk 'NR > 1 { printf ", " } { printf "%s", $0 }' "$work/nodes.json")
emit "{\"swarm_id\": $(json_str "$swarm_id"), \"nodes\": [$nodes]}"
