"""`build_tiers` (local engine) on ~200 hand-made scored samples."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from builders import write_l1_scores

from irgpt.config.loader import config_hash, to_dict
from irgpt.config.sections import CurriculumConfig, WeightsConfig
from irgpt.curriculum.tiers import build_tiers, deterministic_view
from irgpt.data.io import read_rejects, shard_paths
from irgpt.errors import CommandError
from irgpt.scoring.weights import eq5_weights

from .conftest import MISSING_L1, MISSING_L2, N_IR, read_manifest


def tier_table(out: Path, k: int) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in shard_paths(Path(out) / f"tier={k}")])


def all_tiers(out: Path, m: int = 4) -> list[pa.Table]:
    return [tier_table(out, k) for k in range(m)]


def digest(out: Path) -> dict:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(out).rglob("*.parquet"))}


def run(inputs, tmp_path, cfg, scores=("l1", "l2"), **kw):
    out = tmp_path / "out"
    manifest = build_tiers(inputs["data"], [inputs[s] for s in scores], out, cfg, engine="local", rows_per_part=20, **kw)
    return out, manifest


def test_four_tiers_one_row_per_scored_sample(tiered):
    tiers = all_tiers(tiered["out"])
    sizes = [t.num_rows for t in tiers]
    expected = set(tiered["ids"][MISSING_L2 : N_IR - MISSING_L1])
    ids = [s for t in tiers for s in t.column("sample_id").to_pylist()]
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    assert max(sizes) - min(sizes) <= 1 and sizes == tiered["manifest"]["tier_sizes"]
    assert [t.column("tier").to_pylist() for t in tiers] == [[k] * n for k, n in enumerate(sizes)]
    assert tiers[0].schema.field("tier").type == pa.int32()


def test_composite_order_within_and_across_tiers(tiered):
    tiers = all_tiers(tiered["out"])
    for a, b in zip(tiers, tiers[1:]):
        assert max(a.column("composite_rank").to_pylist()) <= min(b.column("composite_rank").to_pylist())
    for t in tiers:
        c = np.array(t.column("composite_rank").to_pylist())
        assert np.all(np.diff(c) >= 0)
        np.testing.assert_allclose(c, 0.5 * np.array(t.column("rank_l1").to_pylist()) + 0.5 * np.array(t.column("rank_l2").to_pylist()))


def test_sample_and_score_columns_carried(tiered):
    t = pa.concat_tables(all_tiers(tiered["out"]))
    l2 = tiered["l2_table"].to_pandas().set_index("sample_id")
    l1 = tiered["l1_table"].to_pandas().set_index("sample_id")
    df = t.to_pandas().set_index("sample_id")
    np.testing.assert_array_equal(df["weight"].to_numpy(), l2.loc[df.index, "weight"].to_numpy())
    np.testing.assert_array_equal(df["alpha"].to_numpy(), l2.loc[df.index, "alpha"].to_numpy())
    np.testing.assert_array_equal(df["d_ir_vis"].to_numpy(), l1.loc[df.index, "d_ir_vis"].to_numpy())
    for col in ("image", "conversations", "band", "task", "source", "split"):
        assert col in t.column_names
    assert df["image"].map(len).eq(16).all()


def test_manifest_consistent_with_files(tiered):
    m = read_manifest(tiered["out"])
    assert m["kind"] == "tiers" and m["num_tiers"] == 4 and m["curriculum"] == to_dict(CurriculumConfig())
    assert m["config_hash"] == config_hash(CurriculumConfig())
    c = m["counts"]
    assert c["tiered"] == m["num_rows"] == sum(m["tier_sizes"]) == N_IR - MISSING_L1 - MISSING_L2
    assert c["rejected_by_reason"] == {"no Lesson 1 score": MISSING_L1, "no Lesson 2 score": MISSING_L2}
    assert c["orphan_scores"] == {"lesson1": 1, "lesson2": 0} and c["orphan_examples"] == ["ghost-0000001"]
    assert c["scored_other_split"] == 1 and c["other_split"] == 4 and c["unscored_not_scorable"] == 20
    for entry, table in zip(m["tiers"], all_tiers(tiered["out"])):
        assert entry["rows"] == table.num_rows and sum(f["rows"] for f in entry["files"]) == table.num_rows
        for col in ("composite_rank", "d_ir_vis", "alpha", "weight"):
            vals = table.column(col).to_pylist()
            assert entry[col]["min"] == min(vals) and entry[col]["max"] == max(vals)
        assert entry["weight"]["mean"] == pytest.approx(np.mean(table.column("weight").to_pylist()))
        assert sum(entry["composition"]["band"].values()) == table.num_rows
        assert entry["composition"]["task"] == {"caption": table.num_rows}
    assert m["inputs"]["lesson1"]["manifest"]["kind"] == "scores" and m["inputs"]["lesson1"]["manifest"]["lesson"] == "l1"
    assert m["inputs"]["lesson2"]["manifest"]["provenance"]["scorer"] == "handmade-l2"
    assert m["inputs"]["lesson2"]["manifest"]["config_hash"] == "scores_l2-handmade"


def test_rejects_name_each_unscored_sample(tiered):
    rej = read_rejects(tiered["out"]).to_pylist()
    by_id = {r["sample_id"]: r["reason"] for r in rej}
    ids = tiered["ids"]
    assert {i: by_id[i] for i in ids[:MISSING_L2]} == dict.fromkeys(ids[:MISSING_L2], "no Lesson 2 score")
    assert {i: by_id[i] for i in ids[N_IR - MISSING_L1 :]} == dict.fromkeys(ids[N_IR - MISSING_L1 :], "no Lesson 1 score")
    assert len(rej) == MISSING_L1 + MISSING_L2 and all(r["stage"] == "tier" for r in rej)


def test_deterministic_bytes(tiered, tmp_path):
    out, manifest = run(tiered, tmp_path, CurriculumConfig())
    assert digest(out) == digest(tiered["out"])
    assert deterministic_view(manifest) == deterministic_view(read_manifest(tiered["out"]))


def test_readers_pandas_duckdb_pyarrow(tiered):
    out = tiered["out"]
    df = pd.read_parquet(out / "tier=0")
    assert len(df) == tiered["manifest"]["tier_sizes"][0] and set(df["tier"]) == {0}
    for hive in (1, 0):
        rows = duckdb.sql(
            f"select tier, count(*) from read_parquet('{out}/tier=*/*.parquet', hive_partitioning={hive}) group by tier order by tier"
        ).fetchall()
        assert rows == [(k, n) for k, n in enumerate(tiered["manifest"]["tier_sizes"])]
    ds = pds.dataset([str(p) for p in sorted(out.glob("tier=*/*.parquet"))], format="parquet", partitioning="hive", partition_base_dir=str(out))
    assert ds.to_table(columns=["tier"]).num_rows == tiered["manifest"]["num_rows"]


def test_l1_only_and_l2_only(tiered, tmp_path):
    out, m = run(tiered, tmp_path / "l1", CurriculumConfig(use_l2=False))
    t = pa.concat_tables(all_tiers(out))
    assert m["num_rows"] == N_IR - MISSING_L1
    assert t.column("composite_rank").to_pylist() == t.column("rank_l1").to_pylist()
    assert set(t.column("weight").to_pylist()) == {1.0}
    assert m["counts"]["rejected_by_reason"] == {"no Lesson 1 score": MISSING_L1}
    out, m = run(tiered, tmp_path / "l2", CurriculumConfig(use_l1=False), scores=("l2",))
    t = pa.concat_tables(all_tiers(out))
    assert m["num_rows"] == N_IR - MISSING_L2
    assert t.column("composite_rank").to_pylist() == t.column("rank_l2").to_pylist()
    assert t.column("rank_l1").null_count == t.num_rows
    assert len(set(t.column("weight").to_pylist())) > 10


def test_anti_switch_reverses_one_lesson(tiered, tmp_path):
    out, _ = run(tiered, tmp_path, CurriculumConfig(anti_l1=True))
    t = pa.concat_tables(all_tiers(out))
    r1, r2 = (np.array(t.column(c).to_pylist()) for c in ("rank_l1", "rank_l2"))
    np.testing.assert_allclose(t.column("composite_rank").to_pylist(), 0.5 * (1 - r1) + 0.5 * r2)
    base = all_tiers(tiered["out"])
    assert tier_table(out, 0).column("sample_id").to_pylist() != base[0].column("sample_id").to_pylist()
    # anti-L1 on an L1-only curriculum is the exact reverse order
    out_a, _ = run(tiered, tmp_path / "a", CurriculumConfig(use_l2=False, anti_l1=True))
    out_b, _ = run(tiered, tmp_path / "b", CurriculumConfig(use_l2=False))
    ids_a = pa.concat_tables(all_tiers(out_a)).column("sample_id").to_pylist()
    ids_b = pa.concat_tables(all_tiers(out_b)).column("sample_id").to_pylist()
    assert ids_a == ids_b[::-1]  # ranks are distinct, so no ties


def test_weights_off_keeps_order_sets_one(tiered, tmp_path):
    out, m = run(tiered, tmp_path, CurriculumConfig(weights=False))
    on, off = pa.concat_tables(all_tiers(tiered["out"])), pa.concat_tables(all_tiers(out))
    assert on.column("sample_id").to_pylist() == off.column("sample_id").to_pylist()
    assert set(off.column("weight").to_pylist()) == {1.0} and "constant 1.0" in m["weights"]["source"]


def test_reweight_uses_whole_lesson2_table(tiered, tmp_path):
    wcfg = WeightsConfig(temperature=2.0, normalize=True)
    out, m = run(tiered, tmp_path, CurriculumConfig(), reweight=wcfg)
    l2 = tiered["l2_table"]
    expected = dict(zip(l2.column("sample_id").to_pylist(), eq5_weights(l2.column("alpha").to_numpy(), 2.0, True)))
    t = pa.concat_tables(all_tiers(out))
    assert [expected[s] for s in t.column("sample_id").to_pylist()] == t.column("weight").to_pylist()
    assert m["weights"]["config"]["temperature"] == 2.0 and m["weights"]["medians"]["positive"] > 0


def test_ties_broken_by_hash_and_no_more_tiers_than_rows(tmp_path):
    from builders import write_samples

    from irgpt.data.io import base_manifest, write_manifest, write_table
    from irgpt.data.schema import stable_hash

    ids = write_samples(tmp_path / "data", 5)
    table = pa.table({"sample_id": ids, "band": ["nir"] * 5, "d_ir_vis": [0.0] * 5, "rank_l1": [0.5] * 5})
    write_table(tmp_path / "l1" / "part-00000.parquet", table)
    write_manifest(tmp_path / "l1", base_manifest("scores_l1"))
    with pytest.raises(CommandError, match=r"curriculum.m=7 is more tiers than .*data has rows \(5\)"):
        build_tiers(tmp_path / "data", [tmp_path / "l1"], tmp_path / "o7", CurriculumConfig(m=7, use_l2=False),
                    engine="local")
    assert not (tmp_path / "o7").exists() and not list(tmp_path.glob(".o7*"))  # refused before writing
    m = build_tiers(tmp_path / "data", [tmp_path / "l1"], tmp_path / "out", CurriculumConfig(m=5, use_l2=False), engine="local")
    assert m["tier_sizes"] == [1, 1, 1, 1, 1]
    got = [tier_table(tmp_path / "out", k).column("sample_id").to_pylist() for k in range(5)]
    assert [s for g in got for s in g] == sorted(ids, key=stable_hash)


def test_non_finite_scores_are_rejects_and_no_tierable_row_is_an_error(tmp_path):
    from builders import write_samples

    from irgpt.data.io import base_manifest, write_manifest, write_table

    ids = write_samples(tmp_path / "data", 6)
    d = [0.1, float("nan"), 0.3, float("inf"), 0.5, 0.6]
    table = pa.table({"sample_id": ids, "band": ["nir"] * 6, "d_ir_vis": d, "rank_l1": [0.1, 0.2, 0.3, 0.4, None, 0.6]})
    write_table(tmp_path / "l1" / "part-00000.parquet", table)
    write_manifest(tmp_path / "l1", base_manifest("scores_l1"))
    m = build_tiers(tmp_path / "data", [tmp_path / "l1"], tmp_path / "out", CurriculumConfig(m=2, use_l2=False),
                    engine="local")
    assert m["tier_sizes"] == [2, 1]  # 3 finite rows
    rejects = read_rejects(tmp_path / "out").to_pylist()
    assert {r["sample_id"]: r["reason"] for r in rejects} == {
        ids[1]: "non-finite d_ir_vis", ids[3]: "non-finite d_ir_vis", ids[4]: "non-finite rank_l1"}
    orphans = pa.table({"sample_id": ["ghost-1", "ghost-2"], "band": ["nir"] * 2, "d_ir_vis": [0.1, 0.2],
                        "rank_l1": [0.1, 0.2]})
    write_table(tmp_path / "o" / "part-00000.parquet", orphans)
    write_manifest(tmp_path / "o", base_manifest("scores_l1"))
    with pytest.raises(CommandError, match=r"0 rows were tiered, fewer than curriculum.m=2 tiers .*orphan"):
        build_tiers(tmp_path / "data", [tmp_path / "o"], tmp_path / "out2", CurriculumConfig(m=2, use_l2=False),
                    engine="local")
    assert not (tmp_path / "out2").exists()


def test_rows_per_part_splits_files(tiered):
    files = sorted(p.name for p in (tiered["out"] / "tier=0").glob("*.parquet"))
    assert files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]  # 48 rows / 20


def test_user_errors(tiered, tmp_path):
    with pytest.raises(CommandError, match="use_l2"):
        build_tiers(tiered["data"], [tiered["l1"]], tmp_path / "o1", CurriculumConfig(), engine="local")
    with pytest.raises(CommandError, match="cannot tell which lesson"):
        build_tiers(tiered["data"], [tiered["data"]], tmp_path / "o2", CurriculumConfig(use_l2=False), engine="local")
    with pytest.raises(CommandError, match="two Lesson 1"):
        build_tiers(tiered["data"], [tiered["l1"], tiered["l1"]], tmp_path / "o3", CurriculumConfig(use_l2=False), engine="local")
    with pytest.raises(CommandError, match="not empty"):
        build_tiers(tiered["data"], [tiered["l1"], tiered["l2"]], tiered["out"], CurriculumConfig(), engine="local")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(CommandError, match="refusing"):
        build_tiers(tiered["data"], [tiered["l1"], tiered["l2"]], foreign, CurriculumConfig(), engine="local", overwrite=True)
    assert (foreign / "keep.txt").exists()
    dup = tmp_path / "dup"
    write_l1_scores(dup, tiered["ids"][:3] + tiered["ids"][:1])
    with pytest.raises(CommandError, match="duplicate sample_id"):
        build_tiers(tiered["data"], [dup], tmp_path / "o4", CurriculumConfig(use_l2=False), engine="local")


def test_overwrite_replaces_earlier_output(tiered, tmp_path):
    out, _ = run(tiered, tmp_path, CurriculumConfig(m=3))
    _, m = run(tiered, tmp_path, replace(CurriculumConfig(), m=2), overwrite=True)
    assert sorted(p.name for p in out.glob("tier=*")) == ["tier=0", "tier=1"] and m["num_tiers"] == 2


def test_score_tables_without_manifest_or_part_names(tiered, tmp_path):
    """Tables written by pandas / DuckDB by hand: a directory of any *.parquet, or one file."""
    l1_dir = tmp_path / "l1_by_hand"
    l1_dir.mkdir()
    pq.write_table(pq.read_table(shard_paths(tiered["l1"])[0]), l1_dir / "scores.parquet")
    for p in shard_paths(tiered["l1"])[1:]:
        pq.write_table(pq.read_table(p), l1_dir / f"more-{p.name}")
    l2_file = tmp_path / "l2.parquet"  # one file, as pandas writes it (large_string ids)
    l2 = pa.concat_tables([pq.read_table(p) for p in shard_paths(tiered["l2"])])
    i = l2.schema.get_field_index("sample_id")
    pq.write_table(l2.set_column(i, "sample_id", l2.column(i).cast(pa.large_string())), l2_file)
    out = tmp_path / "hand"
    build_tiers(tiered["data"], [l1_dir, l2_file], out, CurriculumConfig(), engine="local", rows_per_part=20)
    ref = {k: tier_table(tiered["out"], k).column("sample_id").to_pylist() for k in range(4)}
    assert {k: tier_table(out, k).column("sample_id").to_pylist() for k in range(4)} == ref
    with pytest.raises(CommandError, match="no such file or directory"):
        build_tiers(tiered["data"], [tmp_path / "l1_missing"], tmp_path / "o5", CurriculumConfig(use_l2=False))
    bad = tmp_path / "int_ids.parquet"
    pq.write_table(pa.table({"sample_id": [1, 2], "rank_l1": [0.0, 1.0], "d_ir_vis": [0.1, 0.2]}), bad)
    with pytest.raises(CommandError, match="int_ids.parquet: sample_id must be a string column, not int64"):
        build_tiers(tiered["data"], [bad], tmp_path / "o6", CurriculumConfig(use_l2=False))


def test_reweight_with_a_nan_alpha_rejects_that_row_only(inputs, tmp_path):
    """`irgpt tier --reweight` over a Lesson 2 table with one NaN alpha: that row is a
    reject (`non-finite alpha`), every other row gets Eq. 5 over the finite alphas."""
    from irgpt.data.io import base_manifest, write_manifest, write_table

    l2 = inputs["l2_table"]
    alpha = l2.column("alpha").to_numpy().copy()
    alpha[7] = np.nan
    broken = l2.set_column(l2.schema.get_field_index("alpha"), "alpha", pa.array(alpha))
    write_table(tmp_path / "l2" / "part-00000.parquet", broken)
    write_manifest(tmp_path / "l2", base_manifest("scores_l2", rows=broken.num_rows))
    wcfg = WeightsConfig(temperature=1.0, normalize=True)
    out = tmp_path / "out"
    build_tiers(inputs["data"], [inputs["l1"], tmp_path / "l2"], out, CurriculumConfig(), engine="local",
                rows_per_part=20, reweight=wcfg)
    nan_id = l2.column("sample_id")[7].as_py()
    rejects = {r["sample_id"]: r["reason"] for r in read_rejects(out).to_pylist()}
    assert "non-finite alpha" in rejects[nan_id] and "non-finite weight" in rejects[nan_id]
    finite = np.isfinite(alpha)
    ids = [s for s, ok in zip(l2.column("sample_id").to_pylist(), finite) if ok]
    expected = dict(zip(ids, eq5_weights(alpha[finite], 1.0, True)))
    t = pa.concat_tables(all_tiers(out))
    assert nan_id not in t.column("sample_id").to_pylist()
    assert [expected[s] for s in t.column("sample_id").to_pylist()] == t.column("weight").to_pylist()
