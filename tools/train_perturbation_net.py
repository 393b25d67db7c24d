"""Train guard's learned perturbation detector and write it to models/.

    python tools/train_perturbation_net.py [--data ../shared/data/speech_commands]
        [--out models/perturbation_net.tflite] [--clips 8000] [--synthetic 1200]
        [--deepfool 3000] [--epochs 30]
        [--seed 11] [--sets /tmp/net_sets.npz]

Needs the ``train`` and ``redteam`` extras (TensorFlow, ART), and espeak-ng and sox for the
synthetic voices (``--synthetic 0`` for none). ~12 min for the tones, FGSM and PGD, ~30 min
for the DeepFool (``--deepfool 0`` for none) and ~20 min of training on 2 cores; ``--sets``
keeps the waveforms (a re-run with other training settings skips the attacks). Then refit the detector state
(``python tools/build_detectors.py``) so its thresholds see the new network.
See guard/training/perturbation_net.py for what it is trained on.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from guard.training.perturbation_net import NetConfig, make_sets, train

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/speech_commands")
    parser.add_argument("--out", type=Path, default=ROOT / "models/perturbation_net.tflite")
    parser.add_argument("--model", type=Path, default=ROOT / "models/commands.tflite")
    parser.add_argument("--clips", type=int, default=8000, help="training-speaker clips")
    parser.add_argument(
        "--synthetic", type=int, default=1200, help="at most this many espeak-ng clips (0: none)"
    )
    parser.add_argument(
        "--deepfool", type=int, default=3000, help="speaker clips that also get ART's DeepFool"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--clean-weight", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--sets", type=Path, default=None, help="keep the training waveforms here (.npz) and reuse"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.data.is_dir():
        sys.exit(f"{args.data}: not a Speech Commands folder")
    cfg = NetConfig(
        data_dir=args.data,
        out=args.out,
        model=args.model,
        n_clips=args.clips,
        synthetic=args.synthetic,
        deepfool=args.deepfool,
        epochs=args.epochs,
        width=args.width,
        clean_weight=args.clean_weight,
        seed=args.seed,
        command_line="python " + " ".join(sys.argv),
    )
    if args.sets is not None and args.sets.is_file():
        with np.load(args.sets) as saved:
            sets = {k: saved[k] for k in saved.files}
    else:
        sets = make_sets(cfg)
        if args.sets is not None:
            savez: Any = np.savez  # numpy's stub types **kwds against allow_pickle
            savez(args.sets, **sets)
    print(train(cfg, sets))


if __name__ == "__main__":
    main()
