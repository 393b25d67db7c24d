"""The daemon's numbers: decision latency, idle CPU, memory, and a long ``--fast`` soak.

    python bench/bench_daemon.py latency [--utterances 120] [--block-ms 20]
    python bench/bench_daemon.py idle [--seconds 60] [--block-ms 20]
    python bench/bench_daemon.py soak [--hours 8]

All three run the real pipeline (``guard.daemon.run_settings``: source -> segmenter thread ->
analysis -> dispatcher -> audit log) in this process, on streams built from real Speech
Commands clips of validation speakers (``../shared/data``; the test fixtures if it is absent)
over real background noise, and read the audit log afterwards.

- latency: the stream is paced in real time. Per utterance, *processing* = time in the
  utterance queue + ``Guard.check`` (from the moment the endpointer closed it, i.e. after the
  hangover); *end to end* = verdict wall time minus the wall time at which the hangover ended
  in the paced stream (adds the wait for the last audio block).
- idle: quiet room noise only, paced; CPU seconds of this process / wall seconds (% of one
  core) and resident memory.
- soak: ``--hours`` of audio written as 10-minute WAV files, replayed with ``--fast``; checks
  that every utterance has exactly one audit record and samples RSS every 2 s.

BLAS is pinned to one thread; one interpreter thread. Quote medians; the machine is shared.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import psutil  # noqa: E402
from scipy.io import wavfile  # noqa: E402

from guard import daemon  # noqa: E402
from guard.allocator import tune_allocator  # noqa: E402
from guard.audio import read_audio  # noqa: E402
from guard.audit import read_records  # noqa: E402
from guard.config import AuditSettings, HandlerSettings, Settings, load_settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "speech_commands"
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
FloatArray = npt.NDArray[np.float32]


def _clips(n: int, seed: int = 0) -> list[FloatArray]:
    """Command-word clips of the "evaluate" speakers (never trained or tuned on)."""
    if DATA.is_dir():
        from guard import devdata

        chosen = [c for c in devdata.clips(DATA, "evaluate", seed=seed) if c.label in WORDS][:n]
        return list(devdata.audio(chosen))
    paths = sorted((ROOT / "tests" / "data" / "wav").glob("*.wav"))
    return [read_audio(p) for p in paths][:n]


def _noise(n_samples: int, rng: np.random.Generator, level: float = 0.003) -> FloatArray:
    files = sorted((DATA / "_background_noise_").glob("*.wav")) if DATA.is_dir() else []
    if not files:
        return (level * rng.standard_normal(n_samples)).astype(np.float32)
    noise = read_audio(files[int(rng.integers(len(files)))])
    reps = int(np.ceil(n_samples / len(noise)))
    x = np.tile(noise, reps)[:n_samples]
    return (x * (level / (np.std(x) + 1e-9))).astype(np.float32)


def _stream(clips: list[FloatArray], rng: np.random.Generator) -> FloatArray:
    parts: list[FloatArray] = []
    for clip in clips:
        parts += [np.zeros(int(16000 * rng.uniform(1.0, 2.0)), np.float32), clip]
    parts.append(np.zeros(16000, np.float32))
    x = np.concatenate(parts)
    return x + _noise(len(x), rng)


def _settings(tmp: Path, block_ms: int) -> Settings:
    s = load_settings(ROOT / "config.yaml")
    return dataclasses.replace(
        s,
        audio=dataclasses.replace(s.audio, block_ms=block_ms),
        handlers=HandlerSettings(),
        audit=AuditSettings(log_path=tmp / "audit.jsonl", clip_dir=None),
    )


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def latency(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(1)
    stream = _stream(_clips(args.utterances), rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.wav"
        wavfile.write(path, 16000, np.round(np.clip(stream, -1, 1) * 32767).astype(np.int16))
        settings = _settings(Path(tmp), args.block_ms)
        seen: list[tuple[float, dict[str, Any]]] = []
        counters = daemon.run_settings(
            settings,
            str(path),
            fast=False,
            quiet=True,
            on_record=lambda row: seen.append((time.monotonic(), row)),
        )
    ep = settings.endpoint
    processing = [float(r["queue_ms"]) + float(r["latency_ms"]) for _, r in seen]
    e2e = []
    for t, r in seen:
        # Closed by the hangover (not by max length): the hangover ended here in stream time.
        hangover_end_s = float(r["end_s"]) - ep.post_roll_s + ep.hangover_s
        e2e.append((t - counters.started_monotonic - hangover_end_s) * 1000)
    return {
        "utterances": len(seen),
        "block_ms": args.block_ms,
        "processing_ms": {"p50": _pct(processing, 50), "p99": _pct(processing, 99)},
        "end_to_end_ms": {"p50": _pct(e2e, 50), "p99": _pct(e2e, 99)},
    }


def idle(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(2)
    quiet = _noise(int(args.seconds * 16000), rng, level=0.002)
    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "quiet.wav"
        wavfile.write(path, 16000, np.round(quiet * 32767).astype(np.int16))
        settings = _settings(Path(tmp), args.block_ms)
        # Start-up (model load) is not idle: measure from the first record-free second on.
        box: dict[str, float] = {}

        def mark() -> None:
            time.sleep(5.0)
            c = proc.cpu_times()
            box["cpu"] = c.user + c.system
            box["t"] = time.monotonic()

        marker = threading.Thread(target=mark)
        marker.start()
        counters = daemon.run_settings(settings, str(path), fast=False, quiet=True)
        marker.join()
        c = proc.cpu_times()
        wall = time.monotonic() - box["t"]
        cpu = c.user + c.system - box["cpu"]
    return {
        "seconds": args.seconds,
        "block_ms": args.block_ms,
        "utterances": counters.utterances,
        "cpu_percent_of_one_core": 100 * cpu / wall,
        "rss_mb": proc.memory_info().rss / 1e6,
    }


def soak(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(3)
    clips = _clips(400, seed=3)
    proc = psutil.Process()
    rss: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.wait(2.0):
            rss.append((time.monotonic() - t0, proc.memory_info().rss / 1e6))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "audio"
        folder.mkdir()
        per_file_s = 600
        n_files = int(np.ceil(args.hours * 3600 / per_file_s))
        for i in range(n_files):
            parts: list[FloatArray] = []
            total = 0
            while total < per_file_s * 16000:
                clip = clips[int(rng.integers(len(clips)))]
                gap = np.zeros(int(16000 * rng.uniform(1.0, 6.0)), np.float32)
                parts += [gap, clip]
                total += len(gap) + len(clip)
            x = np.concatenate(parts)[: per_file_s * 16000]
            x = x + _noise(len(x), rng)
            wavfile.write(
                folder / f"{i:04d}.wav", 16000, np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
            )
        settings = _settings(Path(tmp), 100)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        counters = daemon.run_settings(settings, str(folder), fast=True, quiet=True)
        wall = time.monotonic() - t0
        stop.set()
        rows = read_records(Path(tmp) / "audit.jsonl")
    keys = {(r["source"], r["start_s"]) for r in rows}
    first = [m for t, m in rss if t < wall * 0.2]
    last = [m for t, m in rss if t > wall * 0.8]
    return {
        "hours": args.hours,
        "wall_s": wall,
        "real_time_factor": args.hours * 3600 / wall,
        "utterances": counters.utterances,
        "records": len(rows),
        "unique_records": len(keys),
        "overload": counters.overload,
        "rss_mb_first_fifth_median": _pct(first, 50),
        "rss_mb_last_fifth_median": _pct(last, 50),
        "rss_mb_max": max((m for _, m in rss), default=float("nan")),
    }


def main() -> None:
    tune_allocator()  # as the guard command does
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--utterances", type=int, default=120)
    p.add_argument("--block-ms", type=int, default=20)
    p = sub.add_parser("idle")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--block-ms", type=int, default=20)
    p = sub.add_parser("soak")
    p.add_argument("--hours", type=float, default=8.0)
    args = parser.parse_args()
    result = {"latency": latency, "idle": idle, "soak": soak}[args.mode](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
