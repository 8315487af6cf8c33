"""RobustDataset and its bad-file bookkeeping on a synthetic dataset (no video): substitution, reports, limits,
reproducible randomness, time-outs. Fast unit tests that pin what the loader-level tests rely on."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
import torch

from vidprior.data.errors import TIMEOUT, DecodeError
from vidprior.data.robust import (
    BadFileBudget,
    BadFileTracker,
    DataQualityError,
    RobustDataset,
    append_report,
    stable_seed,
)
from vidprior.errors import VidpriorError


class _Synthetic(RobustDataset):
    """Sample i is ``{"value": i, "noise": torch.rand(1)}``; indices in ``bad`` raise a DecodeError."""

    def __init__(self, n: int, bad: set[int] = frozenset(), **kw) -> None:
        kw.setdefault("max_bad_fraction", 1.0)
        super().__init__(n, **kw)
        self.bad_indices = set(bad)
        self.loads: list[int] = []

    def path_of(self, index: int) -> str:
        return f"v{index}.mp4"

    def _load(self, index, rng):
        self.loads.append(index)
        if index in self.bad_indices:
            raise DecodeError(self.path_of(index), "decode_error", f"frame {index} broken")
        return {"value": index, "noise": torch.rand(1), "py": rng.random()}


def test_stable_seed_is_the_same_in_another_process_and_63_bits():
    here = stable_seed("sample", 3, 1, 7, 0)
    code = "from vidprior.data.robust import stable_seed; print(stable_seed('sample', 3, 1, 7, 0))"
    there = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert here == there and 0 <= here < 2**63
    assert len({stable_seed("sample", 3, 1, i, 0) for i in range(100)}) == 100
    assert stable_seed(1, 23) != stable_seed(12, 3)  # parts are separated


def test_good_samples_are_returned_with_their_index_and_no_skips():
    ds = _Synthetic(10)
    s = ds[4]
    assert (s["value"], s["index"], s["substituted_by"], s["skipped"]) == (4, 4, 4, "[]")
    assert ds.loads == [4]
    with pytest.raises(IndexError):
        ds[10]
    with pytest.raises(IndexError):
        ds[-1]


def test_a_bad_file_is_substituted_and_listed_in_the_sample(tmp_path):
    report = tmp_path / "skipped.jsonl"
    ds = _Synthetic(10, bad={3}, report_path=report)
    s = ds[3]
    assert s["index"] == 3 and s["substituted_by"] == s["value"] != 3
    assert s["substituted_by"] == ds.substitute(3, 1)
    assert json.loads(s["skipped"]) == [["v3.mp4", "decode_error", "frame 3 broken"]]
    assert ds.skipped == {"v3.mp4": ("decode_error", "frame 3 broken")}
    rows = [json.loads(x) for x in report.read_text().splitlines()]
    assert rows == [{"path": "v3.mp4", "reason": "decode_error", "detail": "frame 3 broken"}]
    ds[3]  # met again: not reported twice
    assert len(report.read_text().splitlines()) == 1


def test_substitution_is_a_pure_function_of_seed_epoch_index_attempt():
    a, b = _Synthetic(1000, seed=5), _Synthetic(1000, seed=5)
    assert [a.substitute(i, 1) for i in range(50)] == [b.substitute(i, 1) for i in range(50)]
    assert [a.substitute(i, 1) for i in range(50)] != [a.substitute(i, 2) for i in range(50)]
    c = _Synthetic(1000, seed=6)
    assert [a.substitute(i, 1) for i in range(50)] != [c.substitute(i, 1) for i in range(50)]
    b.set_epoch(1)
    assert b.epoch == 1
    assert [a.substitute(i, 1) for i in range(50)] != [b.substitute(i, 1) for i in range(50)]
    assert all(0 <= a.substitute(i, 1) < 1000 for i in range(200))


def test_substitute_follows_its_documented_formula():
    """``random.Random(stable_seed("substitute", seed, epoch, index, attempt)).randrange(len)``, where stable_seed is
    the first 8 bytes (little-endian) of BLAKE2b over the parts joined by ":", shifted right once. Pinned so that a
    resumed run, on any version, substitutes the same files."""
    import hashlib
    import random

    def by_hand(seed, epoch, index, attempt, n):
        text = f"substitute:{seed}:{epoch}:{index}:{attempt}".encode()
        value = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1
        return random.Random(value).randrange(n)

    ds = _Synthetic(1000, seed=3)
    ds.set_epoch(2)
    assert [ds.substitute(i, a) for i in range(20) for a in (1, 2)] == [
        by_hand(3, 2, i, a, 1000) for i in range(20) for a in (1, 2)
    ]
    assert len({ds.substitute(i, 1) for i in range(20)}) > 15  # depends on the index


def test_the_default_path_is_the_index():
    class Plain(RobustDataset):
        def _load(self, index, rng):
            raise DecodeError(self.path_of(index), "decode_error", "")

    ds = Plain(3, max_attempts=2, max_bad_fraction=1.0)
    assert ds.path_of(2) == "2"
    with pytest.raises(DataQualityError, match="no loadable sample after 2 attempts"):
        ds[2]
    assert "2" in ds.skipped


class _ReadsItsInflightNote(_Synthetic):
    def _load(self, index, rng):
        import os

        with open(os.path.join(self.inflight_dir, str(os.getpid()))) as f:
            note = f.read()
        return {"note": note}


def test_a_worker_notes_the_file_it_is_reading(tmp_path):
    import os

    ds = _ReadsItsInflightNote(4)
    ds.inflight_dir = str(tmp_path)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1)
    assert [s["note"] for s in loader] == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]
    (note,) = [p for p in tmp_path.iterdir() if p.name != str(os.getpid())]
    assert note.read_text() == ""  # cleared once the file is read
    main = _Synthetic(2)  # read in the main process: no note (it names files only for a dead worker)
    main.inflight_dir = str(tmp_path / "main")
    (tmp_path / "main").mkdir()
    main[0]
    assert not list((tmp_path / "main").iterdir())


def test_sample_randomness_depends_on_seed_epoch_and_index_only():
    ds = _Synthetic(10, seed=1)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = ds[2]
    assert torch.equal(torch.get_rng_state(), before)  # the global torch RNG is left alone
    again = _Synthetic(10, seed=1)[2]
    assert torch.equal(first["noise"], again["noise"]) and first["py"] == again["py"]
    other = _Synthetic(10, seed=1)
    other.set_epoch(1)
    assert not torch.equal(other[2]["noise"], first["noise"])
    assert not torch.equal(ds[3]["noise"], first["noise"])
    assert not torch.equal(_Synthetic(10, seed=2)[2]["noise"], first["noise"])


def test_known_bad_files_are_not_opened():
    ds = _Synthetic(10)
    ds.known_bad["v5.mp4"] = ("crashed", "worker died")
    s = ds[5]
    assert 5 not in ds.loads and s["value"] != 5
    assert json.loads(s["skipped"]) == [["v5.mp4", "crashed", "worker died"]]


def test_no_loadable_sample_after_max_attempts():
    ds = _Synthetic(4, bad={0, 1, 2, 3}, max_attempts=7, max_consecutive=1000)
    with pytest.raises(DataQualityError, match="no loadable sample after 7 attempts for index 2"):
        ds[2]
    assert len(ds.loads) == 7


def test_the_dataset_counts_the_limit_itself_when_read_directly():
    ds = _Synthetic(20, bad={1, 2, 3}, max_bad_fraction=0.1)  # 2 of 20 allowed
    ds.substitute = lambda index, attempt: index + 10  # always a good file, so only the named ones count
    ds[1]
    ds[2]
    assert len(ds.skipped) == 2
    with pytest.raises(DataQualityError, match="3 of 20 files are bad"):
        ds[3]


def test_constructor_checks():
    with pytest.raises(VidpriorError, match="empty"):
        _Synthetic(0)
    _Synthetic(1)
    for bad in (0, -1.0):
        with pytest.raises(VidpriorError, match="decode_timeout"):
            _Synthetic(3, decode_timeout=bad)
    assert _Synthetic(3, decode_timeout=0.5).decode_timeout == 0.5
    assert len(_Synthetic(3)) == 3


class _Hangs(_Synthetic):
    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.release = threading.Event()

    def _load(self, index, rng):
        if index == 0:
            self.release.wait()  # hangs until the test ends
        return super()._load(index, rng)


def test_a_hanging_load_times_out_and_the_next_sample_uses_a_fresh_thread():
    ds = _Hangs(5, decode_timeout=0.5, max_consecutive=10)
    try:
        s = ds[0]
        assert json.loads(s["skipped"])[0][:2] == ["v0.mp4", TIMEOUT]
        assert "0.5 s" in json.loads(s["skipped"])[0][2]
        # a fresh decode thread serves the next sample (behind the hang on the old one it would time out); the limit
        # is wall-clock time, so on a starved machine its own load may miss it too, and then only that way
        s1 = ds[1]
        assert s1["value"] == 1 or json.loads(s1["skipped"])[0][:2] == ["v1.mp4", TIMEOUT]
    finally:
        ds.release.set()


def test_timeout_thread_propagates_errors_and_values():
    ds = _Synthetic(5, bad={2}, decode_timeout=30.0)
    assert ds[1]["value"] == 1
    s = ds[2]
    assert json.loads(s["skipped"])[0][:2] == ["v2.mp4", "decode_error"]
    thread = ds._thread
    assert thread is not None and thread.thread.daemon  # never delays the process's exit
    assert thread.thread.name == "vidprior-decode"  # recognisable in stack dumps
    state = ds.__getstate__()
    assert state["_thread"] is None and state["_thread_pid"] is None
    assert ds._thread is thread  # the live dataset keeps its thread


def test_append_report_truncates_and_skips_without_a_path(tmp_path):
    append_report(None, "a", "b", "c")  # no report: nothing happens
    report = tmp_path / "r.jsonl"
    append_report(report, "p.mp4", "empty", "x" * 800)
    append_report(report, "q.mp4", "missing", "")
    rows = [json.loads(x) for x in report.read_text().splitlines()]
    assert rows[0]["detail"] == "x" * 500 and rows[1] == {"path": "q.mp4", "reason": "missing", "detail": ""}


def test_budget_message_names_counts_reasons_and_examples():
    budget = BadFileBudget(total=10, max_bad_fraction=0.1)
    budget.add("a.mp4", "empty", "0 bytes")
    assert budget.allowed == pytest.approx(1.0)
    with pytest.raises(DataQualityError) as info:
        budget.add("b.mp4", "truncated")
    msg = str(info.value)
    assert budget.bad["b.mp4"] == ("truncated", "")  # no detail given: empty
    assert msg == (
        "2 of 10 files are bad, more than max_bad_fraction=0.1 allows (reasons {'empty': 1, 'truncated': 1}; "
        "e.g. a.mp4: empty 0 bytes; b.mp4: truncated). Run `vidprior data check` on the list to see every bad file, "
        "fix or drop them, or raise max_bad_fraction"
    )
    many = BadFileBudget(total=100, max_bad_fraction=1.0)
    for name in "abcde":
        many.add(f"{name}.mp4", "empty")
    assert many.summary() == "reasons {'empty': 5}; e.g. a.mp4: empty; b.mp4: empty; c.mp4: empty"  # three examples
    assert budget.update({"video": 1}) is None and budget.update([1]) is None  # no "skipped" field: nothing counted


def test_budget_update_reads_one_sample_or_a_collated_batch():
    budget = BadFileBudget(total=100, max_bad_fraction=1.0)
    budget.update({"skipped": json.dumps([["a", "empty", ""]])})  # one sample: a string
    budget.update({"skipped": [json.dumps([]), json.dumps([["b", "missing", ""], ["a", "empty", ""]])]})  # a batch
    assert budget.bad == {"a": ("empty", ""), "b": ("missing", "")}


def test_tracker_exposes_and_updates_its_budget():
    tracker = BadFileTracker(total=10, max_bad_fraction=0.5)
    assert (tracker.total, tracker.max_bad_fraction) == (10, 0.5)
    tracker.total, tracker.max_bad_fraction = 4, 0.25  # 1 allowed
    tracker.record(DecodeError("a", "empty", ""))
    tracker.ok()
    with pytest.raises(DataQualityError, match="2 of 4"):
        tracker.record(DecodeError("b", "empty", ""))
    assert tracker.consecutive == 1


def test_documented_defaults():
    assert BadFileBudget(total=100).max_bad_fraction == 0.01
    tracker = BadFileTracker(total=100)
    assert (tracker.max_bad_fraction, tracker.max_consecutive) == (0.01, 50)
    plain = RobustDataset.__new__(_Synthetic)  # the synthetic class raises the fraction: use the base defaults
    RobustDataset.__init__(plain, 100)
    assert (plain.tracker.max_bad_fraction, plain.tracker.max_consecutive, plain.max_attempts) == (0.01, 50, 100)
    assert (plain.epoch, plain.seed, plain.decode_timeout, plain.inflight_dir) == (0, 0, None, None)
    assert plain.tracker.report_path is None


def test_the_empty_dataset_message():
    with pytest.raises(VidpriorError) as info:
        _Synthetic(0)
    assert str(info.value) == "the dataset is empty"
    with pytest.raises(IndexError, match=r"^7$"):
        _Synthetic(7)[7]


def test_max_consecutive_reaches_the_tracker():
    ds = _Synthetic(10, bad=set(range(10)), max_consecutive=3)
    with pytest.raises(DataQualityError, match=r"^3 samples in a row failed to load"):
        ds[0]
    assert len(ds.loads) == 3


def test_sample_seeds_follow_their_documented_formula():
    """Sample ``index`` at attempt ``a`` runs with torch and Python RNGs seeded by
    ``stable_seed("sample", seed, epoch, index, a)``: pinned, so a resumed run draws the same augmentation."""
    import hashlib
    import random

    def seed_of(*parts):
        text = ":".join(map(str, parts)).encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1

    ds = _Synthetic(50, bad={4}, seed=9)
    ds.set_epoch(3)
    good = ds[7]
    torch.manual_seed(seed_of("sample", 9, 3, 7, 0))
    assert torch.equal(good["noise"], torch.rand(1))
    assert good["py"] == random.Random(seed_of("sample", 9, 3, 7, 0)).random()
    substituted = ds[4]  # attempt 0 failed: attempt 1 loads the substitute with the attempt-1 seed
    torch.manual_seed(seed_of("sample", 9, 3, 4, 1))
    assert torch.equal(substituted["noise"], torch.rand(1))
    assert _Synthetic(50, seed=9)[7]["py"] == _Synthetic(50, seed=9)[7]["py"]
    fresh, zero = _Synthetic(50, seed=9), _Synthetic(50, seed=9)
    zero.set_epoch(0)
    assert fresh.substitute(5, 1) == zero.substitute(5, 1) and fresh[5]["py"] == zero[5]["py"]  # epoch starts at 0


def test_the_detail_in_a_sample_is_cut_at_300_characters():
    class Long(_Synthetic):
        def _load(self, index, rng):
            if index == 0:
                raise DecodeError("v0.mp4", "decode_error", "d" * 400)
            return super()._load(index, rng)

    ds = Long(5)
    ds.substitute = lambda index, attempt: index + 1
    (entry,) = json.loads(ds[0]["skipped"])
    assert entry[2] == "d" * 300


def test_one_decode_thread_per_process_is_reused():
    ds = _Synthetic(5, decode_timeout=30.0)
    ds[0]
    thread = ds._thread
    ds[1]
    ds[2]
    assert ds._thread is thread and ds._thread_pid == __import__("os").getpid()


def test_workers_without_an_inflight_folder_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loader = torch.utils.data.DataLoader(_Synthetic(3), batch_size=None, num_workers=1)
    assert [s["value"] for s in loader] == [0, 1, 2]
    assert not list(tmp_path.iterdir())
