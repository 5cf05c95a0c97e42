"""Byte formats of the shared WAL (``shared.py``): the records of many groups in one log.

Every record is a frame (``records.frame``: length, CRC32, body) whose msgpack body
names its group by ``slot`` (a small number given to the group when it was created
on this node, see ``GroupMeta``) and carries ``rseq``, the group's record sequence
number (1, 2, 3, ... per group). A gap in a group's ``rseq`` is how recovery tells
which groups a damaged or missing stretch of the log held, and so which groups must
recover while the others load normally::

    entry       [6, slot, rseq, index, term, kind, data]
    hard state  [7, slot, rseq, term, vote | nil, commit, promised, recovering, checkpoint]
    snapshot    [8, slot, rseq, index, term, keep]   the group's snapshot at (index, term)
                is durable; keep: the entries after it stay (else the log was replaced)
    restart     [9, slot, rseq, last_index, base, base_term]   recovery cut the group's
                log at last_index (after its snapshot at base) and its chain of
                records starts again here
    copy        [11, slot, rseq, [[index, term, kind, data], ...]]   every live entry of
                the group again, in one record (so all or nothing), written forward
                so that the old segments holding them can go (``SharedWal``)
    group meta  [10, format, group_id, slot, born_seq, voters, learners]
                (the ``groups/<slot>/meta`` file, not a WAL record)

A ``checkpoint`` hard state starts every segment, one per live group, so the
latest hard state of every group is always in the newest segment and an old
segment is needed only for the entries it holds. Each tag has its own body prefix
(fixarray size, then the tag) so recovery can look for the next valid record after
a damaged one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from nodes.raft.messages import ClusterConfig, Entry, EntryKind, HardState

from .records import FORMAT_VERSION, RecordError

TAG_GROUP_ENTRY = 6
TAG_GROUP_HARD_STATE = 7
TAG_GROUP_SNAPSHOT = 8
TAG_GROUP_RESTART = 9
TAG_GROUP_META = 10
TAG_GROUP_COPY = 11

BODY_PREFIXES = (b"\x97\x06", b"\x99\x07", b"\x96\x08", b"\x96\x09", b"\x94\x0b")
"""The first two bytes of every shared-WAL record body, by tag."""

GroupId = str | int


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """One decoded record: ``kind`` is the tag, the other fields depend on it."""

    kind: int
    slot: int
    rseq: int
    entry: Entry | None = None  # TAG_GROUP_ENTRY
    entries: tuple[Entry, ...] = ()  # TAG_GROUP_COPY
    hard_state: HardState | None = None  # TAG_GROUP_HARD_STATE
    checkpoint: bool = False  # TAG_GROUP_HARD_STATE written at a segment's start
    index: int = 0  # TAG_GROUP_SNAPSHOT (snapshot index), TAG_GROUP_RESTART (last index)
    term: int = 0  # TAG_GROUP_SNAPSHOT, TAG_GROUP_RESTART (the snapshot's term)
    base: int = 0  # TAG_GROUP_RESTART (the snapshot's index)
    keep: bool = False  # TAG_GROUP_SNAPSHOT


def _pack(value: list[Any]) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def encode_group_entry(slot: int, rseq: int, e: Entry) -> bytes:
    return _pack([TAG_GROUP_ENTRY, slot, rseq, e.index, e.term, int(e.kind), e.data])


def encode_group_hard_state(slot: int, rseq: int, hs: HardState, checkpoint: bool) -> bytes:
    return _pack([TAG_GROUP_HARD_STATE, slot, rseq, hs.term, hs.vote, hs.commit, hs.promised,
                  hs.recovering, checkpoint])


def encode_group_snapshot(slot: int, rseq: int, index: int, term: int, keep: bool) -> bytes:
    return _pack([TAG_GROUP_SNAPSHOT, slot, rseq, index, term, keep])


def encode_group_restart(slot: int, rseq: int, last_index: int, base: int, base_term: int) -> bytes:
    return _pack([TAG_GROUP_RESTART, slot, rseq, last_index, base, base_term])


_SIZES = {TAG_GROUP_ENTRY: 7, TAG_GROUP_HARD_STATE: 9, TAG_GROUP_SNAPSHOT: 6, TAG_GROUP_RESTART: 6,
          TAG_GROUP_COPY: 4}


def encode_group_copy(slot: int, rseq: int, entries: list[Entry]) -> bytes:
    rows = [[e.index, e.term, int(e.kind), e.data] for e in entries]
    return _pack([TAG_GROUP_COPY, slot, rseq, rows])


def _entry_from(index: Any, term: Any, kind: Any, data: Any) -> Entry:
    if not (_ints(index, term) and index >= 1 and isinstance(data, bytes)):
        raise RecordError("entry fields have the wrong types")
    try:
        return Entry(index, term, data, EntryKind(kind))
    except ValueError as exc:
        raise RecordError(f"unknown entry kind {kind!r}") from exc


def _ints(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


def decode_group_record(body: bytes) -> GroupRecord:
    """Decode a record body; ``RecordError`` if it is not a well-formed shared-WAL record."""
    try:
        value = msgpack.unpackb(body, raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RecordError(f"undecodable body ({exc})") from exc
    if not isinstance(value, list) or not value or _SIZES.get(value[0]) != len(value):
        raise RecordError("not a shared-WAL record (unknown tag or wrong field count)")
    tag, slot, rseq = value[0], value[1], value[2]
    if not _ints(slot, rseq):
        raise RecordError("record slot or sequence number out of range")
    if tag == TAG_GROUP_ENTRY:
        _, _, _, index, term, kind, data = value
        return GroupRecord(tag, slot, rseq, entry=_entry_from(index, term, kind, data))
    if tag == TAG_GROUP_COPY:
        rows = value[3]
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 4
                                                 for r in rows):
            raise RecordError("copy record rows have the wrong shape")
        entries = tuple(_entry_from(*row) for row in rows)
        if any(b.index != a.index + 1 for a, b in zip(entries, entries[1:], strict=False)):
            raise RecordError("copy record entries are not contiguous")
        return GroupRecord(tag, slot, rseq, entries=entries)
    if tag == TAG_GROUP_HARD_STATE:
        _, _, _, term, vote, commit, promised, recovering, checkpoint = value
        if not _ints(term, commit, promised) or not (vote is None or isinstance(vote, str)):
            raise RecordError("hard state fields have the wrong types")
        hs = HardState(term, vote, commit, promised, bool(recovering))
        return GroupRecord(tag, slot, rseq, hard_state=hs, checkpoint=bool(checkpoint))
    if tag == TAG_GROUP_SNAPSHOT:
        _, _, _, index, term, keep = value
        if not _ints(index, term):
            raise RecordError("snapshot record fields have the wrong types")
        return GroupRecord(tag, slot, rseq, index=index, term=term, keep=bool(keep))
    _, _, _, last_index, base, base_term = value
    if not _ints(last_index, base, base_term):
        raise RecordError("restart record fields have the wrong types")
    return GroupRecord(tag, slot, rseq, index=last_index, base=base, term=base_term)


@dataclass(frozen=True, slots=True)
class GroupMeta:
    """Who a ``groups/<slot>`` directory belongs to, fixed when the group is created.
    ``born_seq`` is the WAL segment that was current then: a missing segment at or
    after it may have held the group's records."""

    group_id: GroupId
    slot: int
    born_seq: int
    initial_config: ClusterConfig


def encode_group_meta(meta: GroupMeta) -> bytes:
    config = meta.initial_config
    return _pack([TAG_GROUP_META, FORMAT_VERSION, meta.group_id, meta.slot, meta.born_seq,
                  sorted(config.voters), sorted(config.learners)])


def decode_group_meta(body: bytes) -> GroupMeta:
    try:
        value = msgpack.unpackb(body, raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RecordError(f"undecodable body ({exc})") from exc
    if not isinstance(value, list) or len(value) != 7 or value[0] != TAG_GROUP_META:
        raise RecordError(f"expected a group meta record with tag {TAG_GROUP_META} and 7 fields")
    _, version, group_id, slot, born_seq, voters, learners = value
    if version != FORMAT_VERSION:
        raise RecordError(f"group format {version!r}, this build reads {FORMAT_VERSION}")
    if not isinstance(group_id, (str, int)) or not _ints(slot, born_seq):
        raise RecordError("group id, slot or segment have the wrong types")
    if not (isinstance(voters, list) and isinstance(learners, list)
            and all(isinstance(m, str) for m in voters + learners)):
        raise RecordError("configuration members are not node ids")
    return GroupMeta(group_id, slot, born_seq, ClusterConfig(frozenset(voters), frozenset(learners)))
