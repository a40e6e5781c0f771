"""Named evaluators, several per run (big_vision's `config.evals`).

`config.evals` maps a name to an evaluator; each logs its metrics as `<name>/<metric>`
(console, metrics.jsonl, TensorBoard), and `config.best_metric` (the checkpoint kept as
best) may name any of them. The default, `config.evals.eval`, is today's eval: the run's
own eval split every `config.eval_every` steps, `eval/top1` etc.

    config.evals.a = evaluators.evaluator("imagenet_a", dataset="folder:/data/imagenet-a")
    config.evals.c = evaluators.evaluator("imagenet_c", every=0)  # tfds, at the end only

An evaluator's fields (`evaluator(kind)` lists them with their defaults):

- kind: "classification" (top-1/5, NLL, ECE on a labelled split), "probe" (few-shot and
  linear-probe top-1 of the frozen features: smlp_jax/train/probe.py), or an ImageNet test
  set: "imagenet_real", "imagenet_v2", "imagenet_a", "imagenet_r", "imagenet_sketch",
  "imagenet_c" (labels and tables: smlp_jax/data/eval_sets.py).
- dataset, split: "" is the run's dataset and eval split (classification, probe) or the
  set's tfds builder and split; else a tfds name or "folder:/path". A classification
  dataset other than the run's is scored in the model's classes, matched by name.
- every: steps between evaluations; None is config.eval_every, 0 only at the end.
- batch_size, crop_pct, interpolation: None / "" take the run's (config.eval_batch_size,
  config.input.crop_pct, its eval resize filter), which `input_from_pretrained` sets to the
  model's official eval for a registered model.
- probe: train_split ("" = config.probe.train_split; shots, seeds, l2_reg from
  config.probe). imagenet_real: real_labels (a folder's real.json). imagenet_v2: variant.
  imagenet_c: corruptions, severities, clean (the evaluator whose top-1 is the clean
  accuracy that relative mCE needs; "" for none).

Every classification evaluator reports `top1`, `top5`, `nll` (= `loss`, the mean negative
log-likelihood of the label) and `ece` (expected calibration error, 15 equal-width bins of
the top-1 confidence) for the model and, with EMA, `ema_*`; ImageNet-ReaL's `top1` is ReaL
accuracy over the images that have ReaL labels (`labeled` of them), with `original_top1` and
`nll` on the original labels; ImageNet-C adds each corruption's and severity's top-1 and
`mce` / `relative_mce` (eval_sets.corruption_summary). A probe reports `<k>shot` and `full`.

`Suite.create` checks every evaluator before training starts (an unknown kind, field or
dataset, a label space that does not fit the model's class count: one line each).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from ml_collections import config_dict

from smlp_jax import data
from smlp_jax.data import eval_sets, sources, transforms
from smlp_jax.data.base import resolve_data_dir
from smlp_jax.errors import UserError
from smlp_jax.train import probe, sharding
from smlp_jax.train.errors import ConfigError
from smlp_jax.train.eval_metrics import (  # noqa: F401  (classification_sums, summarize: API)
    ECE_BINS,
    classification_sums,
    expected_calibration_error,
    make_classify_step,
    summarize,
)
from smlp_jax.train.metrics import eval_line

DEFAULT = "eval"  # the run's own eval split; its keys are eval/top1 ... as always
BEST_METRIC = "eval/top1"
CLASSIFICATION = ("classification", *eval_sets.KINDS)
KINDS = ("classification", "probe", *eval_sets.KINDS)

# Every evaluator's fields: name -> (type, default); None defaults are typed placeholders,
# so `--config.evals.<name>.every=500` works from the command line.
_COMMON = {
    "kind": (str, "classification"),
    "dataset": (str, ""),
    "split": (str, ""),
    "every": (int, None),
    "batch_size": (int, None),
    "crop_pct": (float, None),
    "interpolation": (str, ""),
}
_KIND_FIELDS = {
    "probe": {"train_split": (str, "")},
    "imagenet_real": {"real_labels": (str, "")},
    "imagenet_v2": {"variant": (str, "matched-frequency")},
    "imagenet_c": {
        "corruptions": (tuple, eval_sets.BENCHMARK_CORRUPTIONS),
        "severities": (tuple, eval_sets.SEVERITIES),
        "clean": (str, DEFAULT),
    },
}


def _check_kind(kind: str, where: str) -> None:
    if kind not in KINDS:
        raise ConfigError(
            f"{where}.kind={kind!r} is not an evaluator kind; use one of {', '.join(KINDS)}."
        )


def fields(kind: str) -> dict[str, tuple[type, Any]]:
    """The fields of an evaluator of `kind`: name -> (type, default)."""
    _check_kind(kind, "evaluator")
    return {**_COMMON, **_KIND_FIELDS.get(kind, {})}


def evaluator(kind: str = "classification", **values) -> ml_collections.ConfigDict:
    """An evaluator's config with every field of its kind (so each can be overridden from
    the command line), `values` set."""
    known = fields(kind)
    unknown = sorted(set(values) - set(known) - {"kind"})
    if unknown:
        raise ConfigError(
            f"a {kind} evaluator has no field(s) {', '.join(unknown)}; it takes {', '.join(known)}."
        )
    cfg = ml_collections.ConfigDict()
    for key, (kind_of, default) in known.items():
        value = kind if key == "kind" else values.get(key, default)
        cfg[key] = config_dict.placeholder(kind_of) if value is None else value
    return cfg


def default_evals() -> ml_collections.ConfigDict:
    """`config.evals` of base_config(): the run's own eval split, as `eval/...`."""
    return ml_collections.ConfigDict({DEFAULT: evaluator("classification")})


@dataclasses.dataclass(frozen=True)
class Spec:
    """One `config.evals` entry, every field filled in and checked."""

    name: str
    kind: str
    dataset: str = ""
    split: str = ""
    every: int | None = None
    batch_size: int | None = None
    crop_pct: float | None = None
    interpolation: str = ""
    options: dict = dataclasses.field(default_factory=dict)  # the kind's own fields

    @property
    def where(self) -> str:
        return f"config.evals.{self.name}"


def parse(name: str, entry: Any) -> Spec:
    """The Spec of `config.evals.<name>` (a ConfigDict or dict); ConfigError saying what is
    wrong with it."""
    where = f"config.evals.{name}"
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ConfigError(
            f"{where}: an evaluator's name is its metrics' prefix; use letters, digits, _ . -"
        )
    if isinstance(entry, ml_collections.ConfigDict):
        entry = entry.to_dict()
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a dict of fields (evaluators.evaluator(kind, ...)).")
    kind = entry.get("kind", "classification")
    _check_kind(kind, where)
    known = fields(kind)
    unknown = sorted(set(entry) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: a {kind} evaluator has no field(s) {', '.join(unknown)}; it takes "
            f"{', '.join(known)}."
        )
    values = {key: entry.get(key, default) for key, (_, default) in known.items()}
    for key, (kind_of, _) in known.items():
        value = values[key]
        if value is None:
            continue
        if kind_of is float and isinstance(value, int) and not isinstance(value, bool):
            value = values[key] = float(value)
        if kind_of is tuple and isinstance(value, list):
            value = values[key] = tuple(value)
        if not isinstance(value, kind_of) or isinstance(value, bool):
            raise ConfigError(f"{where}.{key}={value!r}: a {kind_of.__name__} expected.")
    if values["every"] is not None and values["every"] < 0:
        raise ConfigError(f"{where}.every={values['every']}: steps (>= 1), or 0 for the end only.")
    if values["batch_size"] is not None and values["batch_size"] <= 0:
        raise ConfigError(f"{where}.batch_size={values['batch_size']}: a positive number.")
    crop = values["crop_pct"]
    if crop is not None and not 0.0 < crop <= 1.0:
        raise ConfigError(f"{where}.crop_pct={crop}: a fraction in (0, 1].")
    if values["interpolation"] not in ("", *transforms.EVAL_INTERPOLATIONS):
        raise ConfigError(
            f"{where}.interpolation={values['interpolation']!r}: '' (the run's) or one of "
            f"{', '.join(transforms.EVAL_INTERPOLATIONS)}."
        )
    common = {key: values.pop(key) for key in _COMMON}
    common.pop("kind")
    return Spec(name=name, kind=kind, **common, options=values)


# --- one evaluator ------------------------------------------------------------------------


@dataclasses.dataclass
class Evaluator:
    """A checked evaluator, its data opened: what `Suite.run` needs."""

    spec: Spec
    config: Any  # the run's config with this evaluator's data, batch and preprocessing
    every: int
    source: Any = None  # None: config's dataset and eval split (data.create_eval_iterator)
    classes: str = ""  # ImageNet label space ("imagenet", "imagenet_a", ...); "" the run's
    multi_label: bool = False
    groups: tuple = ()
    probe_splits: tuple[str, str] = ("", "")  # (train, test)
    probe_classes: int = 0
    # `source`, or the config's eval split, as opened for the first pass (`batches`).
    _opened: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def due(self, step: int, last: bool) -> bool:
        return last or bool(self.every and step % self.every == 0)

    def batches(self):
        if self._opened is None:  # opened once: a decoded-image cache serves every pass
            self._opened = data.open_eval_source(self.config, self.source)
        return data.create_eval_iterator(self.config, source=self._opened)

    def metric_names(self, ema: bool) -> tuple[str, ...]:
        """The metrics it reports whose higher value is better (for `config.best_metric`)."""
        if self.spec.kind == "probe":
            shots = [f"{int(k)}shot" for k in self.config.probe.shots]
            return tuple(f"{self.name}/{m}" for m in (*shots, "full"))
        names = ["top1"]
        if self.multi_label:
            names.append("original_top1")
        elif not self.groups:
            names.append("top5")
        for corruption, severity in self.groups:
            names += [f"{corruption}/top1", f"{corruption}/{severity}/top1"]
        prefixes = ("", "ema_") if ema else ("",)
        return tuple(dict.fromkeys(f"{self.name}/{p}{m}" for p in prefixes for m in names))


def _run_config(config: Any, spec: Spec, dataset: bool) -> Any:
    """The run's config with the evaluator's batch size and preprocessing (and, `dataset`,
    its dataset and split); the run's own object when nothing changes."""
    changes = {
        "eval_batch_size": spec.batch_size,
        "input.crop_pct": spec.crop_pct,
        "input.eval_interpolation": spec.interpolation or None,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if dataset and spec.dataset:  # another dataset: its own split ("": its default one)
        changes.update({"dataset": spec.dataset, "input.eval_split": spec.split})
    elif dataset and spec.split:
        changes["input.eval_split"] = spec.split
    if not changes:
        return config
    config = config.copy_and_resolve_references()
    for key, value in changes.items():
        node, *path = [config, *key.split(".")]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return config


def _check_batch(spec: Spec, config: Any, mesh) -> None:
    size = int(config.eval_batch_size)
    data.local_batch_size(size, jax.process_count(), f"evals.{spec.name}.batch_size")
    devices = sharding.data_parallel_size(mesh)
    if size % devices:
        raise ConfigError(
            f"{spec.where}.batch_size={size} is not divisible by the {devices} devices; use a "
            f"multiple of {devices}."
        )


def _check_imagenet_model(spec: Spec, eval_data, info) -> None:
    space = (
        f"the 200 {spec.kind} classes of ImageNet-1k's 1000"
        if eval_data.classes != "imagenet"
        else "ImageNet-1k's 1000 classes"
    )
    if int(info.num_classes) != eval_sets.IMAGENET_CLASSES:
        raise ConfigError(
            f"{spec.where} ({spec.kind}) scores {space}; the model has {info.num_classes} "
            "classes. Evaluate an ImageNet-1k model (e.g. --config.init_from=official weights)."
        )
    if eval_sets.looks_like_imagenet(info.class_names) is False:
        raise ConfigError(
            f"{spec.where} ({spec.kind}): the model's 1000 classes (config.dataset="
            f"{info.name!r}) are not ImageNet-1k's in class order, so its labels cannot map."
        )


def _create(config: Any, spec: Spec, info, mesh) -> Evaluator:
    every = int(spec.every if spec.every is not None else (config.eval_every or 0))
    if spec.kind in ("classification", "probe"):
        run = _run_config(config, spec, dataset=True)
        _check_batch(spec, run, mesh)
        if spec.kind == "probe":
            train_split = spec.options["train_split"] or str(config.probe.train_split)
            test_split = sources.eval_split(run)
            train = sources.open_split(run, train_split)
            sources.open_split(run, test_split)
            return Evaluator(
                spec, run, every, probe_splits=(train_split, test_split),
                probe_classes=int(train.num_classes),
            )  # fmt: skip
        if not spec.dataset:  # the run's dataset: its classes are the model's
            if spec.split:
                sources.open_split(run, spec.split)
            return Evaluator(spec, run, every)
        source = sources.open_split(run, sources.eval_split(run))
        source = eval_sets.map_to_classes(
            source, info.class_names, info.num_classes, f"{spec.where} ({spec.dataset})"
        )
        return Evaluator(spec, run, every, source=source)
    run = _run_config(config, spec, dataset=False)
    _check_batch(spec, run, mesh)
    options = dict(spec.options)
    options.pop("clean", None)
    eval_data = eval_sets.open_imagenet_set(
        spec.kind,
        spec.dataset,
        spec.split,
        resolve_data_dir(config.get("data_dir")),
        **options,
    )
    _check_imagenet_model(spec, eval_data, info)
    return Evaluator(
        spec,
        run,
        every,
        source=eval_data.source,
        classes=eval_data.classes,
        multi_label=eval_data.multi_label,
        groups=eval_data.groups,
    )


# --- all of them --------------------------------------------------------------------------


def _entries(config: Any) -> dict[str, Any]:
    evals = config.get("evals")
    if evals is None:  # a config from before evaluators (a tool's, an old run record's)
        return {DEFAULT: {"kind": "classification"}}
    return dict(evals.items())


class Suite:
    """The run's evaluators: which are due at a step, running them, their console lines."""

    def __init__(self, evaluators: list[Evaluator], graphs, mesh, best_metric: str):
        self.evaluators, self.graphs, self.mesh = evaluators, graphs, mesh
        self.best_metric = best_metric
        self.last: dict[str, float] = {}  # every evaluator's latest scalars (ImageNet-C's clean)
        self._steps: dict[tuple, Callable] = {}

    @classmethod
    def create(cls, config: Any, setup: Any, only: str = "", check_best: bool = True) -> Suite:
        """Every evaluator of `config.evals` checked and its data opened (before training:
        a bad one is one line); `only`: comma-separated names to keep (`--mode=eval`);
        `check_best`: `config.best_metric` must be one of their metrics (training)."""
        entries = _entries(config)
        specs = [parse(name, entry) for name, entry in entries.items()]
        names = [s.name for s in specs]
        wanted = [n.strip() for n in str(only or "").split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ConfigError(
                f"config.eval_only names {', '.join(unknown)}, which config.evals lacks; it "
                f"has {', '.join(names) or 'none'}."
            )
        for spec in specs:
            clean = spec.options.get("clean")
            if clean and (clean not in entries or parse(clean, entries[clean]).kind == "probe"):
                raise ConfigError(
                    f"{spec.where}.clean={clean!r} names no classification evaluator (the "
                    f"clean accuracy for relative mCE); use one of {', '.join(names)} or ''."
                )
        evaluators = []
        for spec in specs:
            if wanted and spec.name not in wanted:
                continue
            try:
                evaluators.append(_create(config, spec, setup.info, setup.mesh))
            except UserError as err:
                # The data side names the run's keys; here they are the evaluator's.
                message = str(err).replace("config.dataset", f"{spec.where}.dataset")
                message = message.replace("config.input.eval_split", f"{spec.where}.split")
                if not message.startswith(spec.where):
                    message = f"{spec.where} ({spec.kind}): {message}"
                raise type(err)(message) from None
        # ImageNet-C last: its relative mCE reads the clean accuracy of the same round.
        evaluators.sort(key=lambda e: e.spec.kind == "imagenet_c")
        best = str(config.get("best_metric", BEST_METRIC) or "")
        if best and check_best:
            ema = bool(config.get("ema") and config.ema.decay)
            known = [m for e in evaluators for m in e.metric_names(ema)]
            if best not in known:
                shown = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
                raise ConfigError(
                    f"config.best_metric={best!r} is no metric of config.evals whose higher "
                    f"value is better; use one of {shown or 'none'}, or '' for no best "
                    "checkpoint."
                )
        return cls(evaluators, setup.graphs, setup.mesh, best)

    def due(self, step: int, last: bool) -> list[Evaluator]:
        return [e for e in self.evaluators if e.due(step, last)]

    def run(self, evaluators: list[Evaluator], state: dict) -> dict[str, float]:
        """Runs `evaluators` on `state`'s weights (and its EMA's): every one's scalars."""
        scalars: dict[str, float] = {}
        for ev in evaluators:
            if ev.spec.kind == "probe":
                found = self._probe(ev, state)
            else:
                found = self._classify(ev, state)
            self.last.update(found)
            scalars.update(found)
        return scalars

    def lines(self, step: int, scalars: dict[str, float], evaluators=None) -> list[str]:
        """One console line per evaluator that has scalars here."""
        out = []
        for ev in evaluators if evaluators is not None else self.evaluators:
            mine = {k: v for k, v in scalars.items() if k.startswith(ev.name + "/")}
            if mine:
                out.append(line(ev, step, mine))
        return out

    # --- running ---------------------------------------------------------------------

    def _step(self, ev: Evaluator) -> Callable:
        key = (ev.classes, ev.multi_label, len(ev.groups))
        if key not in self._steps:
            subset = eval_sets.subset_indices(ev.classes) if ev.classes else None
            step = make_classify_step(self.graphs, subset, ev.multi_label, len(ev.groups))
            jitted = jax.jit(step, out_shardings=sharding.replicated(self.mesh))
            self._steps[key] = sharding.under_mesh(jitted, self.mesh)
        return self._steps[key]

    def _classify(self, ev: Evaluator, state: dict) -> dict[str, float]:
        weights = {"": (state["params"], state["model_state"])}
        if "ema" in state:
            weights["ema_"] = (state["ema"]["params"], state["ema"]["model_state"])
        step = self._step(ev)
        totals: dict[str, Any] = {prefix: None for prefix in weights}
        for batch in ev.batches():
            batch = sharding.global_batch(batch, self.mesh)
            for prefix, (params, model_state) in weights.items():
                sums = step(params, model_state, state["rngs"], batch)
                total = totals[prefix]
                totals[prefix] = sums if total is None else jax.tree.map(jnp.add, total, sums)
        scalars = {}
        for prefix, total in totals.items():
            if total is None:
                raise ConfigError(f"{ev.spec.where}: its split is empty; check its data.")
            total = jax.device_get(total)
            for metric, value in summarize(total).items():
                scalars[f"{ev.name}/{prefix}{metric}"] = value
            if ev.groups:
                scalars.update(self._corruptions(ev, prefix, total))
        return scalars

    def _corruptions(self, ev: Evaluator, prefix: str, total: dict) -> dict[str, float]:
        counts = np.asarray(total["group_n"], np.float64)
        correct = np.asarray(total["group_top1"], np.float64)
        top1 = {
            group: float(correct[i] / counts[i]) if counts[i] else float("nan")
            for i, group in enumerate(ev.groups)
        }
        clean_name = ev.spec.options.get("clean")
        clean = self.last.get(f"{clean_name}/{prefix}top1") if clean_name else None
        summary = eval_sets.corruption_summary(top1, clean)
        return {f"{ev.name}/{prefix}{k}": v for k, v in summary.items()}

    def _probe(self, ev: Evaluator, state: dict) -> dict[str, float]:
        key = ("probe",)
        if key not in self._steps:
            jitted = jax.jit(
                probe.make_feature_step(self.graphs), out_shardings=sharding.replicated(self.mesh)
            )
            self._steps[key] = sharding.under_mesh(jitted, self.mesh)
        step = self._steps[key]
        train_split, test_split = ev.probe_splits
        train = probe.split_features(ev.config, train_split, step, state, self.mesh)
        test = probe.split_features(ev.config, test_split, step, state, self.mesh)
        settings = ev.config.probe
        results = probe.few_shot_top1(
            train,
            test,
            ev.probe_classes,
            shots=tuple(int(k) for k in settings.shots),
            seeds=int(settings.seeds),
            l2_reg=float(settings.l2_reg),
        )
        return {f"{ev.name}/{k.removeprefix('probe/')}": v for k, v in results.items()}


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def line(ev: Evaluator, step: int, scalars: dict[str, float]) -> str:
    """The console line of one evaluator's scalars (the default's is today's `eval_line`)."""
    if ev.name == DEFAULT and ev.spec.kind == "classification":
        return eval_line(step, scalars)
    parts = [f"{ev.name} @ step {step}"]
    if ev.spec.kind == "probe":
        shown = " ".join(
            f"{k.split('/', 1)[1].replace('shot', '-shot')} {_percent(v)}"
            for k, v in scalars.items()
        )
        return f"{parts[0]} | probe {shown}"
    for prefix in ("", "ema_"):

        def get(metric: str, prefix: str = prefix) -> float | None:
            return scalars.get(f"{ev.name}/{prefix}{metric}")

        if get("top1") is None:
            continue
        tag = "ema " if prefix else ""
        if ev.multi_label:
            text = (
                f"{tag}ReaL top1 {_percent(get('top1'))} ({int(get('labeled'))} labeled) "
                f"original top1 {_percent(get('original_top1'))}"
            )
        else:
            text = f"{tag}top1 {_percent(get('top1'))}"
            if not ev.groups:
                text += f" top5 {_percent(get('top5'))}"
        text += f" nll {get('nll'):.4f} ece {_percent(get('ece'))}"
        if get("mce") is not None:
            text += f" mCE {_percent(get('mce'))}"
        if get("relative_mce") is not None:
            text += f" relative mCE {_percent(get('relative_mce'))}"
        parts.append(text)
    return " | ".join(parts)


RESULTS_FILE = "eval_results.jsonl"


def not_written(workdir: str) -> str:
    """The line `--mode=eval` prints when it evaluates a workdir's own checkpoint: that
    workdir (a run that may be training) is left as it is; how to get the file."""
    return (
        f"results not written: {workdir} is the run's own workdir, left as it is; "
        f"--config.init_from={workdir} --workdir=OUT writes them to OUT/{RESULTS_FILE}"
    )


def write_results(workdir: str, step: int, source: str, scalars: dict[str, float]) -> str:
    """Appends `--mode=eval`'s results to `WORKDIR/eval_results.jsonl` (process 0 writes):
    one JSON object a run, `{"step", "weights" (where they came from), "time" (UTC),
    "<name>/<metric>": ...}`, so evaluating other weights or evaluators into the same
    workdir adds lines and keeps the earlier ones. Returns the console line saying where;
    a workdir it cannot write (eval may read a read-only one) is said in that line, not
    raised: the results are printed already."""
    path = Path(workdir) / RESULTS_FILE
    if jax.process_index() != 0:
        return f"results appended to {path} by process 0"
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    record = {"step": int(step), "weights": str(source), "time": when}
    record.update({k: float(v) for k, v in sorted(scalars.items())})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as err:
        return f"results not written to {path}: {err.strerror or err}"
    return f"results appended to {path}"
