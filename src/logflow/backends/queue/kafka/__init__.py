"""The Kafka queue adapter (distributed shape). ``runtime.py`` imports :class:`KafkaQueue` from here.

Modules: ``config`` (URL and librdkafka settings), ``producer`` (acknowledged publishing),
``consumer`` (group member with rebalance-safe commits), ``admin`` (topics, offsets), ``queue``
(the :class:`~logflow.backends.queue.base.EventQueue` itself).
"""

from logflow.backends.queue.kafka.config import parse_kafka_url
from logflow.backends.queue.kafka.consumer import KafkaConsumer
from logflow.backends.queue.kafka.queue import KafkaQueue

__all__ = ["KafkaConsumer", "KafkaQueue", "parse_kafka_url"]
