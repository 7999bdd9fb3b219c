"""Everything the lag sampler knows about Kafka, in the broker-neutral readings of
`collector.lag.reading`: a topic is a stream, a consumer group on a topic is a consumer.

- lag of a group on a partition = end offset - committed offset; a group's lag on a topic
  is the sum over its partitions (a partition it never committed on is left out and named
  in the note);
- the oldest unprocessed message is the first record at or after each lagging partition's
  committed offset, read from the broker (the earliest of those timestamps);
- partition skew: each partition's figures are kept in the consumer's configuration, with
  the hottest partition and its share of the lag;
- what the topology reads: `topics` (exact topic names), `group`, `instances` (members),
  `routing` = "partitioned" (by key within a group; every group gets every message).

Only standard requests: ListGroups, DescribeGroups, OffsetFetch with named partitions (the
"all partitions" form is not used: some Kafka-protocol servers, Tansu among them, answer it
in a form clients cannot read), ListOffsets and Fetch through a consumer without a group.
Tansu 0.6 (the broker of the tests) lists end offsets short of the truth after a batched
produce; the high watermark of a Fetch corrects them (`_check_ends`).
"""
import asyncio
import logging
import time

from collector.lag.reading import ConsumerReading, ReadError, StreamReading

log = logging.getLogger("eventscope.lag")

KIND = "kafka"
OLDEST_WAIT = 3.0  # seconds the oldest-message reads of one round may take
OLDEST_CACHE = 50_000


class KafkaSource:
    kind = KIND

    def __init__(self, adapter, timeout=10.0):
        self.adapter = adapter  # collector.brokers.kafka.KafkaAdapter: its admin client and options
        self.timeout = timeout
        self.reader = None  # a consumer without a group: end offsets and the oldest records
        self.partitions = {}  # topic -> [partition], from the last streams() call
        self.ends = {}  # TopicPartition -> end offset, from the last streams() call
        self.oldest_cache = {}  # (TopicPartition, committed offset) -> timestamp (ms)
        self.marks = {}  # TopicPartition -> (listed end offset, high watermark found for it)
        self.ends_short = False

    async def _reader(self):
        from aiokafka import AIOKafkaConsumer

        if self.reader is None:
            reader = AIOKafkaConsumer(bootstrap_servers=self.adapter.bootstrap, group_id=None,
                                      client_id="eventscope-lag", enable_auto_commit=False, fetch_max_wait_ms=100,
                                      **self.adapter.options)
            await reader.start()
            self.reader = reader
        return self.reader

    async def close(self):
        if self.reader is not None:
            reader, self.reader = self.reader, None
            try:
                await asyncio.wait_for(reader.stop(), 5)
            except Exception as error:  # a reader whose broker is gone
                log.debug("closing the lag reader: %s", error)

    async def _call(self, what, awaitable):
        try:
            return await asyncio.wait_for(awaitable, self.timeout)
        except Exception as error:  # any failure of a broker call is a read error of the round
            if self.reader is not None and what == "offsets":
                await self.close()  # a fresh reader next round
            raise ReadError(f"Kafka {what}: {type(error).__name__} {error}".strip()) from None

    async def streams(self):
        """Every topic with the sums of its partitions' first and end offsets."""
        from aiokafka import TopicPartition

        if self.adapter.admin is None:
            raise ReadError("Kafka: not connected")
        reader = await self._reader()
        # A fresh look at every topic, which also tells the client where each partition's
        # leader is for the offset requests below. The partitions last round fetched from
        # are given up first: while assigned, the client follows only their topics.
        reader.unsubscribe()
        await self._call("metadata", reader._client.force_metadata_update())
        cluster = reader._client.cluster
        partitions = {}
        for topic in sorted(cluster.topics()):
            if topic.startswith("__"):
                continue
            found = cluster.partitions_for_topic(topic)
            if found:
                partitions[topic] = sorted(found)
        tps = [TopicPartition(topic, p) for topic, ps in partitions.items() for p in ps]
        ends = await self._call("offsets", reader.end_offsets(tps)) if tps else {}
        firsts = await self._call("offsets", reader.beginning_offsets(tps)) if tps else {}
        if ends:
            await self._check_ends(ends)
        self.partitions, self.ends = partitions, ends
        readings = []
        for topic, ps in partitions.items():
            first = sum(firsts.get(TopicPartition(topic, p), 0) for p in ps)
            last = sum(ends.get(TopicPartition(topic, p), 0) for p in ps)
            readings.append(StreamReading(name=topic, first_seq=first, last_seq=last, messages=last - first,
                                          retention="kafka", limited=True, subjects=[topic]))
        return readings

    async def _check_ends(self, ends):
        """Compare the listed end offsets with the high watermark a Fetch reports. Tansu
        0.6 lists the base offset of a partition's last record batch plus one, which is short
        when that batch holds several records; a Fetch of that batch reports the true mark.
        Only partitions whose listed end moved since the last round are fetched (one small
        Fetch each: the last batch); the others keep the mark found before."""
        changed = {}
        for tp, end in ends.items():
            if end <= 0:
                continue
            known = self.marks.get(tp)
            if known is not None and known[0] == end:
                ends[tp] = max(end, known[1])
            else:
                changed[tp] = end
        if not changed:
            return
        reader = await self._reader()
        try:
            reader.assign(list(changed))
            for tp, end in changed.items():
                reader.seek(tp, end - 1)
            await asyncio.wait_for(reader.getmany(timeout_ms=300, max_records=len(changed)), self.timeout)
        except Exception as error:  # the listed ends stand this round
            log.info("lag: high watermarks not read: %s", error)
            await self.close()
            return
        short = 0
        if len(self.marks) > OLDEST_CACHE:
            self.marks.clear()
        for tp, end in changed.items():
            mark = reader.highwater(tp)
            mark = end if mark is None else max(end, mark)
            self.marks[tp] = (end, mark)
            if mark > end:
                ends[tp] = mark
                short += 1
        if short and not self.ends_short:
            self.ends_short = True
            log.warning("Kafka lists end offsets short of the high watermark (%d partitions): using the mark", short)

    async def all_consumers(self, names):
        """{topic: [ConsumerReading] or ReadError}: every group that committed on the topic."""
        from aiokafka.protocol.commit import OffsetFetchRequest

        admin = self.adapter.admin
        found = {name: [] for name in names}
        try:
            groups = await self._call("group list", admin.list_consumer_groups())
        except ReadError as error:
            return {name: error for name in names}
        wanted = [(topic, self.partitions.get(topic, [])) for topic in names if self.partitions.get(topic)]
        for group, _protocol in sorted(groups):
            try:
                described = await self._call("group description", admin.describe_consumer_groups([group]))
                state, members = _description(described, group)
                node = await self._call("coordinator", admin.find_coordinator(group))
                answer = await self._call("committed offsets",
                                          admin._send_request(OffsetFetchRequest(group, wanted), node))
            except ReadError as error:
                log.info("lag: group %s not read: %s", group, error)
                continue
            committed = {}
            for topic, parts in answer.topics:
                for partition, offset, _metadata, error_code in parts:
                    if error_code == 0 and offset is not None and offset >= 0:
                        committed.setdefault(topic, {})[partition] = offset
            for topic, offsets in committed.items():
                reading = await self._reading(topic, group, state, members, offsets)
                found.setdefault(topic, []).append(reading)
        return found

    async def _reading(self, topic, group, state, members, offsets):
        from aiokafka import TopicPartition

        parts, lag, uncommitted = [], 0, []
        for partition in self.partitions.get(topic, []):
            end = self.ends.get(TopicPartition(topic, partition), 0)
            if partition not in offsets:
                uncommitted.append(partition)
                continue
            behind = max(0, end - offsets[partition])
            lag += behind
            parts.append({"partition": partition, "committed": offsets[partition], "end": end, "lag": behind})
        hottest = max(parts, key=lambda p: p["lag"], default=None)
        config = {
            "group": group, "topics": [topic], "instances": members, "routing": "partitioned", "state": state,
            "partitions": parts, "uncommitted_partitions": uncommitted,
            "hot_partition": hottest["partition"] if hottest and hottest["lag"] else None,
            "hot_share": round(hottest["lag"] / lag, 3) if hottest and lag else None,
        }
        position = sum(offsets.values())
        reading = ConsumerReading(
            stream=topic, name=group, created=None, config=config, pending=lag, ack_pending=0, redelivered=0,
            waiting=0, delivered_seq=position, delivered_consumer_seq=position, ack_floor_seq=position,
            ack_floor_consumer_seq=position, last_active=None, delivered_active=None,
            observer=group == self.adapter.group, own_oldest=True)
        if lag:
            reading.oldest = await self._oldest(topic, [(p["partition"], p["committed"]) for p in parts if p["lag"]])
        return reading

    async def _oldest(self, topic, lagging):
        """(time, "stream") of the earliest first-uncommitted record among `lagging`
        [(partition, committed offset)], read from the broker; None when none was read."""
        from aiokafka import TopicPartition

        from collector.brokers.kafka import broker_time

        wanted = {TopicPartition(topic, p): offset for p, offset in lagging}
        stamps = {tp: self.oldest_cache[(tp, o)] for tp, o in wanted.items() if (tp, o) in self.oldest_cache}
        missing = {tp: o for tp, o in wanted.items() if tp not in stamps}
        if missing:
            try:
                stamps.update(await self._read_first(missing))
            except Exception as error:  # the age stays unknown this round
                log.info("lag: oldest records of %s not read: %s", topic, error)
                await self.close()
        if not stamps:
            return None
        if len(self.oldest_cache) > OLDEST_CACHE:
            self.oldest_cache.clear()
        for tp, stamp in stamps.items():
            self.oldest_cache[(tp, wanted[tp])] = stamp
        return broker_time(min(stamps.values()), None), "stream"

    async def _read_first(self, missing):
        reader = await self._reader()
        reader.assign(list(missing))
        for tp, offset in missing.items():
            reader.seek(tp, offset)
        found, deadline = {}, time.monotonic() + OLDEST_WAIT
        while len(found) < len(missing) and time.monotonic() < deadline:
            left = [tp for tp in missing if tp not in found]
            batches = await reader.getmany(*left, timeout_ms=500, max_records=len(left) * 4)
            for tp, records in batches.items():
                first = next((r for r in records if r.offset >= missing[tp]), None)
                if first is not None and tp not in found:
                    found[tp] = first.timestamp
        return found

    async def next_message(self, stream, after_seq, subjects):
        return None  # the oldest message comes with each reading (per partition)


def _description(described, group):
    """(state, member count) from a DescribeGroups answer."""
    for response in described:
        for entry in response.groups:
            name = entry[1]
            if name == group:
                return entry[2], len(entry[5])
    return "", 0
