"""Two Ray nodes on this machine: the smoke pipeline spreads over both and gives the one-node results.

A head (`ray start --head --num-cpus 1`) and a second node (`ray start
--address HEAD --num-cpus 1`), each with its own `--temp-dir` and a custom
resource naming it. One CPU each, so the two scoring actors of each pass
(`pool.concurrency=2`, one CPU each) and the two Train workers
(`train.num_workers=2`) cannot share a node. The smoke pipeline goes in
with `ray job submit`; the score manifests (`ray_nodes`) and the training
summary must name both nodes. The same config then runs on one local node
with 2 CPUs: score tables and tier assignments byte-identical, final stage-1
loss within 1e-6. The dataset and the run root are in object storage (the
local S3 server of `tests/s3server.py`). Both nodes use the same
`IRGPT_CACHE_DIR` path, as pods do, and the second node runs in a mount
namespace of its own with an empty tmpfs over that path (`unshare -m`), so it
cannot see the driver's work mirror or cached copies on the head: whatever it
reads it must fetch from the bucket, whatever it writes must reach the bucket,
as on pods with separate disks. (Where `unshare` is not permitted the second
node shares the head's disk and the test says so.) `ray stop --force`
afterwards, whatever happened.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest
from test_job_submit import RAY, REPO, free_port, ray_env, submit

from irgpt import storage

SETS = ["train.num_workers=2", "scoring.lesson1.pool.concurrency=2", "scoring.lesson2.pool.concurrency=2",
        "scoring.lesson1.pool.part_rows=64", "scoring.lesson2.pool.part_rows=64", "scoring.lesson1.estimator=rff",
        "run.stages=[synth,fe_train,score_l1,clip_warmup,score_l2,tier,train_stage1]"]


def _sets(root: str) -> list[str]:
    items = SETS + [f"run.root={root}/runs", f"data.dir={root}/data", "run.name=two"]
    return [a for item in items for a in ("--set", item)]


def _files(location: str) -> dict[str, bytes]:
    return {rel: storage.read_bytes(f"{location}/{rel}") for rel in sorted(storage.list_files(location))
            if rel.rsplit("/", 1)[-1].startswith("part-") and not rel.startswith("_")}  # not _features, _before


def _can_unshare(path) -> bool:
    """Whether this machine lets a process mount a tmpfs over `path` in its own mount namespace."""
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs probe {path} && test -z \"$(ls -A {path})\""],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def _nodes(env, address: str) -> set[str]:
    code = (f"import json, ray; ray.init(address={address!r}, logging_level='ERROR'); "
            "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.cluster
def test_two_nodes_give_the_one_node_results(tmp_path, s3_bucket):
    cache = tmp_path / "cache"  # the same path on both nodes; on the second, an empty tmpfs
    cache.mkdir()
    env = {**ray_env(), "IRGPT_CACHE_DIR": str(cache)}
    isolated = _can_unshare(cache)
    gcs, dash = free_port(), free_port()
    # Short temp dirs: Ray's socket paths must stay under 107 characters.
    head_tmp, node_tmp = tempfile.mkdtemp(prefix="irgpt-h"), tempfile.mkdtemp(prefix="irgpt-n")
    head = [RAY, "start", "--head", "--num-cpus", "1", "--resources", '{"irgpt_head": 1}', "--temp-dir", head_tmp,
            "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
            "--include-dashboard", "true", "--disable-usage-stats"]
    second = [RAY, "start", "--address", f"127.0.0.1:{gcs}", "--num-cpus", "1", "--resources",
              '{"irgpt_second": 1}', "--temp-dir", node_tmp, "--disable-usage-stats"]
    if isolated:  # its own view of the cache path: an empty tmpfs, for the raylet and every worker it starts
        second = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                  'mount -t tmpfs irgpt-node "$IRGPT_CACHE_DIR" && exec "$@"', "sh", *second]
    try:
        subprocess.run(head, check=True, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
        subprocess.run(second, check=True, env=env, cwd=REPO, capture_output=True, text=True, timeout=180)
        nodes = _nodes(env, f"127.0.0.1:{gcs}")
        assert len(nodes) == 2
        job = submit(env, dash, ["python", "jobs/pipeline.py", "--config", "configs/smoke.yaml",
                                 *_sets(f"{s3_bucket}/two-node")])
        assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)

    two = f"{s3_bucket}/two-node/runs/two"
    print(f"second node {'in its own mount namespace (separate cache disk)' if isolated else 'sharing the disk'}")
    for scores in ("scores_l1", "scores_l2"):
        used = storage.read_json(f"{two}/{scores}/manifest.json")["ray_nodes"]
        assert set(used) == nodes, (scores, used)  # both nodes scored parts
    summary = storage.read_json(f"{two}/train/summary.json")
    assert set(summary["stage1"]["ray_nodes"]) == nodes  # one Train worker on each node

    local = subprocess.run([sys.executable, "jobs/pipeline.py", "--config", "configs/smoke.yaml",
                            *_sets(f"{s3_bucket}/one-node")], cwd=REPO, capture_output=True, text=True,
                           env={**env, "IRGPT_CACHE_DIR": str(tmp_path / "cache-local")}, timeout=1500)
    assert local.returncode == 0, (local.stdout + local.stderr)[-4000:]
    one = f"{s3_bucket}/one-node/runs/two"
    assert len(storage.read_json(f"{one}/scores_l1/manifest.json")["ray_nodes"]) == 1
    for output in ("scores_l1", "scores_l2", "tiers"):
        got, want = _files(f"{two}/{output}"), _files(f"{one}/{output}")
        assert got and list(got) == list(want), output
        assert got == want, f"{output}: the two-node files differ from the one-node run's"
    one_summary = storage.read_json(f"{one}/train/summary.json")
    assert summary["stage1"]["final_val_loss"] == pytest.approx(one_summary["stage1"]["final_val_loss"], abs=1e-6)
    assert summary["stage1"]["steps"] == one_summary["stage1"]["steps"] > 0
    last = [[r["loss"] for r in map(json.loads, storage.read_bytes(f"{run}/train/stage1/metrics.jsonl").splitlines())
             if "loss" in r][-1] for run in (two, one)]
    assert last[0] == pytest.approx(last[1], abs=1e-6)  # the final step's training loss
