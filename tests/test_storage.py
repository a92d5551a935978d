"""irgpt.storage against a real S3 API (the local moto server): resolution, the
marker-last publish, the per-node fetch cache, and the CLI's URI flags."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from irgpt import storage
from irgpt.errors import CommandError


def _dataset(directory, rows: int, shards: int = 2):
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(shards):
        table = pa.table({"sample_id": [f"s{k}-{i}" for i in range(rows)], "x": list(range(rows))})
        pq.write_table(table, directory / f"part-{k:05d}.parquet")
    (directory / "_rejects").mkdir(exist_ok=True)
    pq.write_table(pa.table({"reason": pa.array([], pa.string())}), directory / "_rejects" / "rejects.parquet")
    (directory / "manifest.json").write_text(json.dumps({"num_rows": rows * shards}))
    return directory


def test_locations_resolve_for_paths_and_uris(tmp_path, s3_bucket):
    fs, path = storage.resolve(tmp_path / "a")
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "a")
    assert storage.resolve(f"file://{tmp_path}/b")[1] == f"{tmp_path}/b"
    fs, path = storage.resolve(f"{s3_bucket}/runs/x/")
    assert fs.type_name == "s3" and path == f"{s3_bucket[5:]}/runs/x"
    assert storage.join(s3_bucket, "runs", "x/") == f"{s3_bucket}/runs/x"
    assert storage.join(str(tmp_path), "runs") == str(tmp_path / "runs")
    assert storage.is_uri("s3://b/x") and storage.is_uri("gs://b") and not storage.is_uri("file:///x")
    assert not storage.is_uri("relative/s3:/x") and not storage.is_uri(None)
    storage.write_json(f"{s3_bucket}/a/b.json", {"k": 1})
    assert storage.read_json(f"{s3_bucket}/a/b.json") == {"k": 1}
    assert storage.is_file(f"{s3_bucket}/a/b.json") and storage.exists(f"{s3_bucket}/a")
    assert not storage.exists(f"{s3_bucket}/nothing")
    with pytest.raises(CommandError, match="nothing/x.json: not found"):
        storage.read_bytes(f"{s3_bucket}/nothing/x.json")


def test_publish_writes_the_marker_last_and_removes_stale_objects(tmp_path, s3_bucket, monkeypatch):
    uri = f"{s3_bucket}/ds"
    v1 = _dataset(tmp_path / "v1", rows=3, shards=3)
    assert storage.publish(v1, uri, marker="manifest.json") == 5
    assert sorted(storage.list_files(uri)) == ["_rejects/rejects.parquet", "manifest.json", "part-00000.parquet",
                                               "part-00001.parquet", "part-00002.parquet"]

    # Order of the writes: the old marker goes first, the new one comes last, stale shards before it.
    calls = []
    real_put, real_remove = storage._put, storage._remove
    monkeypatch.setattr(storage, "_put", lambda src, fs, p: (calls.append(("put", p.rsplit("/", 1)[-1])),
                                                              real_put(src, fs, p))[1])
    monkeypatch.setattr(storage, "_remove", lambda fs, p: (calls.append(("delete", p.rsplit("/", 1)[-1])),
                                                            real_remove(fs, p))[1])
    v2 = _dataset(tmp_path / "v2", rows=5, shards=1)
    storage.publish(v2, uri, marker="manifest.json")
    assert calls[0] == ("delete", "manifest.json") and calls[-1] == ("put", "manifest.json")
    assert calls.index(("delete", "part-00002.parquet")) < len(calls) - 1
    assert sorted(storage.list_files(uri)) == ["_rejects/rejects.parquet", "manifest.json", "part-00000.parquet"]
    assert storage.read_json(f"{uri}/manifest.json") == {"num_rows": 5}

    # A publish that dies part way leaves no marker: the directory no longer counts as written.
    monkeypatch.setattr(storage, "_put", lambda *a: (_ for _ in ()).throw(OSError("connection reset")))
    with pytest.raises(OSError, match="connection reset"):
        storage.publish(_dataset(tmp_path / "v3", rows=2), uri, marker="manifest.json")
    assert not storage.is_file(f"{uri}/manifest.json")
    monkeypatch.setattr(storage, "_put", real_put)
    storage.publish(tmp_path / "v3", uri, marker="manifest.json")  # the rerun overwrites what it finds
    assert storage.read_json(f"{uri}/manifest.json") == {"num_rows": 4}
    assert pq.read_table(f"{uri[5:]}/part-00001.parquet", filesystem=storage.resolve(uri)[0]).num_rows == 2


def test_fetch_downloads_once_per_version_into_the_node_cache(tmp_path, s3_bucket, monkeypatch):
    uri = f"{s3_bucket}/models/fe"
    src = tmp_path / "fe"
    src.mkdir()
    (src / "config.json").write_text('{"a": 1}')
    (src / "sub").mkdir()
    (src / "sub" / "w.bin").write_bytes(b"\x00" * 1000)
    storage.publish(src, uri)
    monkeypatch.setenv("IRGPT_CACHE_DIR", str(tmp_path / "cache"))
    first = storage.fetch(uri)
    assert first.name == "fe" and str(first).startswith(str(tmp_path / "cache"))
    assert (first / "config.json").read_text() == '{"a": 1}' and (first / "sub" / "w.bin").stat().st_size == 1000

    copies = []
    real_copy = pafs.copy_files
    monkeypatch.setattr(pafs, "copy_files", lambda *a, **kw: (copies.append(a), real_copy(*a, **kw))[1])
    assert storage.fetch(uri) == first and copies == []  # cached: nothing downloaded

    storage.write_bytes(f"{uri}/config.json", b'{"a": 2}')  # same size, new ETag
    second = storage.fetch(uri)
    assert second != first and (second / "config.json").read_text() == '{"a": 2}' and len(copies) == 2
    assert not first.exists()  # the older version of the same URI is dropped
    one = storage.fetch(f"{uri}/config.json")  # a single object
    assert one.is_file() and one.read_text() == '{"a": 2}'
    assert storage.fetch(str(src)) == src  # local paths are used in place
    with pytest.raises(CommandError, match="models/none: not found"):
        storage.fetch(f"{s3_bucket}/models/none")


def test_pull_mirrors_the_remote_directory(tmp_path, s3_bucket):
    uri = f"{s3_bucket}/mirror"
    storage.publish(_dataset(tmp_path / "src", rows=2), uri, marker="manifest.json")
    local = tmp_path / "local"
    local.mkdir()
    (local / "leftover.parquet").write_bytes(b"old")
    assert storage.pull(uri, local) == 4
    assert sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()) == sorted(
        storage.list_files(uri))
    assert storage.pull(uri, local) == 0  # nothing changed: nothing fetched


def test_cli_reads_and_writes_datasets_in_object_storage(tmp_path, s3_bucket, capsys):
    """`--out s3://...` publishes the dataset (manifest last); pandas, DuckDB (through pyarrow)
    and Ray read it from the bucket; a second write without --overwrite is refused."""
    import duckdb
    import pandas as pd

    from irgpt.cli import main
    from irgpt.data.io import PANDAS_IGNORE

    out = f"{s3_bucket}/data/synth"
    assert main(["data", "synth", "--out", out, "--num-samples", "6", "--seed", "3"]) == 0
    files = storage.list_files(out)
    assert "manifest.json" in files and "_rejects/rejects.parquet" in files
    manifest = storage.read_json(f"{out}/manifest.json")
    fs, path = storage.resolve(out)
    frame = pd.read_parquet(path, filesystem=fs, ignore_prefixes=PANDAS_IGNORE)
    assert len(frame) == manifest["num_rows"] > 0
    dataset = pds.dataset(path, filesystem=fs, format="parquet", ignore_prefixes=PANDAS_IGNORE)
    arrow_table = dataset.to_table(columns=["sample_id", "band"])  # noqa: F841 - read by DuckDB below
    assert duckdb.sql("select count(distinct sample_id) from arrow_table").fetchall() == [(manifest["num_rows"],)]

    assert main(["data", "synth", "--out", out, "--num-samples", "6", "--seed", "3"]) == 2
    assert "already holds a dataset; pass --overwrite" in capsys.readouterr().err
    assert main(["data", "synth", "--out", out, "--num-samples", "4", "--seed", "3", "--overwrite"]) == 0
    assert storage.read_json(f"{out}/manifest.json")["num_scenes"] == 4


def test_a_node_without_the_drivers_work_mirror_reads_and_writes_through_the_store(tmp_path, s3_bucket, monkeypatch):
    """What a Ray worker on another node sees: the driver's mirror paths do not exist there."""
    monkeypatch.setenv("IRGPT_CACHE_DIR", str(tmp_path / "cache"))
    run = f"{s3_bucket}/runs/r1"
    mirror = storage.work_dir(run)
    assert mirror == tmp_path / "cache" / "work" / "s3" / s3_bucket[5:] / "runs" / "r1"
    assert storage.remote_of(mirror / "tiers" / "part-00000.parquet") == f"{run}/tiers/part-00000.parquet"
    assert storage.remote_of(tmp_path / "elsewhere") is None
    assert storage.readable(mirror / "tiers") == f"{run}/tiers" and storage.readable(tmp_path) == str(tmp_path)

    storage.publish(_dataset(tmp_path / "tiers", rows=3), f"{run}/tiers", marker="manifest.json")
    assert not mirror.exists()  # this "node" has no mirror: reads come from the store, into the cache
    got = storage.fetch(mirror / "tiers")
    assert got != mirror / "tiers" and (got / "manifest.json").is_file()
    from irgpt.data.io import shard_paths

    assert [p.name for p in shard_paths(mirror / "tiers")] == ["part-00000.parquet", "part-00001.parquet"]
    assert storage.fetch(mirror / "absent") == mirror / "absent"  # nothing in the store either: as given

    # Writes: a temp directory uploaded to the store (several writers add to one directory).
    local, store = storage.node_output(mirror / "train" / "stage1")
    assert store == f"{run}/train/stage1" and local.is_dir() and not str(local).startswith(str(mirror))
    (local / "metrics.rank1.jsonl").write_text("{}\n")
    storage.publish(local, store, prune=False)
    other, _ = storage.node_output(mirror / "train" / "stage1")
    (other / "model").mkdir()
    (other / "model" / "config.json").write_text("{}")
    storage.publish(other, store, prune=False)
    assert sorted(storage.list_files(store)) == ["metrics.rank1.jsonl", "model/config.json"]
    mirror.mkdir(parents=True)
    (mirror / "train").mkdir()
    assert storage.node_output(mirror / "train" / "stage1") == (mirror / "train" / "stage1", None)  # driver's node


def test_pull_replaces_a_local_copy_of_the_same_size_but_another_version(tmp_path, s3_bucket):
    """A manifest rewritten with the same length (another machine's run) is still pulled."""
    uri = f"{s3_bucket}/same-size"
    src = tmp_path / "src"
    src.mkdir()
    (src / "manifest.json").write_text('{"created": 1111}')
    storage.publish(src, uri)
    assert storage.pull(uri, src) == 0  # publish stamped the local copy: nothing to fetch
    mirror = tmp_path / "mirror"
    assert storage.pull(uri, mirror) == 1 and storage.pull(uri, mirror) == 0
    import time

    time.sleep(1.1)  # object times have one-second resolution
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text('{"created": 2222}')
    storage.publish(other, uri)
    assert storage.pull(uri, mirror) == 1
    assert (mirror / "manifest.json").read_text() == '{"created": 2222}'


def test_a_fetched_copy_names_its_object_so_another_node_can_fetch_it(tmp_path, s3_bucket, monkeypatch):
    """An input URI fetched by the driver is handed to workers as a cache path; a node
    without that copy maps it back to the object (file or directory) and fetches its own."""
    monkeypatch.setenv("IRGPT_CACHE_DIR", str(tmp_path / "driver"))
    storage.publish(_dataset(tmp_path / "src", rows=2), f"{s3_bucket}/in/ds", marker="manifest.json")
    copy = storage.fetch(f"{s3_bucket}/in/ds")
    assert storage.remote_of(copy) == f"{s3_bucket}/in/ds"
    assert storage.remote_of(copy / "part-00001.parquet") == f"{s3_bucket}/in/ds/part-00001.parquet"
    monkeypatch.setenv("IRGPT_CACHE_DIR", str(tmp_path / "worker"))  # another node: another disk
    (tmp_path / "worker").mkdir()
    moved = tmp_path / "worker" / copy.relative_to(tmp_path / "driver")  # the same path on that node
    assert not moved.exists()
    got = storage.fetch(moved / "part-00001.parquet")
    assert got.is_file() and got.read_bytes() == (copy / "part-00001.parquet").read_bytes()
    assert storage.fetch(moved).is_dir()


def test_arguments_that_take_no_uri_refuse_one_by_name(capsys):
    from irgpt.cli import main

    assert main(["report", "s3://bucket/runs/demo"]) == 2
    err = capsys.readouterr().err
    assert "irgpt report: error: run-dir s3://bucket/runs/demo: object storage is not supported for this argument" in err
    assert main(["data", "synth", "--set", "data.dir=s3://bucket/d", "--num-samples", "2"]) == 2
    assert "data.dir=s3://bucket/d: to write the dataset to object storage, pass it as --out s3://bucket/d" in (
        capsys.readouterr().err)
