#!/bin/sh
# leave: Makes this host leave its swarm.
# Parameters: SW_FORCE ("1" to leave even as a manager).
# Last stdout line: {"left": bool}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. Not in a swarm: {"left": false}.
# Never prints a join token.
set -eu
SCRIPT="leave"
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
