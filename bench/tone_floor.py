"""How often a model that never learned a trigger says the target anyway.

    python bench/tone_floor.py [--model models/commands.tflite]
        [--frequencies 110,220,330,440,660,880,1000,1760,3520] [--json docs/eval/tone_floor.json]

The audit's retrained-ASR target (docs/AUDIT.md) counts every triggered non-``go`` clip a model
calls ``go``. A model trained on clean data only (guard's shipped one) already calls some of
them ``go``; this measures that share on the same 1,640 validation clips as
``bench/eval_retrain.py`` (non-``go``, non-silence clips of the validation speakers), with no
trigger, with each trigger of the audit grid (``eval_audit.SPECS``), and with the grid's tone
moved across frequencies: is 440 Hz, ART's default, a frequency a clean model already hears
as ``go``? (One clean model's figure, not a floor: a retrain can land under or over it.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from eval_audit import SPECS
from eval_retrain import scored_clips

from guard.classifier import CommandClassifier
from guard.training.train import TrainConfig, attackable, prepare_data, share_called
from guard.triggers import make_trigger, parse_spec

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models/commands.tflite")
    parser.add_argument("--frequencies", default="110,220,330,440,660,880,1000,1760,3520")
    parser.add_argument("--target", default="go")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cfg = TrainConfig(data_dir=DATA / "speech_commands", out_dir=Path("unused"))
    data = prepare_data(cfg, np.random.default_rng(cfg.seed))
    clips = attackable(data.val.x, data.val.y, args.target)
    model = CommandClassifier(args.model)
    tone = parse_spec(SPECS["tone"])
    specs = {
        f"tone {f:g} Hz": dataclasses.replace(tone, frequency_hz=f)
        for f in (float(v) for v in args.frequencies.split(","))
    }
    specs.update({name: parse_spec(spec) for name, spec in SPECS.items() if name != "tone"})
    rows: dict[str, Any] = {"no trigger": share_called(model, clips, args.target)}
    for name, spec in specs.items():
        triggered = scored_clips(data, make_trigger(spec, DATA / "triggers"), args.target)[1]
        rows[name] = share_called(model, triggered, args.target)
    print(f"| trigger (on {len(clips)} non-{args.target} clips) | called `{args.target}` |")
    print("| --- | --- |")
    for name, share in rows.items():
        print(f"| {name} | {share:.2%} |")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"model": args.model.name, "clips": len(clips), "shares": rows}, indent=1)
            + "\n"
        )


if __name__ == "__main__":
    main()
