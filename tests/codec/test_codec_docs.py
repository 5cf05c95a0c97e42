"""The documentation keeps up with the code: ``docs/PROTOCOL.md`` and the codec's
docstring name every frame, field, request kind and error code the codec knows."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from nodes import codec
from nodes.codec import ClusterInfo, ErrorInfo, Request, Response, Update

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
FRAME_NAMES = {
    **{code: cls.__name__ for code, cls, _ in codec.PEER_FRAMES},
    codec.FrameType.REQUEST: "Request",
    codec.FrameType.RESPONSE: "Response",
    codec.FrameType.UPDATE: "Update",
    codec.FrameType.CLUSTER_INFO: "ClusterInfo",
}


@pytest.fixture(scope="module")
def protocol_md() -> str:
    return PROTOCOL_MD.read_text(encoding="utf-8")


def test_every_frame_type_is_in_the_type_code_table(protocol_md: str) -> None:
    assert set(FRAME_NAMES) == set(codec.FrameType)
    for code, name in FRAME_NAMES.items():
        assert re.search(rf"\|\s*{int(code)}\s*\|\s*`{name}`", protocol_md), name


def test_every_field_is_documented(protocol_md: str) -> None:
    for _, cls, spec in codec.PEER_FRAMES:
        for name, _ in spec:
            assert f"{name}" in protocol_md, f"{cls.__name__}.{name}"
    for cls in (Request, Response, ErrorInfo, Update, ClusterInfo):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in protocol_md, f"{cls.__name__}.{f.name}"


def test_every_request_kind_and_error_code_is_documented(protocol_md: str) -> None:
    for kind in codec.REQUEST_KINDS:
        assert f"### {kind}" in protocol_md or f"and {kind}:" in protocol_md, kind
    for code in codec.ERROR_CODES:
        assert f"| `{code}`" in protocol_md, code
    for error in (codec.BadVersion, codec.ForeignCluster, codec.Malformed, codec.FrameTooLarge,
                  codec.UnknownType):
        assert f"`{error.code}`" in protocol_md, error.code


def test_the_limits_and_topics_are_the_codes(protocol_md: str) -> None:
    assert f"{codec.DEFAULT_MAX_FRAME:,} bytes" in protocol_md
    assert f"version {codec.PROTOCOL_VERSION}" in protocol_md
    assert 'topic `b"u"`' in protocol_md and 'topic `b"c"`' in protocol_md
    assert f"{codec.MAX_BODY_DEPTH} levels" in protocol_md
    assert f"{codec.MAX_VALUE_DEPTH} levels" in protocol_md
    assert "## 5. Requests in detail" in protocol_md


def test_the_module_docstring_lists_every_frame() -> None:
    doc = codec.__doc__ or ""
    for code, name in FRAME_NAMES.items():
        assert re.search(rf"^\s*{int(code)} {name}\b", doc, re.MULTILINE), name
