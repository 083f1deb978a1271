"""The relay's partitioner chooses the partition Kafka's Java client (and aiokafka) chooses."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference_murmur2
from hypothesis import given
from hypothesis import strategies as st

from bridge.partitioner import murmur2, partition_for


@given(st.binary(max_size=300))
def test_murmur2_is_the_java_clients_hash(data: bytes) -> None:
    assert murmur2(data) == reference_murmur2(data)


def test_murmur2_known_values() -> None:
    # Kafka's own test vectors (clients/.../UtilsTest.java, testMurmur2), as unsigned values.
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        bytes([ord("a"), ord("b"), ord("c")]): 479470107,
    }
    for data, signed in cases.items():
        assert murmur2(data) == signed & 0xFFFFFFFF


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_a_key_goes_where_aiokafka_sends_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert partition_for(key, partitions, partitions) == DefaultPartitioner()(
        key, partitions, partitions
    )


def test_one_partition_takes_everything() -> None:
    assert partition_for(b"order-1", [0], [0]) == 0
    assert partition_for(None, [0], []) == 0


def test_a_message_without_key_goes_to_an_available_partition() -> None:
    chosen = {partition_for(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert chosen == {1, 3}
    assert partition_for(None, [0, 1], []) in {0, 1}
