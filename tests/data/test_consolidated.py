"""The consolidated feature file: byte-equal reads vs the per-file stores, atomic writes, auto-use
by ``load_task_source``, and errors that name the id, the file and the shapes (SPEC.md §2)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from vlpet_jax.bench import input_pipeline
from vlpet_jax.data import consolidated as C
from vlpet_jax.data.annotations import DataFormatError
from vlpet_jax.data.batching import TextCollator
from vlpet_jax.data.features import ImageFeatureStore, VideoFeatureStore
from vlpet_jax.data.multitask import MultitaskIterator, load_task_source
from vlpet_jax.data.synthetic import generate_benchmark

REPO = Path(__file__).resolve().parents[2]
IMAGE_IDS = ["COCO_val2014_000000000042", "COCO_train2014_000000000009", "img_b", "img_a"]


@pytest.fixture
def image_dir(tmp_path, write):
    rng = np.random.default_rng(0)
    directory = tmp_path / "feats"
    for img_id in IMAGE_IDS:
        write.h5(directory, img_id, rng.normal(size=(49, 8)).astype(np.float16))
    return directory


@pytest.fixture
def video_dir(tmp_path, write):
    rng = np.random.default_rng(1)
    directory = tmp_path / "clip-vit"
    for name, frames, dtype in [
        ("v2", 3, np.float16),
        ("v1", 70, np.float32),
        ("v0", 1, np.float32),
    ]:
        write.npz(directory, name, rng.normal(size=(frames, 6)).astype(dtype))
    return directory


def test_image_file_reads_exactly_what_the_per_image_files_hold(image_dir):
    summary = C.consolidate_features(image_dir, "image")
    out = image_dir.with_name("feats.h5")
    assert summary == {"out": str(out), "kind": "image", "items": 4, "rows": 196, "dim": 8,
                       "dtype": "float16", "bytes": out.stat().st_size}  # fmt: skip
    with h5py.File(out, "r") as f:  # the documented layout
        assert [s.decode() for s in f["ids"][...]] == sorted(IMAGE_IDS)
        assert f["offsets"][...].tolist() == [0, 49, 98, 147, 196]
        assert f["features"].chunks is None and f["features"].compression is None
        assert f.attrs["kind"] == "image" and f.attrs["version"] == 1
    store = C.ConsolidatedImageStore(out, expected_shape=(49, 8))
    per_file = ImageFeatureStore(image_dir, expected_shape=(49, 8))
    assert len(store) == 4 and "img_a" in store and "img_c" not in store
    for img_id in IMAGE_IDS:
        got = store.load(img_id)
        assert got.dtype == np.float16 and got.flags.writeable
        np.testing.assert_array_equal(got, per_file.load(img_id))


def test_video_file_keeps_every_length_in_a_lossless_common_dtype(video_dir):
    out = video_dir.parent / "packed" / "tv.h5"
    summary = C.consolidate_features(video_dir, "video", out)
    assert (summary["items"], summary["rows"], summary["dtype"]) == (3, 74, "float32")
    store = C.ConsolidatedVideoStore(out, feat_dim=6, cache_items=0)
    per_file = VideoFeatureStore(video_dir, feat_dim=6)
    for name, frames in [("v0", 1), ("v1", 70), ("v2", 3)]:
        got = store.load(name)
        assert got.shape == (frames, 6) and got.dtype == np.float32
        np.testing.assert_array_equal(got, per_file.load(name).astype(np.float32))


def test_concurrent_reads_from_threads_agree(image_dir):
    C.consolidate_features(image_dir, "image")
    store = C.ConsolidatedImageStore(image_dir.with_name("feats.h5"), (49, 8), cache_items=0)
    keys = IMAGE_IDS * 25
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(store.load, keys))
    per_file = ImageFeatureStore(image_dir, expected_shape=(49, 8))
    for key, got in zip(keys, results):
        np.testing.assert_array_equal(got, per_file.load(key))


def test_a_chunked_rewrite_is_read_through_h5py(image_dir, tmp_path):
    C.consolidate_features(image_dir, "image")
    source, rewritten = image_dir.with_name("feats.h5"), tmp_path / "chunked.h5"
    with h5py.File(source, "r") as f, h5py.File(rewritten, "w") as g:
        g.attrs.update(dict(f.attrs))
        g.create_dataset("features", data=f["features"][...], chunks=(7, 8), compression="gzip")
        for name in ("offsets", "ids"):
            f.copy(name, g)
    store = C.ConsolidatedImageStore(rewritten, expected_shape=(49, 8))
    assert store._byte_offset is None  # no fixed offset: not memory-mappable
    expected = C.ConsolidatedImageStore(source, expected_shape=(49, 8))
    for img_id in IMAGE_IDS:
        np.testing.assert_array_equal(store.load(img_id), expected.load(img_id))


def test_write_is_atomic_an_error_leaves_the_old_file_and_no_temporary(image_dir, monkeypatch):
    out = image_dir.parent / "out.h5"
    out.write_bytes(b"previous")
    real_read = C._read_item

    def failing_read(item, kind):
        if item.key == "img_a":
            raise OSError("disk on fire")
        return real_read(item, kind)

    monkeypatch.setattr(C, "_read_item", failing_read)
    with pytest.raises(OSError, match="disk on fire"):
        C.consolidate_features(image_dir, "image", out)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in image_dir.parent.iterdir()) == ["feats", "out.h5"]


def test_converter_errors_name_the_file(tmp_path, write):
    directory = tmp_path / "feats"
    with pytest.raises(FileNotFoundError, match="feature directory not found"):
        C.consolidate_features(directory, "image")
    write.h5(directory, "a", np.zeros((49, 8), np.float16))
    write.h5(directory, "b", np.zeros((36, 8), np.float16))
    with pytest.raises(DataFormatError, match=r"b\.h5: features have shape \(36, 8\), expected "
                       r"\(49, 8\) like a\.h5"):  # fmt: skip
        C.consolidate_features(directory, "image")
    write.h5(directory, "b", np.zeros((49, 8), np.float16), dataset="b/feats")
    with pytest.raises(DataFormatError, match=r"b\.h5: no dataset 'b/features'.*b/feats"):
        C.consolidate_features(directory, "image")
    (directory / "b.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(DataFormatError, match=r"b\.h5: not a readable HDF5 file"):
        C.consolidate_features(directory, "image")
    with pytest.raises(DataFormatError, match=r"no \*\.npz video feature files"):
        C.consolidate_features(directory, "video")
    write.npz(tmp_path / "vids", "v", np.zeros((4, 6), np.float32), key="feats")
    with pytest.raises(DataFormatError, match=r"v\.npz: no array 'features' \(found: feats\)"):
        C.consolidate_features(tmp_path / "vids", "video")
    (tmp_path / "vids" / "v.npz").write_bytes(b"PK garbage")
    with pytest.raises(DataFormatError, match=r"v\.npz: not a readable \.npz archive"):
        C.consolidate_features(tmp_path / "vids", "video")
    assert not any(p.name.endswith(".h5") for p in tmp_path.iterdir())


def test_store_errors_name_the_id_the_file_and_the_shapes(image_dir, video_dir, tmp_path):
    C.consolidate_features(image_dir, "image")
    out = image_dir.with_name("feats.h5")
    store = C.ConsolidatedImageStore(out, expected_shape=(49, 8))
    with pytest.raises(KeyError) as info:
        store.load("COCO_val2014_000000000777")
    assert str(info.value).startswith(
        f"image features for id 'COCO_val2014_000000000777' not found in {out} (4 ids"
    )
    with pytest.raises(DataFormatError, match=r"image 'COCO_train\S+' has shape \(49, 8\), "
                       r"expected \(49, 2048\)"):  # fmt: skip
        C.ConsolidatedImageStore(out)
    with pytest.raises(DataFormatError, match="holds image features, expected video"):
        C.ConsolidatedVideoStore(out, feat_dim=8)
    C.consolidate_features(video_dir, "video")
    with pytest.raises(DataFormatError, match="frame features have dim 6, expected 512"):
        C.ConsolidatedVideoStore(video_dir.with_name("clip-vit.h5"))
    with pytest.raises(FileNotFoundError, match="consolidated image features not found"):
        C.ConsolidatedImageStore(tmp_path / "nope.h5")


def test_corrupt_files_are_reported_with_the_command_to_rebuild(image_dir, tmp_path):
    C.consolidate_features(image_dir, "image")
    good = image_dir.with_name("feats.h5").read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good[: len(good) - 1000])
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n" + b"\0" * 100)
    for path, reason in [(truncated, "truncated"), (garbage, "not a readable HDF5 file")]:
        with pytest.raises(
            DataFormatError, match=rf"{path.name}: .*{reason}.*consolidate_features"
        ):
            C.ConsolidatedImageStore(path, expected_shape=(49, 8))
    with pytest.raises(DataFormatError, match="not a consolidated feature file"):
        C.ConsolidatedImageStore(image_dir / "img_a.h5", expected_shape=(49, 8))


def test_load_task_source_prefers_the_consolidated_file(tmp_path, write, t5_tokenizer):
    feature_dir = tmp_path / "COCO" / "clip_features" / "data_clip_RN101_att"
    rng = np.random.default_rng(3)
    for img_id in ("img_a", "img_b"):
        write.h5(feature_dir, img_id, rng.normal(size=(49, 2048)).astype(np.float16))
    write.json(
        tmp_path / "vqa" / "karpathy_train.json",
        [{"img_id": i, "sent": "what is red", "question_id": k, "label": {"blue": 1.0}}
         for k, i in enumerate(["img_a", "img_b", "img_a"])],
    )  # fmt: skip
    collator = TextCollator(t5_tokenizer, "t5")

    def first_batch(**kwargs):
        source = load_task_source("vqa", tmp_path, "train", train=True, batch_size=4, **kwargs)
        return source, next(MultitaskIterator([source], collator, seed=0)).arrays

    per_file_source, per_file = first_batch()
    assert isinstance(per_file_source.visuals.store, ImageFeatureStore)
    # One cache per image task, of pooled tokens; the store keeps no second copy of the raw rows.
    assert per_file_source.visuals.store.cache.max_items == 0
    assert per_file_source.visuals.pooled.max_items > 0 and len(per_file_source.visuals.pooled) == 2
    with pytest.raises(FileNotFoundError, match=r"data_clip_RN101_att\.h5"):
        first_batch(consolidated=True)
    C.consolidate_features(feature_dir, "image")
    explicit = tmp_path / "elsewhere.h5"
    C.consolidate_features(feature_dir, "image", explicit)
    for path in feature_dir.iterdir():  # from now on only the consolidated files can serve reads
        path.unlink()
    for kwargs, file in [({}, feature_dir.with_name("data_clip_RN101_att.h5")),
                         ({"consolidated": True}, feature_dir.with_name("data_clip_RN101_att.h5")),
                         ({"consolidated": explicit}, explicit)]:  # fmt: skip
        source, arrays = first_batch(**kwargs)
        assert isinstance(source.visuals.store, C.ConsolidatedImageStore)
        assert source.visuals.store.file == file
        for key in per_file:
            np.testing.assert_array_equal(arrays[key], per_file[key])
    source = load_task_source(
        "vqa", tmp_path, "train", train=True, batch_size=4, consolidated=False
    )
    with pytest.raises(FileNotFoundError, match="img_a"):
        source.visuals.store.load("img_a")


def test_auto_detection_warns_when_the_directory_is_newer(image_dir, write):
    C.consolidate_features(image_dir, "image")
    out = image_dir.with_name("feats.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C.open_feature_store("image", image_dir, expected_shape=(49, 8))
    write.h5(image_dir, "img_new", np.zeros((49, 8), np.float16))
    later = out.stat().st_mtime + 10
    os.utime(image_dir, (later, later))
    with pytest.warns(UserWarning, match="changed after"):
        store = C.open_feature_store("image", image_dir, expected_shape=(49, 8))
    assert isinstance(store, C.ConsolidatedImageStore) and "img_new" not in store
    assert isinstance(
        C.open_feature_store("image", image_dir, consolidated=False, expected_shape=(49, 8)),
        ImageFeatureStore,
    )


def test_launcher_writes_the_file_and_prints_the_summary(video_dir):
    out = video_dir.parent / "tv.h5"
    result = subprocess.run(
        [sys.executable, "-m", "launch.consolidate_features", f"--feature_dir={video_dir}",
         "--kind=video", f"--out={out}"],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    assert '"items": 3' in result.stdout and '"rows": 74' in result.stdout
    assert len(C.ConsolidatedVideoStore(out, feat_dim=6)) == 3


def test_pipeline_benchmark_times_both_stores_on_a_tiny_benchmark(tmp_path, t5_tokenizer):
    root = tmp_path / "datasets"
    generate_benchmark(root, seed=0, kind="image", coco_images=(4, 0, 2, 2), gqa_images=(2, 2, 2),
                       nlvr_images=(4, 2, 2), nlvr_groups=(2, 1, 1))  # fmt: skip
    made = input_pipeline.consolidate_all(root, ["nlvr", "vqa", "caption"])
    assert [(r["feature_dir"], r["items"]) for r in made] == [
        ("COCO/clip_features/data_clip_RN101_att", 8),
        ("nlvr/clip_features/data_clip_RN101_att", 8),
    ]
    collator = TextCollator(t5_tokenizer, "t5")
    for store, prefetch in [("files", False), ("consolidated", True)]:
        record = input_pipeline.measure(
            root, "nlvr", collator, 3, store=store, prefetch=prefetch, batches=4
        )
        assert record["store"] == store and record["prefetch"] is prefetch
        assert record["batches"] == 4 and record["examples_per_s"] > 0
