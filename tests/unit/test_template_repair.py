"""template.yaml's self-healing section: the rule and its dead-letter queue, the trigger's and the repair
function's permissions, the repair workflow, the parameters K and X, and the alarms."""

from __future__ import annotations

import re

from swarmwarden.settings import Settings

from localcloud.events import ec2_state_change_event, matches
from tests.unit.test_template import (
    ACCOUNT,
    CLUSTER,
    OTHER,
    REGION,
    ROOT,
    _environment,
    allowed,
    arn_of,
    deployed_statements,
    function_statements,
    props,
    render,
    resources,
    template,
)

REPAIR_MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{CLUSTER}-repair"


def test_the_rule_passes_failure_states_to_the_trigger_with_a_dead_letter_queue() -> None:
    rule = render(props("InstanceFailureRule"))
    pattern = rule["EventPattern"]
    for state in ("stopping", "stopped", "shutting-down", "terminated"):
        assert matches(pattern, ec2_state_change_event("i-0123456789abcdef0", state, region=REGION, account=ACCOUNT))
    for state in ("pending", "running"):
        assert not matches(
            pattern, ec2_state_change_event("i-0123456789abcdef0", state, region=REGION, account=ACCOUNT)
        )
    (target,) = rule["Targets"]
    assert target["Arn"] == arn_of("RepairTriggerFunction")
    assert target["DeadLetterConfig"]["Arn"] == arn_of("RepairDeadLetterQueue")
    assert 1 <= target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 3600
    permission = render(props("InstanceFailureRulePermission"))
    assert (permission["Principal"], permission["SourceArn"]) == ("events.amazonaws.com", arn_of("InstanceFailureRule"))
    # The function's own failed asynchronous invocations land in the same queue.
    assert props("RepairTriggerFunction")["DeadLetterQueue"]["TargetArn"] == {
        "Fn::GetAtt": ["RepairDeadLetterQueue", "Arn"]
    }


def test_the_dead_letter_queue_is_encrypted_and_only_the_rule_may_send_to_it() -> None:
    assert props("RepairDeadLetterQueue")["SqsManagedSseEnabled"] is True
    (statement,) = render(props("RepairDeadLetterQueuePolicy"))["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": arn_of("InstanceFailureRule")}}


def test_the_trigger_reads_and_starts_only_this_clusters_repairs() -> None:
    statements = function_statements("RepairTriggerFunction")
    assert allowed(statements, "states:StartExecution", REPAIR_MACHINE)
    assert not allowed(statements, "states:StartExecution", REPAIR_MACHINE.replace(CLUSTER, OTHER))
    assert not allowed(statements, "states:StartExecution", REPAIR_MACHINE.replace("-repair", "-provision"))
    assert allowed(statements, "ec2:DescribeInstances", "*")
    assert not allowed(statements, "ec2:TerminateInstances", f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-1")
    deployed = deployed_statements("RepairTriggerFunction")
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/ClusterTable"
    assert allowed(deployed, "dynamodb:GetItem", table)
    assert not allowed(deployed, "dynamodb:PutItem", table), "the trigger only reads the table"
    assert allowed(deployed, "sqs:SendMessage", arn_of("RepairDeadLetterQueue"))


def test_the_trigger_and_reconcile_start_the_same_machine_with_the_same_limits() -> None:
    trigger = Settings.model_validate(_environment("RepairTriggerFunction"))
    assert trigger.repair_state_machine_arn == REPAIR_MACHINE
    assert render(props("RepairStateMachine")["Name"]) == f"{CLUSTER}-repair"
    assert (trigger.max_concurrent_repairs, trigger.repair_pause_threshold_percent) == (2, 30)


def test_k_and_x_are_bounded_parameters_whose_defaults_the_docs_explain() -> None:
    parameters = template()["Parameters"]
    k, x = parameters["MaxConcurrentRepairs"], parameters["RepairPauseThresholdPercent"]
    assert (k["Default"], k["MinValue"], k["MaxValue"]) == (2, 1, 10)
    assert (x["Default"], x["MinValue"], x["MaxValue"]) == (30, 1, 100)
    limits = Settings.model_fields
    assert (limits["max_concurrent_repairs"].default, limits["repair_pause_threshold_percent"].default) == (2, 30)
    docs = (ROOT / "docs" / "operations.md").read_text()
    for needle in ("Karpenter", "cluster-autoscaler", "MaxConcurrentRepairs", "RepairPauseThresholdPercent"):
        assert needle in docs


def test_alarms_watch_the_metrics_the_functions_emit_and_notify_the_topic() -> None:
    source = (ROOT / "layers/swarmwarden/swarmwarden/steps/repair.py").read_text()
    names = set(re.findall(r'(?:count|seconds)\("(\w+)"', source))
    assert {
        "RepairsStarted",
        "RepairsSucceeded",
        "RepairsFailed",
        "RepairDuration",
        "NodesReplaced",
        "RepairPaused",
    } <= names
    for alarm, metric in (("RepairFailedAlarm", "RepairsFailed"), ("RepairPausedAlarm", "RepairPaused")):
        properties = render(props(alarm))
        assert (properties["Namespace"], properties["MetricName"]) == ("Swarmwarden", metric)
        assert {d["Name"]: d["Value"] for d in properties["Dimensions"]} == {
            "service": "swarmwarden",
            "cluster": CLUSTER,
        }
        assert properties["AlarmActions"] == ["AlarmTopic"]
    dlq = render(props("RepairDeadLettersAlarm"))
    assert (dlq["Namespace"], dlq["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["AlarmActions"] == ["AlarmTopic"]


def test_the_email_subscription_exists_only_with_an_address() -> None:
    subscription = resources()["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert template()["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    pattern = re.compile(template()["Parameters"]["AlarmEmail"]["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch("ops@example.com")
    assert not pattern.fullmatch("not an address")


def test_the_repair_function_reaches_its_table_and_describes_instances_only() -> None:
    deployed = deployed_statements("RepairFunction")
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/ClusterTable"
    for action in (
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
    ):
        assert allowed(deployed, action, table)
    assert allowed(deployed, "ec2:DescribeInstances", "*")
    assert not allowed(deployed, "ec2:RunInstances", f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-1")
    assert not allowed(deployed, "ssm:SendCommand", f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-1")
