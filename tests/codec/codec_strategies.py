"""Hypothesis strategies for every frame the codec carries, plus a check that a
decoded message has exactly the field types the wire format promises."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from nodes import codec
from nodes.codec import ClusterInfo, ErrorInfo, Request, Response, Update
from nodes.raft.core import encode_config_change
from nodes.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ChangeKind,
    ClusterConfig,
    ConfigChange,
    Entry,
    EntryKind,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)

CLUSTER = "arena-test"
MAX_UINT64 = (1 << 64) - 1

uints = st.one_of(st.integers(0, 1000), st.integers(0, MAX_UINT64))
node_ids = st.text(min_size=1, max_size=codec.MAX_NODE_ID_CHARS)
payloads = st.binary(max_size=64)
single_changes = st.builds(
    ConfigChange, st.sampled_from([k for k in ChangeKind if k is not ChangeKind.BOOTSTRAP]), node_ids
)
bootstraps = st.builds(
    lambda voters, learners: ConfigChange(
        ChangeKind.BOOTSTRAP, config=ClusterConfig(frozenset(voters), frozenset(learners))
    ),
    st.sets(node_ids, min_size=1, max_size=5),
    st.sets(node_ids, max_size=3),
)
config_changes = st.builds(encode_config_change, st.one_of(single_changes, bootstraps))


@st.composite
def entry_runs(draw: st.DrawFn, prev_index: int, prev_term: int, term: int) -> tuple[Entry, ...]:
    """Consecutive entries after ``prev_index`` with non-decreasing terms in
    ``[max(prev_term, 1), term]``, as a leader sends them."""
    count = draw(st.integers(0, 8))
    if term < max(prev_term, 1):
        return ()
    out = []
    low = max(prev_term, 1)
    for k in range(count):
        low = draw(st.integers(low, term))
        kind = draw(st.sampled_from(list(EntryKind)))
        data = draw(config_changes if kind is EntryKind.CONFIG else payloads)
        out.append(Entry(prev_index + 1 + k, low, data, kind))
    return tuple(out)


@st.composite
def append_entries(draw: st.DrawFn) -> AppendEntries:
    term = draw(st.integers(1, 1 << 40))
    prev_term = draw(st.integers(0, term))
    prev_index = draw(st.integers(0, 1 << 40))
    entries = draw(entry_runs(prev_index, prev_term, term))
    return AppendEntries(term, draw(node_ids), draw(node_ids), prev_index, prev_term, entries,
                         draw(uints), draw(uints))


snapshot_metas = st.builds(
    SnapshotMeta,
    uints,
    uints,
    st.builds(ClusterConfig, st.frozensets(node_ids, max_size=5), st.frozensets(node_ids, max_size=5)),
)

peer_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(RequestVote, uints, node_ids, node_ids, uints, uints, st.booleans(), st.booleans()),
    st.builds(RequestVoteResponse, uints, node_ids, node_ids, st.booleans(), st.booleans()),
    append_entries(),
    st.builds(AppendEntriesResponse, uints, node_ids, node_ids, st.booleans(), uints, uints,
              uints, uints),
    st.builds(InstallSnapshot, uints, node_ids, node_ids, snapshot_metas, uints, payloads,
              st.booleans(), uints),
    st.builds(InstallSnapshotResponse, uints, node_ids, node_ids, uints, uints, st.booleans(),
              uints),
    st.builds(TimeoutNow, uints, node_ids, node_ids),
)

# --- msgpack values, as a client or a state machine would send them ---------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), MAX_UINT64),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)


def values(keys: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    keys = keys if keys is not None else st.one_of(st.text(max_size=10), st.integers(-5, 5))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)
        ),
        max_leaves=12,
    )


str_maps = st.dictionaries(st.text(max_size=10), values(), max_size=5)
client_ids = st.text(min_size=1, max_size=codec.MAX_CLIENT_ID_CHARS)
req_ids = st.integers(1, MAX_UINT64)

requests = st.builds(Request, req_ids, client_ids, st.sampled_from(codec.REQUEST_KINDS), str_maps)

error_infos = st.builds(
    ErrorInfo,
    st.one_of(st.sampled_from(sorted(codec.ERROR_CODES)), st.text(min_size=1, max_size=64)),
    st.text(max_size=200),
    st.none() | node_ids,
    st.none() | st.text(min_size=1, max_size=60),
)

responses = st.one_of(
    st.builds(Response, uints, st.just(True), values(), st.none(), uints),
    st.builds(Response, uints, st.just(False), values(), error_infos, uints),
)

updates = st.builds(
    Update,
    uints,
    uints,
    st.text(max_size=codec.MAX_MACHINE_CHARS),
    st.text(max_size=codec.MAX_CLIENT_ID_CHARS),
    uints,
    values(),
    st.lists(st.dictionaries(st.text(max_size=10), values(), max_size=4), max_size=4),
    st.none() | str_maps,
    uints,
)

cluster_infos = st.builds(
    ClusterInfo,
    node_ids,
    uints,
    st.sampled_from(["follower", "pre-candidate", "candidate", "leader"]),
    st.none() | node_ids,
    uints,
    uints,
    st.dictionaries(node_ids, st.dictionaries(st.text(max_size=10), values(), max_size=5),
                    max_size=5),
)

# (strategy, encode, decode) for every kind of frame
FRAME_KINDS: dict[str, tuple[st.SearchStrategy[Any], Any, Any]] = {
    "peer": (peer_messages, codec.encode_peer, codec.decode_peer),
    "request": (requests, codec.encode_request, codec.decode_request),
    "response": (responses, codec.encode_response, codec.decode_response),
    "update": (updates, codec.encode_update, codec.decode_update),
    "cluster_info": (cluster_infos, codec.encode_cluster_info, codec.decode_cluster_info),
}

DECODERS = [decode for _, _, decode in FRAME_KINDS.values()]

valid_frames = st.one_of(
    *(strategy.map(lambda obj, enc=encode: enc(CLUSTER, obj))
      for strategy, encode, _ in FRAME_KINDS.values())
)

# --- typing checks -------------------------------------------------------------------------

_TYPES = {"uint": int, "id": str, "bool": bool, "bin": bytes}


def assert_well_typed(msg: Message) -> None:
    """Every field has exactly the type its wire kind promises (no bool for an int,
    no list for a tuple), and ints and ids are in range."""
    spec = {cls: fields for _, cls, fields in codec.PEER_FRAMES}[type(msg)]
    for name, kind in spec:
        value = getattr(msg, name)
        if kind in _TYPES:
            assert type(value) is _TYPES[kind], (name, value)
            if kind == "uint":
                assert 0 <= value <= MAX_UINT64
            if kind == "id":
                assert 1 <= len(value) <= codec.MAX_NODE_ID_CHARS
        elif kind == "entries":
            assert type(value) is tuple
            for e in value:
                assert type(e) is Entry
                assert type(e.index) is int and type(e.term) is int and e.index >= 1 and e.term >= 1
                assert type(e.kind) is EntryKind and type(e.data) is bytes
        elif kind == "meta":
            assert type(value) is SnapshotMeta
            assert type(value.index) is int and type(value.term) is int
            assert type(value.config.voters) is frozenset
            assert type(value.config.learners) is frozenset
            assert all(type(n) is str for n in value.config.members())
        else:  # pragma: no cover - a new kind needs a check here
            raise AssertionError(f"no type check for field kind {kind}")
