"""Command-line interface: parses arguments and calls the library; no logic of its own."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .calibration import RULES, Granularity
from .errors import ConfigError, SnnConvertError
from .methods import METHODS, OVERRIDES
from .neurons import NEURONS
from .simulation import ExitRule, ExitWhenStable

if TYPE_CHECKING:
    from .data.registry import DataRecord, DatasetInfo
    from .simulation import SpikingModel


def _int_at_least(low: int) -> Any:
    """An argparse type: an int >= `low` (argparse then names the flag in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"int>={low}"
    return parse


def _positive_float(text: str) -> float:
    """An argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


POSITIVE, NATURAL = _int_at_least(1), _int_at_least(0)


def _progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False)


def _dataset(args: argparse.Namespace, train: bool, augment: bool = False):
    from .data import get_dataset

    return get_dataset(args.dataset, root=args.data_dir, train=train, augment=augment)


def _use_data(args: argparse.Namespace, record: "DataRecord | None") -> "DatasetInfo":
    """Settle args.dataset and args.data_dir: the flags, else what `record` says, else digits; refuse
    data whose images or classes are not the recorded ones. Returns the data's DatasetInfo."""
    from .data.registry import choose_data, dataset_info

    given = args.dataset
    args.dataset, args.data_dir = choose_data(record, args.dataset, args.data_dir)
    info = dataset_info(args.dataset, args.data_dir)
    if record is not None:
        record.check(info, f"--dataset {given}" if given else
                     f"the {info.name} data" + (f" in {args.data_dir}" if args.data_dir else ""))
    return info


def _recorded(card: dict[str, Any] | None, model_dir: str | None, snn: "SpikingModel | None" = None,
              snn_dir: str | None = None) -> "DataRecord | None":
    """The data the model was trained on: the record of the model card in `model_dir` (--model-dir,
    --init), else the spiking model's (snn.json's method.data, written by convert); None when neither
    records one."""
    from .data.registry import DataRecord
    from .io import DESCRIPTION
    from .modelfile import CARD

    record = None if card is None else DataRecord.read(card, str(Path(str(model_dir)) / CARD))
    if record is None and snn is not None:
        record = DataRecord.read(snn.method.get("data"), str(Path(str(snn_dir)) / DESCRIPTION), "method.data")
    return record


DEFAULT_T = 64  # time steps for a spiking model without a T of its own (baseline, rmp, snm without --target-T)


def _steps(args: argparse.Namespace, snn: "SpikingModel", show: bool = True) -> int:
    """args.T settled: --T, else the spiking model's own T (snn.json's default_T: 2^b - 1 for Fast-SNN,
    the target T of a calibrated model), else DEFAULT_T; says which when --T was not given."""
    if args.T is None:
        args.T = snn.default_T or DEFAULT_T
        if show:
            print(f"--T not given: T={args.T} ({_why_T(snn)}); give --T N for another")
    return args.T


def _why_T(snn: "SpikingModel") -> str:
    m = snn.method
    if snn.default_T is None:
        return f"the default for spiking models without a T of their own, like method {m.get('name', '?')}"
    if m.get("target_T"):
        return "the T it was calibrated for, its --target-T"
    if m.get("name") == "fastsnn":
        return "Fast-SNN's 2^b - 1 for its b-bit quantized ANN"
    return "the spiking model's own T"


HOLDOUT_SEED = 0  # `train --holdout N`: data.holdout_split(train split, N, HOLDOUT_SEED); recorded in model.json
HOLDOUT_FRACTION = 0.1  # `train` without --holdout validates on this share of the training split


def default_holdout(train_size: int) -> int:
    """Images `train` holds out for validation when --holdout is not given: 10% of the training split
    (at least 1 when the split has 2 or more images)."""
    return max(1, round(HOLDOUT_FRACTION * train_size)) if train_size >= 2 else 0


def _calibration(args: argparse.Namespace):
    from .data import calibration_subset

    ds = _dataset(args, train=True)
    return calibration_subset(ds, min(args.calib_samples, len(ds)), seed=0)


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out, epochs=args.epochs, T=args.T, seed=args.seed, progress=_progress(args))


def _train(args: argparse.Namespace) -> None:
    from .data.registry import DataRecord
    from .distributed import process_group
    from .files import check_output_dir
    from .modelfile import load_model, save_model
    from .models import model_for
    from .quantization import progressive_schedule, quantize, train_progressive
    from .training import TrainConfig, evaluate_accuracy, train

    # under torchrun: data-parallel over the job's ranks; rank 0 prints and writes
    with process_group() as job:
        out = check_output_dir(args.out, [args.init] if args.init else [], "train --out")
        init, card = load_model(args.init) if args.init else (None, None)
        info = _use_data(args, _recorded(card, args.init))
        if init is not None:
            model, arch, kwargs = init, card["arch"], card.get("model_kwargs", {})
        else:  # built for the data: its input options (in_channels, input_size, ...) from info unless given
            arch = args.model
            model, kwargs = model_for(arch, info, seed=args.seed, **_json_object(args.model_kwargs, "--model-kwargs"))
        train_set, test_set = _dataset(args, True, augment=args.augment), _dataset(args, False)
        val_set, holdout = None, None  # the test split is never used to choose a checkpoint
        n_val = default_holdout(len(train_set)) if args.holdout is None else args.holdout
        if n_val:  # validation on training images the model never sees
            from .data import holdout_split

            plain = _dataset(args, True) if args.augment else None
            train_set, val_set = holdout_split(train_set, n_val, HOLDOUT_SEED, holdout_from=plain)
            holdout = {"split": "train", "images": n_val, "seed": HOLDOUT_SEED}
        cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                          weight_decay=args.weight_decay, seed=args.seed, progress=_progress(args) and job.is_main)
        log = lambda rec: print(  # noqa: E731
            " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
        if args.bits and args.progressive:
            results = train_progressive(model, train_set, cfg, progressive_schedule(args.bits), calibration_data=_calibration(args),
                                        val_set=val_set, checkpoint_dir=out / "checkpoints", resume=args.resume,
                                        log=log)
            model, history = results[args.bits].model, [h for r in results.values() for h in r.history]
        else:
            if args.bits:
                from .quantization import quantized_bits, set_bits

                model = set_bits(model, args.bits) if quantized_bits(model) else quantize(model, args.bits,
                                                                                          _calibration(args))
            res = train(model, train_set, cfg, val_set=val_set, checkpoint_dir=out / "checkpoints",
                        resume=args.resume, log=log, device=job.device)
            model, history = res.model, res.history
        if not job.is_main:
            return
        acc = evaluate_accuracy(model, test_set)
        data = DataRecord.of(info, args.data_dir).to_dict()  # dataset, input_shape, num_classes, data_dir
        save_model(model, out, arch, data.pop("num_classes"), kwargs, **data, test_accuracy=acc,
                   history=history, **({"holdout": holdout} if holdout else {}))
        print(f"test accuracy {100 * acc:.2f}%; model written to {out}")


def _diagnose(args: argparse.Namespace) -> None:
    from .data import dataset_as_tensors
    from .diagnosis import diagnose
    from .files import check_output_dir, write_json_atomic
    from .io import load
    from .modelfile import load_model
    from .report import plot_layer_errors

    out = check_output_dir(args.out, [args.snn, args.model_dir], "diagnose --out")
    snn = load(args.snn)
    ann, card = load_model(args.model_dir)
    _use_data(args, _recorded(card, args.model_dir, snn, args.snn))
    T = _steps(args, snn)
    data = dataset_as_tensors(_dataset(args, train=args.split == "train"))
    if args.limit:
        data = (data[0][:args.limit], data[1][:args.limit])
    d = diagnose(snn, ann, data, T, batch_size=args.batch_size)
    print(d.table())
    write_json_atomic(out / "diagnosis.json", d.to_dict())
    try:
        plot_layer_errors(d.steps, {la.name: la.relative_error for la in d.layers}, out / "diagnosis.png",
                          title=f"{snn.method.get('name', 'snn')}: relative error per layer ({args.dataset})")
    except ConfigError as e:
        print(f"no plot: {e}")
    print(f"diagnosis written to {out}")


def _json_object(text: str | None, flag: str) -> dict[str, Any]:
    """Parse a JSON object given on the command line; {} when absent."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{flag} must be a JSON object such as '{{\"width\": 32}}', got {text!r} ({e.msg})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object such as '{{\"width\": 32}}', got {text!r}")
    return value


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in OVERRIDES:
        v = getattr(args, k, None)
        if v is not None:
            out[k] = float(v) if k == "threshold" and _is_number(v) else v
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _convert(args: argparse.Namespace) -> None:
    from .conversion import convert
    from .data.registry import DataRecord
    from .files import check_output_dir
    from .io import save
    from .methods import resolve_method
    from .modelfile import load_model

    check_output_dir(args.out, [args.model_dir], "convert --out")
    model, card = load_model(args.model_dir)
    info = _use_data(args, _recorded(card, args.model_dir))
    method = resolve_method(args.method, **_overrides(args))
    data = _calibration(args) if method.rule.needs_data or method.target_T is not None else None
    snn = convert(model, data, method, progress=_progress(args))
    snn.method["data"] = DataRecord.of(info, args.data_dir).to_dict()  # what evaluate, diagnose, finetune use
    save(snn, args.out)
    m = snn.method
    shown = ", ".join(f"{k} {m[k]}" for k in ("neuron", "rule", "granularity", "scale", "v_init", "target_T", "weight_calibration")
                      if k in m)
    print(f"converted with method {m.get('name')} ({shown}); spiking model written to {args.out}")
    for layer, r in m.get("layerwise_calibration", {}).items():
        w = r.get("weights")
        if w is not None:
            print(f"  {layer}: weights " + (f"tuned, surrogate error {w['surrogate_mse_before']:.4g} -> "
                                            f"{w['surrogate_mse_after']:.4g}" if w["kept"] else
                                            "left as they were (tuning did not lower the error)"))
        print(f"  {layer}: mean |error| {r['error_before']:.4f} "
              + ("before the bias" if w is not None else "before calibration")
              + (f"; the bias change raised it to {r['error_after_reverted_bias']:.4f}, so it was undone"
                 if "error_after_reverted_bias" in r else
                 f", {r['error_after_bias']:.4f} after the bias" if "error_after_bias" in r else ""))


def _evaluate(args: argparse.Namespace) -> None:
    from .data import dataset_as_tensors
    from .distributed import process_group, shard_indices
    from .files import check_output_dir, check_output_file, write_json_atomic
    from .io import DESCRIPTION, WEIGHTS, load
    from .modelfile import CARD, load_model
    from .modelfile import WEIGHTS as MODEL_WEIGHTS
    from .report import evaluation_summary, plot_evaluation
    from .simulation import Direct, Poisson, simulate

    # under torchrun: each rank simulates its shard; rank 0 prints and writes the total
    with process_group() as job:
        inputs = [Path(args.snn) / DESCRIPTION, Path(args.snn) / WEIGHTS] + (
            [Path(args.model_dir) / CARD, Path(args.model_dir) / MODEL_WEIGHTS] if args.model_dir else [])
        out = check_output_file(args.out, inputs, "evaluate --out")  # before the long work
        plots = check_output_dir(args.plot, [args.snn] + ([args.model_dir] if args.model_dir else []),
                                 "evaluate --plot") if args.plot else None
        snn = load(args.snn)
        ann, card = load_model(args.model_dir) if args.model_dir else (None, None)
        _use_data(args, _recorded(card, args.model_dir, snn, args.snn))
        _steps(args, snn, show=job.is_main)
        data = dataset_as_tensors(_dataset(args, train=args.split == "train"))
        if args.limit:
            data = (data[0][:args.limit], data[1][:args.limit])
        if job.world_size > 1:
            n = len(data[1])
            if n < job.world_size:
                raise ConfigError(f"{n} images cannot be shared by {job.world_size} processes; use "
                                  f"--nproc_per_node <= {n} or a larger --limit")
            own = shard_indices(n, job.rank, job.world_size)
            data = (data[0][own[0]:own[-1] + 1], data[1][own[0]:own[-1] + 1])
        seed = args.seed if job.world_size == 1 else args.seed * job.world_size + job.rank  # a Poisson stream per rank
        encoder = Poisson(seed) if args.encoding == "poisson" else Direct()
        res = simulate(snn, data, args.T, ann=ann, encoder=encoder, batch_size=args.batch_size,
                       progress=_progress(args) and job.is_main, exit_when=_exit_rule(args, snn),
                       compile=args.compile)
        res = res.reduce_across_ranks()
        if not job.is_main:
            return
        write_json_atomic(out, res.to_dict())  # the results first: printing may fail (a closed pipe)
        written = plot_evaluation(res, plots, label=snn.method.get("name")) if plots is not None else {}
        print(evaluation_summary(res, snn=snn))
        if res.mean_steps is not None:
            shown = ", ".join(f"{k}={v}" for k, v in res.exit_rule.items() if not isinstance(v, (dict, list)))
            print(f"early exit rule: {shown}")
        print(f"results written to {out}")
        if written:
            print("plots written: " + ", ".join(str(p) for p in written.values()))


def _exit_rule(args: argparse.Namespace, snn: Any) -> ExitRule | None:
    """--exit-when: 'default', key=value pairs of ExitWhenStable, or 'fitted[:tolerance=0.005]' (an
    ExitOnMargin fitted on --fit-images held-out training images for runs of --T steps)."""
    text = args.exit_when
    if text is None:
        return None
    if text.strip() in ("", "default"):
        return ExitWhenStable()
    if text.strip().startswith("fitted"):
        return _fitted_exit_rule(args, snn, text.strip()[len("fitted"):].lstrip(":"))
    return ExitWhenStable(**_key_values(text, ExitWhenStable, "'default', 'fitted' or key=value pairs of"))


def _key_values(text: str, cls: Any, what: str) -> dict[str, Any]:
    types = {f.name: type(f.default) for f in dataclasses.fields(cls) if isinstance(f.default, (int, float))}
    kw: dict[str, Any] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in types or not value:
            raise ConfigError(f"--exit-when takes {what} {', '.join(types)} "
                              f"(e.g. confidence=0.99,patience=2 or fitted:tolerance=0.01), got {part!r}")
        try:
            kw[key] = types[key](value)
        except ValueError:
            raise ConfigError(f"--exit-when: {key} must be a number, got {value!r}") from None
    return kw


@dataclasses.dataclass(frozen=True)
class _FitOptions:
    tolerance: float = 0.005


def _fitted_exit_rule(args: argparse.Namespace, snn: Any, options: str) -> ExitRule:
    import torch

    from .data import dataset_as_tensors
    from .modelfile import read_card, training_parts
    from .simulation import fit_exit_rule

    opts = _FitOptions(**(_key_values(options, _FitOptions, "'fitted:' and") if options else {}))
    T = _steps(args, snn)
    train_set = _dataset(args, train=True)
    _, pool = training_parts(read_card(args.model_dir) if args.model_dir else {}, train_set)
    if pool is None:
        pool = train_set
        print("note: no held-out split in the model card (train --holdout N): the exit rule is fitted on training "
              "images the ANN has seen, which makes it exit early too readily on new images")
    n = min(args.fit_images, len(pool))
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(pool), generator=g)[:n].tolist()
    fit = fit_exit_rule(snn, dataset_as_tensors(torch.utils.data.Subset(pool, pick)), T, tolerance=opts.tolerance,
                        batch_size=args.batch_size)
    print(f"exit rule fitted on {n} training images for T={T}: mean {fit.mean_steps:.2f} steps there, "
          f"{100 * fit.disagreement:.2f}% answers differ from the full run (tolerance {100 * opts.tolerance:g}%)")
    return fit.rule


def _finetune(args: argparse.Namespace) -> None:
    from .data import dataset_as_tensors
    from .files import check_output_dir
    from .finetune import finetune_layerwise
    from .io import load, save
    from .modelfile import load_model

    check_output_dir(args.out, [args.snn, args.model_dir], "finetune --out")
    snn = load(args.snn)
    qann, card = load_model(args.model_dir)
    _check_finetunable(args, snn, card)
    _use_data(args, _recorded(card, args.model_dir, snn, args.snn))
    T = _steps(args, snn)
    data = dataset_as_tensors(_dataset(args, train=True))
    if args.limit:
        data = (data[0][:args.limit], data[1][:args.limit])
    tuned, report = finetune_layerwise(snn, qann, data, T=T, epochs=args.epochs, lr=args.lr,
                                       batch_size=args.batch_size, force=args.force, progress=_progress(args), log=print)
    save(tuned, args.out)
    print(f"training accuracy {100 * report.accuracy_before:.2f}% -> {100 * report.accuracy_after:.2f}%; "
          f"written to {args.out}")


def _export(args: argparse.Namespace) -> None:
    from .data import dataset_as_tensors
    from .files import check_output_file
    from .interop import export_nir, lossy_layers
    from .io import DESCRIPTION, WEIGHTS, load

    out = check_output_file(args.out, [Path(args.snn) / DESCRIPTION, Path(args.snn) / WEIGHTS], "export --out")
    snn = load(args.snn)
    data, T = None, None
    lossy = lossy_layers(snn)
    if args.allow_soft_reset and lossy:  # measure what readers that reset otherwise compute, on the recorded data
        _use_data(args, _recorded(None, None, snn, args.snn))
        T = _steps(args, snn)
        data = dataset_as_tensors(_dataset(args, train=args.split == "train"))
        data = (data[0][:args.limit], data[1][:args.limit])
        print(f"{len(lossy)} neuron layers reset by subtraction or start at a nonzero potential; measuring what "
              f"readers lose on {len(data[1])} {args.dataset} {args.split} images at T={T}")
    result = export_nir(snn, out, pooling=args.pooling, allow_soft_reset=args.allow_soft_reset,
                        input_shape=args.input_shape, data=data, T=T, batch_size=args.batch_size)
    print(result.summary())


def _shape_list(text: str) -> list[int]:
    """An argparse type: sizes such as 1,28,28."""
    try:
        sizes = [int(p) for p in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be sizes such as 1,28,28, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"must be sizes >= 1 such as 1,28,28, got {text!r}")
    return sizes


def _check_finetunable(args: argparse.Namespace, snn: "SpikingModel", card: dict[str, Any]) -> None:
    """ConfigError, in the CLI's words, unless --snn is a Fast-SNN and --model-dir a quantized ANN."""
    recipe = ("train a quantized ANN (snnconvert train --init ANN_DIR --bits 2 --out QANN_DIR), convert it "
              "(snnconvert convert --model-dir QANN_DIR --method fastsnn --out SNN_DIR), then run "
              "snnconvert finetune --snn SNN_DIR --model-dir QANN_DIR")
    method = snn.method.get("name")
    if method != "fastsnn":
        raise ConfigError(f"finetune tunes a Fast-SNN towards the quantized ANN it was converted from, but --snn "
                          f"{args.snn} was converted with --method {method or '(unknown)'}; {recipe}")
    if card.get("bits") is None:
        raise ConfigError(f"--model-dir {args.model_dir} holds a float ANN; finetune needs the quantized ANN "
                          f"(trained with --bits B) that --snn {args.snn} was converted from; {recipe}")


def _models(args: argparse.Namespace) -> None:
    from .data.registry import shape_text
    from .models import describe_models

    for m in describe_models():
        options = ", ".join(f"{k}={json.dumps(v) if v is not inspect.Parameter.empty else '(required)'}"
                            for k, v in m.options.items())
        fits = ", ".join(f"{i.name} ({shape_text(i.input_shape)})" for i in m.fits)
        print(f"{m.name}: {m.description}\n  inputs:  {m.inputs}\n  fits:    {fits or 'none of the built-in datasets'}"
              f"\n  options: {options or 'none'}")
    print("Pick one with `snnconvert train --model NAME`; set options with --model-kwargs JSON (e.g. "
          "'{\"width\": 32}'); the input options come from --dataset unless given there.")


def _command(sub: Any, name: str, func: Any, data: bool = True, recorded: str = "model.json or snn.json",
             **kw: Any) -> argparse.ArgumentParser:
    """A subcommand running `func(args)`, with --quiet and (when `data`) --dataset / --data-dir, which
    default to what `recorded` says of the model's training data."""
    p = sub.add_parser(name, **kw)
    if data:
        _add_data_args(p, recorded)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=func)
    return p


def _add_data_args(p: argparse.ArgumentParser, recorded: str) -> None:
    from .data.registry import DEFAULT_DATASET, list_datasets

    p.add_argument("--dataset", default=None, help=f"{' | '.join(list_datasets())} (default: the one recorded in "
                   f"{recorded}, else {DEFAULT_DATASET}); data of another shape than the recorded one is refused")
    p.add_argument("--data-dir", default=None, help="directory holding the dataset files (default: the one recorded in "
                   f"{recorded} if it still exists, else $SNNCONVERT_DATA or ./data)")


_T_HELP = (f"time steps (default: the spiking model's own T: 2^b - 1 for Fast-SNN, the target T for "
           f"calibrated or --target-T; else {DEFAULT_T})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="snnconvert", description="Convert trained ReLU networks into spiking "
                                "neural networks (baseline IF, RMP-SNN, SNM, Fast-SNN) and evaluate them.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = _command(sub, "demo", _demo, False, help="train a small CNN on scikit-learn digits, convert it with every "
                                                  "method, print accuracy vs T, write results.json and a plot")
    d.add_argument("--out", default="snnconvert-demo", help="output directory (default: ./snnconvert-demo)")
    d.add_argument("--epochs", type=POSITIVE, default=40, help="ANN training epochs (default 40)")
    d.add_argument("--T", type=POSITIVE, default=256, help="time steps to simulate (default 256)")
    d.add_argument("--seed", type=NATURAL, default=0)

    t = _command(sub, "train", _train, recorded="the --init model's model.json",
                 help="train a float or quantized (Fast-SNN) ANN; writes model.json + model.safetensors")
    t.add_argument("--model", default="digits_cnn", help="architecture (default digits_cnn); `snnconvert models` lists "
                   "them with the image shapes they take. It is built for --dataset: in_channels, input_size, ... "
                   "and the number of classes come from the data")
    t.add_argument("--model-kwargs", default=None, metavar="JSON",
                   help='the architecture\'s options as a JSON object, e.g. \'{"width": 32}\' for vgg_small; '
                        "given input options override the data's (a model that then cannot take the data is refused)")
    t.add_argument("--init", default=None, help="start from this model directory (float or higher-bit)")
    t.add_argument("--bits", type=POSITIVE, default=None, help="quantize activations to this many bits (Fast-SNN)")
    t.add_argument("--progressive", action="store_true", help="train 4 -> 3 -> 2 bits down to --bits, "
                                                              "--epochs each")
    t.add_argument("--epochs", type=POSITIVE, default=30)
    t.add_argument("--lr", type=_positive_float, default=3e-3)
    t.add_argument("--batch-size", type=POSITIVE, default=64)
    t.add_argument("--optimizer", default="adamw", choices=["sgd", "adamw"])
    t.add_argument("--weight-decay", type=float, default=1e-4)
    t.add_argument("--augment", action="store_true", help="random crop (+ flip where it makes sense)")
    t.add_argument("--calib-samples", type=POSITIVE, default=1024, help="images used to initialise the clip alphas")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints after an interruption")
    t.add_argument("--seed", type=NATURAL, default=0)
    t.add_argument("--holdout", type=NATURAL, default=None, metavar="N",
                   help="validate on N training images held out of training (default: 10%% of the training "
                        "split; 0: no validation); best.safetensors is chosen on them, the test split is used "
                        "only for the final figure; model.json records the split (data.holdout_split, seed 0)")
    t.add_argument("--out", required=True, help="output model directory")

    _command(sub, "models", _models, False, help="list the model zoo: each model's input shapes, the datasets it "
             "fits, its options and defaults")

    c = _command(sub, "convert", _convert, recorded="--model-dir's model.json",
                 help="convert a trained model directory into a spiking model directory (snn.json records the data)")
    c.add_argument("--model-dir", required=True, help="directory written by `snnconvert train`")
    c.add_argument("--method", default="rmp", choices=METHODS.names())
    c.add_argument("--neuron", default=None, choices=NEURONS.names(aliases=True),
                   help="override the method's neuron: " + "; ".join(f"{k}: {e.description}" for k, e in NEURONS.items()))
    c.add_argument("--threshold", default=None,
                   help=f"rule ({', '.join(n for n in RULES.names() if n != 'fixed')}) or a number (a fixed threshold)")
    c.add_argument("--percentile", type=float, default=None, help="e.g. 99.9")
    c.add_argument("--granularity", default=None, choices=[g.value for g in Granularity])
    c.add_argument("--scale", type=float, default=None, help="threshold scale (RMP's alpha)")
    c.add_argument("--v-init", dest="v_init", type=float, default=None, help="initial potential / threshold")
    c.add_argument("--calibration-steps", type=POSITIVE, default=None, help="time steps for RMP threshold balancing")
    c.add_argument("--target-T", dest="target_T", type=POSITIVE, default=None,
                   help="calibrate the converted network layer by layer for runs of this many steps "
                        "(method calibrated: 16 unless given; also with rmp, snm, baseline)")
    c.add_argument("--potential", action=argparse.BooleanOptionalAction, default=None,
                   help="with --target-T: also calibrate the initial membrane potentials (default: yes)")
    c.add_argument("--weight-calibration", dest="weight_calibration", action="store_true", default=None,
                   help="with --target-T: first tune each layer's weights for that T (a few hundred gradient steps "
                        "per layer on its output error; slower, best at the lowest T)")
    c.add_argument("--calib-samples", type=POSITIVE, default=1024, help="training images used for calibration")
    c.add_argument("--out", required=True, help="output spiking model directory")

    g = _command(sub, "diagnose", _diagnose,
                 help="where a spiking model loses the ANN's accuracy: per-layer error against the ANN over t")
    g.add_argument("--snn", required=True, help="spiking model directory (from `snnconvert convert`)")
    g.add_argument("--model-dir", required=True, help="the ANN it was converted from")
    g.add_argument("--T", type=POSITIVE, default=None, help=_T_HELP)
    g.add_argument("--split", default="test", choices=["train", "test"])
    g.add_argument("--limit", type=POSITIVE, default=None, help="only the first N images")
    g.add_argument("--batch-size", type=POSITIVE, default=256)
    g.add_argument("--out", required=True, help="output directory (diagnosis.json, diagnosis.png)")

    e = _command(sub, "evaluate", _evaluate, help="simulate a spiking model: accuracy at every step, firing rates, energy")
    e.add_argument("--snn", required=True, help="spiking model directory (from `snnconvert convert`)")
    e.add_argument("--model-dir", default=None, help="the ANN's directory, to report its accuracy and energy")
    e.add_argument("--T", type=POSITIVE, default=None, help=_T_HELP)
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("--encoding", default="direct", choices=["direct", "poisson"])
    e.add_argument("--batch-size", type=POSITIVE, default=256)
    e.add_argument("--limit", type=POSITIVE, default=None, help="only the first N images")
    e.add_argument("--seed", type=NATURAL, default=0)
    e.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="fuse each neuron update with torch.compile (the default; about a second to compile "
                        "per neuron type, eager after a warning where compiling is impossible)")
    e.add_argument("--exit-when", default=None, metavar="RULE",
                   help="per-sample early exit: 'default' (confidence=0.99,window=4,patience=2) or key=value "
                        "pairs; stops each image once its prediction has settled. 'fitted[:tolerance=0.005]': a "
                        "margin rule fitted on --fit-images held-out training images (at most that share of "
                        "them answer otherwise than the full --T run)")
    e.add_argument("--fit-images", type=POSITIVE, default=1000, help="images for --exit-when fitted (default 1000)")
    e.add_argument("--out", default="results.json", help="JSON results file (default results.json)")
    e.add_argument("--plot", default=None, metavar="DIR",
                   help="also write DIR/accuracy_vs_T.png and DIR/firing_rates.png (per-layer firing rate over t)")

    f = _command(sub, "finetune", _finetune, help="Fast-SNN layer-wise fine-tuning of a converted SNN towards its QANN")
    f.add_argument("--snn", required=True, help="spiking model directory converted with --method fastsnn")
    f.add_argument("--model-dir", required=True, help="the quantized ANN's directory")
    f.add_argument("--T", type=POSITIVE, default=None, help="time steps (default: the Fast-SNN's 2^b - 1)")
    f.add_argument("--epochs", type=POSITIVE, default=1)
    f.add_argument("--lr", type=_positive_float, default=1e-3)
    f.add_argument("--batch-size", type=POSITIVE, default=64)
    f.add_argument("--limit", type=POSITIVE, default=None, help="only the first N training images")
    f.add_argument("--force", action="store_true", help="keep updates even if training accuracy does not improve")
    f.add_argument("--out", required=True, help="output spiking model directory")

    x = _command(sub, "export", _export, recorded="--snn's snn.json",
                 help="write a spiking model to an exchange format: NIR (hard-reset IF networks exactly; soft "
                      "reset only with --allow-soft-reset)")
    x.add_argument("--snn", required=True, help="spiking model directory (from `snnconvert convert`)")
    x.add_argument("--format", default="nir", choices=["nir"], help="nir: a NIR graph (HDF5), read by snnTorch, "
                   "Norse, sinabs and NIR's hardware importers")
    x.add_argument("--out", required=True, help="output file, e.g. model.nir")
    x.add_argument("--pooling", default="avg", choices=["avg", "sum"],
                   help="avg: AvgPool2d nodes (snnTorch reads them); sum: SumPool2d with 1/area folded into the next "
                        "layer (Norse and sinabs read only these)")
    x.add_argument("--allow-soft-reset", action="store_true",
                   help="also write soft-reset neurons and initial potentials (rmp, calibrated), which NIR's IF "
                        "cannot express: as IF nodes for readers that reset by subtraction (snnTorch, sinabs), "
                        "recorded in the metadata; prints the accuracy each kind of reader gets on --limit images")
    x.add_argument("--T", type=POSITIVE, default=None, help=_T_HELP + "; for the --allow-soft-reset measurement")
    x.add_argument("--split", default="test", choices=["train", "test"], help="images for the measurement")
    x.add_argument("--limit", type=POSITIVE, default=1000, help="images for the measurement (default 1000)")
    x.add_argument("--batch-size", type=POSITIVE, default=256)
    x.add_argument("--input-shape", type=_shape_list, default=None, metavar="C,H,W",
                   help="one input's shape (default: the one recorded in snn.json)")
    return p


# The library's messages name its parameters; the CLI's user typed flags. (pattern, replacement), in order.
CLI_WORDS: tuple[tuple[str, str], ...] = (
    (r"^\w+\(\): ", ""),  # "simulate(): ...": the CLI's prefix names the command
    (r"\broot= ?", "--data-dir "),
    (r"snnconvert\.quantize\(model, bits\)", "snnconvert train --bits B"),
    (r"\bthe number of time steps T\b", "--T (the number of time steps)"),
    (r"\(e\.g\. T=(\d+)\)", r"(e.g. --T \1)"),
    (r"\ba smaller T\b", "a smaller --T"),
    (r"\bbatch_size must\b", "--batch-size must"),
    (r"\(e\.g\. batch_size=(\d+)\)", r"(e.g. --batch-size \1)"),
    (r" \(batch_size=, --batch-size\)", " (--batch-size)"),
    (r" or fewer steps per chunk \([^)]*\)", ""),  # no flag sets the chunk size
    (r"\btarget_T=(\d+)", r"--target-T \1"),
    (r"\bgive target_T too\b", "give --target-T too"),
    (r"\ballow_soft_reset=True \(CLI (--allow-soft-reset)\)", r"\1"),
    (r"\(input_shape=\[C, H, W\]\)", "(--input-shape C,H,W)"),
    (r"\bpooling='avg'", "--pooling avg"),
)


def in_cli_words(message: str) -> str:
    """A library error message with its parameter names replaced by the CLI's flags (CLI_WORDS)."""
    for pattern, replacement in CLI_WORDS:
        message = re.sub(pattern, replacement, message)
    return message


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except SnnConvertError as e:
        print(f"snnconvert {args.command}: error: {in_cli_words(str(e))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # a file the library did not expect to fail: name it, no traceback
        where = f" {e.filename!r}" if e.filename else ""
        print(f"snnconvert {args.command}: error: cannot access{where}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
