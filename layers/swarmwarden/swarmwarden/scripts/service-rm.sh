#!/bin/sh
# service-rm: Removes a service.
# Parameters: SW_NAME (the service's exact name).
# Last stdout line: {"name", "removed"}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. A service that is not there is reported with "removed": false.
# Never prints a join token.

require SW_NAME
require_manager
step="looking for service $SW_NAME"
# inspect also matches id prefixes: only a service of exactly this name counts.
id=$(docker service inspect --format '{{.ID}} {{.Spec.Name}}' "$SW_NAME" 2>/dev/null | awk -v n="$SW_NAME" '$2 == n { print $1 }')
removed=false
if [ -n "$id" ]; then
	step="removing service $SW_NAME"
	docker service rm "$id" >/dev/null 2>"$work/err" || fail "cannot remove $SW_NAME: $(cat "$work/err")"
	removed=true
fi
emit "{\"name\": $(json_str "$SW_NAME"), \"removed\": $removed}"
