"""Remove what a benchmark or a test created on shared engines: Kafka topics and groups, OpenSearch indices.

A distributed run names everything after one run id (topic, dead-letter topic, consumer group,
index prefix); without this, every run left ~1 MB per 1,000 events and a refreshing index per
day of data behind on the user's cluster.
"""

from __future__ import annotations

import httpx

from logflow.backends.store.opensearch.client import parse_store_url
from logflow.backends.store.opensearch.mapping import pattern, template_name


def drop_indices(store_url: str, prefix: str) -> None:
    """Delete the daily indices and the index template of ``prefix`` (absent ones are fine).

    Raises httpx.HTTPError when the engine cannot be reached or refuses.
    """
    endpoint = parse_store_url(store_url)
    with httpx.Client(base_url=endpoint.base_url, auth=endpoint.auth, timeout=30) as client:
        client.delete(f"/{pattern(prefix)}",
                      params={"expand_wildcards": "all", "ignore_unavailable": "true"}).raise_for_status()
        answer = client.delete(f"/_index_template/{template_name(prefix)}")
        if answer.status_code != 404:
            answer.raise_for_status()


def drop_kafka(queue_url: str, topics: list[str], groups: list[str], timeout_s: float = 30.0) -> None:
    """Delete consumer groups (Kafka group ids), then topics; missing ones are fine."""
    from confluent_kafka.admin import AdminClient  # the kafka extra: only for distributed runs

    from logflow.backends.queue.kafka.admin import delete_groups, delete_topics
    from logflow.backends.queue.kafka.config import KafkaOptions, parse_kafka_url

    servers, extra = parse_kafka_url(queue_url)
    admin = AdminClient(KafkaOptions(servers, extra=extra).admin())
    delete_groups(admin, groups, timeout_s)
    delete_topics(admin, topics, timeout_s)
    admin.poll(0)  # hands the client's log lines to Python logging
