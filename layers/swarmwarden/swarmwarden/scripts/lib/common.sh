# common.sh: what every host script shares. swarmwarden.commands.render puts it between the
# parameter exports (with SCRIPT=<name>) and the script's own body, so a script is never run without it.
set -eu
umask 077
step="starting"
finished=0
work=$(mktemp -d)
# AWS CLI v2 pipes output through a pager unless told not to; hosts may have none.
export AWS_PAGER=""

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

check_token_prefix() {
	case "$SW_TOKEN_PREFIX" in
	/*[!/]) ;;
	*) fail "SW_TOKEN_PREFIX must start with / and not end with /" ;;
	esac
	if printf '%s' "$SW_TOKEN_PREFIX" | grep -q '[^A-Za-z0-9_./-]'; then
		fail "SW_TOKEN_PREFIX may hold only letters, digits and _ . / -"
	fi
}

# Sets $token from the parameter of role $1; empty when the parameter does not exist. $2: the
# scratch directory (default $work).
read_token() {
	scratch=${2:-$work}
	if token=$(aws --region "$SW_REGION" ssm get-parameter --name "$SW_TOKEN_PREFIX/$1" \
		--with-decryption --query Parameter.Value --output text 2>"$scratch/err"); then
		:
	elif grep -q ParameterNotFound "$scratch/err"; then
		token=""
	else
		fail "cannot read $SW_TOKEN_PREFIX/$1: $(cat "$scratch/err")"
	fi
}

# Stores token $2 for role $1. The token goes to the CLI in a private file (printf is a builtin),
# never in an argv. $3: the scratch directory (default $work).
put_token() {
	scratch=${3:-$work}
	printf '{"Name": "%s", "Value": "%s", "Type": "SecureString", "Overwrite": true}\n' \
		"$SW_TOKEN_PREFIX/$1" "$2" >"$scratch/put.json"
	aws --region "$SW_REGION" ssm put-parameter --cli-input-json "file://$scratch/put.json" \
		>/dev/null 2>"$scratch/err" || fail "cannot store $SW_TOKEN_PREFIX/$1: $(cat "$scratch/err")"
	rm -f "$scratch/put.json"
}

# Writes the swarm's current token of role $1 to its parameter, only when it differs. With $2 =
# fresh (a swarm just created, or tokens just rotated) the parameter cannot hold it yet, so the read
# is skipped. $3: the scratch directory.
sync_token() {
	step="storing the $1 join token"
	current=$(docker swarm join-token -q "$1" 2>"$3/err") || fail "cannot read the $1 join token: $(cat "$3/err")"
	token=""
	[ "$2" = fresh ] || read_token "$1" "$3"
	[ "$token" = "$current" ] || put_token "$1" "$current" "$3"
	token=""
	current=""
}

# sync_token for both roles at once, each in a scratch directory of its own: an AWS CLI call takes
# the better part of a second, and the two do not depend on each other. A failed role's own error
# line becomes the script's result (a generic one if it died without writing one).
sync_tokens() {
	running=""
	for role in worker manager; do
		mkdir -p "$work/$role"
		sync_token "$role" "$1" "$work/$role" >"$work/$role/out" 2>&1 &
		running="$running $role:$!"
	done
	# Both end before the script does: its exit removes their scratch directories.
	failed=""
	for job in $running; do
		wait "${job#*:}" || failed=${failed:-${job%%:*}}
	done
	[ -z "$failed" ] && return
	last=$(tail -n 1 "$work/$failed/out")
	case "$last" in
	'{"error": '*'}')
		finished=1
		printf '%s\n' "$last"
		exit 1
		;;
	esac
	fail "storing the $failed join token failed"
}
