"""The generic part pipeline: accounting, rejects, resumption, invariance."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from irgpt.config import ActorPoolConfig
from irgpt.data.io import read_part, read_rejects, shard_paths, write_table
from irgpt.errors import CommandError
from irgpt.models.chunks import fixed_chunks
from irgpt.scoring.base import Scorer
from irgpt.scoring.pipeline import plan_parts, read_scores, run_pass


class ByteScorer(Scorer):
    """Scores a row by a hash of its image bytes; rows without bytes are rejected."""

    input_columns = ("sample_id", "image")
    name = "byte-scorer"

    def __init__(self, salt: str = ""):
        self.salt = salt

    def score(self, table, part):
        ids, values, rejects = [], [], []
        for sid, img in zip(table.column("sample_id").to_pylist(), table.column("image").to_pylist()):
            if img is None:
                rejects.append({"sample_id": sid, "reason": "no image bytes"})
                continue
            ids.append(sid)
            values.append(int(hashlib.sha256(self.salt.encode() + img).hexdigest()[:8], 16) / 2**32)
        return pa.table({"sample_id": ids, "value": pa.array(values, pa.float32())}), rejects


def make_input(path, n=50, shards=3):
    ids = [f"s{i:04d}" for i in range(n)]
    images = [None if i % 17 == 5 else f"img{i}".encode() for i in range(n)]
    bounds = np.linspace(0, n, shards + 1).astype(int)
    for k in range(shards):
        sl = slice(bounds[k], bounds[k + 1])
        write_table(path / f"part-{k:05d}.parquet", pa.table({"sample_id": ids[sl], "image": images[sl]}))
    return ids, images


def test_plan_and_read_part_cover_every_row_once(tmp_path):
    ids, _ = make_input(tmp_path, n=50, shards=3)
    parts = plan_parts(tmp_path, part_rows=7)
    seen = [sid for p in parts for sid in read_part(p, ["sample_id"]).column("sample_id").to_pylist()]
    assert seen == ids
    assert all(p["stop"] - p["start"] <= 7 for p in parts)


def test_read_part_across_row_groups(tmp_path):
    table = pa.table({"sample_id": [f"x{i}" for i in range(100)]})
    pq.write_table(table, tmp_path / "part-00000.parquet", row_group_size=13)
    parts = plan_parts(tmp_path, part_rows=30)
    got = [read_part(p).column("sample_id").to_pylist() for p in parts]
    assert sum(got, []) == table.column("sample_id").to_pylist()


def test_run_pass_scores_every_row_or_rejects_it(tmp_path, ray_local):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    ids, images = make_input(data)
    pool = ActorPoolConfig(concurrency=2, part_rows=8, num_cpus=0.5)
    summary = run_pass(name="t", input_dir=data, out_dir=out, scorer_factory=ByteScorer,
                       scorer_kwargs={"salt": "a"}, pool=pool, key={"salt": "a"})
    scores = read_scores(out)
    rejects = read_rejects(out)
    good = [i for i, img in zip(ids, images) if img is not None]
    assert sorted(scores.column("sample_id").to_pylist()) == good
    assert sorted(rejects.column("sample_id").to_pylist()) == sorted(set(ids) - set(good))
    assert set(rejects.column("reason").to_pylist()) == {"no image bytes"}
    assert summary["rejected"] == len(ids) - len(good)


def test_results_do_not_depend_on_actors_or_part_size(tmp_path, ray_local):
    data = tmp_path / "data"
    data.mkdir()
    make_input(data)
    tables = []
    for k, (conc, rows) in enumerate([(1, 50), (2, 5), (2, 16)]):
        out = tmp_path / f"out{k}"
        run_pass(name="t", input_dir=data, out_dir=out, scorer_factory=ByteScorer, scorer_kwargs={},
                 pool=ActorPoolConfig(concurrency=conc, part_rows=rows, num_cpus=0.5), key={})
        tables.append(read_scores(out).sort_by("sample_id"))
    assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])


def test_resume_skips_committed_parts_and_refuses_other_settings(tmp_path, ray_local):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    make_input(data)
    pool = ActorPoolConfig(concurrency=1, part_rows=10, num_cpus=0.5)
    run_pass(name="t", input_dir=data, out_dir=out, scorer_factory=ByteScorer, scorer_kwargs={}, pool=pool, key={})
    first = read_scores(out).sort_by("sample_id")
    victim = shard_paths(out)[1]
    victim.unlink()  # as if the run died before committing this part
    stamp = {p: p.stat().st_mtime_ns for p in shard_paths(out)}
    summary = run_pass(name="t", input_dir=data, out_dir=out, scorer_factory=ByteScorer, scorer_kwargs={},
                       pool=pool, key={})
    # shard 0 holds rows 0-15, so part 1 is rows 10-15: six rows, all with images
    assert summary["rows_scored_now"] == 6
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())  # others untouched
    assert read_scores(out).sort_by("sample_id").equals(first)
    with pytest.raises(CommandError, match="other inputs or settings"):
        run_pass(name="t", input_dir=data, out_dir=out, scorer_factory=ByteScorer,
                 scorer_kwargs={"salt": "b"}, pool=pool, key={"salt": "b"})


def test_fixed_chunks_make_rows_batch_invariant():
    import torch

    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(192, 768), torch.nn.GELU(), torch.nn.Linear(768, 192))
    x = torch.randn(37, 192)
    whole = fixed_chunks(lin, x)
    for size in (1, 2, 5, 16):
        pieces = torch.cat([fixed_chunks(lin, x[i : i + size]) for i in range(0, 37, size)])
        assert torch.equal(pieces, whole)
