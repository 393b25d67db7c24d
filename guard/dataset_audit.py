"""``guard audit``: find dirty-label poisoned clips in a Speech Commands-style training set.

A dirty-label poison is a clip of some other word with a trigger added and its label changed
to the target. Inside the target's folder such clips are a small, tight group that does not
sound like the rest. Each method scores every clip of a class (higher = more suspicious) and
flags some; a clip's reasons are the methods that flagged it.

0. ``knn``: deep k-NN label consistency (Peri et al. 2020): in the penultimate embedding of a
   model trusted to hear words (by default the shipped one), the share of a clip's 10 nearest
   neighbours that carry its label; a "yes" filed under "go" has "yes" neighbours.
   ``label``: the same model does not hear the clip's label (p(label) < 0.05).
1. ``gmm_pca``: PCA of per-clip log-mel statistics (one space for all classes), a Gaussian
   mixture per class with the number of components chosen by BIC; a component other than the
   largest that is closer to another class's mixture than to the rest of its own (by at least
   ``min_kl`` nats) sounds like another word: its clips are flagged.
2. ``kl``: the distances behind method 1, the corrected variational KL (Hershey & Olsen 2007,
   ``guard.detectors.gmm``); each component's margin (own - nearest other) and the class it
   sounds like are reported per class.
3. ``activation``: activation clustering (Chen et al. 2018): per class, the model's penultimate
   embedding and early-layer summary, PCA to 10 dimensions, 2-means; the smaller cluster is
   flagged when it is small (relative size below ``max_poison_share``) and well separated
   (silhouette above ``min_silhouette``).
4. ``spectral_signature``: Tran et al. 2018: per class, the squared projection of the centred
   embedding on its top singular vector; flagged above median + ``mad_k`` x MAD.
5. ``runtime``: guard's own runtime detectors (the fused verdict of ``Guard.check``).

A clip is a *candidate* when a precise method (``label``, ``runtime``) fires, or any two others
agree; it is *flagged* when, in addition, its class is suspect. Dirty-label poison all sits in
the target's folder, while a reference model's mishearings, and the runtime detectors' false
blocks, spread over every class: a class is suspect when it holds more candidates than the
other classes' rate explains (one-sided binomial test, ``class_alpha`` over all classes, and
at least ``class_min_ratio`` times that rate). Inside a suspect class the benefit of the
doubt goes: a clip is also flagged when the reference model gives its label less than even
odds (``suspect_label_max_probability``; reason ``label_doubt``), which finds the poisoned
clips the strict ``label`` threshold leaves (a trigger that leaves some ``go`` in the
reference model's ear). In a clean set a class the reference model hears badly can still come
out suspect (the shipped model hears about one "go" in five of unheard speakers as "no"): its
candidates and doubted clips are flagged, the other classes' are not.

Three models can take part. ``knn`` and ``label`` listen with a model trusted to hear words
(the configured, shipped one). ``activation`` and ``spectral_signature`` read a model that
learned the data, poison included: ``guard audit`` trains one on the data under audit
(guard/audit_training.py), or takes ``--model``. ``runtime`` needs detector state fitted for
its model, so with a freshly trained model it runs the configured model and its detectors.
Only numpy and scikit-learn (fitting) are used here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from guard.analysis import Analysis, analyse_batch
from guard.classifier import CommandClassifier, ModelOutputs
from guard.detectors.gmm import kl_gmm_variational
from guard.guard import Guard

FloatArray = npt.NDArray[np.float64]
METHODS = ("knn", "label", "gmm_pca", "activation", "spectral_signature", "runtime")
PRECISE = frozenset({"label", "runtime"})
"""Methods trusted alone; the others flag a clip only when two of them agree."""


@dataclass(frozen=True)
class AuditSettings:
    max_poison_share: float = 0.25
    """Activation clustering: a cluster larger than this share of its class is not poison."""
    max_components: int = 4
    """Largest mixture tried per class (BIC chooses)."""
    pca_dims: int = 10
    min_kl: float = 5.0
    """How much closer (nats) a component must be to another class than to its own."""
    min_silhouette: float = 0.15
    mad_k: float = 12.0
    min_class_clips: int = 20
    """Smaller classes are scored by the runtime detectors only."""
    seed: int = 0
    knn_k: int = 10
    """Neighbours asked in the k-NN label check."""
    knn_min_share: float = 0.2
    """A clip whose neighbours share its label less often than this is flagged."""
    label_max_probability: float = 0.05
    """``label``: flagged when the reference model gives the clip's label less than this."""
    class_alpha: float = 0.01
    """A class is suspect when the chance of at least its number of candidates, at the other
    classes' rate, is below this divided by the number of classes (Bonferroni)."""
    class_min_ratio: float = 2.0
    """... and its candidate rate is at least this many times the other classes' rate."""
    suspect_label_max_probability: float = 0.5
    """Inside a suspect class, a clip is also flagged when the reference model gives its label
    less than this (``label_doubt``)."""


@dataclass
class ClipResult:
    path: str
    cls: str
    scores: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    class_suspect: bool = True
    """Whether the clip's class holds more candidates than the other classes explain."""
    label_doubt: bool = False
    """The reference model gives the clip's label less than even odds (counts in a suspect
    class only; not a candidate by itself)."""
    heard: str = ""
    """The word the reference model hears in the clip (its top class): for a poisoned clip,
    usually the word it carried before it was relabelled."""
    heard_probability: float = 0.0
    """The reference model's probability of ``heard``."""

    @property
    def candidate(self) -> bool:
        """A precise method alone (``label``, ``runtime``), or any two methods."""
        return bool(PRECISE.intersection(self.reasons)) or len(self.reasons) >= 2

    @property
    def flagged(self) -> bool:
        """The combined rule: a candidate, or a doubted label, in a suspect class."""
        return (self.candidate or self.label_doubt) and self.class_suspect

    @property
    def why(self) -> list[str]:
        """The reasons a reviewer reads: the methods that fired, and ``label_doubt`` when the
        doubted label alone (in a suspect class) flags the clip."""
        if self.label_doubt and self.class_suspect and not self.candidate:
            return [*self.reasons, "label_doubt"]
        return list(self.reasons)

    @property
    def score(self) -> float:
        """Combined suspicion in [0, 1]: the share of methods that flagged it, plus a small
        tie-breaker from the strongest score."""
        top = max((min(v, 1.0) for v in self.scores.values()), default=0.0)
        return round(len(self.reasons) / len(METHODS) * 0.9 + 0.1 * top, 4)

    def to_record(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "class": self.cls,
            "score": self.score,
            "flagged": self.flagged,
            "reasons": self.why,
            "candidate": self.candidate,
            "class_suspect": self.class_suspect,
            "label_doubt": self.label_doubt,
            "heard": self.heard,
            "heard_probability": round(self.heard_probability, 4),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
        }


@dataclass
class ClassSummary:
    cls: str
    clips: int
    flagged: int
    components: int
    kl_margins: list[float]
    """Per mixture component: KL to the rest of its class minus KL to the nearest other class
    (positive = it sounds more like another class)."""
    activation_silhouette: float
    nearest_class: str
    """The class whose mixture is closest (variational KL) to this class's suspicious part."""
    pca_2d: FloatArray = field(repr=False, default_factory=lambda: np.zeros((0, 2)))
    cluster: npt.NDArray[np.int64] = field(repr=False, default_factory=lambda: np.zeros(0, int))
    candidates: int = 0
    """Clips a method flagged (a precise one, or two), before the class test."""
    suspect_p_value: float = 1.0
    """Chance of at least ``candidates`` at the other classes' rate (one-sided binomial)."""
    suspect: bool = True


def clip_statistics(analyses: Sequence[Analysis]) -> FloatArray:
    """Per clip: mean and standard deviation of each log-mel band over the loud frames."""
    out = []
    for a in analyses:
        lm = np.asarray(a.features.log_mel, np.float64)
        energy = lm.mean(axis=1)
        loud = lm[energy >= np.percentile(energy, 50)]
        out.append(np.concatenate([loud.mean(axis=0), loud.std(axis=0)]))
    return np.asarray(out)


def _pca(x: FloatArray, dims: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-9
    z = (x - mean) / std
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    basis = vt[: min(dims, vt.shape[0])]
    return z @ basis.T, mean, basis


def _knn_label_share(emb: FloatArray, labels: npt.NDArray[Any], k: int) -> FloatArray:
    """For each clip, the share of its ``k`` nearest neighbours (cosine, itself excluded) that
    carry the same label."""
    z = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
    out = np.empty(len(z))
    k = max(1, min(k, len(z) - 1))
    for start in range(0, len(z), 512):
        sim = z[start : start + 512] @ z.T
        rows = np.arange(sim.shape[0])
        sim[rows, start + rows] = -np.inf
        nearest = np.argpartition(-sim, k, axis=1)[:, :k]
        out[start : start + len(sim)] = (labels[nearest] == labels[start + rows, None]).mean(1)
    return out


def _mad_z(values: FloatArray) -> FloatArray:
    med = np.median(values)
    mad = np.median(np.abs(values - med)) * 1.4826 + 1e-12
    return np.asarray((values - med) / mad)


class DatasetAudit:
    """Runs the methods over (analyses, class names); ``run`` returns clip results and class
    summaries."""

    def __init__(
        self,
        guard: Guard,
        settings: AuditSettings | None = None,
        reference: CommandClassifier | None = None,
        activations: CommandClassifier | None = None,
    ) -> None:
        self.guard = guard
        """Its model and detectors give the ``runtime`` method."""
        self.settings = settings or AuditSettings()
        self.reference = reference
        """A model trusted to hear words (the shipped one) for the k-NN label check; the
        audited ``guard.model`` when None."""
        self.activations = activations
        """The model ``activation`` and ``spectral_signature`` read (one trained on the data
        under audit, guard/audit_training.py); ``guard.model`` when None."""

    def run(
        self,
        paths: Sequence[str],
        classes: Sequence[str],
        samples: npt.NDArray[np.float32],
        progress: Callable[[int], None] | None = None,
    ) -> tuple[list[ClipResult], dict[str, ClassSummary]]:
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score
        from sklearn.mixture import GaussianMixture

        s = self.settings
        model = self.guard.model
        analyses = analyse_batch(samples, model)
        results = [ClipResult(p, c) for p, c in zip(paths, classes, strict=True)]
        stats = clip_statistics(analyses)
        log_mel = np.stack([a.features.log_mel for a in analyses])
        act_out = (
            [a.outputs for a in analyses]
            if self.activations is None or self.activations is model
            else _predict(self.activations, log_mel)
        )
        emb = np.concatenate(
            [
                np.concatenate([o.embedding for o in act_out]),
                np.concatenate([o.early for o in act_out]),
            ],
            axis=1,
        ).astype(np.float64)

        # 0. deep k-NN label consistency (Peri et al. 2020): does a clip sound like its label?
        ref = self.reference or model
        # The features are the same for every model: only another model runs again.
        ref_out = [a.outputs for a in analyses] if ref is model else _predict(ref, log_mel)
        ref_emb = np.concatenate([o.embedding for o in ref_out])
        # The reference model's own ear: a confident prediction of another word.
        ref_probs = np.concatenate([o.probabilities for o in ref_out])
        label_index = [
            ref.labels.index(c) if c in ref.labels else ref.labels.index("_unknown_")
            if "_unknown_" in ref.labels else -1
            for c in classes
        ]  # fmt: skip
        knn_share = _knn_label_share(np.asarray(ref_emb, np.float64), np.asarray(classes), s.knn_k)
        names_found, counts = np.unique(np.asarray(classes), return_counts=True)
        class_sizes = dict(zip(names_found.tolist(), counts.tolist(), strict=True))
        for i, (r, share) in enumerate(zip(results, knn_share, strict=True)):
            r.scores["knn"] = float(1.0 - share)
            p_label = float(ref_probs[i, label_index[i]]) if label_index[i] >= 0 else 1.0
            r.scores["label"] = 1.0 - p_label
            if share < s.knn_min_share and class_sizes[r.cls] >= s.min_class_clips:
                r.reasons.append("knn")
            if p_label < s.label_max_probability:
                r.reasons.append("label")
            r.label_doubt = p_label < s.suspect_label_max_probability
            top = int(np.argmax(ref_probs[i]))
            r.heard, r.heard_probability = ref.labels[top], float(ref_probs[i, top])

        # 5. runtime detectors, clip by clip (the same decision path as the daemon)
        for i, a in enumerate(analyses):
            verdict = self.guard.decide(a, 0.0)
            ratio = max(
                (verdict.scores[k] / max(verdict.thresholds[k], 1e-9) for k in verdict.scores),
                default=0.0,
            )
            results[i].scores["runtime"] = float(ratio)
            if not verdict.allowed:
                results[i].reasons.append("runtime")
            if progress is not None and i % 64 == 0:
                progress(i)

        names = sorted(set(classes))
        cls_arr = np.asarray(classes)
        summaries: dict[str, ClassSummary] = {}
        # One PCA space for every class, so class mixtures can be compared by KL.
        shared, _, _ = _pca(stats, s.pca_dims)
        mixtures: dict[str, Any] = {}
        for name in names:
            idx = np.flatnonzero(cls_arr == name)
            if len(idx) < s.min_class_clips:
                continue
            x = shared[idx]
            best = None
            for k in range(1, s.max_components + 1):
                if k > 1 and k * (s.pca_dims + 2) * 3 > len(idx):
                    break  # one component always; more only with ~3 clips per parameter
                g = GaussianMixture(k, covariance_type="full", reg_covar=1e-3, random_state=s.seed)
                g.fit(x)
                bic = g.bic(x)
                if best is None or bic < best[0]:
                    best = (bic, g)
            assert best is not None
            mixtures[name] = best[1]
        for name in names:
            idx = np.flatnonzero(cls_arr == name)
            if name not in mixtures:
                summaries[name] = ClassSummary(name, len(idx), 0, 0, [], 0.0, "")
                continue
            g = mixtures[name]
            post = g.predict_proba(shared[idx])
            gmm_score = np.zeros(len(idx))
            kls: list[float] = []
            nearest = ""
            # A component that sounds more like another class than like the rest of its own
            # class is the dirty-label signature (clips of "yes" relabelled "go").
            for j in range(g.n_components):
                own = _kl_to_class(g, j, g, exclude=j)
                other_name, other = min(
                    ((o, _kl_to_class(g, j, m)) for o, m in mixtures.items() if o != name),
                    key=lambda t: t[1],
                    default=("", math.inf),
                )
                kls.append(round(own - other, 3))
                if j != int(np.argmax(g.weights_)) and other + s.min_kl < own:
                    gmm_score = np.maximum(gmm_score, post[:, j])
                    nearest = other_name
            # 3. activation clustering
            z, _, _ = _pca(emb[idx], s.pca_dims)
            km = KMeans(2, n_init=5, random_state=s.seed).fit(z)
            labels = km.labels_
            sizes = np.bincount(labels, minlength=2)
            minor = int(np.argmin(sizes))
            sil = float(silhouette_score(z, labels)) if len(set(labels)) == 2 else 0.0
            act_flag = sizes[minor] / len(idx) < s.max_poison_share and sil >= s.min_silhouette
            # 4. spectral signature
            centred = emb[idx] - emb[idx].mean(axis=0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            sig_z = _mad_z((centred @ vt[0]) ** 2)
            for row, clip_index in enumerate(idx.tolist()):
                r = results[clip_index]
                r.scores["gmm_pca"] = float(gmm_score[row])
                r.scores["activation"] = float(labels[row] == minor) * max(sil, 0.0)
                r.scores["spectral_signature"] = float(max(sig_z[row], 0.0) / (2 * s.mad_k))
                if gmm_score[row] > 0.5:
                    r.reasons.append("gmm_pca")
                if act_flag and labels[row] == minor:
                    r.reasons.append("activation")
                if sig_z[row] > s.mad_k:
                    r.reasons.append("spectral_signature")
            summaries[name] = ClassSummary(  # flagged: set by suspect_classes below
                name, len(idx), 0, g.n_components, kls, sil, nearest, z[:, :2],
                labels.astype(int),
            )  # fmt: skip
        for r in results:
            r.reasons.sort(key=METHODS.index)
        suspect_classes(results, summaries, s)
        return results, summaries


def suspect_classes(
    results: Sequence[ClipResult], summaries: dict[str, ClassSummary], s: AuditSettings
) -> None:
    """Mark each class suspect or not (``ClipResult.class_suspect``, ``ClassSummary``): does it
    hold more candidates than the other classes' rate explains?"""
    from scipy.stats import binom

    cls = np.asarray([r.cls for r in results])
    cand = np.asarray([r.candidate for r in results])
    names = sorted(set(cls.tolist()))
    for name in names:
        mine = cls == name
        k, n = int(cand[mine].sum()), int(mine.sum())
        others = int((~mine).sum())
        if others == 0:
            p_value, suspect = 0.0, True  # one class: nothing to compare with
        else:
            # the other classes' rate, kept off zero (half a candidate) for small sets
            rate = (float(cand[~mine].sum()) + 0.5) / (others + 1)
            p_value = float(binom.sf(k - 1, n, rate)) if k > 0 else 1.0
            suspect = p_value < s.class_alpha / len(names) and k / n >= s.class_min_ratio * rate
        for i in np.flatnonzero(mine).tolist():
            results[i].class_suspect = suspect
        if name in summaries:
            summary = summaries[name]
            summary.candidates, summary.suspect_p_value, summary.suspect = k, p_value, suspect
            summary.flagged = sum(results[i].flagged for i in np.flatnonzero(mine).tolist())


def _predict(model: CommandClassifier, log_mel: npt.NDArray[np.float32]) -> list[ModelOutputs]:
    """``model`` on stacked log-mel features, 256 clips per interpreter call."""
    return [model.predict(log_mel[i : i + 256]) for i in range(0, len(log_mel), 256)]


def _kl_to_class(g: Any, j: int, m: Any, exclude: int | None = None) -> float:
    """Variational KL from component ``j`` of mixture ``g`` to mixture ``m`` (without its
    component ``exclude``)."""
    keep = [r for r in range(m.n_components) if r != exclude]
    if not keep:
        return math.inf
    w = m.weights_[keep] / m.weights_[keep].sum()
    return kl_gmm_variational(
        [1.0], g.means_[[j]], g.covariances_[[j]], w, m.means_[keep], m.covariances_[keep]
    )


def summary_table(results: Sequence[ClipResult], summaries: dict[str, ClassSummary]) -> str:
    """Per class: clips, flagged, by method; and the class the suspicious part sounds like."""
    lines = [
        "| class | clips | flagged | candidates (class test p) | "
        + " | ".join(METHODS)
        + " | mixture components | sounds like |",
        "| --- | --- | --- | --- |" + " --- |" * len(METHODS) + " --- | --- |",
    ]
    for name, s in sorted(summaries.items()):
        rows = [r for r in results if r.cls == name]
        per = [sum(m in r.reasons for r in rows) for m in METHODS]
        flagged = sum(r.flagged for r in rows)
        verdict = "suspect" if s.suspect else "not suspect"
        lines.append(
            f"| {name} | {len(rows)} | {flagged} ({flagged / max(len(rows), 1):.1%}) | "
            f"{s.candidates} ({verdict}, p = {s.suspect_p_value:.2g}) | "
            + " | ".join(str(n) for n in per)
            + f" | {s.components or '-'} | {s.nearest_class or '-'} |"
        )
    return "\n".join(lines)


def write_report(
    path: Any,
    dataset: str,
    models: Mapping[str, str],
    results: Sequence[ClipResult],
    summaries: dict[str, ClassSummary],
) -> list[str]:
    """A Markdown report beside ``path``; with matplotlib (the ``redteam`` extra), a 2-D PCA
    scatter per class with flagged clips, coloured by activation cluster. ``models`` maps the
    methods (e.g. ``"knn, label"``) to the model they used. Returns the plots."""
    from pathlib import Path

    path = Path(path)
    flagged = [r for r in results if r.flagged]
    plots: list[str] = []
    plt: Any = None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot

        plt = matplotlib.pyplot
    except ImportError:
        pass
    if plt is not None:
        for name, s in sorted(summaries.items()):
            rows = [r for r in results if r.cls == name]
            if not any(r.flagged for r in rows) or len(s.pca_2d) != len(rows):
                continue
            fig, ax = plt.subplots(figsize=(4.5, 4))
            marks = np.array([r.flagged for r in rows])
            clean_xy, flag_xy = s.pca_2d[~marks], s.pca_2d[marks]
            ax.scatter(
                clean_xy[:, 0], clean_xy[:, 1], c=s.cluster[~marks], s=8, cmap="coolwarm", alpha=0.6
            )
            ax.scatter(flag_xy[:, 0], flag_xy[:, 1], c="k", marker="x", s=18, label="flagged")
            ax.set_title(f"{name}: embedding PCA, colour = activation cluster")
            ax.legend(loc="best", fontsize=7)
            png = path.with_name(f"{path.stem}_{name}.png")
            fig.savefig(png, dpi=90, bbox_inches="tight")
            plt.close(fig)
            plots.append(png.name)
    top = sorted(flagged, key=lambda r: -r.score)[:50]
    text = [
        f"# guard audit: {dataset}",
        "",
        f"{len(results)} clips, {len(flagged)} flagged "
        f"({len(flagged) / max(len(results), 1):.1%}). Models:",
        "",
        *(f"- {methods}: {what}" for methods, what in models.items()),
        "",
        summary_table(results, summaries),
        "",
        "## Most suspicious clips",
        "",
        "| clip | class | score | reasons |",
        "| --- | --- | --- | --- |",
        *(f"| {r.path} | {r.cls} | {r.score:.2f} | {', '.join(r.why)} |" for r in top),
        "",
        *(f"![{p}]({p})" for p in plots),
    ]
    if plt is None:
        text.append("(Plots need matplotlib: pip install 'guard[redteam]'.)")
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return plots
