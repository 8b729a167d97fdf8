"""kafka-python's admin client against a broker: IncrementalAlterConfigs APPEND and
SUBTRACT on the list-typed cleanup.policy (Kafka starts an APPEND from the default,
"delete"), SET with validate_only (not applied), and a non-list APPEND refused.

Usage: incremental_configs.py BOOTSTRAP TOPIC
Prints one JSON summary line on stdout: the topic's cleanup.policy (value, source)
after each step and the outcome of each alter call.
"""
import json
import sys
import time

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, NewTopic


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="compat-py-configs",
                             request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, 1, 1)])
    summary = {}

    def alter(step, configs, validate_only=False):
        result = admin.alter_configs([ConfigResource("TOPIC", topic, configs=configs)],
                                     validate_only=validate_only, raise_on_unknown=False,
                                     incremental=True)
        outcome = result["topic"][topic]
        # Errors come back as exception text: keep the class name (the error code).
        summary[step] = outcome if outcome == "OK" else outcome.split("(")[0].split(":")[0]

    def policy(step, expected):
        # Kafka's brokers apply a committed change asynchronously: poll (bounded) until
        # cleanup.policy shows the expected value, then record what is described.
        deadline = time.monotonic() + 30
        while True:
            described = admin.describe_configs(
                [ConfigResource("TOPIC", topic, configs=["cleanup.policy", "retention.ms"])],
                config_filter="all")
            configs = described["topic"][topic]
            if configs["cleanup.policy"]["value"] == expected or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        summary[step] = {name: [c["value"], c["config_source"]] for name, c in configs.items()}

    alter("append", {"cleanup.policy": ("APPEND", "compact")})
    policy("after_append", "delete,compact")
    alter("append_again", {"cleanup.policy": ("APPEND", "compact,delete")})
    policy("after_append_again", "delete,compact")
    alter("subtract", {"cleanup.policy": ("SUBTRACT", "delete")})
    policy("after_subtract", "compact")
    alter("validate_only", {"retention.ms": ("SET", "1000")}, validate_only=True)
    alter("append_not_list", {"retention.ms": ("APPEND", "1000")})
    policy("at_end", "compact")
    admin.close()
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
