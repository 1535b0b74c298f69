#!/bin/sh
# leave: Makes this host leave its swarm.
# Parameters: SW_FORCE ("1" to leave even as a manager).
# Last stdout line: {"left": bool}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. Not in a swarm: {"left": false}.
# Never prints a join token.

step="reading the swarm state"
state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>"$work/err") ||
	fail "docker is not answering: $(cat "$work/err")"
if [ "$state" = inactive ]; then
	emit '{"left": false}'
	exit 0
fi
step="leaving the swarm"
if [ "${SW_FORCE:-0}" = 1 ]; then
	docker swarm leave --force >/dev/null 2>"$work/err" || fail "docker swarm leave failed: $(cat "$work/err")"
else
	docker swarm leave >/dev/null 2>"$work/err" || fail "docker swarm leave failed: $(cat "$work/err")"
fi
emit '{"left": true}'
