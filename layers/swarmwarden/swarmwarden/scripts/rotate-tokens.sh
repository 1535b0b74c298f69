#!/bin/sh
# rotate-tokens: Rotates both join tokens, then stores the new ones.
# Parameters: SW_REGION SW_TOKEN_PREFIX.
# Last stdout line: {"rotated": ["worker", "manager"]}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. A rerun rotates again and leaves the parameters equal to the live tokens.
# Never prints a join token.

require SW_REGION SW_TOKEN_PREFIX
check_token_prefix
require_manager

# Rotating invalidates the old token at once; members are unaffected. The stored tokens are stale
# now, so they are written without being read first.
for role in worker manager; do
	step="rotating the $role join token"
	# A rotation alongside (another repair's) can win the swarm's optimistic update: try again.
	i=0
	until docker swarm join-token --rotate -q "$role" >/dev/null 2>"$work/err"; do
		{ grep -q "update out of sequence" "$work/err" && [ "$i" -lt 5 ]; } ||
			fail "cannot rotate the $role join token: $(cat "$work/err")"
		i=$((i + 1))
		sleep 1
	done
done
sync_tokens fresh
# Repairs run side by side: another rotation may have stored its tokens before ours landed over
# them. Whoever stores last checks the live tokens once more, so the parameters end equal to them.
sync_tokens known
emit '{"rotated": ["worker", "manager"]}'
