#!/bin/sh
# service-create: Creates a replicated service (detached: it converges after we return).
# Parameters: SW_NAME, SW_IMAGE, SW_REPLICAS; SW_RESOLVE_IMAGE (always|never, default always);
#   one item per line: SW_COMMAND (command and arguments), SW_ENV (KEY=value), SW_CONSTRAINTS,
#   SW_PORTS (published:target:protocol, published in host mode).
# Last stdout line: {"name", "id", "created"}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. A service of that name is left as it is, with "created": false.
# Never prints a join token.

require SW_NAME SW_IMAGE SW_REPLICAS
require_manager
case "$SW_REPLICAS" in
'' | *[!0-9]*) fail "SW_REPLICAS must be a whole number, not '$SW_REPLICAS'" ;;
esac

# The id of the service named exactly SW_NAME (inspect also matches id prefixes), or nothing.
existing() {
	docker service inspect --format '{{.ID}} {{.Spec.Name}}' "$SW_NAME" 2>/dev/null | awk -v n="$SW_NAME" '$2 == n { print $1 }'
}

answer() {
	emit "{\"name\": $(json_str "$SW_NAME"), \"id\": $(json_str "$1"), \"created\": $2}"
}

step="looking for service $SW_NAME"
id=$(existing)
if [ -n "$id" ]; then
	answer "$id" false
	exit 0
fi

# The arguments collect in "$@". List parameters are read line by line as data, never evaluated.
set -- --quiet --detach --name "$SW_NAME" --replicas "$SW_REPLICAS"
case "${SW_RESOLVE_IMAGE:-always}" in
always) ;;
never) set -- "$@" --no-resolve-image ;; # no registry to ask (the local cloud)
*) fail "SW_RESOLVE_IMAGE must be always or never, not '$SW_RESOLVE_IMAGE'" ;;
esac
printf '%s\n' "${SW_ENV:-}" >"$work/env"
while IFS= read -r line; do
	[ -z "$line" ] || set -- "$@" --env "$line"
done <"$work/env"
printf '%s\n' "${SW_CONSTRAINTS:-}" >"$work/constraints"
while IFS= read -r line; do
	[ -z "$line" ] || set -- "$@" --constraint "$line"
done <"$work/constraints"
printf '%s\n' "${SW_PORTS:-}" >"$work/ports"
while IFS=: read -r published target protocol; do
	[ -n "$published" ] || continue
	case "$published:$target" in
	*[!0-9:]* | :* | *:) fail "SW_PORTS: '$published:$target' is not published:target" ;;
	esac
	case "$protocol" in
	tcp | udp | sctp) ;;
	*) fail "SW_PORTS: protocol '$protocol' is not tcp, udp or sctp" ;;
	esac
	set -- "$@" --publish "mode=host,published=$published,target=$target,protocol=$protocol"
done <"$work/ports"
set -- "$@" "$SW_IMAGE"
printf '%s\n' "${SW_COMMAND:-}" >"$work/command"
while IFS= read -r line; do
	[ -z "$line" ] || set -- "$@" "$line"
done <"$work/command"

step="creating service $SW_NAME"
if ! docker service create "$@" >"$work/id" 2>"$work/err"; then
	# A concurrent create of the same name won: that is the service asked for.
	id=$(existing)
	[ -n "$id" ] || fail "cannot create $SW_NAME: $(cat "$work/err")"
	answer "$id" false
	exit 0
fi
answer "$(tail -n 1 "$work/id")" true
