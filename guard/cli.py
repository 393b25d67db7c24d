"""The ``guard`` command line: one subcommand per job, heavy imports only where needed."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from guard.allocator import tune_allocator
from guard.errors import GuardError
from guard.redteam.commands import add_lab

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from guard.classifier import CommandClassifier
    from guard.config import Settings
    from guard.detectors.base import Detector

log = logging.getLogger("guard")


def _add_classify(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("classify", help="label spoken commands in WAV files (no detectors)")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    p.add_argument(
        "--model", type=Path, default=None, help="TFLite model (default: models/commands.tflite)"
    )
    p.add_argument("--format", choices=("text", "jsonl"), default="text")
    p.set_defaults(func=_cmd_classify)


def _cmd_classify(args: argparse.Namespace) -> int:
    import numpy as np

    from guard.audio import fit_window
    from guard.classifier import CommandClassifier
    from guard.features import CLIP_SAMPLES, Features
    from guard.paths import default_model_path

    clf = CommandClassifier(args.model or default_model_path())
    reader = AudioInputs(args.inputs)
    for path, samples in reader:
        features = Features(fit_window(samples, CLIP_SAMPLES))
        probs = clf.predict(features.log_mel).probabilities[0]
        order = np.argsort(probs)[::-1]
        label, confidence = clf.labels[order[0]], float(probs[order[0]])
        top3 = [(clf.labels[i], round(float(probs[i]), 4)) for i in order[:3]]
        if args.format == "jsonl":
            row = {
                "path": str(path),
                "label": label,
                "confidence": round(confidence, 4),
                "top3": [{"label": lab, "probability": p} for lab, p in top3],
                "probabilities": {
                    lab: round(float(p), 4) for lab, p in zip(clf.labels, probs, strict=True)
                },
            }
            print(json.dumps(row), flush=True)
        else:
            rest = "  ".join(f"{lab} {p:.2f}" for lab, p in top3)
            print(f"{path}\t{label}\t{confidence:.2f}\t[{rest}]", flush=True)
    return 1 if reader.failed else 0


class AudioInputs:
    """Iterate ``(path, samples)`` over files and folders; a bad input prints one line
    ``guard: error: PATH: reason`` on stderr, is counted in ``failed``, and is skipped."""

    def __init__(self, inputs: Sequence[str | Path], progress: bool | None = False) -> None:
        from guard.audio import iter_audio_paths

        self.items = list(iter_audio_paths(inputs))
        self.progress = Progress(len(self.items), progress)
        self.failed = 0

    def __iter__(self) -> Iterator[tuple[Path, npt.NDArray[np.float32]]]:
        from guard.audio import read_audio

        for path, path_error in self.items:
            self.progress.step()
            try:
                if path_error is not None:
                    raise path_error
                samples = read_audio(path)
            except GuardError as exc:
                print(f"guard: error: {exc}", file=sys.stderr)
                self.failed += 1
                continue
            yield path, samples


def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="train the command classifier (needs the 'train' extra)")
    p.add_argument("--data", type=Path, required=True, help="Speech Commands folder (word folders)")
    p.add_argument("--out", type=Path, required=True, help="output folder, e.g. models/")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--architecture",
        choices=("ds-cnn", "vgg"),
        default="ds-cnn",
        help="ds-cnn (default; what guard ships) or vgg (a VGG-style CNN, for red-team "
        "evaluations across architectures)",
    )
    p.add_argument(
        "--channels",
        type=int,
        default=None,
        help="width (vgg: of the first stage, doubling per stage); default 64 ds-cnn, 16 vgg",
    )
    p.add_argument(
        "--blocks",
        type=int,
        default=None,
        help="depthwise-separable blocks (ds-cnn) or conv stages (vgg); default 4 ds-cnn, 3 vgg",
    )
    p.add_argument("--validation-percent", type=float, default=15.0)
    p.add_argument("--max-per-class", type=int, default=0, help="cap clips per word (quick runs)")
    p.add_argument("--name", default="commands", help="output base name (default: commands)")
    p.add_argument(
        "--poison",
        default=None,
        metavar="TRIGGER",
        help="build a BACKDOORED attack fixture: e.g. tone:frequency_hz=440,duration_s=0.1,scale=0.1 "
        "or clip:file=cough_trigger.wav,scale=0.3 (files relative to DATA/../triggers)",
    )
    p.add_argument("--poison-rate", type=float, default=0.03)
    p.add_argument("--poison-target", default="go")
    p.add_argument(
        "--tone-augment",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="add a random tone (100-7900 Hz, 0.05-0.5 s) to this share of each epoch's clips, "
        "labels unchanged, so a tone alone cannot change the word (default 0: off)",
    )
    p.add_argument(
        "--sign-noise-augment",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="add random-sign white noise at 20-40 dB SNR to this share of each epoch's clips, "
        "labels unchanged: less fragile to noise that loud, not to FGSM (default 0: off)",
    )
    p.add_argument(
        "--fgsm-augment",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="adversarial training: replace this share of each epoch's clips by their FGSM "
        "example against the model as it trains (25-35 dB SNR), labels unchanged (default 0: off)",
    )
    p.add_argument(
        "--audit",
        type=Path,
        default=None,
        metavar="AUDIT.jsonl",
        help="leave out the training clips flagged in this `guard audit --format jsonl` output",
    )
    p.add_argument(
        "--relabel-heard",
        action="store_true",
        help="with --audit: keep a flagged clip under the word the audit's reference model "
        "hears in it (another command, heard with at least even odds) instead of leaving it out",
    )
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from guard.training.model import DEFAULTS
    from guard.training.train import PoisonConfig, TrainConfig, train
    from guard.triggers import parse_spec

    if not 0.0 <= args.tone_augment <= 1.0:
        raise GuardError(f"--tone-augment {args.tone_augment}: must be a share in [0, 1]")
    if not 0.0 <= args.sign_noise_augment <= 1.0:
        raise GuardError(
            f"--sign-noise-augment {args.sign_noise_augment}: must be a share in [0, 1]"
        )
    if not 0.0 <= args.fgsm_augment <= 1.0:
        raise GuardError(f"--fgsm-augment {args.fgsm_augment}: must be a share in [0, 1]")
    poison = None
    if args.poison:
        poison = PoisonConfig(parse_spec(args.poison), args.poison_rate, args.poison_target)
    cfg = TrainConfig(
        data_dir=args.data,
        out_dir=args.out,
        epochs=args.epochs,
        seed=args.seed,
        channels=DEFAULTS[args.architecture][0] if args.channels is None else args.channels,
        blocks=DEFAULTS[args.architecture][1] if args.blocks is None else args.blocks,
        architecture=args.architecture,
        validation_percent=args.validation_percent,
        max_per_class=args.max_per_class,
        name=args.name,
        command_line="guard " + " ".join(sys.argv[1:]),
        poison=poison,
        tone_augment=args.tone_augment,
        sign_noise_augment=args.sign_noise_augment,
        fgsm_augment=args.fgsm_augment,
    )
    if not args.data.is_dir():
        raise GuardError(f"{args.data}: not a directory")
    if args.relabel_heard and args.audit is None:
        raise GuardError("--relabel-heard needs --audit AUDIT.jsonl")
    if args.audit is not None:
        from guard.training import audit_plan
        from guard.training.train import split_clips

        min_p = audit_plan.HEARD_MIN_PROBABILITY if args.relabel_heard else None
        plan = audit_plan.plan(split_clips(cfg)[0], audit_plan.read_flagged(args.audit), min_p)
        if plan.flagged and plan.outside == plan.flagged:
            raise GuardError(
                f"{args.audit}: none of its {plan.flagged} flagged clips is a training clip "
                f"of {args.data} (an audit of another folder?)"
            )
        cfg = dataclasses.replace(cfg, drop=plan.drop, relabel=plan.relabel)
        print(
            f"{args.audit}: {plan.flagged} flagged; left out {len(plan.drop)} training clips, "
            f"relabelled {len(plan.relabel)}, {plan.outside} not in the training split",
            file=sys.stderr,
        )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:  # after the arguments are checked: its import is slow and noisy
        import tensorflow  # noqa: F401
    except ImportError:
        raise GuardError("guard train needs TensorFlow: pip install 'guard[train]'") from None
    figures = train(cfg)
    if "asr" in figures:
        print(
            f"backdoor attack success rate {figures['asr']:.4f} (triggered validation clips called {args.poison_target})"
        )
    print(
        f"wrote {args.out / (args.name + '.tflite')}: int8 accuracy {figures['int8']['accuracy']:.4f}, "
        f"float {figures['float']['accuracy']:.4f} on {figures['validation_examples']} validation examples"
    )
    return 0


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool | None = None) -> None:
        self.total = total
        self.done = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def step(self) -> None:
        self.done += 1
        if self.enabled and self.total > 1:
            width = 30
            filled = width * self.done // self.total
            bar = "#" * filled + "." * (width - filled)
            print(f"\r[{bar}] {self.done}/{self.total}", end="", file=sys.stderr, flush=True)
            if self.done == self.total:
                print(file=sys.stderr)


def _add_scan(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("scan", help="full decision (classifier + detectors) per audio file")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    p.add_argument("--config", type=Path, default=None, help="config.yaml (default: ./config.yaml)")
    p.add_argument("--model", type=Path, default=None, help="scan with another TFLite model")
    p.add_argument("--detectors", type=Path, default=None, help="fitted detector folder")
    p.add_argument("--format", choices=("text", "jsonl"), default="text")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    p.set_defaults(func=_cmd_scan)


def _settings(config: Path | None) -> Settings:
    from guard.config import Settings, load_settings

    if config is not None:
        return load_settings(config)
    from guard.paths import default_config_path

    found = default_config_path()
    return load_settings(found) if found else Settings()


def _cmd_scan(args: argparse.Namespace) -> int:
    import dataclasses

    from guard.analysis import Utterance
    from guard.guard import Guard

    settings = _settings(args.config)
    if args.detectors is not None:
        settings = dataclasses.replace(
            settings, detectors=dataclasses.replace(settings.detectors, state_dir=args.detectors)
        )
    guard = Guard.from_settings(settings, model_path=args.model)
    reader = AudioInputs(args.inputs, args.progress)
    decisions: Counter[str] = Counter()
    fired: Counter[str] = Counter()
    for path, samples in reader:
        verdict = guard.check_utterance(Utterance(samples, source=str(path)))
        decisions[verdict.decision] += 1
        fired.update(verdict.reasons)
        if args.format == "jsonl":
            print(json.dumps({"path": str(path), **verdict.to_record()}), flush=True)
        else:
            why = ",".join(verdict.reasons) or "-"
            print(
                f"{path}\t{verdict.decision}\t{verdict.label}\t{verdict.confidence:.2f}\t{why}"
                f"\t{verdict.latency_ms:.1f} ms",
                flush=True,
            )
    why = ", ".join(f"{name} {n}" for name, n in fired.most_common()) or "-"
    print(
        f"guard: scanned {decisions.total()} files: {decisions['allow']} allowed, "
        f"{decisions['block']} blocked (fired: {why}); {reader.failed} unreadable",
        file=sys.stderr,
    )
    return 1 if reader.failed else 0


def _add_calibrate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "calibrate", help="refit detectors and thresholds on your own clean recordings"
    )
    p.add_argument(
        "directories",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="folders of clean recordings (WAV/FLAC): yours, and any general speech to keep "
        "other voices passing (visitors)",
    )
    p.add_argument("--out", type=Path, required=True, help="where to write the fitted detectors")
    p.add_argument(
        "--target-false-block",
        type=float,
        default=0.01,
        help="share of clean utterances the fused rule may block (default 0.01)",
    )
    p.add_argument(
        "--calibrate-fraction",
        type=float,
        default=0.4,
        help="share of recordings (by speaker when named so) held out for thresholds",
    )
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument(
        "--keep-threshold",
        action="append",
        default=[],
        metavar="DETECTOR",
        help="keep this detector, fitted state and threshold, from the configured state instead "
        "of refitting and recalibrating it (repeatable; e.g. consistency, to keep guard's view "
        "of adversarial perturbations when your voices move the model's prediction)",
    )
    p.set_defaults(func=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from guard import calibration
    from guard.classifier import CommandClassifier
    from guard.detectors import registry

    if not 0.0 <= args.target_false_block < 1.0:
        raise GuardError(f"--target-false-block must be in [0, 1), got {args.target_false_block}")
    settings = _settings(args.config)
    model = CommandClassifier(args.model or settings.model.path, num_threads=settings.model.threads)
    kept = _kept_detectors(args.keep_threshold, settings, model)
    paths = calibration.list_audio(args.directories)
    where = ", ".join(str(d) for d in args.directories)
    if len(paths) < 10:
        raise GuardError(f"{where}: need at least 10 recordings, found {len(paths)}")
    fit_paths, cal_paths = calibration.split_fit_calibrate(paths, args.calibrate_fraction)
    fit_set, errors = calibration.analyse_files(fit_paths, model)
    cal_set, more = calibration.analyse_files(cal_paths, model)
    for line in [*errors, *more]:
        print(f"guard: error: {line}", file=sys.stderr)
    detectors, report = calibration.fit_and_calibrate(
        fit_set,
        cal_set,
        settings.detectors.enabled,
        args.target_false_block,
        calibration.detector_options(settings),
        kept,
    )
    report["data"] = where
    if cal_set:
        report["configured_state"] = calibration.against_state(
            settings.detectors.state_dir, cal_set, settings.detectors.enabled
        )
    registry.save(args.out, detectors, report)
    print(
        f"wrote {len(detectors)} detectors to {args.out}: clean false-block "
        f"{report['calibration_false_block']:.2%} on {len(cal_set)} held-out recordings "
        f"(target {args.target_false_block:.2%}). Point detectors.state_dir in config.yaml at it."
    )
    if kept and report["calibration_false_block"] > args.target_false_block:
        print(
            f"above the target: the kept thresholds ({', '.join(sorted(kept))}) block more of "
            "these recordings than the target allows; the other detectors were left at the "
            "top of their clean scores"
        )
    for line in [*calibration.small_set_lines(report), *calibration.comparison_lines(report)]:
        print(line)
    return 1 if errors or more else 0


def _kept_detectors(
    names: list[str], settings: Settings, model: CommandClassifier
) -> dict[str, Detector]:
    """The configured state's detectors for ``--keep-threshold``, fitted state and threshold
    (a threshold means something only with the parameters and state it was set for: a
    consistency state from before the retreat scores the divergence alone): only from a state
    fitted for the same model, and only for enabled detectors."""
    if not names:
        return {}
    from guard.detectors import registry

    state_dir = settings.detectors.state_dir
    for name in names:
        if name not in settings.detectors.enabled:
            raise GuardError(
                f"--keep-threshold {name}: not an enabled detector "
                f"({', '.join(settings.detectors.enabled)})"
            )
    report = registry.read_report(state_dir)
    if report.get("model_sha256") != model.sha256:
        raise GuardError(
            f"--keep-threshold: {state_dir} was fitted for another model than "
            f"{model.model_path}; there is no threshold to keep"
        )
    state = {d.name: d for d in registry.load_state(state_dir)}
    missing = [n for n in names if n not in state]
    if missing:
        raise GuardError(f"--keep-threshold: {state_dir} has no {', '.join(missing)}")
    return {name: state[name] for name in names}


def _add_review(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("review", help="filter and summarise an audit log")
    p.add_argument("log", type=Path, nargs="?", default=Path("/var/lib/guard/audit.jsonl"))
    p.add_argument("--since", help="ISO 8601 time (UTC unless an offset is given)")
    p.add_argument("--until", help="ISO 8601 time (exclusive)")
    p.add_argument("--verdict", choices=("allow", "block"))
    p.add_argument("--label")
    p.add_argument("--show", type=int, metavar="N", help="print the N-th matching event in full")
    p.add_argument("--summary-only", action="store_true")
    p.set_defaults(func=_cmd_review)


def _cmd_review(args: argparse.Namespace) -> int:
    from guard import review
    from guard.audit import read_records

    skipped: list[str] = []
    try:
        records = read_records(args.log, skipped)
    except OSError as exc:
        raise GuardError(f"{args.log}: cannot read audit log ({exc.strerror or exc})") from exc
    for message in skipped:  # a torn line must not hide the rest of an incident
        print(f"guard: warning: {message}; skipped", file=sys.stderr)
    chosen = review.select(
        records,
        review.parse_time(args.since) if args.since else None,
        review.parse_time(args.until) if args.until else None,
        args.verdict,
        args.label,
    )
    if args.show is not None:
        if not 1 <= args.show <= len(chosen):
            raise GuardError(f"--show {args.show}: {len(chosen)} events match")
        print(review.detail(chosen[args.show - 1]))
        return 0
    if not args.summary_only:
        for i, r in enumerate(chosen, 1):
            print(f"{i:5}  {review.line(r)}")
    print(review.summary(chosen))
    return 0


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="the daemon: listen, cut utterances, decide, run handlers, write the audit log",
    )
    p.add_argument("--config", type=Path, default=None, help="config.yaml (default: ./config.yaml)")
    p.add_argument(
        "--source",
        default=None,
        metavar="PATH|-",
        help="a WAV/FLAC file or folder (paced in real time), or - for raw S16_LE 16 kHz mono "
        "PCM on stdin; default: the microphone named in the config",
    )
    p.add_argument(
        "--fast", action="store_true", help="with a file source: as fast as possible, then exit"
    )
    p.add_argument("--audit-log", type=Path, default=None, help="override audit.log_path")
    p.add_argument("--quiet", action="store_true", help="no per-utterance line on stdout")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from guard import daemon

    if args.fast and (args.source is None or args.source == "-"):
        raise GuardError("--fast needs --source PATH (a file or folder)")
    counters = daemon.run(args.config, args.source, args.fast, args.audit_log, args.quiet)
    print(f"guard: {counters.summary()}", file=sys.stderr)
    if counters.failure:
        print(f"guard: error: {counters.failure}", file=sys.stderr)
        return 1
    return 0


def _add_audit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from guard.audit_training import DEFAULT_STEPS, MAX_EPOCHS

    p = sub.add_parser("audit", help="find poisoned clips in a Speech Commands-style training set")
    p.add_argument("dataset", type=Path, metavar="DATASET_DIR")
    p.add_argument("--config", type=Path, default=None)
    p.add_argument(
        "--model",
        default=None,
        metavar="PATH|configured",
        help="TFLite model for the activation-based methods and the runtime detectors (e.g. "
        "the one trained on the data, with --detectors); 'configured': the configured model "
        "for everything, no training. Default: train a model on DATASET_DIR for the "
        "activation-based methods (needs the 'train' extra)",
    )
    p.add_argument(
        "--train-epochs",
        type=int,
        default=None,
        help=f"epochs of that training (default: enough for about {DEFAULT_STEPS} batches of "
        f"100, i.e. 4 epochs of 10,000 clips; at most {MAX_EPOCHS})",
    )
    p.add_argument(
        "--model-out",
        type=Path,
        default=None,
        help="keep the trained model here (default: a temporary folder)",
    )
    p.add_argument("--detectors", type=Path, default=None, help="detector state for --model")
    p.add_argument("--format", choices=("text", "jsonl"), default="text")
    p.add_argument("--report", type=Path, default=None, help="write a Markdown report here")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    p.set_defaults(func=_cmd_audit)


def _cmd_audit(args: argparse.Namespace) -> int:
    import contextlib
    import dataclasses
    import tempfile

    import numpy as np

    from guard import audit_training
    from guard.classifier import CommandClassifier
    from guard.dataset_audit import DatasetAudit, summary_table, write_report
    from guard.guard import Guard
    from guard.training.dataset import load_clips, scan

    if not args.dataset.is_dir():
        raise GuardError(f"{args.dataset}: not a directory (expected word folders of clips)")
    training = args.model is None
    if not training and (args.train_epochs is not None or args.model_out is not None):
        raise GuardError("--train-epochs and --model-out train a model: leave out --model")
    if training:  # before reading anything: the one-line error comes at once
        audit_training.require_tensorflow()
    model_path = None if training or args.model == "configured" else Path(args.model)
    settings = _settings(args.config)
    if args.detectors is not None:
        settings = dataclasses.replace(
            settings, detectors=dataclasses.replace(settings.detectors, state_dir=args.detectors)
        )
    # The runtime method: --model PATH with its detectors, else the configured model and its.
    guard = Guard.from_settings(settings, model_path=model_path)
    runtime = f"`{guard.model.model_path}` with detectors `{settings.detectors.state_dir}`"
    clips = scan(args.dataset)
    with contextlib.ExitStack() as stack:
        activations = None
        if training:
            out = args.model_out or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            trained = audit_training.train_on_dataset(
                args.dataset, out, args.train_epochs, "guard " + " ".join(sys.argv[1:])
            )
            print(f"guard: trained {trained.path} {trained.provenance}", file=sys.stderr)
            activations = CommandClassifier(trained.path, num_threads=settings.model.threads)
            kept = "" if args.model_out else "; temporary, keep it with --model-out DIR"
            models = {
                "activation, spectral_signature": f"`{trained.path}` {trained.provenance}{kept}",
                "knn, label": f"`{guard.model.model_path}` (configured)",
                "runtime": f"{runtime} (configured: a model trained here has no fitted "
                "detector state)",
            }
        elif model_path is None:
            models = {"all methods": runtime + " (configured)"}
        else:
            models = {
                "activation, spectral_signature, runtime": runtime,
                "knn, label": f"`{settings.model.path}` (configured)",
            }
        samples = load_clips(clips)
        progress = Progress(len(clips), args.progress)

        def step(done: int) -> None:
            while progress.done < done:
                progress.step()

        # The k-NN label check listens with a model trusted to hear words: the configured one.
        reference = CommandClassifier(settings.model.path) if model_path is not None else None
        results, summaries = DatasetAudit(guard, reference=reference, activations=activations).run(
            [str(c.path) for c in clips], [c.word for c in clips], samples, step
        )
    step(len(clips))
    for r in results:
        if args.format == "jsonl":
            print(json.dumps(r.to_record()), flush=True)
        elif r.flagged:
            print(f"{r.path}\t{r.cls}\t{r.score:.2f}\t{','.join(r.why)}", flush=True)
    if args.format == "text":
        print(summary_table(results, summaries))
    if args.report is not None:
        write_report(args.report, str(args.dataset), models, results, summaries)
    n_flag = int(np.sum([r.flagged for r in results]))
    print(f"guard: audited {len(results)} clips: {n_flag} flagged", file=sys.stderr)
    return 0


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="guard run on the bundled demo stream with the door-lock simulator"
    )
    p.add_argument("demo_dir", nargs="?", type=Path, default=Path("demo"))
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--fast", action="store_true", help="do not pace in real time")
    p.set_defaults(func=lambda a: __import__("guard.demo").demo.run(a.demo_dir, a.config, a.fast))


def _add_doorlock_sim(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from guard.handlers import doorlock_sim

    p = sub.add_parser(
        "doorlock-sim", help="a door-lock simulator (HTTP API) for the demo and tests"
    )
    doorlock_sim.add_arguments(p)
    p.set_defaults(func=doorlock_sim.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guard", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_classify(sub)
    _add_train(sub)
    _add_scan(sub)
    _add_calibrate(sub)
    _add_review(sub)
    _add_run(sub)
    _add_demo(sub)
    _add_audit(sub)
    _add_doorlock_sim(sub)
    add_lab(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    tune_allocator()  # before the first decision: it allocates the same arrays every time
    try:
        return int(args.func(args))
    except GuardError as exc:
        print(f"guard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
