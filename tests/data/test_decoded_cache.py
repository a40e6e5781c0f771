"""`input.cache_decoded_mb`: decoded images kept in memory give the batches decoding gives."""

import pickle

import numpy as np
import pytest
from PIL import Image

from smlp_jax import data
from smlp_jax.data import decoded_cache, sources
from tests.data.conftest import make_config


def _take(iterator, n):
    try:
        return [next(iterator) for _ in range(n)]
    finally:
        iterator.close()


def _assert_same_batches(want, got):
    assert len(want) == len(got)
    for a, b in zip(want, got):
        assert set(a) == set(b)
        for key in a:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _train(config, n):
    return _take(data.create_train_iterator(config, process_index=0, process_count=1), n)


def test_the_demo_with_the_cache_gives_the_batches_of_decoding_every_time(demo_data_dir):
    """Three epochs of a 100-digit split (the first fills the cache), read by two threads:
    the same batches and eval batches as without the cache."""
    split = {"input.train_split": "train[:100]", "input.num_threads": 2, "batch_size": 25}
    plain = make_config("demo", demo_data_dir, **split)
    cached = make_config("demo", demo_data_dir, **split, **{"input.cache_decoded_mb": 1})
    _assert_same_batches(_train(plain, 12), _train(cached, 12))
    evaluation = data.create_eval_iterator(cached, process_index=0, process_count=1)
    for _ in range(2):  # the second pass reads the cache
        _assert_same_batches(
            list(data.create_eval_iterator(plain, process_index=0, process_count=1)),
            list(evaluation),
        )


@pytest.fixture
def caches(monkeypatch) -> list:
    """Every `DecodedCache` the pipeline builds during the test, in order."""
    built = []

    class Recorded(decoded_cache.DecodedCache):
        def __init__(self, *args):
            super().__init__(*args)
            built.append(self)

    monkeypatch.setattr(decoded_cache, "DecodedCache", Recorded)
    return built


def test_the_train_cache_fills_in_the_background_once_the_pipeline_starts(demo_data_dir, caches):
    """In-process (no workers), the first batch starts a thread that decodes the whole
    split while the step compiles; closing the iterator stops it."""
    split = {"input.train_split": "train[:300]", "input.num_workers": 0}
    config = make_config("demo", demo_data_dir, **split, **{"input.cache_decoded_mb": 1})
    iterator = data.create_train_iterator(config, process_index=0, process_count=1)
    (cache,) = caches
    assert cache._filler is None  # nothing before the pipeline starts
    next(iterator)
    cache._filler.join(timeout=120)
    assert len(cache._items) == 300 and cache.cached_bytes == 300 * 28 * 28 * 3
    iterator.close()
    assert cache._stop.is_set()


def test_an_eval_source_opened_once_keeps_its_images_for_every_later_pass(demo_data_dir):
    """What an evaluator does (`open_eval_source`, then an iterator a pass): the second
    pass reads the decoded images the first one kept, and gives the same batches."""
    plain = make_config("demo", demo_data_dir)
    cached = make_config("demo", demo_data_dir, **{"input.cache_decoded_mb": 64})
    want = list(data.create_eval_iterator(plain, process_index=0, process_count=1))
    source = data.open_eval_source(cached)
    assert isinstance(source, decoded_cache.DecodedCache)
    assert data.open_eval_source(cached, source) is source  # not wrapped twice
    for _ in range(2):
        got = data.create_eval_iterator(cached, source=source, process_index=0, process_count=1)
        _assert_same_batches(want, list(got))
        assert len(source._items) == len(source) == 1000


@pytest.fixture
def photo_folder(tmp_path):
    """JPEG photos with detail (so a DCT draft changes pixels; 0.4 MB each decoded), a
    grey PNG each for two classes, and a broken file."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        for i in range(5):
            pixels = rng.integers(0, 256, (300 + 8 * i, 400, 3), dtype=np.uint8)
            path = tmp_path / "train" / label / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, quality=90)
        Image.fromarray(pixels[..., 0]).save(tmp_path / "train" / label / "grey.png")
    (tmp_path / "train" / "b" / "0_broken.jpg").write_bytes(b"not an image")
    for label in ("a", "b"):  # a val/ folder: all 13 files above are the train split
        (tmp_path / "val" / label).mkdir(parents=True)
        Image.fromarray(pixels[:8, :8]).save(tmp_path / "val" / label / "0.png")
    return tmp_path


def test_cached_jpegs_are_cropped_from_full_size_pixels_whatever_fits(photo_folder, caches):
    """With the cache on, JPEG crops come from full-size pixels (no draft): the batches of
    `jpeg_draft=False`, whether every image fits the budget or only two do; the broken file
    is skipped as without the cache, and never cached."""
    folder, settings = f"folder:{photo_folder}", dict(preset="imagenet", batch_size=6)
    want = _train(make_config(folder, **settings, **{"input.jpeg_draft": False}), 4)
    drafted = _train(make_config(folder, **settings), 4)
    assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(want, drafted))
    for budget_mb, cached_images in ((64, 12), (1, 2)):  # all but the broken file; two
        caches.clear()
        config = make_config(folder, **settings, **{"input.cache_decoded_mb": budget_mb})
        _assert_same_batches(want, _train(config, 4))  # 24 examples: 13 files an epoch
        (cache,) = caches
        assert len(cache._items) == cached_images, (budget_mb, len(cache._items))
        assert 0 < cache.cached_bytes <= cache.budget_bytes == budget_mb * decoded_cache.MB


def test_a_cache_holds_decoded_rgb_images_and_pickles_without_them(demo_data_dir):
    config = make_config("demo", demo_data_dir)
    source = sources.open_split(config, "test")
    cache = decoded_cache.DecodedCache(source, decoded_cache.MB)
    image, label, name = cache[3]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (28, 28)
    assert (label, name) == tuple(source[3][1:]) and cache[3][0] is image  # decoded once
    assert cache.cached_bytes == 28 * 28 * 3 and cache.num_classes == source.num_classes
    copy = pickle.loads(pickle.dumps(cache))  # what a worker process receives
    assert copy.cached_bytes == 0 and not copy._items and len(copy) == len(source)
    assert len(pickle.dumps(cache)) < len(pickle.dumps(source)) + 200


@pytest.mark.parametrize(
    "value, complaint",
    [
        (-1, "give a whole number of MB"),
        (1.5, "give a whole number of MB"),
        (10**12, "more than this machine's memory"),
    ],
)
def test_a_bad_cache_size_is_one_line(demo_data_dir, value, complaint):
    """(main.py's flags refuse a float already; a config built in Python may hold one.)"""
    settings = dict(make_config("demo", demo_data_dir).input.to_dict(), cache_decoded_mb=value)
    with pytest.raises(data.DataError, match=complaint):
        data.check_loading(settings)
