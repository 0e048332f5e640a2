"""Manifest encode/decode."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapir.appliance.datapath.manifest import FORMAT_VERSION, Manifest

manifests = st.builds(
    Manifest,
    id=st.text(min_size=1, max_size=32),
    asset=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
    kind=st.sampled_from(["files", "image", "application"]),
    level=st.sampled_from(["full", "incremental", "log"]),
    created_at=st.just("2024-05-17T10:00:00+00:00"),
    parent=st.none() | st.text(min_size=1, max_size=32),
    job=st.none() | st.text(max_size=10),
    item_stream=st.lists(st.binary(min_size=32, max_size=32), max_size=5),
    items=st.integers(0, 2**40),
    bytes_logical=st.integers(0, 2**60),
    bytes_new=st.integers(0, 2**60),
    warnings=st.lists(st.text(max_size=30), max_size=3),
    metadata=st.dictionaries(
        st.text(max_size=10),
        st.integers(-(2**63), 2**64 - 1) | st.text(max_size=10) | st.binary(),
        max_size=3,
    ),
)


@settings(max_examples=100, deadline=None)
@given(manifest=manifests)
def test_round_trip(manifest: Manifest) -> None:
    assert Manifest.decode(manifest.encode()) == manifest


def base_doc() -> dict:
    return msgpack.unpackb(
        Manifest(id="rp1", asset={}, kind="files", level="full", created_at="t").encode()
    )


def test_version_is_checked() -> None:
    doc = base_doc()
    doc["version"] = FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="version 2 is not supported"):
        Manifest.decode(msgpack.packb(doc))


def test_unknown_fields_are_ignored() -> None:
    doc = base_doc()
    doc["future_field"] = 1
    assert Manifest.decode(msgpack.packb(doc)).id == "rp1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": None}, "bad id"),
        ({"item_stream": [b"short"]}, "bad item_stream"),
        ({"items": "many"}, "bad items"),
    ],
)
def test_bad_field_types(change: dict, message: str) -> None:
    doc = base_doc() | change
    with pytest.raises(ValueError, match=message):
        Manifest.decode(msgpack.packb(doc, use_bin_type=True))


def test_missing_fields_and_garbage() -> None:
    doc = base_doc()
    del doc["kind"]
    with pytest.raises(ValueError, match="missing kind"):
        Manifest.decode(msgpack.packb(doc))
    with pytest.raises(ValueError, match="malformed"):
        Manifest.decode(b"\xc1")
    with pytest.raises(ValueError, match="not a map"):
        Manifest.decode(msgpack.packb([1, 2]))


@pytest.mark.parametrize("value", [{1}, 2**64, object()])
def test_unencodable_metadata(value: object) -> None:
    m = Manifest(
        id="x", asset={}, kind="files", level="full", created_at="t", metadata={"o": value}
    )
    with pytest.raises(ValueError, match="cannot be encoded"):
        m.encode()
