#!/bin/sh
# rebalance: Force-updates (detached) replicated services whose running tasks are skewed over the Ready+Active nodes.
# Parameters: SW_MAX_UPDATES (at most this many updates per run, default 2), SW_SETTLE_SECONDS (how long to wait, in all, for every replica to be placed before judging the spread; default 30).
# Last stdout line: {"updated": [names], "skipped": [skewed names left for later]}; on failure {"error": "..."} and a non-zero exit.
# Idempotent. Balanced services, and services being updated, are not touched; nothing is updated while a drained node still runs tasks.
# Never prints a join token.

require_manager
max_updates=${SW_MAX_UPDATES:-2}
case "$max_updates" in
'' | *[!0-9]*) fail "SW_MAX_UPDATES must be a whole number, not '$max_updates'" ;;
esac

step="reading the nodes"
docker node ls --format '{{.ID}} {{.Status}} {{.Availability}}' >"$work/nodes" 2>"$work/err" ||
	fail "cannot list nodes: $(cat "$work/err")"
awk '$2 == "Ready" && $3 == "Active" { print $1 }' "$work/nodes" >"$work/eligible"

# While a drained node still runs tasks, a forced update would race the drain: leave everything.
draining=false
awk '$3 == "Drain" { print $1 }' "$work/nodes" >"$work/drained"
while read -r node; do
	if docker node ps --format '{{.CurrentState}}' "$node" | grep -q '^Running'; then
		draining=true
	fi
done <"$work/drained"

# Skewed: the tasks meant to run (placed on a node, whether or not started yet) per eligible
# (Ready + Active) node differ by more than one.
skewed() {
	tasks=$(docker service ps -q --filter desired-state=running "$1")
	[ -n "$tasks" ] || return 1
	# shellcheck disable=SC2086 # one argument per task id
	docker inspect --type task --format '{{.NodeID}}' $tasks >"$work/tasks"
	awk 'NR == FNR { n[$1] = 0; next }
		($1 in n) { n[$1]++ }
		END {
			min = -1; max = 0
			for (k in n) { if (min < 0 || n[k] < min) min = n[k]; if (n[k] > max) max = n[k] }
			exit !(max - min > 1)
		}' "$work/eligible" "$work/tasks"
}

# How many of service $1's tasks that should run are placed on a node.
placed_tasks() {
	tasks=$(docker service ps -q --filter desired-state=running "$1")
	if [ -z "$tasks" ]; then
		echo 0
		return
	fi
	# shellcheck disable=SC2086 # one argument per task id
	docker inspect --type task --format '{{.NodeID}}' $tasks | grep -c . || true
}

# A task moving off a node that was just removed is placed again within moments, so the spread is
# judged once every replica is placed: at most SW_SETTLE_SECONDS for all services together.
settle_until=$(($(date +%s) + ${SW_SETTLE_SECONDS:-30}))

step="reading the services"
# Constrained services cannot use every node, so their spread says nothing: leave them alone.
docker service ls -q --filter mode=replicated >"$work/services" 2>"$work/err" ||
	fail "cannot list services: $(cat "$work/err")"
updated="" skipped="" count=0
while read -r service; do
	info=$(docker service inspect --format '{{.Spec.Name}} {{with .Spec.TaskTemplate.Placement}}{{len .Constraints}}{{else}}0{{end}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{else}}-{{end}} {{.Spec.Mode.Replicated.Replicas}}' \
		"$service" 2>"$work/err") || fail "cannot inspect service $service: $(cat "$work/err")"
	# shellcheck disable=SC2086 # four words
	set -- $info
	name=$1 constraints=$2 update_state=$3 replicas=$4
	[ "$constraints" = 0 ] || continue
	step="waiting for $name's tasks to be placed"
	while [ "$(placed_tasks "$service")" -lt "$replicas" ] && [ "$(date +%s)" -lt "$settle_until" ]; do
		sleep 1
	done
	step="checking the spread of $name"
	skewed "$service" || continue
	if [ "$draining" = true ] || [ "$count" -ge "$max_updates" ] ||
		[ "$update_state" = updating ] || [ "$update_state" = rollback_started ]; then
		skipped="$skipped${skipped:+, }$(json_str "$name")"
		continue
	fi
	step="force-updating $name"
	# Detached: the update rolls on after we return; a later run sees it as "updating" and waits.
	docker service update --force --detach "$service" >/dev/null 2>"$work/err" ||
		fail "cannot update $name: $(cat "$work/err")"
	updated="$updated${updated:+, }$(json_str "$name")"
	count=$((count + 1))
done <"$work/services"
emit "{\"updated\": [$updated], \"skipped\": [$skipped]}"
