#!/bin/sh
# rotate-tokens: Rotates both join tokens, then stores the new ones.
# Parameters: SW_REGION SW_TOKEN_PREFIX.
# Last stdout line: {"rotated": ["worker", "manager"]}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. A rerun rotates again and leaves the parameters equal to the live tokens.
# Never prints a join token.
set -eu
SCRIPT="rotate-tokens"
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

# AWS CLI v2 pipes output through a pager unless told not to; hosts may have none.
export AWS_PAGER=""

check_token_prefix() {
	case "$SW_TOKEN_PREFIX" in
	/*[!/]) ;;
	*) fail "SW_TOKEN_PREFIX must start with / and not end with /" ;;
	esac
	if printf '%s' "$SW_TOKEN_PREFIX" | grep -q '[^A-Za-z0-9_./-]'; then
		fail "SW_TOKEN_PREFIX may hold only letters, digits and _ . / -"
	fi
}

# Sets $token from the parameter of role $1; empty when the parameter does not exist.
read_token() {
	if token=$(aws --region "$SW_REGION" ssm get-parameter --name "$SW_TOKEN_PREFIX/$1" \
		--with-decryption --query Parameter.Value --output text 2>"$work/err"); then
		:
	elif grep -q ParameterNotFound "$work/err"; then
		token=""
	else
		fail "cannot read $SW_TOKEN_PREFIX/$1: $(cat "$work/err")"
	fi
}

# The token goes to the CLI in a private file (printf is a builtin), never in an argv.
put_token() {
	printf '{"Name": "%s", "Value": "%s", "Type": "SecureString", "Overwrite": true}\n' \
		"$SW_TOKEN_PREFIX/$1" "$2" >"$work/put.json"
	aws --region "$SW_REGION" ssm put-parameter --cli-input-json "file://$work/put.json" \
		>/dev/null 2>"$work/err" || fail "cannot store $SW_TOKEN_PREFIX/$1: $(cat "$work/err")"
	rm -f "$work/put.json"
}

# Writes the swarm's current token of role $1 to its parameter, only when it differs.
sync_token() {
	step="storing the $1 join token"
	current=$(docker swarm join-token -q "$1" 2>"$work/err") || fail "cannot read the $1 join token: $(cat "$work/err")"
	read_token "$1"
	[ "$token" = "$current" ] || put_token "$1" "$current"
	token=""
	current=""
}

require SW_REGION SW_TOKEN_PREFIX
check_token_prefix
require_manager

# Rotating invalidates the old token at once; members are unaffected.
for role in worker manager; do
	step="rotating the $role join token"
	docker swarm join-token --rotate -q "$role" >/dev/null 2>"$work/err" ||
		fail "cannot rotate the $role join token: $(cat "$work/err")"
done
sync_token worker
sync_token manager
emit '{"rotated": ["worker", "manager"]}'
