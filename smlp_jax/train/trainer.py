"""The training loop: `train_and_evaluate(config, workdir)` and `evaluate_only`.

Read top to bottom, in big_vision's sections: devices and mesh, input, model and
optimiser, state (restored, or created sharded), steps, loop. Every switch is a config
key (configs/common.py lists them all).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from smlp_jax import data
from smlp_jax.models import moe, registry, remat
from smlp_jax.train import (
    checkpoint,
    compilation_cache,
    evaluators,
    goodput,
    init_from,
    mfu,
    optim,
    preemption,
    probe,
    profiling,
    run_record,
    sharding,
    wandb_writer,
    workdir_lock,
)
from smlp_jax.train.errors import ConfigError, NonFiniteError
from smlp_jax.train.metrics import (
    InputWatch,
    MetricWriter,
    Progress,
    console,
    eval_line,
    last_logged,
    log_parameter_overview,
    train_line,
)
from smlp_jax.train.state import (
    ModelGraphs,
    abstract_model,
    init_state,
    model_graphs,
    model_kwargs,
)
from smlp_jax.train.step import (
    NO_BAD_STEP,
    check_freeze_batch_stats,
    check_remat,
    loss_function,
    make_train_step,
)


def schedule_lengths(config: Any, num_train: int) -> tuple[int, int]:
    """-> (total_steps, steps_per_epoch); `total_steps` wins over `total_epochs`."""
    steps_per_epoch = data.train_steps_per_epoch(config, num_train)
    if config.total_steps is not None:
        if int(config.total_steps) <= 0:
            raise ConfigError(
                f"config.total_steps={config.total_steps}: give a positive number of steps, "
                f"or leave it unset to train config.total_epochs ({config.total_epochs})."
            )
        return int(config.total_steps), steps_per_epoch
    if not config.total_epochs or config.total_epochs <= 0:
        raise ConfigError("Set config.total_steps or a positive config.total_epochs.")
    return int(round(config.total_epochs * steps_per_epoch)), steps_per_epoch


def check_batch_sizes(config: Any, mesh: jax.sharding.Mesh) -> None:
    """Batch sizes must split evenly over processes (the input pipeline's check, run here
    before anything is built), devices and micro-batches."""
    devices = sharding.data_parallel_size(mesh)
    for key in ("batch_size", "eval_batch_size"):  # over processes: the pipeline's check
        data.local_batch_size(int(config[key]), jax.process_count(), key)
    accum = int(config.grad_accum_steps)
    if accum < 1:
        raise ConfigError(f"config.grad_accum_steps={accum}; use 1 or more.")
    for key, size, parts, what in (
        (
            "batch_size",
            config.batch_size,
            devices * accum,
            f"{devices} devices x {accum} gradient-accumulation steps",
        ),
        ("eval_batch_size", config.eval_batch_size, devices, f"{devices} devices"),
    ):
        if size <= 0 or size % parts:
            raise ConfigError(
                f"config.{key}={size} is not divisible by the data-parallel size ({what}); "
                f"use a multiple of {parts}."
            )


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a run is built from, before any state exists (`build`)."""

    info: data.DatasetInfo
    mesh: jax.sharding.Mesh
    total_steps: int
    schedule: optax.Schedule
    tx: optax.GradientTransformation
    make_state: Callable[[], dict]  # a fresh train state (jit it with `shardings`)
    abstract: Any  # the state's ShapeDtypeStructs, each with its sharding
    shardings: Any
    graphs: ModelGraphs
    plan: data.input_plan.InputPlan  # where the train input's work runs (host / device)


def build(config: Any) -> Setup:
    """Everything but the state: dataset info, mesh, steps' ingredients, shardings."""
    if config.init_from and not os.path.exists(config.init_from):
        raise ConfigError(
            f"config.init_from={config.init_from!r} does not exist; give one of our workdirs "
            "(or its checkpoints/<step>) or an official weights file (.pth, .npz, .safetensors)."
        )
    info = data.get_dataset_info(config)
    mesh = sharding.make_mesh(config.mesh)
    check_batch_sizes(config, mesh)
    # One abstract model for the checks that need it and the step's graphs.
    model = abstract_model(config, info.num_classes)  # bad model_kwargs: one line, here
    init_from.check_init_head(config)
    check_freeze_batch_stats(config, model)
    loss_function(config.loss)  # an unknown loss name fails here, before any state exists
    check_remat(config)
    data.check_mixup_mode(config.mixup.mode, float(config.mixup.cutmix_alpha))
    data.check_loading(config.input)
    # The one check of where the input's work runs (the pipeline derives the same plan).
    plan = data.input_plan.plan(config, info.max_image_side)
    total_steps, steps_per_epoch = schedule_lengths(config, info.num_train)
    schedule = optim.learning_rate_schedule(config, total_steps, steps_per_epoch)
    tx = optim.make_optimizer(config, schedule, info.num_classes)
    make_state = functools.partial(init_state, config, info.num_classes, tx)
    abstract = jax.eval_shape(make_state)
    # Model rules first (Sparse-MLP's experts on the `expert` axis), then replicate/fsdp.
    shardings = sharding.state_shardings(
        abstract, mesh, config.sharding, config.fsdp_min_size, moe.partition_rules()
    )
    if mesh.shape["expert"] > 1 and not sharding.uses_axis(shardings, "expert"):
        console(
            f"config.mesh.expert={mesh.shape['expert']} but {config.model} has no experts: "
            "that axis only splits the batch (more data parallelism)."
        )
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    graphs = model_graphs(model)
    return Setup(
        info, mesh, total_steps, schedule, tx, make_state, abstract, shardings, graphs, plan
    )


# XLA options for a program that runs once on CPU: optimising it costs more than it saves.
_RUN_ONCE_CPU_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
}


def jit_train_step(config: Any, setup: Setup) -> Callable:
    """The run's jitted `train_step(state, batch) -> (state, metrics, bad_step)`: the state
    donated and kept on its shardings, the batch split over the mesh, called under the mesh
    (so MoE layers see the `expert` axis when they are traced)."""
    mesh, shardings = setup.mesh, setup.shardings
    replicated = sharding.replicated(mesh)
    step = make_train_step(
        config, setup.graphs, setup.tx, setup.schedule, setup.info.num_classes, setup.plan
    )
    jitted = jax.jit(
        step,
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, replicated, replicated),
        donate_argnums=(0,),
    )
    return sharding.under_mesh(jitted, mesh)


def create_state(make_state, shardings) -> dict:
    """A fresh train state on `shardings`. On several devices one compiled program makes
    it, each array born sharded (nothing lands on one device first).

    On one CPU device it is made op by op instead: XLA CPU compiles the init's random draws
    as one program slowly, in time that grows faster than their number (sMLPNet-T's state:
    19-23 s, even unoptimised), where running them one at a time, each op's small program
    compiled once per shape, takes 3-4 s (benchmarks/README.md, "The first seconds"). The
    draws are the same; a value may differ in its last bit from the compiled program's,
    which fuses the arithmetic after the draws differently."""
    on_cpu = jax.default_backend() == "cpu"
    if on_cpu and jax.device_count() == 1:
        return jax.device_put(_own_buffers(make_state()), shardings)
    jitted = jax.jit(make_state, out_shardings=shardings)
    if on_cpu:
        return jitted.lower().compile(compiler_options=_RUN_ONCE_CPU_OPTIONS)()
    return jitted()


def _own_buffers(state: dict) -> dict:
    """`state` with every leaf in a buffer of its own: the train step donates the state, and
    a state built op by op shares arrays (the EMA starts as the parameters themselves)."""
    seen = set()

    def own(x, raw):  # raw: x, or a key array's data (its buffer)
        buffer = raw.unsafe_buffer_pointer()
        if buffer in seen:
            return jax.device_put(x, may_alias=False)  # a copy
        seen.add(buffer)
        return x

    return jax.tree.map(own, state, checkpoint.encoding.keys_to_data(state))


def evaluate(suite: evaluators.Suite, due: list, state: dict) -> dict[str, float]:
    """The scalars of the evaluators `due` (`suite.due(step, last)`) on `state`'s weights,
    each as `<name>/<metric>` (`eval/top1` ...), `<name>/ema_*` too with EMA."""
    return suite.run(due, state)


def model_description(config: Any, params: Any) -> str:
    """`smlpnet_t (dim=24, depths=(1, 1, 1, 1); 548,570 parameters)`: the registered name,
    the hyperparameters that differ from it, and the size."""
    registered = registry.hyperparameters(config.model)
    changed = {k: v for k, v in model_kwargs(config).items() if registered.get(k) != v}
    total = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
    what = ", ".join(f"{k}={v}" for k, v in sorted(changed.items()))
    return f"{config.model} ({what + '; ' if what else ''}{total:,} parameters)"


def _check_finite(first_bad: jax.Array, config: Any, ckpt: checkpoint.Checkpointer) -> None:
    bad = int(first_bad)
    if bad != int(NO_BAD_STEP):
        ckpt.wait()  # a save in flight is of a step before the bad one: let it land
        latest = ckpt.latest_step()
        kept = (
            f"the checkpoint of step {latest} is kept (rerun resumes from it)"
            if latest is not None
            else "no checkpoint had been saved yet"
        )
        fixes = ["lower config.optimizer.lr", "set config.grad_clip"]
        if config.dtype != "float32":
            fixes.append("use config.dtype='float32'")
        raise NonFiniteError(
            f"the loss or gradient became NaN/inf at step {bad}; training stopped and {kept}. "
            f"To fix it: {', or '.join(fixes)}."
        )


def _step_flops_and_peak(config, plan, train_step, state, batch, mesh) -> tuple:
    """The train step's model FLOPs (`mfu.step_flops`, once; less the input plan's device
    work, which is not the model's, and without `config.remat`'s recomputation) and the
    run's peak FLOP/s (`mfu`)."""
    with jax.set_mesh(mesh), remat.disabled():
        flops = mfu.step_flops(train_step.__wrapped__, state, batch)
        augment = plan.device_function()
        if flops and augment is not None:
            augment_flops = mfu.step_flops(augment, jax.random.key(0), batch)
            flops = max(flops - (augment_flops or 0.0), 0.0) or None
    return flops, mfu.total_peak(config.dtype)


def _speed(img_per_sec: float, config, flops, peak) -> dict[str, float]:
    """Images per second per device and MFU for the log (MFU only when measurable)."""
    out = {"train/img_per_sec_per_device": img_per_sec / jax.device_count()}
    value = mfu.utilisation(flops, img_per_sec / config.batch_size, peak)
    if value is not None:
        out["train/mfu"] = value
    return out


def train_and_evaluate(config: Any, workdir: str) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and evaluates.

    Returns the last logged train metrics and the final eval metrics, with `step`.
    """
    # --- Devices, input info, model, optimiser, abstract state -------------------------
    times = goodput.TimeBreakdown()  # where the wall time goes, logged as time/*
    compilation_cache.enable(config.compilation_cache_dir)  # before the first compile
    setup = build(config)
    # Training's own keys: a bad profile range, or W&B on but not installed, fail now.
    profiling.profile_range(config.get("profile"), setup.total_steps)
    wandb_writer.check(config)
    suite = evaluators.Suite.create(config, setup)  # every evaluator checked, its data opened
    # One writer: the lock is taken after every check, before anything is written.
    with workdir_lock.exclusive(workdir, jax.process_index()):
        return _train(config, workdir, setup, times, suite)


def _train(
    config: Any,
    workdir: str,
    setup: Setup,
    times: goodput.TimeBreakdown | None = None,
    suite: evaluators.Suite | None = None,
) -> dict[str, float]:
    """`train_and_evaluate` once the config is checked and the workdir is ours."""
    suite = suite or evaluators.Suite.create(config, setup)
    times = times or goodput.TimeBreakdown()
    info, mesh, total_steps, abstract, shardings = (
        setup.info, setup.mesh, setup.total_steps, setup.abstract, setup.shardings
    )  # fmt: skip
    console(
        f"{model_description(config, abstract['params'])} on {config.dataset} "
        f"({info.num_train} train / {info.num_eval} eval, "
        f"{info.num_classes} classes); {jax.device_count()} devices, mesh {dict(mesh.shape)}, "
        f"{jax.process_count()} processes; {total_steps} steps of batch {config.batch_size}"
    )
    # --- The run record: a resume must mean the same run --------------------------------
    record = run_record.make(config, info, setup.plan)
    stored = run_record.read(workdir)
    if stored is not None:
        at_step = int(stored[1].name)
        changes = run_record.check_resume(stored[0], config, at_step)
        if changes:
            console(run_record.describe_allowed(changes))
        record = run_record.resumed(stored[0], record, at_step, changes)
    # --- State: restored from the workdir, or created sharded ---------------------------
    ckpt = checkpoint.Checkpointer(
        workdir,
        keep=config.keep_checkpoints,
        keep_best=bool(suite.best_metric),  # config.best_metric: any evaluator's metric
        async_save=config.async_checkpoint,
        best_metric=suite.best_metric or checkpoint.BEST_METRIC,
    )
    # An iterator state that is no `get_state()` makes its step count as damaged (fall back).
    restored = ckpt.restore(abstract, check_data_state=data.TrainIterator.check_state)
    data_state = None
    if restored is not None:
        start_step, state, data_state = restored
        if start_step >= total_steps:
            ckpt.close()
            final = {**last_logged(workdir, "eval/"), "step": start_step}
            console(
                f"already finished: {ckpt.directory} holds step {start_step} of {total_steps}"
                + (f"; its final {eval_line(start_step, final)}" if len(final) > 1 else "")
                + " (a new --workdir trains again; so does a larger config.total_steps with "
                "--config.allow_changes=total_steps)"
            )
            return final
        console(f"resumed from {ckpt.directory}/{start_step}")
    else:
        start_step = 0
        state = create_state(setup.make_state, shardings)
        if config.init_from:
            state = init_from.load_model_weights(config, state, abstract, info.num_classes)
    log_parameter_overview(state["params"], workdir)
    # --- Input --------------------------------------------------------------------------
    train_iter = data.create_train_iterator(config)
    if data_state is not None:
        train_iter.set_state(data_state)
    train_step = jit_train_step(config, setup)
    # --- Loop ---------------------------------------------------------------------------
    record, sinks = wandb_writer.open_writer(config, workdir, record)  # W&B, if on
    writer = MetricWriter(workdir, resume_step=start_step if restored else None, sinks=sinks)
    profiler = profiling.StepProfiler(
        workdir, profiling.profile_range(config.get("profile"), total_steps), start_step, console
    )
    progress = Progress(start_step, total_steps, config.batch_size)
    times.add("setup", times.since_start())
    input_watch = InputWatch(config.input)
    final: dict[str, float] = {}
    window, first_bad, pending = None, jnp.asarray(NO_BAD_STEP), None
    step = start_step
    try:
        # A second SIGTERM/Ctrl-C lets the checkpoint being written land before it exits.
        with preemption.PreemptionGuard(
            in_flight=ckpt.in_flight_step, committed=ckpt.is_committed
        ) as guard:
            while step < total_steps:
                batch = sharding.global_batch(progress.fetch(train_iter, pending), mesh)
                with times.timed("profile"):
                    profiler.before(step)
                if step == start_step:
                    console("compiling the train step...")
                    compile_start, compile_wall = time.perf_counter(), time.time()
                    with compilation_cache.CacheHits() as hits:
                        state, step_metrics, bad = train_step(state, batch)
                else:
                    state, step_metrics, bad = train_step(state, batch)
                pending = bad  # its readiness tells the next fetch whether the device idles
                step += 1
                ckpt.check()  # a failed asynchronous save stops the run now, not at the next save
                if step == start_step + 1:
                    jax.block_until_ready(step_metrics)
                    # Ready (traced, lowered, compiled or read) apart from the first run,
                    # which the cache cannot save.
                    ran = time.time() - (hits.ready_at or compile_wall)
                    console(
                        f"train step {hits.describe(compile_wall)}, then run once in {ran:.1f}s"
                    )
                    flops, peak = _step_flops_and_peak(
                        config, setup.plan, train_step, state, batch, mesh
                    )
                    times.add("compile", time.perf_counter() - compile_start)
                    progress.restart(step)
                with times.timed("profile"):
                    if profiler.after(step, step_metrics):
                        progress.restart(step)  # img/s and the ETA leave out writing it
                window = step_metrics if window is None else window.merge(step_metrics)
                first_bad = jnp.minimum(first_bad, bad)
                last = step == total_steps
                if step % config.log_every == 0 or last:
                    _check_finite(first_bad, config, ckpt)
                    scalars = {f"train/{k}": float(v) for k, v in window.compute().items()}
                    rate, eta, wait = progress.update(step)
                    scalars["train/img_per_sec"], scalars["train/input_wait"] = rate, wait
                    if rate:
                        input_watch.observe(wait)
                    scalars.update(_speed(scalars["train/img_per_sec"], config, flops, peak))
                    times.set("input", progress.total_waited)
                    scalars.update(times.scalars())
                    writer.write(step, scalars)
                    console(train_line(step, total_steps, scalars, eta))
                    final.update(scalars)
                    window = None
                eval_scalars = None
                due = suite.due(step, last)  # config.evals: each at its own frequency
                if due:
                    _check_finite(first_bad, config, ckpt)  # never evaluate a NaN state
                    with times.timed("eval"):
                        eval_scalars = evaluate(suite, due, state)
                    writer.write(step, eval_scalars)
                    for text in suite.lines(step, eval_scalars, due):
                        console(text)
                    final.update(eval_scalars)
                    progress.restart(step)  # the ETA counts train steps, not evaluation
                stop = guard.should_stop_at(step)
                every = config.checkpoint_every
                if (every and step % every == 0) or last or stop:
                    _check_finite(first_bad, config, ckpt)  # never save after a NaN step
                    with times.timed("checkpoint"):
                        ckpt.save(
                            step,
                            state,
                            data_state=train_iter.get_state(),
                            metrics=eval_scalars,
                            record=record,
                            force=stop,
                        )
                if stop:
                    ckpt.wait()
                    console(
                        f"stopped by {guard.signal_received}: saved a checkpoint at step "
                        f"{step}; rerun the same command to resume"
                    )
                    final["stopped_by"] = guard.signal_received
                    break
    finally:
        profiler.close(step)
        train_iter.close()  # read-ahead threads, worker processes (a notebook goes on)
        ckpt.close()
        writer.close()
    final["step"] = step
    # Where the run's results are, as its last line.
    console(
        f"step {step} of {total_steps}: checkpoints in {ckpt.directory}, metrics in "
        f"{writer.path} and TensorBoard files in {os.path.join(workdir, 'tensorboard')}"
    )
    return final


def weights_to_evaluate(config: Any, workdir: str, setup: Setup, mode: str) -> tuple[dict, str]:
    """(state, where its weights come from) for `--mode=eval` / `probe`: `config.init_from`
    (our checkpoint or official weights), or else the latest checkpoint in `workdir`."""
    if config.init_from:
        state = create_state(setup.make_state, setup.shardings)
        state = init_from.load_model_weights(config, state, setup.abstract, setup.info.num_classes)
        return state, config.init_from
    # Restored into the abstract state: no fresh state is made (and compiled, on an
    # accelerator) only to be replaced, nor held in memory beside the restored one.
    # Read-only: the workdir may belong to a run training right now, whose save in
    # flight (a temporary step directory) a writing Checkpointer would clean up.
    with checkpoint.Checkpointer(workdir, async_save=False, read_only=True) as ckpt:
        try:
            restored = ckpt.restore(setup.abstract)
        except checkpoint.CheckpointError as err:
            # Shapes that differ, and a run record to say which settings made them.
            stored = err.mismatches and run_record.read(workdir)
            changes = stored and run_record.model_changes(stored[0], config)
            if not changes:
                raise
            raise checkpoint.CheckpointError(
                f"--mode={mode}: this config builds another model than the run in {workdir} "
                f"trained ({changes}; {len(err.mismatches)} array(s) differ in shape, e.g. "
                f"{err.mismatches[0]}): give --mode={mode} the run's settings."
            ) from err
    if restored is None:
        raise ConfigError(
            f"--mode={mode} needs config.init_from or a checkpoint in {workdir}; found none."
        )
    return restored[1], f"{workdir} step {restored[0]}"


def evaluate_only(config: Any, workdir: str) -> dict[str, float]:
    """`--mode=eval`: runs every evaluator of `config.evals` (or those `config.eval_only`
    names) on `config.init_from` (our checkpoint or official weights), or else on the latest
    checkpoint in `workdir`; one console line each. With `init_from`, one line appended to
    `WORKDIR/eval_results.jsonl` too (`evaluators.write_results`)."""
    compilation_cache.enable(config.compilation_cache_dir)
    setup = build(config)
    suite = evaluators.Suite.create(
        config, setup, only=config.get("eval_only", ""), check_best=False
    )
    state, source = weights_to_evaluate(config, workdir, setup, "eval")
    scalars = evaluate(suite, suite.evaluators, state)
    for text in suite.lines(int(state["step"]), scalars):
        console(f"{source}: {text}")
    if config.init_from:  # the workdir is this evaluation's own folder
        console(evaluators.write_results(workdir, int(state["step"]), source, scalars))
    else:  # a training run's workdir (perhaps training now) is left as it is
        console(evaluators.not_written(workdir))
    return scalars


def probe_only(config: Any, workdir: str) -> dict[str, float]:
    """`--mode=probe`: few-shot and linear-probe top-1 of the same weights as `--mode=eval`
    (`smlp_jax.train.probe`)."""
    compilation_cache.enable(config.compilation_cache_dir)
    setup = build(config)
    state, source = weights_to_evaluate(config, workdir, setup, "probe")
    return probe.run_probe(config, state, setup, source)
