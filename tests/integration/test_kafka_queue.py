"""The Kafka queue against a real broker: ordering, consumer groups, rebalances, dead letters, lag.

The queue contract tests cover what every EventQueue does; these cover what only Kafka has:
several partitions, several members of one group, and a cluster that is not there.
"""

from __future__ import annotations

import gc
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, murmur2
from confluent_kafka.admin import AdminClient

from logflow.backends.errors import BackendUnavailable
from logflow.backends.queue.base import ConsumedBatch, DeadLetter, QueueRecord
from logflow.backends.queue.kafka import KafkaConsumer, KafkaQueue, parse_kafka_url
from logflow.backends.queue.kafka.config import AT_MS_HEADER, REASON_HEADER
from logflow.backends.queue.kafka.packing import PACK_HEADER, PACK_VERSION
from logflow.backends.store.base import PreparedBatch, WriteResult
from logflow.backends.store.embedded import EmbeddedStore
from logflow.backends.store.opensearch import OpenSearchStore
from logflow.domain.query import LogFilter
from logflow.ingest.limits import IngestLimits
from logflow.ingest.pipeline import IngestPipeline
from logflow.ingest.processor import Processor
from logflow.settings import Settings
from tests.conftest import loghub_events, require_engine
from tests.contracts.kafka_factory import delete_topics

distributed = pytest.mark.distributed
MakeQueue = Callable[..., KafkaQueue]


@pytest.fixture
def kafka_url() -> str:
    return require_engine("kafka")


@pytest.fixture
def make_queue(kafka_url: str) -> Iterator[MakeQueue]:
    """Queues on fresh topics (own group prefix too); closed and deleted after the test."""
    made: list[KafkaQueue] = []

    def make(partitions: int = 4) -> KafkaQueue:
        servers, extra = parse_kafka_url(kafka_url)
        unique = f"lf-it-{uuid.uuid4().hex[:12]}"
        queue = KafkaQueue(servers, topic=unique, dead_letter_topic=f"{unique}-dlq", partitions=partitions,
                           group_prefix=f"{unique}.", extra_config=extra)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.close()
        delete_topics(kafka_url, queue)


def numbered(key: bytes, count: int, size: int = 0) -> list[QueueRecord]:
    return [QueueRecord(key, (b"%s-%06d-" % (key, i)).ljust(size, b"x")) for i in range(count)]


def interleaved(keys: int, per_key: int) -> list[QueueRecord]:
    """``per_key`` numbered records for each of ``keys`` services, interleaved as ingest would."""
    streams = [numbered(b"svc-%02d" % k, per_key) for k in range(keys)]
    return [stream[i] for i in range(per_key) for stream in streams]


def settle(*consumers: KafkaConsumer, partitions: int, timeout_s: float = 30.0) -> list[list[ConsumedBatch]]:
    """Poll until the members together own every partition, disjointly; returns (uncommitted)
    what each member read meanwhile."""
    read: list[list[ConsumedBatch]] = [[] for _ in consumers]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for index, consumer in enumerate(consumers):
            batch = consumer.poll(100, 0.1)
            if batch is not None:
                read[index].append(batch)
        owned = [consumer.assignment for consumer in consumers]
        if all(owned) and sum(map(len, owned)) == partitions and len(frozenset().union(*owned)) == partitions:
            return read
    raise AssertionError(f"group did not settle: {[sorted(c.assignment) for c in consumers]}")


def consume_all(consumers: list[KafkaConsumer], count: int, *, commit: bool = True,
                timeout_s: float = 30.0) -> dict[int, list[QueueRecord]]:
    """Round-robin poll (and commit) until ``count`` records came; returns them per consumer index."""
    got: dict[int, list[QueueRecord]] = defaultdict(list)
    deadline = time.monotonic() + timeout_s
    while sum(map(len, got.values())) < count:
        assert time.monotonic() < deadline, f"only {sum(map(len, got.values()))} of {count} records arrived"
        for index, consumer in enumerate(consumers):
            batch = consumer.poll(1000, 0.1)
            if batch is not None:
                got[index] += batch.records
                if commit:
                    consumer.commit(batch)
    return got


def in_partitions(records: list[QueueRecord], partitions: frozenset[int], count: int) -> list[QueueRecord]:
    """The records the producer put in ``partitions`` (it hashes keys like the Java client)."""
    return [r for r in records if murmur2(r.key, count) in partitions]


def by_key(records: list[QueueRecord]) -> dict[bytes, list[bytes]]:
    grouped: dict[bytes, list[bytes]] = defaultdict(list)
    for record in records:
        grouped[record.key].append(record.value)
    return dict(grouped)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- no broker needed -------------------------------------------------------------------------------

def test_parse_kafka_url() -> None:
    assert parse_kafka_url("kafka://k1:9092,k2:9093") == ("k1:9092,k2:9093", {})
    assert parse_kafka_url("kafka://kafka") == ("kafka:9092", {})
    assert parse_kafka_url("kafka://[::1]:9094") == ("[::1]:9094", {})
    assert parse_kafka_url("kafka://k:9092?security.protocol=SASL_SSL&sasl.mechanism=PLAIN") == (
        "k:9092", {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}
    )
    for bad in ("kafka://", "kafka://k:port", "kafka://k:0", "kafka://k:9092/path", "http://k:9092"):
        with pytest.raises(ValueError):
            parse_kafka_url(bad)


# -- against the broker -----------------------------------------------------------------------------

@distributed
def test_per_key_order_survives_many_partitions(make_queue: MakeQueue) -> None:
    queue = make_queue(partitions=6)
    published = interleaved(keys=24, per_key=250)
    for start in range(0, len(published), 1000):
        queue.publish(published[start : start + 1000])
    stats = queue.stats("g")
    assert len(stats.partitions) == 6
    assert sum(1 for p in stats.partitions if p.end > 0) >= 3, "keys should spread over the partitions"
    received = consume_all([queue.consumer("g")], len(published))[0]
    assert by_key(received) == by_key(published)
    assert Counter(received) == Counter(published)


@distributed
def test_two_members_split_the_partitions_and_get_each_record_once(make_queue: MakeQueue) -> None:
    queue = make_queue(partitions=4)
    members = [queue.consumer("g"), queue.consumer("g")]
    assert settle(*members, partitions=4) == [[], []]  # nothing published yet
    assert not members[0].assignment & members[1].assignment
    published = interleaved(keys=40, per_key=100)
    queue.publish(published)
    got = consume_all(members, len(published))
    assert got[0] and got[1], "both members should get a share"
    assert Counter(got[0] + got[1]) == Counter(published)  # every record exactly once
    for index, member in enumerate(members):  # each got exactly its own partitions' records
        assert Counter(got[index]) == Counter(in_partitions(published, member.assignment, 4))
    for member in members:
        assert member.poll(100, 0.3) is None
    assert sum(p.lag for p in queue.stats("g").partitions) == 0


@distributed
def test_a_closed_members_uncommitted_records_go_to_the_other(make_queue: MakeQueue) -> None:
    queue = make_queue(partitions=4)
    quitter, survivor = queue.consumer("g"), queue.consumer("g")
    assert settle(quitter, survivor, partitions=4) == [[], []]
    published = interleaved(keys=40, per_key=50)
    queue.publish(published)
    taken = consume_all([quitter], 1, commit=False)[0]  # read, never committed
    assert taken
    quitter.close()  # leaves the group: its partitions move to the survivor
    received = consume_all([survivor], len(published))[0]
    assert Counter(received) == Counter(published)  # including everything the quitter had read
    assert survivor.assignment == frozenset(range(4))


@distributed
def test_a_batch_from_revoked_partitions_is_not_committed(make_queue: MakeQueue) -> None:
    queue = make_queue(partitions=4)
    published = interleaved(keys=40, per_key=50)
    queue.publish(published)
    first = queue.consumer("g")
    batches: list[ConsumedBatch] = []
    while sum(len(b.records) for b in batches) < len(published):
        batch = first.poll(len(published), 1.0)
        if batch is not None:
            batches.append(batch)
    second = queue.consumer("g")
    # Cooperative rebalance: `first` hands some partitions over; `second` may already read them.
    early = settle(first, second, partitions=4)
    assert early[0] == []  # `first` had read everything it kept
    for batch in batches:
        first.commit(batch)  # read before the rebalance: only still-owned partitions may be committed
    committed = {p.partition: (p.committed, p.end) for p in queue.stats("g").partitions}
    for partition in second.assignment:
        assert committed[partition][0] == 0, f"partition {partition} was committed after its revocation"
    for partition in first.assignment:
        assert committed[partition][0] == committed[partition][1]
    # The handed-over partitions' records all go to their new owner, none lost to the stale commit.
    for batch in early[1]:
        second.commit(batch)
    expected = in_partitions(published, second.assignment, 4)
    read_early = [record for batch in early[1] for record in batch.records]
    rest = consume_all([second], len(expected) - len(read_early))[0]
    assert Counter(read_early + rest) == Counter(expected)
    assert first.poll(100, 0.3) is None and second.poll(100, 0.3) is None
    assert sum(p.lag for p in queue.stats("g").partitions) == 0


@distributed
def test_dead_letters_carry_their_reason_and_come_back_newest_first(
    make_queue: MakeQueue, kafka_url: str
) -> None:
    queue = make_queue(partitions=3)
    letters = [DeadLetter(value=b'{"n": %d}' % i, reason=f"mapping error #{i} ✗", at_ms=1_700_000_000_000 + i)
               for i in range(7)]
    for start in range(0, 7, 2):  # several calls, so letters may land on several partitions
        queue.dead_letter(letters[start : start + 2])
    assert queue.read_dead_letters(100) == letters[::-1]
    assert queue.read_dead_letters(3) == letters[::-1][:3]
    assert queue.stats("g").dead_letters == 7
    # On the wire: the payload as value, the reason and time as headers.
    servers, extra = parse_kafka_url(kafka_url)
    raw = Consumer({"bootstrap.servers": servers, "group.id": "lf-it-raw", "enable.auto.commit": False,
                    "enable.partition.eof": True, **extra})
    try:
        raw.assign([TopicPartition(queue.dead_letter_topic, p, 0) for p in range(3)])
        headers: dict[bytes, dict[str, bytes]] = {}
        deadline = time.monotonic() + 10
        while len(headers) < 7 and time.monotonic() < deadline:
            for message in raw.consume(100, 0.2):
                value = message.value()
                found = message.headers() or []
                pairs = found.items() if isinstance(found, dict) else found
                if message.error() is None and value is not None:
                    headers[value] = {k: v for k, v in pairs if isinstance(v, bytes)}
    finally:
        raw.close()
    assert headers[b'{"n": 3}'] == {REASON_HEADER: "mapping error #3 ✗".encode(),
                                    AT_MS_HEADER: b"1700000000003"}


@distributed
def test_lag_counts_unconsumed_messages_and_drops_after_commit(make_queue: MakeQueue) -> None:
    """Lag is in Kafka messages, as every Kafka tool counts it: a publish packs each key's records."""
    queue = make_queue(partitions=3)
    published = interleaved(keys=9, per_key=30)
    queue.publish(published)
    assert sum(p.lag for p in queue.stats("g").partitions) == 9  # never committed: one pack per key
    consumer = queue.consumer("g")
    got = consume_all([consumer], len(published), commit=False)[0]
    assert Counter(got) == Counter(published)
    assert sum(p.lag for p in queue.stats("g").partitions) == 9  # read is not done
    consumer.rewind()
    consume_all([consumer], len(published))
    stats = queue.stats("g")
    assert stats.healthy and stats.kind == "kafka"
    assert all(p.lag == 0 and p.committed == p.end for p in stats.partitions)


def test_a_pack_larger_than_the_batch_is_split_and_committed_with_its_last_record(make_queue: MakeQueue) -> None:
    queue = make_queue(partitions=1)
    packs = [numbered(b"svc", 90)[i : i + 30] for i in (0, 30, 60)]
    for pack in packs:
        queue.publish(pack)  # three messages of 30 records, one after the other
    consumer = queue.consumer("g")
    first = consumer.poll(45, 10.0)
    assert first is not None and first.records == packs[0] + packs[1][:15]
    consumer.commit(first)  # the first pack is done; the second only in part
    assert [p.lag for p in queue.stats("g").partitions] == [2]
    second = consumer.poll(45, 10.0)
    assert second is not None and second.records == packs[1][15:] + packs[2]
    consumer.rewind()  # as after a failed store write: from the last commit, the second pack whole
    again = consume_all([consumer], 60)[0]
    assert again == packs[1] + packs[2]
    assert [p.lag for p in queue.stats("g").partitions] == [0]


def test_a_crash_inside_a_pack_redelivers_the_pack_whole_to_the_next_member(make_queue: MakeQueue) -> None:
    queue = make_queue(partitions=1)
    records = numbered(b"svc", 50)
    queue.publish(records)
    consumer = queue.consumer("g")
    part = consumer.poll(20, 10.0)
    assert part is not None and part.records == records[:20]
    consumer.commit(part)  # nothing of the pack is committed until its last record is
    consumer.close()
    assert consume_all([queue.consumer("g")], 50)[0] == records


def test_a_damaged_pack_comes_out_as_one_record_for_the_dead_letters(make_queue: MakeQueue, kafka_url: str) -> None:
    queue = make_queue(partitions=1)
    servers, _ = parse_kafka_url(kafka_url)
    producer = Producer({"bootstrap.servers": servers})
    producer.produce(queue.topic, b"\x05\x00\x00\x00 cut short", b"svc", headers=[(PACK_HEADER, PACK_VERSION)])
    assert producer.flush(10) == 0
    good = numbered(b"svc", 3)
    queue.publish(good)
    got = consume_all([queue.consumer("g")], 4)[0]
    assert got == [QueueRecord(b"svc", b"\x05\x00\x00\x00 cut short"), *good]


def run_until_drained(queue: KafkaQueue, processors: list[Processor], timeout_s: float = 60.0) -> None:
    """Run the processors, each in a thread, until their group has no lag (or the time is up)."""
    group = processors[0].group
    stop = threading.Event()
    threads = [threading.Thread(target=p.run, args=(stop,)) for p in processors]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while sum(p.lag for p in queue.stats(group).partitions) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


class FlakyStore(EmbeddedStore):
    """An embedded store whose first ``failures`` writes fail as if the store were down.

    The processor writes through ``write_prepared`` (the embedded store prepares batches), so
    that is where the outage is.
    """

    def __init__(self, directory: Path, failures: int) -> None:
        super().__init__(directory)
        self.failures = failures

    def write_prepared(self, batch: PreparedBatch) -> WriteResult:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("store down (test)")
        return super().write_prepared(batch)


@distributed
def test_processors_store_every_event_once_through_a_store_outage(
    make_queue: MakeQueue, tmp_path: Path
) -> None:
    queue = make_queue(partitions=4)
    store = FlakyStore(tmp_path / "store", failures=2)
    systems = ("Apache", "HDFS", "Linux", "Spark")
    outcome = IngestPipeline(queue, IngestLimits()).submit_values(
        [event for system in systems for event in loghub_events(system, limit=500)]
    )
    assert outcome.accepted == 2000
    processors = [Processor(queue, store, group="processors", batch_size=300) for _ in range(2)]
    try:
        run_until_drained(queue, processors)
    finally:
        store.close()
    assert sum(p.lag for p in queue.stats("processors").partitions) == 0
    # The failed batches were rewound and stored later: nothing lost, nothing stored twice. (A
    # batch in flight while the second processor joined may be replayed by the partition's new
    # owner; the store counts such replays as duplicates instead of storing them again.)
    assert sum(p.counters.store_errors for p in processors) == 2
    assert sum(p.counters.stored for p in processors) == 2000


class FlakyOpenSearch(OpenSearchStore):
    """A real OpenSearch store whose second write is slow: it fails (``fail_older``), or it
    succeeds and the third write, running beside it, fails at once."""

    def __init__(self, *, fail_older: bool) -> None:
        super().__init__(require_engine("opensearch"), prefix=f"lf-it-{uuid.uuid4().hex[:10]}")
        self.fail_older = fail_older
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def write_prepared(self, batch: PreparedBatch) -> WriteResult:
        with self._lock:
            self.calls += 1
            call = self.calls
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if call == 2:
                time.sleep(0.5)  # the third batch's write starts meanwhile
                if self.fail_older:
                    raise BackendUnavailable("store down (test)")
            if call == 3 and not self.fail_older:
                raise BackendUnavailable("store down (test)")
            return super().write_prepared(batch)
        finally:
            with self._lock:
                self.running -= 1


@distributed
@pytest.mark.parametrize("prepare_worker", [True, False], ids=["helper-allowed", "helper-off"])
@pytest.mark.parametrize("fail_older", [True, False], ids=["older-write-fails", "newer-write-fails"])
def test_overlapped_writes_commit_in_order_and_store_everything_once_through_a_failure(
    make_queue: MakeQueue, fail_older: bool, prepare_worker: bool
) -> None:
    queue = make_queue(partitions=2)
    store = FlakyOpenSearch(fail_older=fail_older)
    events = [event for system in ("Apache", "HDFS", "Linux", "Spark") for event in loghub_events(system, limit=500)]
    assert IngestPipeline(queue, IngestLimits()).submit_values(events).accepted == 2000
    processor = Processor(queue, store, group="processors", batch_size=250, prepare_worker=prepare_worker)
    # OpenSearch's writes wait on the network: the processor prepares in its own thread, never
    # in a helper process, whatever the setting, and overlaps two writes.
    assert processor.overlapped and processor.pipelined and not processor.helper
    run_until_drained(queue, [processor])
    try:
        assert sum(p.lag for p in queue.stats("processors").partitions) == 0
        assert store.most_at_once == 2
        assert processor.counters.store_errors == 1
        # The failed batch and any written beside it came again (with any pack they ended
        # inside): what was stored before the failure counts as duplicates the second time.
        c = processor.counters
        assert c.stored <= 2000 <= c.stored + c.duplicates
        store.refresh()
        assert store.count(LogFilter()) == 2000
    finally:
        store.drop_before(2**62)
        store.close()


@distributed
def test_the_processor_frees_what_http_requests_leave_in_reference_cycles(make_queue: MakeQueue) -> None:
    # A processor process raises the GC thresholds (cli/serve.py), and every httpx request leaves
    # a reference cycle holding its body: a _bulk request's MBs. The processor collects them.
    queue = make_queue(partitions=2)
    store = OpenSearchStore(require_engine("opensearch"), prefix=f"lf-it-{uuid.uuid4().hex[:10]}")
    events = [event for system in ("Apache", "HDFS", "Linux", "Spark") for event in loghub_events(system, limit=500)]
    assert IngestPipeline(queue, IngestLimits()).submit_values(events).accepted == 2000
    processor = Processor(queue, store, group="processors", batch_size=100, collect_every_s=0.0)
    gc.collect()
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 1_000)
    try:
        run_until_drained(queue, [processor])
        left = sum(1 for obj in gc.get_objects() if type(obj) is httpx.Request)
    finally:
        gc.set_threshold(*thresholds)
        store.drop_before(2**62)
        store.close()
    assert processor.counters.stored == 2000  # in 20 batches, at least 20 _bulk requests
    assert left <= 6, f"{left} httpx requests not collected"


@distributed
def test_publish_recovers_from_a_fatal_producer_error(make_queue: MakeQueue) -> None:
    queue = make_queue(partitions=1)
    queue.publish([QueueRecord(b"k", b"before")])
    # A real broker cannot be made to fence an idempotent producer on demand: report the fatal
    # error the way librdkafka would, through the producer's error callback.
    producer = queue._producer
    producer._on_error(KafkaError(KafkaError._FATAL, "simulated fatal idempotence error", fatal=True))
    stats = queue.stats("g")
    assert not stats.healthy and "simulated" in stats.detail
    queue.publish([QueueRecord(b"k", b"after")])  # on a new producer
    assert not producer.fatal_error
    received = consume_all([queue.consumer("g")], 2)[0]
    assert [r.value for r in received] == [b"before", b"after"]


@distributed
def test_topics_are_created_from_settings(kafka_url: str, make_settings: Callable[..., Settings]) -> None:
    unique = f"lf-it-{uuid.uuid4().hex[:12]}"
    settings = make_settings(queue_url=kafka_url, kafka_topic=unique, kafka_dead_letter_topic=f"{unique}-dlq",
                             kafka_partitions=5, processor_group=unique)
    queue = KafkaQueue.from_settings(settings)
    try:
        stats = queue.stats(settings.processor_group)
        assert stats.healthy, stats.detail
        assert [p.partition for p in stats.partitions] == [0, 1, 2, 3, 4]
        queue.publish([QueueRecord(b"svc", b"one")])
        assert sum(p.end for p in queue.stats("g").partitions) == 1
    finally:
        queue.close()
        delete_topics(kafka_url, queue)


@distributed
def test_a_dead_cluster_fails_publish_and_reports_unhealthy() -> None:
    # Needs no broker: it talks to a port nobody listens on. The timeouts are shortened for
    # speed; the assertions are about failing (not hanging), not about the exact times.
    dead = f"127.0.0.1:{free_port()}"
    # Topics already there (create_topics=False): the failure comes from the producer's delivery
    # timeout, as when the cluster dies after start-up.
    queue = KafkaQueue(dead, topic="lf-it-nowhere", dead_letter_topic="lf-it-nowhere-dlq",
                       create_topics=False, delivery_timeout_s=2.0, admin_timeout_s=1.0)
    try:
        with pytest.raises(BackendUnavailable, match="lf-it-nowhere"):
            queue.publish([QueueRecord(b"svc", b"lost")] * 3)
        with pytest.raises(BackendUnavailable):
            queue.dead_letter([DeadLetter(b"x", "r", 1)])
        stats = queue.stats("g")
        assert not stats.healthy and dead in stats.detail
        with pytest.raises(BackendUnavailable):
            queue.read_dead_letters(10)
    finally:
        queue.close()
    # Starting against a dead cluster works (status must keep working); publish then fails on
    # the topic check.
    queue = KafkaQueue(dead, topic="lf-it-nowhere", dead_letter_topic="lf-it-nowhere-dlq",
                       admin_timeout_s=1.0)
    try:
        with pytest.raises(BackendUnavailable, match="unreachable"):
            queue.publish([QueueRecord(b"svc", b"lost")])
    finally:
        queue.close()


def _dead_letters(count: int, start: int = 0) -> list[DeadLetter]:
    return [DeadLetter(b"letter-%03d" % i, "refused", 1) for i in range(start, start + count)]


@distributed
def test_a_dead_letter_replay_never_moves_its_group_backwards(make_queue: MakeQueue) -> None:
    """Kafka cannot lock a replay group: two cursors of one group may be open (two processes)."""
    queue = make_queue(partitions=1)
    queue.dead_letter(_dead_letters(10))
    ahead, behind = queue.dead_letter_cursor("replay"), queue.dead_letter_cursor("replay")
    batch = ahead.read(100)
    assert batch is not None and len(batch.letters) == 10
    ahead.commit(batch)
    ahead.close()
    slow = behind.read(3)
    assert slow is not None
    behind.commit(slow)  # committed before it: 10; this must not take the group back to 3
    behind.close()
    after = queue.dead_letter_cursor("replay")
    assert after.pending == 0
    after.close()


@distributed
def test_a_replay_after_retention_deleted_letters_starts_at_the_oldest_kept_one(make_queue: MakeQueue) -> None:
    queue = make_queue(partitions=1)
    queue.dead_letter(_dead_letters(12))
    cursor = queue.dead_letter_cursor("replay")
    first = cursor.read(3)
    assert first is not None
    cursor.commit(first)
    cursor.close()
    admin = AdminClient({"bootstrap.servers": queue.bootstrap_servers})  # plays the broker's retention
    for future in admin.delete_records([TopicPartition(queue.dead_letter_topic, 0, 8)]).values():
        future.result(10)
    cursor = queue.dead_letter_cursor("replay")
    assert cursor.pending == 4  # offsets 3-7 are gone: not counted, not waited for
    seen = []
    while (batch := cursor.read(100)) is not None:
        seen += [letter.value for letter in batch.letters]
    cursor.close()
    assert seen == [b"letter-%03d" % i for i in range(8, 12)]
