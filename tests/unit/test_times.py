"""The hand-written time conversions on the hot path agree with the library's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from tracker.apply import timestamp, to_datetime
from tracker.stores.sqlite_times import from_ts, ts

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
)
aware = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)


@given(st.one_of(aware, st.datetimes()))
def test_timestamp_is_from_datetime(when: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(when)
    assert timestamp(when) == expected


@given(aware)
def test_ts_is_the_fixed_width_utc_text(when: datetime) -> None:
    utc = when.astimezone(UTC)
    assert ts(when) == f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.%fZ")
    assert from_ts(ts(when)) == utc


@given(aware, aware)
def test_ts_orders_as_time_does(a: datetime, b: datetime) -> None:
    assert (ts(a) < ts(b)) == (a < b)


@given(aware)
def test_to_datetime_is_to_datetime_utc(when: datetime) -> None:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(when)
    assert to_datetime(value) == value.ToDatetime(UTC)
    assert to_datetime(value).tzinfo is UTC
