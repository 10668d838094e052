"""The local broker manager: fast checks of its config and safety rules, then the real broker."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import defaultdict

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from pipelines.infra import kafka_broker
from pipelines.infra.config import ConfigError


@pytest.fixture
def isolated_run_dir(tmp_path, monkeypatch):
    """Point the manager's state files at tmp_path so fast tests never touch a real broker."""
    run_dir = tmp_path / "kafka"
    monkeypatch.setattr(kafka_broker, "KAFKA_RUN_DIR", run_dir)
    monkeypatch.setattr(kafka_broker, "PID_FILE", run_dir / "kafka.pid")
    monkeypatch.setattr(kafka_broker, "LOCK_FILE", run_dir / ".lock")
    monkeypatch.setattr(kafka_broker, "CONFIG_FILE", run_dir / "server.properties")
    run_dir.mkdir()
    return run_dir


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_server_properties_describe_a_single_kraft_node_on_loopback():
    settings = _properties(kafka_broker._server_properties(19092, 19093))

    assert settings["process.roles"] == "broker,controller"
    assert settings["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert settings["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert settings["auto.create.topics.enable"] == "false"
    assert settings["offsets.topic.replication.factor"] == "1"
    assert settings["transaction.state.log.min.isr"] == "1"
    # The job's event-time bounds and watermark ceiling trust the record timestamp: the broker sets it.
    assert settings["log.message.timestamp.type"] == "LogAppendTime"


def test_cluster_id_is_22_url_safe_characters_and_random():
    ids = {kafka_broker._new_cluster_id() for _ in range(20)}

    assert len(ids) == 20
    assert all(len(cluster_id) == 22 for cluster_id in ids)
    assert all(
        set(cluster_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for cluster_id in ids
    )


@pytest.mark.parametrize("bad_port", ["kafka", "0", "70000", "-1"])
def test_a_bad_port_variable_is_named_in_the_error(monkeypatch, bad_port):
    monkeypatch.setenv(kafka_broker.BROKER_PORT_ENV, bad_port)

    with pytest.raises(ConfigError, match=kafka_broker.BROKER_PORT_ENV):
        kafka_broker.bootstrap_servers()


def test_port_variable_sets_the_bootstrap_address(monkeypatch):
    monkeypatch.setenv(kafka_broker.BROKER_PORT_ENV, "29092")

    assert kafka_broker.bootstrap_servers() == "127.0.0.1:29092"


def test_stop_never_signals_a_foreign_process_named_in_the_pid_file(isolated_run_dir):
    # A recycled PID: the file names a live process that is not our broker.
    foreign = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kafka_broker.PID_FILE.write_text(f"{foreign.pid}\n")

        assert kafka_broker.status().running is False
        assert kafka_broker.stop() is None
        assert foreign.poll() is None, "stop() signalled a process that is not our broker"
        assert not kafka_broker.PID_FILE.exists(), "stale PID file should be removed"
    finally:
        foreign.kill()
        foreign.wait()


def test_waiting_for_topics_names_the_silent_broker_once_its_deadline_passes():
    # A port nothing listens on: the wait gives up at its deadline with the address in the error.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        bootstrap = f"127.0.0.1:{probe.getsockname()[1]}"
    began = time.monotonic()
    with pytest.raises(kafka_broker.BrokerError, match=f"no Kafka broker answered on {bootstrap}"):
        kafka_broker.wait_and_ensure_topics(bootstrap, timeout=1.0)
    assert 1.0 <= time.monotonic() - began < 10.0


@pytest.mark.integration
def test_keyed_messages_come_back_exactly_once_and_in_key_order(kafka_bootstrap, unique_topic):
    topic = unique_topic(partitions=4)
    accounts = [f"acct-{number}" for number in range(7)]
    sent = [(accounts[index % len(accounts)], {"seq": index}) for index in range(300)]

    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        acks="all",
    )
    for key, value in sent:
        producer.send(topic, key=key.encode(), value=json.dumps(value).encode())
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    partitions = [TopicPartition(topic, partition) for partition in range(4)]
    consumer.assign(partitions)
    end_offsets = consumer.end_offsets(partitions)
    received = []
    partitions_by_key = defaultdict(set)
    deadline = time.monotonic() + 30
    while any(consumer.position(tp) < end_offsets[tp] for tp in partitions):
        assert time.monotonic() < deadline, f"only {len(received)} of {len(sent)} messages consumed"
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                key = record.key.decode()
                received.append((key, json.loads(record.value)))
                partitions_by_key[key].add(tp.partition)
    consumer.close()

    assert sum(end_offsets.values()) == len(sent)
    assert sorted(received, key=lambda kv: kv[1]["seq"]) == sent
    # Keyed by account: every account lives on exactly one partition, so its events stay in order.
    assert all(len(partitions_of_key) == 1 for partitions_of_key in partitions_by_key.values())
    for account in accounts:
        sequence = [value["seq"] for key, value in received if key == account]
        assert sequence == sorted(sequence)


@pytest.mark.integration
def test_status_reports_the_running_broker(kafka_bootstrap):
    current = kafka_broker.status()

    assert current.running is True
    assert current.pid == int(kafka_broker.PID_FILE.read_text())
    assert current.bootstrap == kafka_bootstrap


@pytest.mark.integration
def test_start_is_idempotent(kafka_bootstrap):
    before = kafka_broker.status().pid

    again = kafka_broker.start()

    assert again.already_running is True
    assert again.pid == before
    assert kafka_broker.status().pid == before


@pytest.mark.integration
def test_ensure_topics_is_idempotent_and_keeps_partition_counts(kafka_bootstrap, unique_topic):
    topic = unique_topic(partitions=3)

    kafka_broker.ensure_topics(kafka_bootstrap, {topic: 3})

    with KafkaAdminClient(bootstrap_servers=kafka_bootstrap) as admin:
        (described,) = admin.describe_topics([topic])
    assert len(described["partitions"]) == 3
    assert all(partition["leader_id"] >= 0 for partition in described["partitions"])


@pytest.mark.integration
def test_project_topics_have_their_documented_partition_counts(kafka_bootstrap):
    kafka_broker.ensure_topics(kafka_bootstrap, kafka_broker.PROJECT_TOPICS)

    with KafkaAdminClient(bootstrap_servers=kafka_bootstrap) as admin:
        described = {
            topic["name"]: topic for topic in admin.describe_topics(list(kafka_broker.PROJECT_TOPICS))
        }
    assert {name: len(topic["partitions"]) for name, topic in described.items()} == {
        "access-events": 4,
        "access-events.dlq": 1,
        "alerts": 1,
    }
