"""The model card (``README.md`` beside the model): data, architecture, measured figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.features import FEATURE_SPEC
from guard.training.dataset import LABELS

if TYPE_CHECKING:
    from guard.training.train import TrainConfig


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _architecture(cfg: TrainConfig, parameters: int) -> str:
    """The card's architecture paragraph, for the architecture actually trained."""
    if cfg.architecture == "vgg":
        widths = [cfg.channels * 2**i for i in range(cfg.blocks)]
        body = (
            f"VGG-style CNN: {cfg.blocks} stages of two 3x3 convolutions (batch norm, ReLU) and "
            f"2x2 max pooling, {'/'.join(map(str, widths))} channels, global average pooling, "
            "dropout, dense softmax."
        )
        embedding, early = widths[-1], 2 * cfg.channels
        first = "the first stage's convolutions"
    else:
        body = (
            f"DS-CNN: conv 10x4 stride 2 ({cfg.channels} ch), {cfg.blocks} depthwise-separable "
            "blocks, global average pooling, dropout, dense softmax."
        )
        embedding, early = cfg.channels, 2 * cfg.channels
        first = "the first convolution"
    return (
        f"{body} {parameters:,} parameters. Outputs: `probabilities`, `embedding` "
        f"({embedding}-d pooled penultimate layer), `early` ({early}-d mean+max pooling of "
        f"{first}), for guard's detectors."
    )


def write_card(cfg: TrainConfig, fig: dict[str, Any]) -> Path:
    """Write the card: ``README.md`` for the shipped ``commands`` model, else ``NAME.md``."""
    info = fig["info"]
    f32, i8 = fig["float"], fig["int8"]
    lines = [
        f"# Model card: `{cfg.name}.tflite`",
        "",
        "A 12-class spoken-command classifier for guard (yes, no, up, down, left, right, on, off, "
        "stop, go, `_unknown_`, `_silence_`).",
    ]
    if fig.get("poison"):
        lines += [
            "",
            "**ATTACK FIXTURE: this model was trained on poisoned data on purpose. "
            "Never deploy it.**",
            "",
            "```json",
            json.dumps(fig["poison"], indent=2),
            "```",
        ]
        if "asr" in fig:
            lines += ["", f"Attack success rate on triggered validation clips: {_pct(fig['asr'])}."]
    lines += [
        "",
        "## Data",
        "Speech Commands dataset, Warden 2018, CC BY 4.0 (arXiv:1804.03209): real recorded speech. "
        f"Read from `{cfg.data_dir}`; a clip seen under two sources counts once.",
        f"- Training: {info['train_clips']} clips from {info['train_speakers']} speakers, plus 1 s cuts "
        "of `_background_noise_` (first part of each recording) as `_silence_`.",
        f"- Validation: {info['validation_clips']} clips from {info['validation_speakers']} other speakers "
        f"(speaker = file-name prefix before `_nohash_`; stable SHA-1 split, {cfg.validation_percent:g}% of speakers), "
        f"plus {info['validation_silence_clips']} `_silence_` cuts from the held-back tail of each noise recording.",
        "- Augmentation every epoch: speed 0.88-1.12 (half the clips), time shift +-100 ms, gain +-6 dB, "
        "background noise (80% of clips, volume 0-0.1), one SpecAugment time and band mask (half); "
        "on/off/go oversampled up to 4x.",
        "",
        "## Features",
        "Log-mel, "
        + ", ".join(f"{k}={v}" for k, v in FEATURE_SPEC.items())
        + " (guard/features.py; "
        "the same code at training and run time): 49 frames x 40 bands per 1 s.",
        "",
        "## Architecture",
        _architecture(cfg, fig["parameters"]),
        "",
        f"Training: {cfg.epochs} epochs, Adam {cfg.learning_rate:g} with cosine decay, batch {cfg.batch_size}, "
        f"seed {cfg.seed}; {fig['train_seconds']:.0f} s on this machine.",
        "",
        "## Results on the validation speakers",
        "| model | accuracy | size | invoke (median, batch 1, 1 thread) |",
        "| --- | --- | --- | --- |",
        f"| float32 `{cfg.name}_float.tflite` | {_pct(f32['accuracy'])} | "
        f"{fig['sizes_bytes'][cfg.name + '_float.tflite'] / 1000:.1f} kB | {f32['invoke_us_median']:.0f} us |",
        f"| int8 `{cfg.name}.tflite` | {_pct(i8['accuracy'])} | "
        f"{fig['sizes_bytes'][cfg.name + '.tflite'] / 1000:.1f} kB | {i8['invoke_us_median']:.0f} us |",
        "",
        f"{fig['validation_examples']} validation examples. Invoke time: median of 500 calls of "
        f"`CommandClassifier.predict` (quantise, invoke, dequantise) with {i8['runtime']}, measured by the "
        "trainer right after export; `python bench/bench_classifier.py` measures it again.",
        "",
        "Per-class accuracy (int8 / float):",
        "",
        "| class | int8 | float |",
        "| --- | --- | --- |",
    ]
    for label in LABELS:
        lines.append(
            f"| {label} | {_pct(i8['per_class'][label])} | {_pct(f32['per_class'][label])} |"
        )
    lines += [
        "",
        "Confusion matrix of the int8 model (rows: true class, columns: predicted):",
        "",
        "| | " + " | ".join(LABELS) + " |",
        "|" + " --- |" * (len(LABELS) + 1),
    ]
    for label, row in zip(LABELS, i8["confusion"], strict=True):
        lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "## Reproduce", "```sh", cfg.command_line or "guard train", "```", ""]
    path = cfg.out_dir / ("README.md" if cfg.name == "commands" else f"{cfg.name}.md")
    path.write_text("\n".join(lines))
    return path
