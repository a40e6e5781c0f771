"""Named evaluators (smlp_jax/train/evaluators.py): calibration against hand-computed values,
the ImageNet test sets scored in the right label space on a 1000-class model whose
predictions the test sets by hand, bad evaluators as one line before training, and several
evaluators in one tiny demo run (their own frequencies and prefixes, the best checkpoint by
any of them, `--mode=eval` running the ones named)."""

import json
import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image

from smlp_jax.data import DataError, DatasetInfo, demo_dataset, eval_sets
from smlp_jax.train import evaluators, sharding, state, trainer
from smlp_jax.train.errors import ConfigError
from tests.data.imagenet_sets import image_folder, tfds_set, wnid
from tests.train.tiny import read_metrics, tiny_config

# --- calibration and NLL ------------------------------------------------------------------


def _logits(probabilities) -> jnp.ndarray:
    return jnp.log(jnp.asarray(probabilities, jnp.float32))


def test_ece_and_nll_against_hand_computed_values():
    """Three counted examples: confidence 0.70 right and 0.72 wrong share the bin (2/3, 11/15],
    0.90 right is alone in (13/15, 14/15]; a padded example and one outside the label space
    (label -1) count nowhere."""
    logits = _logits(
        [
            [0.70, 0.20, 0.10],  # label 0: right, confidence 0.70
            [0.72, 0.18, 0.10],  # label 1: wrong, confidence 0.72
            [0.05, 0.05, 0.90],  # label 2: right, confidence 0.90
            [0.10, 0.80, 0.10],  # padding
            [0.10, 0.10, 0.80],  # label -1
        ]
    )
    labels = jnp.asarray([0, 1, 2, 0, -1])
    mask = jnp.asarray([True, True, True, False, True])
    sums = evaluators.classification_sums(logits, labels, mask)
    out = evaluators.summarize(jax.device_get(sums))
    # ECE = sum_b n_b/N |acc_b - conf_b| = (2/3 |1/2 - 0.71| + 1/3 |1 - 0.90|) = 0.52 / 3
    assert out["ece"] == pytest.approx((abs(1 - (0.70 + 0.72)) + abs(1 - 0.90)) / 3, abs=1e-6)
    assert out["nll"] == pytest.approx(-(math.log(0.70) + math.log(0.18) + math.log(0.90)) / 3)
    assert out["loss"] == out["nll"]
    assert out["top1"] == pytest.approx(2 / 3) and out["top5"] == 1.0  # 3 classes: top-5 all
    # One bin a sample would give (0.30 + 0.72 + 0.10) / 3: the binning is what is tested.
    assert not math.isclose(out["ece"], (0.30 + 0.72 + 0.10) / 3, abs_tol=1e-3)


def test_real_sums_leave_out_images_without_labels():
    """ReaL: right when the prediction is any of the image's ReaL labels; images with none
    are left out of top-1 and ECE; the original labels still give original_top1 and NLL."""
    logits = _logits([[0.64, 0.26, 0.1], [0.62, 0.28, 0.1], [0.2, 0.7, 0.1], [0.1, 0.08, 0.82]])
    labels = jnp.asarray([1, 0, 1, 2])  # original labels
    real = jnp.asarray([[1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 1]], bool)
    out = evaluators.summarize(
        evaluators.classification_sums(logits, labels, jnp.ones(4, bool), real=real)
    )
    assert out["labeled"] == 3 and out["top1"] == pytest.approx(2 / 3)  # images 0 and 3
    assert out["original_top1"] == pytest.approx(3 / 4)
    # Images 0 (right) and 1 (wrong) share the bin (3/5, 2/3]; image 3 (right) is alone.
    assert out["ece"] == pytest.approx((abs(1 - (0.64 + 0.62)) + abs(1 - 0.82)) / 3, abs=1e-6)
    nll = -(math.log(0.26) + math.log(0.62) + math.log(0.7) + math.log(0.82)) / 4
    assert out["nll"] == pytest.approx(nll)


# --- the ImageNet test sets on a 1000-class model -----------------------------------------


def _pick(indices, avoid) -> int:
    """A position in `indices` whose ImageNet class is not in `avoid`."""
    return next(p for p, i in enumerate(indices) if i not in set(avoid.tolist()))


@pytest.fixture(scope="module")
def imagenet_model(demo_data_dir):
    """(config, setup, state) of a tiny 1000-class sMLPNet whose logits are its head's bias
    for every image: class 0 (tench, in neither A nor R) highest, then an ImageNet-A class
    (not in R), then an ImageNet-R class (not in A)."""
    config = tiny_config(demo_data_dir, eval_batch_size=16)
    a, r = eval_sets.subset_indices("imagenet_a"), eval_sets.subset_indices("imagenet_r")
    pa, pr = _pick(a, r), _pick(r, a)
    st = state.init_state(config, 1000, optax.identity())
    st.pop("ema", None)
    head = st["params"]["head"]
    bias = np.zeros(1000, np.float32)
    bias[0], bias[a[pa]], bias[r[pr]] = 10.0, 5.0, 4.0
    head["kernel"], head["bias"] = jnp.zeros_like(head["kernel"]), jnp.asarray(bias)
    info = DatasetInfo("imagenet2012", 1000, 1, 1, class_names=eval_sets.imagenet_synsets())
    setup = types.SimpleNamespace(
        info=info,
        mesh=sharding.make_mesh(config.mesh),
        graphs=state.model_graphs(state.abstract_model(config, 1000)),
    )
    return config, setup, st, (a, pa, r, pr)


def _with_evals(config, evals: dict | None, **keys):
    """A copy of `config` with `evals` (None: as it is) and other top-level `keys`."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        if evals is not None:
            config.evals = ml_collections.ConfigDict(evals)
        for key, value in keys.items():
            config[key] = value
    return config


def test_imagenet_sets_scored_in_their_label_space(imagenet_model, tmp_path):
    """Every image's prediction is class 0 over the 1000 classes, A's class `pa` over A's
    200 and R's `pr` over R's 200: unrestricted logits would score ImageNet-A at 0%."""
    config, setup, st, (a, pa, r, pr) = imagenet_model
    data_dir = tmp_path / "tfds"
    other_a, other_r = a[(pa + 1) % 200], r[(pr + 1) % 200]
    examples = [{"label": int(a[pa]), "file_name": "x"}] * 2
    examples.append({"label": int(other_a), "file_name": "x"})
    tfds_set(data_dir, "imagenet_a", "test", examples)
    real = [(0, [0]), (5, [0, 5]), (5, [5]), (7, [])]  # (original, ReaL labels)
    tfds_set(
        data_dir,
        "imagenet2012_real",
        "validation",
        [{"original_label": o, "real_label": rl, "file_name": "x"} for o, rl in real],
    )
    r_root = image_folder(tmp_path / "r", {wnid(r[pr]): 1, wnid(other_r): 1})
    v2_root = image_folder(tmp_path / "v2", {"0": 2, "10": 1})
    sketch_root = image_folder(tmp_path / "sketch", {wnid(0): 3, wnid(1): 1})
    corruptions = eval_sets.BENCHMARK_CORRUPTIONS
    right = {(c, s): (i + s) % 2 == 0 for i, c in enumerate(corruptions) for s in range(1, 6)}
    for (c, s), ok in right.items():
        image_folder(tmp_path / "c" / c / str(s), {wnid(0 if ok else 1): 1})
    E = evaluators.evaluator
    config = _with_evals(
        config,
        {
            "a": E("imagenet_a"),
            "r": E("imagenet_r", dataset=f"folder:{r_root}"),
            "real": E("imagenet_real"),
            "v2": E("imagenet_v2", dataset=f"folder:{v2_root}"),
            "clean": E("imagenet_sketch", dataset=f"folder:{sketch_root}", crop_pct=1.0),
            "c": E("imagenet_c", dataset=f"folder:{tmp_path / 'c'}", clean="clean"),
        },
        data_dir=str(data_dir),
        best_metric="a/top1",
    )
    suite = evaluators.Suite.create(config, setup)
    assert [e.name for e in suite.evaluators][-1] == "c"  # after its clean evaluator
    out = suite.run(suite.evaluators, st)
    assert out["a/top1"] == pytest.approx(2 / 3)
    assert out["r/top1"] == pytest.approx(1 / 2)
    assert out["real/top1"] == pytest.approx(2 / 3) and out["real/labeled"] == 3
    assert out["real/original_top1"] == pytest.approx(1 / 4)
    assert out["v2/top1"] == pytest.approx(2 / 3)  # folders "0" and "10": classes 0 and 10
    assert out["clean/top1"] == pytest.approx(3 / 4)
    for (c, s), ok in right.items():
        assert out[f"c/{c}/{s}/top1"] == float(ok)
    expected = eval_sets.corruption_summary({k: float(v) for k, v in right.items()}, 3 / 4)
    assert out["c/mce"] == pytest.approx(expected["mce"])
    assert out["c/relative_mce"] == pytest.approx(expected["relative_mce"])
    assert out["c/top1"] == pytest.approx(np.mean(list(right.values())))
    for name in ("a", "r", "real", "v2", "clean", "c"):
        assert 0.0 <= out[f"{name}/ece"] <= 1.0 and np.isfinite(out[f"{name}/nll"]), name
    lines = suite.lines(7, out)
    assert lines[0].startswith("a @ step 7 | top1 66.67% top5 ")
    assert any(line.startswith("real @ step 7 | ReaL top1 66.67% (3 labeled)") for line in lines)
    assert any("mCE" in line and "relative mCE" in line for line in lines)


# --- bad evaluators: one line, before training ---------------------------------------------


@pytest.fixture(scope="module")
def demo_setup(demo_data_dir):
    config = tiny_config(demo_data_dir)
    return config, trainer.build(config)


def _error(config, setup, evals=None, **keys):
    config = _with_evals(config, evals, **keys)
    with pytest.raises((ConfigError, DataError)) as err:
        evaluators.Suite.create(config, setup)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_bad_evaluators_are_one_line_each(demo_setup, tmp_path):
    config, setup = demo_setup
    E = evaluators.evaluator
    assert "config.evals.x.kind='imagenet_z' is not an evaluator kind; use one of " in _error(
        config, setup, {"x": {"kind": "imagenet_z"}}
    )
    message = _error(config, setup, {"x": E("classification", dataset="no_such_dataset_xyz")})
    assert message.startswith(
        "config.evals.x (classification): Unknown dataset 'no_such_dataset_xyz': "
        "config.evals.x.dataset must be 'demo', 'folder:/abs/path' or a tensorflow-datasets"
    )
    a_root = image_folder(tmp_path / "a", {wnid(eval_sets.subset_indices("imagenet_a")[0]): 1})
    assert _error(config, setup, {"a": E("imagenet_a", dataset=f"folder:{a_root}")}) == (
        "config.evals.a (imagenet_a) scores the 200 imagenet_a classes of ImageNet-1k's 1000; "
        "the model has 10 classes. Evaluate an ImageNet-1k model (e.g. "
        "--config.init_from=official weights)."
    )
    cats = image_folder(tmp_path / "cats", {"train/cat": 1, "val/cat": 1})
    assert "its classes ['cat'] are not among the model's 10 classes" in _error(
        config, setup, {"c": E("classification", dataset=f"folder:{cats}")}
    )
    assert "a imagenet_c evaluator has no field(s) corruption; it takes " in _error(
        config, setup, {"c": {"kind": "imagenet_c", "corruption": ("fog",)}}
    )
    assert "config.evals.e.every=-1" in _error(config, setup, {"e": {"every": -1}})
    assert "config.evals.c.clean='nope' names no classification evaluator" in _error(
        config, setup, {"c": E("imagenet_c", clean="nope")}
    )
    assert "config.best_metric='eval/nll' is no metric of config.evals whose higher" in _error(
        config, setup, best_metric="eval/nll"
    )
    with pytest.raises(ConfigError, match="config.eval_only names nope, which config.evals lacks"):
        evaluators.Suite.create(config, setup, only="eval,nope")
    with pytest.raises(ConfigError, match="a probe evaluator has no field"):
        evaluators.evaluator("probe", variant="x")


def test_a_bad_evaluator_stops_the_run_before_it_writes_anything(demo_data_dir, tmp_path):
    config = _with_evals(tiny_config(demo_data_dir), {"x": evaluators.evaluator("imagenet_sketch")})
    with pytest.raises(
        DataError,
        match=r"^config.evals.x \(imagenet_sketch\): tfds dataset 'imagenet_sketch' is not",
    ):
        trainer.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


# --- several evaluators in one demo run ----------------------------------------------------


def _digit_folder(root, classes=(3, 7), per_class=6):
    """Demo test digits of `classes` as PNGs in root/{train,val}/<class>/ (class names as
    the demo's: "3", "7")."""
    images, labels = demo_dataset.load_digits()
    rows = demo_dataset.split_indices(labels)["test"]
    for c in classes:
        picked = [r for r in rows if labels[r] == c][:per_class]
        for split in ("train", "val"):
            (root / split / str(c)).mkdir(parents=True)
            for i, row in enumerate(picked):
                Image.fromarray(images[row], mode="L").save(root / split / str(c) / f"{i}.png")
    return root


def test_several_evaluators_in_one_demo_run(demo_data_dir, tmp_path):
    digits = _digit_folder(tmp_path / "digits")
    E = evaluators.evaluator
    config = tiny_config(
        demo_data_dir, total_steps=6, eval_every=2, checkpoint_every=2, keep_checkpoints=1
    )
    config = _with_evals(
        config,
        {
            "eval": E("classification"),  # the run's eval split, every eval_every (2)
            "digits37": E("classification", dataset=f"folder:{digits}"),
            "train_head": E("classification", split="train[:128]", every=3),
            "fewshot": E("probe", every=0, split="test[:200]", train_split="train[:500]"),
        },
        best_metric="digits37/top1",
    )
    workdir = tmp_path / "run"
    final = trainer.train_and_evaluate(config, str(workdir))
    entries = read_metrics(workdir)

    def steps(key):
        return [e["step"] for e in entries if key in e]

    assert steps("eval/top1") == steps("digits37/top1") == [2, 4, 6]
    assert steps("train_head/top1") == [3, 6] and steps("fewshot/full") == [6]
    for name in ("eval", "digits37", "train_head"):
        last = [e for e in entries if f"{name}/top1" in e][-1]
        assert {f"{name}/{m}" for m in ("top1", "top5", "nll", "ece", "loss")} <= set(last)
        assert final[f"{name}/top1"] == last[f"{name}/top1"]
    assert set(final) >= {"fewshot/1shot", "fewshot/25shot", "fewshot/full"}
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    # The best checkpoint is chosen by digits37/top1 (ties: the later step), beside the latest.
    top1 = {e["step"]: e["digits37/top1"] for e in entries if "digits37/top1" in e}
    best = max(top1, key=lambda s: (top1[s], s))
    kept = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == sorted({best, 6})
    meta = json.loads((workdir / "checkpoints" / "6" / "meta" / "meta.json").read_text())
    assert meta["metrics"]["digits37/top1"] == top1[6]

    # --mode=eval runs the evaluators named (config.eval_only), on the latest checkpoint.
    with config.unlocked():
        config.eval_only = "digits37,fewshot"
        config.init_from = str(workdir)
    scalars = trainer.evaluate_only(config, str(tmp_path / "eval"))
    assert {k.split("/")[0] for k in scalars} == {"digits37", "fewshot"}
    assert scalars["digits37/top1"] == pytest.approx(final["digits37/top1"], abs=1e-6)
    assert scalars["fewshot/full"] == pytest.approx(final["fewshot/full"], abs=1e-6)
    # ... and appends them to WORKDIR/eval_results.jsonl, one line a run.
    results = tmp_path / "eval" / "eval_results.jsonl"
    (line,) = [json.loads(t) for t in results.read_text().splitlines()]
    # (init_from: the weights go into a fresh state, at step 0)
    assert line["step"] == 0 and line["weights"] == str(workdir) and "time" in line
    assert {k: v for k, v in line.items() if "/" in k} == pytest.approx(scalars)
    trainer.evaluate_only(config, str(tmp_path / "eval"))
    assert len(results.read_text().splitlines()) == 2
    # Without init_from, the run's own workdir is evaluated and left as it is.
    with config.unlocked():
        config.init_from = ""
        config.eval_only = "digits37"
    again = trainer.evaluate_only(config, str(workdir))
    assert again["digits37/top1"] == pytest.approx(final["digits37/top1"], abs=1e-6)
    assert not (workdir / "eval_results.jsonl").exists()
    # A workdir it cannot write (eval may read a read-only one): said in its line, no error.
    (tmp_path / "a_file").write_text("")
    line = evaluators.write_results(str(tmp_path / "a_file" / "eval"), 6, "x", scalars)
    assert line.startswith(f"results not written to {tmp_path / 'a_file' / 'eval'}/eval_results")
