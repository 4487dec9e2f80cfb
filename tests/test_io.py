"""ped._io: every writer publishes its file whole or not at all."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from ped._io import (
    TMP_PREFIX,
    file_mode,
    write_bytes_atomic,
    write_csv_atomic,
    write_json_atomic,
    write_npz_atomic,
    write_text_atomic,
)

FRAME = pd.DataFrame({"model": ["a", "b"], "score": [0.5, -1.25]})
WRITERS = {
    "text": (lambda p: write_text_atomic(p, "x\r\ny"), lambda p: p.read_bytes() == b"x\r\ny"),
    "bytes": (lambda p: write_bytes_atomic(p, b"\x00\xff"), lambda p: p.read_bytes() == b"\x00\xff"),
    "json": (lambda p: write_json_atomic(p, {"b": 1, "a": [1.5]}),
             lambda p: p.read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}'),
    "json-unsorted": (lambda p: write_json_atomic(p, {"b": 1, "a": 2}, sort_keys=False, end="\n"),
                      lambda p: p.read_text() == '{\n  "b": 1,\n  "a": 2\n}\n'),
    "npz": (lambda p: write_npz_atomic(p, x=np.arange(3)),
            lambda p: np.array_equal(np.load(p)["x"], np.arange(3))),
    "csv": (lambda p: write_csv_atomic(FRAME, p), lambda p: pd.read_csv(p).equals(FRAME)),
}  # fmt: skip


@pytest.mark.parametrize("kind", WRITERS)
def test_writer_round_trips_with_a_new_file_mode(kind, tmp_path):
    write, check = WRITERS[kind]
    path = tmp_path / "sub" / "out.dat"  # missing folders are created; no suffix is appended
    write(path)
    assert check(path) and path.stat().st_mode & 0o777 == file_mode()
    assert [p.name for p in path.parent.iterdir()] == ["out.dat"]


@pytest.mark.parametrize("kind", WRITERS)
def test_writer_failure_keeps_the_old_file_and_no_temporary(kind, tmp_path, monkeypatch):
    write, _ = WRITERS[kind]
    path = tmp_path / "out.dat"
    path.write_text("old")

    def crash(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="No space left") as info:
        write(path)
    assert info.value.filename == str(path)  # the error names the file asked for
    assert path.read_text() == "old"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_json_refuses_what_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []
    write_json_atomic(tmp_path / "x.json", {"a": float("nan")})
    assert json.loads((tmp_path / "x.json").read_text())["a"] != 0  # NaN round-trips
