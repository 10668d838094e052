"""Shared fixtures: the real local Kafka broker for the integration tier."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaAdminClient

from pipelines.infra import kafka_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of the local broker, started for this session if it was not running.

    A broker someone started by hand is reused and left running; one this session started is stopped.
    """
    try:
        started = kafka_broker.start()
    except kafka_broker.BrokerError as error:
        # Missing jars say "run scripts/bootstrap.sh"; a failed start carries the broker's log tail.
        raise pytest.fail.Exception(f"local Kafka broker unavailable: {error}", pytrace=False) from None
    yield started.bootstrap
    if not started.already_running:
        kafka_broker.stop()


@pytest.fixture
def unique_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Factory: unique_topic(partitions=1) creates a topic no other test uses and returns its name.

    The topics are deleted after the test so a long-lived dev broker does not accumulate them.
    """
    created: list[str] = []

    def create(partitions: int = 1) -> str:
        # Test name in the topic name helps when reading broker logs; Kafka allows [a-zA-Z0-9._-].
        readable = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:150]
        name = f"test-{readable}-{uuid.uuid4().hex[:8]}"
        kafka_broker.ensure_topics(kafka_bootstrap, {name: partitions})
        created.append(name)
        return name

    yield create
    if created:
        with KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="usagewatch-tests") as admin:
            admin.delete_topics(created)
