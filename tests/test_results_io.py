"""results.jsonl and atomic files: rows replace by key, corrupt lines are named,
and a process killed mid-write never leaves a half-written file."""
import json
import multiprocessing as mp
import os
import signal
import time

import pytest
import torch

import labkit as lk
from labkit.io import atomic_save, atomic_write_text, load_verified


def _cfg():
    return lk.config.make("smoke", {"smoke": {}}, lab="t", dataset="mnist")


def test_record_replaces_same_key(tmp_env, tiny_data):
    cfg = _cfg()
    for acc in (0.5, 0.7):
        lk.results.record(cfg, tiny_data, method="m", model="mlp", target_sparsity=0.5, accuracy=acc, metrics={})
    lk.results.record(cfg, tiny_data, method="m", model="mlp", target_sparsity=0.9, accuracy=0.4, metrics={})
    rows = lk.results.load(lk.results.path_for("smoke"))
    assert [(r["target_sparsity"], r["accuracy"]) for r in rows] == [(0.5, 0.7), (0.9, 0.4)]
    r = rows[0]
    assert r["dataset"] == "synthetic-mnist" and r["synthetic"] and r["profile"] == "smoke"
    assert "cpu" in r["device"] and "NOT real" in r["test_set"]


def test_rows_name_their_setting_and_are_keyed_by_it(tmp_env, tiny_data):
    cfg = _cfg()
    rec = lk.results.record
    rec(cfg, tiny_data, method="m", model="vgg", channel_ratio=0.4, target_sparsity=0.5,
        accuracy=0.6, metrics={})
    rec(cfg, tiny_data, method="m", model="vgg", channel_ratio=0.4, accuracy=0.7, metrics={})
    rec(cfg, tiny_data, method="m", model="vgg", channel_ratio=0.4, accuracy=0.8, metrics={})
    rows = lk.results.load(lk.results.path_for("smoke"))
    assert [(r["target_sparsity"], r["accuracy"]) for r in rows] == [(0.5, 0.6), (None, 0.8)]
    assert all(set(lk.results.SETTINGS) <= set(r) and "point" not in r for r in rows)
    for bad in (dict(), dict(point=0.5), dict(lam="0.4+0.5"), dict(compression=float("inf"))):
        with pytest.raises(ValueError, match=r"target_sparsity|lam=|compression=inf"):
            rec(cfg, tiny_data, method="m", model="vgg", accuracy=0.5, metrics={}, **bad)
    agg = lk.results.aggregate(rows + [{**rows[1], "seed": 1, "accuracy": 0.6}])
    assert [(a["channel_ratio"], a["target_sparsity"], a["n"]) for a in agg] == [(0.4, 0.5, 1), (0.4, None, 2)]
    assert agg[1]["accuracy_mean"] == pytest.approx(0.7) and agg[1]["lab"] == "t"


def test_corrupt_line_is_named(tmp_path):
    p = tmp_path / "results.jsonl"
    p.write_text('{"a": 1}\n{"a": 2\n')
    with pytest.raises(ValueError, match=r"line 2"):
        lk.results.load(p)


def test_record_rejects_bad_accuracy(tmp_env, tiny_data):
    with pytest.raises(ValueError, match="accuracy=93.2"):
        lk.results.record(_cfg(), tiny_data, method="m", model="mlp", target_sparsity=0, accuracy=93.2, metrics={})


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "f.txt"
    atomic_write_text("old", p)

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic_write_text("new" * 1000, p)
    assert p.read_text() == "old" and list(tmp_path.iterdir()) == [p]


def _writer(path, kind):
    big = "x" * 2_000_000
    i = 0
    while True:
        i += 1
        if kind == "text":
            atomic_write_text(f"{i}\n" + big, path)
        else:
            atomic_save({"i": i, "w": torch.randn(300_000)}, path)


@pytest.mark.parametrize("kind", ["text", "checkpoint"])
def test_kill_mid_write_keeps_a_whole_file(tmp_path, kind):
    """Kill a writer at random moments, repeatedly: the file is always whole."""
    path = tmp_path / ("out.txt" if kind == "text" else "out.pt")
    if kind == "text":
        atomic_write_text("0\n" + "x" * 2_000_000, path)
    else:
        atomic_save({"i": 0, "w": torch.randn(300_000)}, path)
    ctx = mp.get_context("fork")
    seen = set()
    for trial in range(6):
        proc = ctx.Process(target=_writer, args=(path, kind))
        proc.start()
        time.sleep(0.05 + 0.04 * trial)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        if kind == "text":
            head, body = path.read_text().split("\n", 1)
            assert len(body) == 2_000_000
            seen.add(int(head))
        else:
            obj = load_verified(path)
            assert obj is not None and obj["w"].shape == (300_000,)
            seen.add(obj["i"])
    assert max(seen) > 0  # the writers really replaced the file between kills
    for leftover in tmp_path.glob(".*.tmp"):  # a killed writer may leave its temp file...
        leftover.unlink()                    # ...but never in place of the real one


def test_truncated_checkpoint_detected(tmp_path):
    p = tmp_path / "c.pt"
    atomic_save({"w": torch.ones(1000)}, p)
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.warns(UserWarning, match="corrupt or truncated"):
        assert load_verified(p) is None


def test_results_file_survives_json_roundtrip(tmp_env, tiny_data):
    row = lk.results.record(_cfg(), tiny_data, method="m", model="mlp", target_sparsity=0.1, accuracy=0.5,
                            metrics={"latency_cpu_ms": float("nan"), "x": torch.tensor(3.0)})
    assert row["latency_cpu_ms"] is None and row["x"] == 3.0
    line = lk.results.path_for("smoke").read_text().strip()
    assert json.loads(line)["x"] == 3.0


def test_markdown_table():
    t = lk.results.table([dict(a=1, b=0.123456)], ["a", "b"], {"b": ".2f"})
    assert t.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.12 |"]


def test_adopting_a_run_without_rows_drops_only_that_lab(tmp_env, tiny_data):
    cfg = _cfg()
    lk.results.record(cfg, tiny_data, method="m", model="mlp", target_sparsity=0.1, accuracy=0.5, metrics={})
    other = lk.config.make("smoke", {"smoke": {}}, lab="u", dataset="mnist")
    lk.results.record(other, tiny_data, method="m", model="mlp", target_sparsity=0.1, accuracy=0.5, metrics={})
    path = lk.results.path_for("smoke")
    staged = tmp_env / "staged.jsonl"
    base = lk.results.stage(path, "t", staged)
    assert lk.results.adopt(path, "t", staged, base) == 1
    assert [r["lab"] for r in lk.results.load(path)] == ["u"]
