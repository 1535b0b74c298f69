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
	docker swarm join-token --rotate -q "$role" >/dev/null 2>"$work/err" ||
		fail "cannot rotate the $role join token: $(cat "$work/err")"
done
sync_tokens fresh
emit '{"rotated": ["worker", "manager"]}'
