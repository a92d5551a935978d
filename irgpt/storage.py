"""Where datasets, models and runs live: a local path, a shared volume, or an
object-storage URI (`s3://bucket/prefix`, `gs://...`, any filesystem that
`pyarrow.fs.FileSystem.from_uri` resolves).

    fs, path = resolve("s3://bucket/runs/demo")     # pyarrow filesystem + path in it
    local_dir = fetch("s3://bucket/models/fe")        # node-local copy, fetched once per version
    publish(local_dir, "s3://bucket/runs/demo/tiers", marker="manifest.json")

Credentials and endpoints come from the environment only, the way the AWS SDK
reads them: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
`AWS_REGION` / `AWS_DEFAULT_REGION`, and `AWS_ENDPOINT_URL` for S3-compatible
stores (MinIO, Ceph, a local test server). Config files never hold them.

Object stores have no rename, so a directory counts as written when its *marker*
(a dataset's `manifest.json`, a run's `run.json`) is written, and the marker is
always written last: `publish` removes the old marker first, uploads every other
file, deletes objects the new version does not have, then writes the marker. A
kill part way leaves no marker (or the old stage's status "running"), and the
next run overwrites what it finds.

Reading a remote directory goes through a node-local cache (`IRGPT_CACHE_DIR`,
default `~/.cache/irgpt`): `fetch` lists the objects, keys the copy by the URI and
every object's name, size, time and ETag, and downloads only when no copy with
that key exists on this node; concurrent fetches download into their own temp
directory and the first rename wins. Every path in the cache names its object
(`remote_of`), so a Ray worker on a node without the driver's copy (or the
driver's work mirror of a run, `work_dir`) fetches its own: the same
`IRGPT_CACHE_DIR` path on every node is all it takes. docs/storage.md has the
whole design.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

from irgpt.errors import CommandError

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
"""A URI with a scheme (s3://, gs://, hdfs://, file://...)."""
CACHE_ENV = "IRGPT_CACHE_DIR"


def is_uri(location) -> bool:
    """True for an object-storage (or any non-`file://`) URI; local paths and `file://` are False."""
    return isinstance(location, str) and bool(URI.match(location)) and not location.startswith("file://")


def _local_path(location: str | Path) -> Path:
    return Path(str(location).removeprefix("file://"))


def resolve(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding `location` and the path inside it."""
    if not is_uri(location):
        return pafs.LocalFileSystem(), os.path.abspath(_local_path(location))
    try:
        fs, path = pafs.FileSystem.from_uri(str(location))
    except (OSError, ValueError) as exc:
        raise CommandError(f"{location}: cannot open this location: {exc}") from exc
    return fs, path.rstrip("/")


def join(location: str | Path, *names: str) -> str:
    """`location/name/...` for paths and URIs alike."""
    if is_uri(location):
        return "/".join([str(location).rstrip("/"), *[n.strip("/") for n in names]])
    return str(Path(location, *names))


def _info(location) -> pafs.FileInfo:
    fs, path = resolve(location)
    try:
        return fs.get_file_info(path)
    except OSError as exc:
        raise CommandError(f"{location}: cannot read: {exc}") from exc


def exists(location) -> bool:
    return _info(location).type != pafs.FileType.NotFound


def is_file(location) -> bool:
    return _info(location).type == pafs.FileType.File


def size(location) -> int:
    return _info(location).size


def list_files(location) -> dict[str, pafs.FileInfo]:
    """Every file under the directory `location`, by its path relative to it (empty if none)."""
    fs, path = resolve(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return {}
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return {i.path[len(path):].lstrip("/"): i for i in infos if i.type == pafs.FileType.File}


def read_bytes(location) -> bytes:
    fs, path = resolve(location)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError as exc:
        raise CommandError(f"{location}: not found") from exc


def write_bytes(location, data: bytes) -> None:
    """One object (a single PUT: readers see the old object or the new one) or an atomic local file."""
    if not is_uri(location):
        with _local_temp(location) as tmp:
            tmp.write_bytes(data)
        return
    fs, path = resolve(location)
    with fs.open_output_stream(path) as f:
        f.write(data)


@contextmanager
def _local_temp(location):
    """A temp name beside a local file, renamed onto it when the block ends without error."""
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(location, table) -> None:
    """One Parquet file: atomic locally (temp name, rename); in object storage one upload
    that becomes visible whole when it completes (a killed upload leaves no object)."""
    import pyarrow.parquet as pq

    if not is_uri(location):
        with _local_temp(location) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return
    fs, path = resolve(location)
    pq.write_table(table, path, filesystem=fs, compression="zstd")


def read_json(location):
    return json.loads(read_bytes(location))


def write_json(location, obj) -> None:
    write_bytes(location, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def delete(location) -> None:
    """Remove a file or a whole directory (prefix); absent is fine."""
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        fs.delete_file(path)
    elif info.type == pafs.FileType.Directory:
        fs.delete_dir(path)


# ------------------------------------------------------------ node cache --
def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "irgpt")


def _digest(text: str, n: int = 16) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _etag(fs: pafs.FileSystem, path: str) -> str:
    try:
        with fs.open_input_file(path) as f:
            meta = f.metadata()
    except OSError:
        return ""
    value = meta.get(b"ETag") or meta.get("ETag") or b""
    return value.decode() if isinstance(value, bytes) else str(value)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
"""What `fetch(..., without=WEIGHT_SUFFIXES)` leaves out: checks that read configs only."""


def version_key(location: str, without: tuple[str, ...] = (), times: bool = True) -> str:
    """Identity of what `location` holds now: its objects' names, sizes, ETags and (with
    `times`) modification times. Without times, the same content uploaded again (same
    ETags) keeps its key: what names a run that another machine may resume."""
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    items = [("", info)] if info.type == pafs.FileType.File else sorted(list_files(location).items())
    entries = [(rel, i.size, str(i.mtime) if times else None, _etag(fs, i.path)) for rel, i in items
               if not rel.endswith(without)]
    return _digest(json.dumps([location, entries, list(without)]))


def fetch(location: str | Path, *, without: tuple[str, ...] = ()) -> Path:
    """A local path with `location`'s contents: local paths as they are; a URI's file or
    directory copied into this node's cache, once per version (see the module doc). A path
    inside a work mirror (`work_dir`) that this node does not have (the driver's mirror, seen
    from a worker on another node) is read from the store it mirrors. `without`: file name
    endings left out of a directory (a dry run's config-only look at a model)."""
    if not is_uri(location):
        path = _local_path(location)
        remote = None if path.exists() else remote_of(path)
        return fetch(remote, without=without) if remote and exists(remote) else path
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise CommandError(f"{location}: not found")
    name = path.rstrip("/").rsplit("/", 1)[-1] or "root"
    # CACHE/objects/SCHEME/BUCKET/KEY/@FILTER/VERSION/NAME: any node can tell the object (remote_of)
    scheme, _, rest = str(location).rstrip("/").partition("://")
    home = cache_root() / "objects" / scheme / rest / f"@{_digest(json.dumps(list(without)), 8)}"
    target = home / version_key(str(location), without) / name
    if target.exists():
        return target
    home.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=home))
    try:
        if info.type == pafs.FileType.File:
            pafs.copy_files(path, str(tmp / name), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        else:
            (tmp / name).mkdir()
            for rel, item in list_files(location).items():
                if rel.endswith(without):
                    continue
                dest = tmp / name / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                pafs.copy_files(item.path, str(dest), source_filesystem=fs,
                                destination_filesystem=pafs.LocalFileSystem())
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp / name, target)
        except OSError:
            if not target.exists():  # not a lost race: a real failure
                raise
        for old in home.iterdir():  # older versions of this location
            if old.name != target.parent.name and not old.name.startswith(".fetch-"):
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------- work mirrors --
def work_dir(location: str) -> Path:
    """The node-local directory where a command works on the remote directory `location`:
    `CACHE/work/SCHEME/BUCKET/KEY...`, so any node can tell which object a path in it
    mirrors (`remote_of`)."""
    scheme, _, rest = location.rstrip("/").partition("://")
    return cache_root() / "work" / scheme / rest


def remote_of(path: str | Path) -> str | None:
    """The URI of the object that `path` copies when it lies in the cache (a work mirror,
    or a fetched copy: `CACHE/objects/SCHEME/KEY/@FILTER/VERSION/NAME/...`), else None."""
    root, path = cache_root().resolve(), Path(path).resolve()
    for kind in ("work", "objects"):
        try:
            parts = path.relative_to(root / kind).parts
        except ValueError:
            continue
        if kind == "objects":
            at = next((k for k, part in enumerate(parts) if part.startswith("@")), None)
            if at is None or len(parts) < at + 3:
                return None
            parts = parts[:at] + parts[at + 3:]  # without @FILTER, VERSION and NAME (the key's last part)
        return f"{parts[0]}://{'/'.join(parts[1:])}" if len(parts) >= 2 else None
    return None


def readable(path: str | Path) -> str:
    """What to give code that may run on any node (Ray Data tasks, Ray Train's storage) for
    `path`: a URI as it is; the store's URI when `path` is a cache copy; else the path."""
    return str(path) if is_uri(str(path)) else remote_of(path) or str(path)


def _under(rel: str, dirs: tuple[str, ...]) -> bool:
    """Whether the relative path `rel` lies in a folder named one of `dirs` (at any depth)."""
    return any(part in dirs for part in rel.split("/")[:-1])


def pull(location: str, local: str | Path, *, delete: bool = True, skip: tuple[str, ...] = ()) -> int:
    """Make the local directory `local` hold what the remote directory `location` holds:
    a file is downloaded unless the local copy has the object's size and modification time
    (each copy this module makes, downloaded or uploaded, takes the object's time); with
    `delete`, local files the remote lacks are removed; folders named in `skip` (Ray Train's
    `ray/`, which Ray reads from the store itself) are left alone. Returns the number downloaded."""
    local = Path(local)
    remote = {rel: info for rel, info in list_files(location).items() if not _under(rel, skip)}
    fs, _ = resolve(location)
    local.mkdir(parents=True, exist_ok=True)
    for path in sorted(local.rglob("*"), reverse=True) if delete else ():
        rel = path.relative_to(local).as_posix()
        if path.is_file() and rel not in remote and not _under(rel, skip):
            path.unlink()
    fetched = 0
    for rel, info in remote.items():
        dest = local / rel
        if _same(dest, info):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.pull-{os.getpid()}")
        pafs.copy_files(info.path, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        _stamp(tmp, info)
        os.replace(tmp, dest)
        fetched += 1
    return fetched


def _same(path: Path, info: pafs.FileInfo) -> bool:
    """Whether the local `path` is a copy of the object `info` (size and time)."""
    if not path.is_file() or info.mtime is None:
        return False
    st = path.stat()
    return st.st_size == info.size and int(st.st_mtime) == int(info.mtime.timestamp())


def _stamp(path: Path, info: pafs.FileInfo) -> None:
    if info.mtime is not None:
        t = info.mtime.timestamp()
        os.utime(path, (t, t))


def publish(local: str | Path, location: str, *, marker: str | None = None, prune: bool = True,
            keep: tuple[str, ...] = ()) -> int:
    """Upload the local directory `local` to the remote directory `location`, marker last.

    The remote `marker` (if any) is removed first, so the directory stops counting as
    complete; then every other file is uploaded, unless the object already is a copy of it
    (same size and time: see `pull`), objects the new version lacks are deleted (unless not
    `prune`: several writers adding to one directory; never those in folders named in
    `keep`, such as Ray Train's `ray/`, which others write there), and the marker is
    written last. Returns the number of files uploaded."""
    local = Path(local)
    fs, base = resolve(location)
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*")
                   if p.is_file() and ".tmp-" not in p.name and ".pull-" not in p.name)
    before = list_files(location)
    if marker is not None and marker in before:
        _remove(fs, f"{base}/{marker}")
    ordered = [f for f in files if f != marker and not (f in before and _same(local / f, before[f]))]
    ordered += [marker] if marker in files else []
    stale = {f for f in set(before) - set(files) if not _under(f, keep)} if prune else set()
    for rel in ordered:
        if rel == marker:
            for old in sorted(stale):
                _remove(fs, f"{base}/{old}")
        _put(local / rel, fs, f"{base}/{rel}")
    if marker not in files:
        for old in sorted(stale):
            _remove(fs, f"{base}/{old}")
    if is_uri(location):  # the local copies take the objects' times: a later pull or publish skips them
        after = list_files(location)
        for rel in ordered:
            if rel in after and (local / rel).stat().st_size == after[rel].size:
                _stamp(local / rel, after[rel])
    return len(ordered)


MARKERS = ("manifest.json", "run.json", "summary.json", "fe_train.json", "clip_warmup.json", "metrics.json")
"""The file a directory is published with last (the first one it holds): a dataset's manifest,
or the report a command or stage writes when it is done."""


def upload(local: str | Path, location: str) -> int:
    """Publish the file or directory `local` at `location`: a file as one object; a directory
    with its marker (`MARKERS`) last, Ray Train's `ray/` folders in the store left alone.
    Returns the number of files uploaded."""
    local = Path(local)
    if local.is_file():
        write_bytes(location, local.read_bytes())
        return 1
    marker = next((m for m in MARKERS if (local / m).is_file()), None)
    return publish(local, location, marker=marker, keep=("ray",))


def node_output(directory: str | Path) -> tuple[Path, str | None]:
    """Where a Ray worker writes the output directory `directory`: in place when its parent
    exists on this node (the driver's node, a shared volume), else (a worker on another node
    than the driver's work mirror) a new temp directory, with the store URI to upload it to
    (`publish(..., prune=False)`) when done; the driver then pulls it."""
    directory = Path(directory)
    remote = None if directory.parent.exists() else remote_of(directory)
    return (Path(tempfile.mkdtemp(prefix="irgpt-out-")), remote) if remote else (directory, None)


def share(path: str | Path) -> None:
    """Make a directory of a work mirror readable from every node before workers start:
    upload what its store lacks or holds in another version (nothing for other paths)."""
    remote = remote_of(path)
    if remote is not None and Path(path).is_dir():
        publish(path, remote, prune=False)


def clear(path: str | Path) -> None:
    """Remove the local directory `path` and, when it is a work mirror, the store's copy
    (`--force`: nothing committed earlier may be taken for done)."""
    if Path(path).exists():
        shutil.rmtree(path)
    if remote_of(path):
        delete(remote_of(path))


def _put(source: Path, fs: pafs.FileSystem, path: str) -> None:
    pafs.copy_files(str(source), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def _remove(fs: pafs.FileSystem, path: str) -> None:
    fs.delete_file(path)
