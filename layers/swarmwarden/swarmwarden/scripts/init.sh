#!/bin/sh
# init: Initialises the swarm on the seed manager and stores both join tokens as SecureString parameters.
# Parameters: SW_REGION SW_TOKEN_PREFIX SW_ADVERTISE_ADDR SW_ADDR_POOL SW_ADDR_POOL_MASK_LEN.
# Last stdout line: {"swarm_id", "node_id", "manager_addr", "created": bool}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. Already a manager: only makes sure the parameters hold the current tokens.
# Never prints a join token.

require SW_REGION SW_TOKEN_PREFIX SW_ADVERTISE_ADDR SW_ADDR_POOL SW_ADDR_POOL_MASK_LEN
check_token_prefix

step="reading the swarm state"
state=$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>"$work/err") ||
	fail "docker is not answering: $(cat "$work/err")"
case "$state" in
"inactive "*)
	step="initialising the swarm"
	# The address pool can never change later, and must not overlap the VPC.
	docker swarm init --advertise-addr "$SW_ADVERTISE_ADDR" --listen-addr "$SW_ADVERTISE_ADDR:2377" \
		--default-addr-pool "$SW_ADDR_POOL" --default-addr-pool-mask-length "$SW_ADDR_POOL_MASK_LEN" \
		>/dev/null 2>"$work/err" || fail "docker swarm init failed: $(cat "$work/err")"
	created=true
	;;
"active true") created=false ;;
"active false") fail "this host is a worker of a swarm; init needs a fresh host or a manager" ;;
*) fail "the swarm state is '$state'; expected inactive or active" ;;
esac

freshness=$([ "$created" = true ] && echo fresh || echo known)
sync_tokens "$freshness"

step="reading the swarm identity"
swarm_id=$(docker info --format '{{.Swarm.Cluster.ID}}')
node_id=$(docker info --format '{{.Swarm.NodeID}}')
manager_addr=$(docker info --format '{{.Swarm.NodeAddr}}')
emit "{\"swarm_id\": $(json_str "$swarm_id"), \"node_id\": $(json_str "$node_id"), \"manager_addr\": $(json_str "$manager_addr"), \"created\": $created}"
