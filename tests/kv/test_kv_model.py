"""KeyValue against a simple dict model over random op sequences (hypothesis): the same
results (ok, error code, values, versions) and the same state after every command."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.kv import KeyValue
from nodes.statemachine import ApplyContext

from .strategies import KEYS, kv_commands

SUMMARY_FIELDS = ("ok", "error", "version", "value", "deleted", "failed_op", "failed_condition")


def summary(result: dict) -> dict:
    """The fields of a result the model predicts (not the messages)."""
    picked = {k: result[k] for k in SUMMARY_FIELDS if k in result}
    if "results" in result:
        picked["results"] = [summary(r) for r in result["results"]]
    return picked


def same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


class Model:
    """The store as a dict of key -> (value, version), plus the revision: a key changed
    gets version + 1; a key created gets the revision after the change."""

    def __init__(self, data: dict | None = None, revision: int = 0) -> None:
        self.data: dict[str, tuple[object, int]] = dict(data or {})
        self.revision = revision

    def _set(self, key: str, value: object) -> int:
        self.revision += 1
        old = self.data.get(key)
        self.data[key] = (value, old[1] + 1 if old else self.revision)
        return self.data[key][1]

    def run(self, cmd: dict) -> dict:
        if cmd["op"] == "batch":
            return self._batch(cmd)
        key = cmd["key"]
        item = self.data.get(key)
        current = {"value": item[0] if item else None, "version": item[1] if item else 0}
        if cmd["op"] == "put":
            return {"ok": True, "version": self._set(key, cmd["value"])}
        if cmd["op"] == "delete":
            if item is None:
                return {"ok": True, "deleted": False}
            self.revision += 1
            del self.data[key]
            return {"ok": True, "deleted": True}
        if cmd["op"] == "cas":
            if "expected" in cmd:
                expected = cmd["expected"]
                ok = item is None if expected is None else bool(item) and same(item[0], expected)
            else:
                ok = current["version"] == cmd["expected_version"]
            if not ok:
                return {"ok": False, "error": "cas_failed", **current}
            return {"ok": True, "version": self._set(key, cmd["value"])}
        old = item[0] if item else 0
        if type(old) is not int:
            return {"ok": False, "error": "not_integer"}
        new = old + cmd["by"] * (1 if cmd["op"] == "incr" else -1)
        return {"ok": True, "value": new, "version": self._set(key, new)}

    def _batch(self, cmd: dict) -> dict:
        for i, cond in enumerate(cmd["conditions"]):
            item = self.data.get(cond["key"])
            holds = True
            if "equals" in cond:
                holds = item is not None and same(item[0], cond["equals"])
            if "version" in cond:
                holds = holds and (item[1] if item else 0) == cond["version"]
            if "absent" in cond:
                holds = holds and (item is None) == cond["absent"]
            if not holds:
                return {
                    "ok": False,
                    "error": "condition_failed",
                    "failed_condition": i,
                    "value": item[0] if item else None,
                    "version": item[1] if item else 0,
                }
        trial = Model(self.data, self.revision)
        results = []
        for i, op in enumerate(cmd["ops"]):
            result = trial.run(op)
            if not result["ok"]:
                return {"ok": False, "error": result["error"], "failed_op": i}
            results.append(result)
        self.data, self.revision = trial.data, trial.revision
        return {"ok": True, "results": results}


@settings(max_examples=300, deadline=None)
@given(commands=st.lists(kv_commands, max_size=40))
def test_keyvalue_behaves_like_a_dict_model_over_random_op_sequences(commands) -> None:
    kv, model = KeyValue(), Model()
    for index, command in enumerate(commands, start=1):
        result, events = kv.apply(command, ApplyContext(index, 1, index, "c"))
        expected = model.run(command)
        assert summary(result) == expected, command
        assert all(e["version"] > 0 for e in events)
        for key in KEYS:
            got = kv.query({"op": "get", "key": key})
            item = model.data.get(key)
            assert (got["found"], got["version"]) == (item is not None, item[1] if item else 0)
            assert item is None or same(got["value"], item[0])
    assert kv.query({"op": "keys"})["keys"] == sorted(model.data)
    assert kv.revision == model.revision


@settings(max_examples=200, deadline=None)
@given(commands=st.lists(kv_commands, max_size=30))
def test_versions_of_a_key_only_go_up_in_its_change_events(commands) -> None:
    kv = KeyValue()
    last: dict[str, int] = {}
    for index, command in enumerate(commands, start=1):
        for event in kv.apply(command, ApplyContext(index, 1, index, "c"))[1]:
            assert event["version"] > last.get(event["key"], 0), event
            last[event["key"]] = event["version"]
