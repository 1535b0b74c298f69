#!/bin/sh
# join: Joins this host to the swarm with the token of its role, read from Parameter Store.
# Parameters: SW_REGION SW_TOKEN_PREFIX SW_ROLE (manager|worker) SW_ADVERTISE_ADDR SW_MANAGER_ADDR SW_SWARM_ID.
# Last stdout line: {"node_id", "role", "joined": bool}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. Already in this swarm: "joined": false. In another swarm: an error.
# Never prints a join token.

require SW_REGION SW_TOKEN_PREFIX SW_ROLE SW_ADVERTISE_ADDR SW_MANAGER_ADDR SW_SWARM_ID
check_token_prefix
case "$SW_ROLE" in
manager | worker) ;;
*) fail "SW_ROLE must be manager or worker, not '$SW_ROLE'" ;;
esac

# Sets $state to "<LocalNodeState> <ControlAvailable>".
read_state() {
	state=$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>"$work/err") ||
		fail "docker is not answering: $(cat "$work/err")"
}

# Waits at most $1 s until $state matches the pattern $2; fails with message $3 otherwise.
wait_for() {
	i=0
	while :; do
		read_state
		# shellcheck disable=SC2254
		case "$state" in $2) return 0 ;; esac
		[ "$i" -lt "$1" ] || fail "$3 (state '$state' after ${1}s)"
		i=$((i + 1))
		sleep 1
	done
}

# A manager knows the swarm id; a worker only knows the addresses of its managers.
in_this_swarm() {
	read_state
	if [ "$state" = "active true" ]; then
		[ "$(docker info --format '{{.Swarm.Cluster.ID}}')" = "$SW_SWARM_ID" ]
	else
		docker info --format '{{range .Swarm.RemoteManagers}}{{println .Addr}}{{end}}' |
			grep -qx "$SW_MANAGER_ADDR:2377"
	fi
}

step="reading the swarm state"
read_state
case "$state" in
"pending "*) wait_for 60 "active *" "an earlier join did not finish" ;;
esac
read_state
case "$state" in
"active "*)
	in_this_swarm || fail "this host is already in another swarm (not $SW_SWARM_ID at $SW_MANAGER_ADDR)"
	joined=false
	;;
"inactive "*)
	step="reading the $SW_ROLE join token"
	read_token "$SW_ROLE"
	[ -n "$token" ] || fail "there is no token at $SW_TOKEN_PREFIX/$SW_ROLE; run init first"
	step="joining the swarm at $SW_MANAGER_ADDR"
	if docker swarm join --token "$token" --advertise-addr "$SW_ADVERTISE_ADDR" \
		--listen-addr "$SW_ADVERTISE_ADDR:2377" "$SW_MANAGER_ADDR:2377" >/dev/null 2>"$work/err"; then
		joined=true
	elif grep -q "Timeout was reached" "$work/err"; then
		# docker gave up waiting, but the join goes on in the background.
		wait_for 90 "active *" "the join did not complete after docker timed out"
		joined=true
	elif grep -q "already part of a swarm" "$work/err"; then
		joined=false
	else
		fail "docker swarm join failed: $(cat "$work/err")"
	fi
	token=""
	in_this_swarm || fail "joined through $SW_MANAGER_ADDR, but that swarm is not $SW_SWARM_ID"
	;;
*) fail "the swarm state is '$state'; expected inactive or active" ;;
esac

step="checking the role"
if [ "$SW_ROLE" = manager ]; then
	# Control becomes available once this manager has caught up with Raft.
	wait_for 30 "active true" "this host is in the swarm as a worker, not a manager"
else
	read_state
	[ "$state" = "active false" ] || fail "this host is in the swarm as a manager, not a worker"
fi
node_id=$(docker info --format '{{.Swarm.NodeID}}')
emit "{\"node_id\": $(json_str "$node_id"), \"role\": \"$SW_ROLE\", \"joined\": $joined}"
