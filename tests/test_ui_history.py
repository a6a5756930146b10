"""The merge history file and the tab's state (one merge at a time, Stop, presets file)."""
from __future__ import annotations

import json
import os
import threading

import pytest

from lib_merge.errors import MergeError
from lib_merge.ui.form import FormValues
from lib_merge.ui.history import History, entry_id, entry_label
from lib_merge.ui.state import TabState, default_data_dir

META = {"sd_merge_recipe": json.dumps({"type": "blockmerge", "method": "weight_sum", "model_hashes": ["aa", "bb"]}),
        "sd_merge_models": json.dumps({"aa": {"name": "A", "legacy_hash": "1234abcd", "sd_merge_recipe": {"x": 1}}})}


def test_round_trip_newest_first(tmp_path):
    h = History(str(tmp_path / "data"))
    assert h.entries() == []
    f1 = FormValues(model_a="A.safetensors", model_b="B.safetensors", alpha_blocks="GRAD_V", seed=5)
    e1 = h.add("save", f1, META, "/out/m.safetensors", 1.234)
    e2 = h.add("load", f1.replace(alpha=0.1), META)
    got = h.entries()
    assert [e["id"] for e in got] == [e2["id"], e1["id"]]
    assert FormValues.from_dict(got[1]["settings"]) == f1
    assert got[1]["model_hashes"] == ["aa", "bb"] and got[1]["seconds"] == 1.23
    assert got[1]["models"] == {"aa": {"name": "A", "legacy_hash": "1234abcd"}}  # no nested recipes
    assert h.get(e1["id"])["output"] == "/out/m.safetensors"
    with pytest.raises(MergeError, match="not in the history"):
        h.get("nope")


def test_labels_carry_the_id(tmp_path):
    h = History(str(tmp_path))
    e = h.add("save", FormValues(model_a="sub/A.safetensors", model_b="B.safetensors"), META, "/o/x.safetensors")
    label = entry_label(e)
    assert label.startswith(e["id"] + " · save · A.safetensors + B.safetensors · weight_sum → x.safetensors")
    assert entry_id(label) == e["id"]
    with pytest.raises(MergeError, match="no past merge is picked"):
        entry_id(None)


def test_damaged_lines_are_skipped(tmp_path):
    h = History(str(tmp_path))
    e = h.add("save", FormValues(), None)
    with open(h.path, "a", encoding="utf-8") as f:
        f.write("{not json\n[1, 2]\n")
    assert [x["id"] for x in h.entries()] == [e["id"]]
    assert h.entries(limit=0) == []


def test_unwritable_folder_is_a_merge_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MergeError, match="history file .* cannot be written"):
        History(str(blocker / "sub")).add("save", FormValues(), META)


def test_state_runs_one_merge_at_a_time_and_stops_it(tmp_path):
    st = TabState(data_dir=str(tmp_path))
    assert not st.stop() and not st.busy
    with st.running() as token:
        assert st.busy and not token.cancelled
        with pytest.raises(MergeError, match="already running"):
            with st.running():
                pass
        assert st.stop() and token.cancelled
    assert not st.busy
    with st.running() as token2:
        assert not token2.cancelled  # a fresh token per merge


def test_state_other_thread_sees_busy(tmp_path):
    st = TabState(data_dir=str(tmp_path))
    inside, release = threading.Event(), threading.Event()

    def run():
        with st.running():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=run)
    t.start()
    inside.wait(5)
    with pytest.raises(MergeError):
        with st.running():
            pass
    release.set()
    t.join()


def test_state_presets_file(tmp_path):
    st = TabState(data_dir=str(tmp_path))
    assert st.presets_file == os.path.join(str(tmp_path), "mbw_presets.txt")
    assert st.presets().user == {}
    with open(st.presets_file, "w") as f:
        f.write("MINE:1,0\n")
    assert st.presets().user == {"MINE": "1,0"}


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BLOCKMERGE_DATA_DIR", str(tmp_path))
    assert default_data_dir() == str(tmp_path)
    monkeypatch.delenv("BLOCKMERGE_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", "/x")
    assert default_data_dir() == "/x/blockmerge"
