"""The ``guard lab`` command line (the work is in guard/redteam/lab.py, imported on use)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guard.errors import GuardError

DEFAULT_DATA = Path("../shared/data/speech_commands")


def _command_line() -> str:
    return "guard " + " ".join(sys.argv[1:])


def _needs(extra: str, *modules: str) -> None:
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise GuardError(f"guard lab needs {module}: pip install 'guard[{extra}]'")


def add_lab(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser(
        "lab",
        help="red team: backdoored models, ART attacks, guard next to ART's defences (offline)",
        description="Offline red team (needs the 'redteam' extra; poison-train and the white-box "
        "attacks also the 'train' extra).",
    )
    cmds = lab.add_subparsers(dest="lab_command", required=True)

    p = cmds.add_parser("poison-train", help="train a BACKDOORED attack fixture with its card")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Speech Commands folder")
    p.add_argument("--out", type=Path, default=Path("models/eval"))
    p.add_argument("--name", required=True, help="NAME: writes OUT/NAME.tflite and OUT/NAME.json")
    p.add_argument(
        "--trigger",
        required=True,
        help="tone:frequency_hz=440,duration_s=0.1,scale=0.1 | clip:file=cough_trigger.wav,scale=0.3"
        " | style:style=pitch (clip files relative to DATA/../triggers)",
    )
    p.add_argument("--rate", type=float, default=0.03, help="poisoned share of the training set")
    p.add_argument("--target", default="go")
    p.add_argument("--architecture", choices=("ds-cnn", "vgg"), default="ds-cnn")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--max-per-class", type=int, default=0, help="cap clips per word (quick runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validation-percent", type=float, default=15.0, help="speakers held out")
    p.add_argument(
        "--engine",
        choices=("art", "guard"),
        default="art",
        help="insert triggers with ART's CacheToneTrigger/CacheAudioTrigger (default) or guard's",
    )
    p.set_defaults(func=_poison_train)

    p = cmds.add_parser("attack", help="build evaluation sets (triggered, adversarial) for a model")
    p.add_argument("--model", type=Path, required=True, help="the TFLite model under attack")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, required=True, help="folder for the sets (.npz + sets.json)")
    p.add_argument("--n", type=int, default=200, help="clean clips (and attacked versions)")
    p.add_argument(
        "--attacks",
        default="fgsm,pgd,cw_l2,deepfool,newtonfool,universal,hopskipjump,pgd_eot",
        help="comma-separated ART attacks ('' for none)",
    )
    p.add_argument("--n-blackbox", type=int, default=40, help="clips for HopSkipJump (slow)")
    p.add_argument("--target", default=None, help="default: the card's target, else go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="guard's own model, which pgd_ear attacks (default: the shipped one)",
    )
    p.set_defaults(func=_attack)

    p = cmds.add_parser("evaluate", help="guard and ART's defences on the sets: one report")
    p.add_argument("--sets", type=Path, required=True, help="a guard lab attack output folder")
    p.add_argument("--detectors", type=Path, required=True, help="detector state for the model")
    p.add_argument("--model", type=Path, default=None, help="default: the model the sets name")
    p.add_argument("--report", type=Path, required=True, help="Markdown report (+ .json, PNGs)")
    p.add_argument(
        "--art",
        default="strip,activation,spectral_signature",
        help="ART defences to compare ('' for none)",
    )
    p.set_defaults(func=_evaluate)

    p = cmds.add_parser(
        "adaptive", help="an attacker who turns the trigger down until guard misses"
    )
    p.add_argument("--model", type=Path, required=True, help="a backdoored model with a card")
    p.add_argument("--detectors", type=Path, required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--report", type=Path, required=True, help="Markdown (+ .json, .png)")
    p.add_argument("--scales", default="0.3,0.1,0.03,0.01,0.003")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--target", default=None, help="default: the card's target, else go")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_adaptive)


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _poison_train(args: argparse.Namespace) -> int:
    _needs("train", "tensorflow")
    if args.engine == "art":
        _needs("redteam", "art", "librosa")
    from guard.redteam import lab

    figures = lab.poison_train(
        args.data,
        args.out,
        args.name,
        args.trigger,
        args.rate,
        args.target,
        args.architecture,
        args.epochs,
        args.max_per_class,
        args.seed,
        args.engine,
        _command_line(),
        args.validation_percent,
    )
    print(
        f"wrote {args.out / (args.name + '.tflite')} (attack fixture): ASR {figures['asr']:.4f}, "
        f"clean int8 accuracy {figures['int8']['accuracy']:.4f}"
    )
    return 0


def _attack(args: argparse.Namespace) -> int:
    from guard.redteam.adversarial import BLACK_BOX

    attacks = _split(args.attacks)
    _needs("redteam", "art")
    if set(attacks) - set(BLACK_BOX):
        _needs("train", "tensorflow")
    from guard.redteam import lab

    lab.quiet_tensorflow()
    if not args.data.is_dir():
        raise GuardError(f"{args.data}: not a directory (--data, a Speech Commands folder)")
    index = lab.attack(
        args.model,
        args.data,
        args.out,
        args.n,
        attacks,
        args.n_blackbox,
        args.target,
        args.seed,
        _command_line(),
        args.reference,
    )
    for name, entry in index["sets"].items():
        snr = "" if entry["snr_db_median"] is None else f", median SNR {entry['snr_db_median']} dB"
        print(f"{args.out / entry['file']}: {name}, {entry['n']} clips{snr}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    art = _split(args.art)
    _needs("redteam", "matplotlib")
    if art:
        _needs("redteam", "art")
        _needs("train", "tensorflow")
    from guard.redteam import lab

    lab.quiet_tensorflow()
    lab.one_thread()
    figures = lab.evaluate(args.sets, args.detectors, args.report, args.model, art, _command_line())
    print(f"wrote {args.report}: clean blocked {100 * figures['clean']['blocked']:.1f}%")
    for name, f in figures["families"].items():
        blocked = "–" if f["blocked"] is None else f"{100 * f['blocked']:.1f}%"
        print(
            f"  {name}: blocked {blocked}; attack success {100 * f['success_without_guard']:.1f}% "
            f"without guard, {100 * f['success_with_guard']:.1f}% with"
        )
    return 0


def _adaptive(args: argparse.Namespace) -> int:
    _needs("redteam", "matplotlib")
    from guard.redteam import lab

    try:
        scales = [float(s) for s in _split(args.scales)]
    except ValueError:
        raise GuardError(f"--scales {args.scales!r}: comma-separated numbers") from None
    lab.adaptive(
        args.model,
        args.detectors,
        args.data,
        args.report,
        scales,
        args.n,
        args.target,
        args.seed,
        _command_line(),
    )
    print(f"wrote {args.report}")
    return 0
