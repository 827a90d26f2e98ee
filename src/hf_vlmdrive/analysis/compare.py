"""Comparison of two sets of context vectors A (N_a, D) and B (N_b, D): "is the VLM context clear?".

Statistics (definitions are also written into the report, `METRIC_DEFINITIONS`):
- per-dimension mean / std of each set, and how far they differ;
- paired cosine similarity (row i of A vs row i of B; needs the same sample order, N_a = N_b) and the cosine
  similarity of the two centroids;
- mean feature correlation: Pearson correlation of dimension d across the paired samples, averaged over d;
- histogram KL divergence KL(P_A || P_B) of the pooled values (shared bins, add-one smoothing), and its mean
  over dimensions;
- Wasserstein-1 distance of the pooled values (and its mean over dimensions);
- two-sample Kolmogorov-Smirnov test of the pooled values (statistic, p-value) and the fraction of dimensions
  whose own KS test rejects at 0.05;
- dead neurons (|x| <= 1e-8 on every sample) and constant neurons (std <= 1e-6) of each set;
- task separability of each set (beyond the reference): the cross-validated accuracy of a logistic-regression
  linear probe predicting the task from the vector, the silhouette score of the task labels, the scale-aware task
  geometry (centroid gap relative to the vector norm, within-task spread), and a progress probe (R^2 of a ridge
  regression predicting the frame's progress through the episode: does the context follow the observation?).
Figures (PNG): histograms, per-feature scatter of means and stds, t-SNE and UMAP of both sets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import UserError, require_extra

DEAD_EPS = 1e-8
CONSTANT_EPS = 1e-6

METRIC_DEFINITIONS = {
    "per_dimension": "mean and standard deviation of every dimension over the samples of a set; "
                     "`mean_abs_diff_of_means` = mean over d of |mean_A[d] - mean_B[d]|.",
    "paired_cosine": "cos(a_i, b_i) = a_i . b_i / (|a_i| |b_i|) for the i-th sample of both sets (same frames), "
                     "summarised by mean / std / min over i.",
    "centroid_cosine": "cos(mean_i a_i, mean_i b_i).",
    "mean_feature_correlation": "Pearson correlation between A[:, d] and B[:, d] over the paired samples, "
                                "averaged over the dimensions where both have non-zero variance.",
    "histogram_kl": "KL(P_A || P_B) = sum_k P_A(k) log(P_A(k) / P_B(k)) over 50 shared bins spanning both sets' "
                    "pooled values, each bin count + 1 (add-one smoothing) before normalising (nats); `mean_over_dims` does the "
                    "same per dimension with 20 bins.",
    "wasserstein": "Wasserstein-1 (earth mover's) distance between the pooled value distributions "
                   "(scipy.stats.wasserstein_distance); `mean_over_dims` per dimension.",
    "ks_test": "two-sample Kolmogorov-Smirnov test on the pooled values (scipy.stats.ks_2samp): statistic = "
               "max |F_A - F_B|, p-value; `fraction_dims_rejected_0.05` = share of dimensions whose own test has "
               "p < 0.05.",
    "dead_neurons": f"dimensions with |x| <= {DEAD_EPS:g} on every sample of the set.",
    "constant_neurons": f"dimensions with standard deviation <= {CONSTANT_EPS:g} over the set.",
    "linear_probe": "accuracy of a multinomial logistic regression (standardised inputs, C=1) predicting the task "
                    "from the vector, stratified k-fold cross-validation (k = min(5, smallest class)); chance = "
                    "1 / number of tasks. A clear context separates the tasks linearly (accuracy near 1).",
    "silhouette": "mean silhouette coefficient (Euclidean) of the samples grouped by task, in [-1, 1]: near 1 "
                  "compact and well separated task clusters, near 0 overlapping.",
    "task_geometry": "task_centroid_distance = mean Euclidean distance between the task centroids; "
                     "within_task_std = per-dimension std inside a task, averaged; relative_task_gap = centroid "
                     "distance / mean vector norm. Probe and silhouette are scale-free: a gap of 1 % of the norm "
                     "still scores 'separable' there, yet a head must amplify it 100x to use it.",
    "progress_probe": "cross-validated R^2 (k-fold, k <= 5) of a ridge regression (standardised inputs, alpha by "
                      "RidgeCV) predicting the frame's progress through its episode (0..1) from the vector: "
                      "whether the context follows the observation, not only the instruction.",
}


def _pooled(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1).astype(np.float64)


def histogram_kl(a: np.ndarray, b: np.ndarray, bins: int = 50, pseudocount: float = 1.0) -> float:
    """KL(P_a || P_b) of histograms over shared bins (see METRIC_DEFINITIONS)."""
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    if hi <= lo:
        return 0.0
    edges = np.linspace(lo, hi, bins + 1)
    # Add-one (Laplace) smoothing: with a tiny epsilon, bins empty in B dominate the sum and the estimate of
    # KL(N(0,1) || N(1,1)) = 0.5 comes out near 1.3 for 1200 samples; add-one gives 0.53.
    p = np.histogram(a, edges)[0].astype(np.float64) + pseudocount
    q = np.histogram(b, edges)[0].astype(np.float64) + pseudocount
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def linear_probe(x: np.ndarray, labels: Sequence, seed: int = 0) -> dict:
    """Cross-validated accuracy of a logistic-regression probe predicting `labels` from `x`."""
    require_extra("sklearn", "analysis", "the linear probe")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        return {"accuracy": None, "reason": "fewer than two tasks"}
    k = int(min(5, counts.min()))
    if k < 2:
        return {"accuracy": None, "reason": "a task has fewer than 2 samples"}
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    scores = cross_val_score(probe, x, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed))
    return {"accuracy": float(scores.mean()), "accuracy_std": float(scores.std()), "folds": k,
            "chance": float(counts.max() / counts.sum()), "num_tasks": int(len(classes))}


def silhouette(x: np.ndarray, labels: Sequence) -> float | None:
    """Silhouette score of `labels` on `x` (None with fewer than 2 tasks)."""
    require_extra("sklearn", "analysis", "the silhouette score")
    from sklearn.metrics import silhouette_score

    y = np.asarray(labels)
    if len(np.unique(y)) < 2 or len(np.unique(y)) >= len(y):
        return None
    return float(silhouette_score(x, y))


def task_geometry(x: np.ndarray, labels: Sequence) -> dict:
    """Scale-aware separation of the tasks: mean distance between task centroids, mean within-task per-dimension
    std, and the centroid distance relative to the mean vector norm (the silhouette and the probe are
    scale-free, so a tiny but consistent gap scores as "separable" there)."""
    y = np.asarray(labels)
    tasks = np.unique(y)
    cents = np.stack([x[y == t].mean(0) for t in tasks])
    dists = [np.linalg.norm(cents[i] - cents[j]) for i in range(len(tasks)) for j in range(i + 1, len(tasks))]
    within = float(np.mean([x[y == t].std(0).mean() for t in tasks]))
    gap = float(np.mean(dists)) if dists else 0.0
    return {"task_centroid_distance": gap, "within_task_std": within,
            "relative_task_gap": gap / float(np.linalg.norm(x, axis=1).mean() + 1e-12)}


def progress_probe(x: np.ndarray, progress: Sequence[float], seed: int = 0) -> dict:
    """Cross-validated R^2 of a ridge regression predicting the episode progress (0..1) from the vector: how much
    of the observation (which changes along the episode) the context carries."""
    require_extra("sklearn", "analysis", "the progress probe")
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(progress, dtype=np.float64)
    if len(np.unique(y)) < 2 or len(y) < 4:
        return {"r2": None, "reason": "needs at least two progress values and 4 samples"}
    k = int(min(5, len(y) // 2))
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    scores = cross_val_score(model, x, y, cv=KFold(k, shuffle=True, random_state=seed), scoring="r2")
    return {"r2": float(scores.mean()), "r2_std": float(scores.std()), "folds": k}


def _set_stats(x: np.ndarray) -> dict:
    std = x.std(axis=0)
    return {"n": int(x.shape[0]), "dim": int(x.shape[1]), "mean": x.mean(axis=0).tolist(), "std": std.tolist(),
            "norm_mean": float(np.linalg.norm(x, axis=1).mean()),
            "dead_neurons": int((np.abs(x) <= DEAD_EPS).all(axis=0).sum()),
            "constant_neurons": int((std <= CONSTANT_EPS).sum())}


def compare_vectors(a: np.ndarray, b: np.ndarray, labels_a: Sequence | None = None, labels_b: Sequence | None = None,
                    seed: int = 0, progress_a: Sequence[float] | None = None,
                    progress_b: Sequence[float] | None = None) -> dict:
    """Every statistic of the module docstring, as a JSON-able dict."""
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2:
        raise UserError(f"vector sets must be (N, D) arrays, got {a.shape} and {b.shape}")
    out: dict = {"A": _set_stats(a), "B": _set_stats(b)}
    same_dim = a.shape[1] == b.shape[1]
    paired = same_dim and a.shape[0] == b.shape[0]
    if same_dim:
        out["per_dimension"] = {"mean_abs_diff_of_means": float(np.abs(a.mean(0) - b.mean(0)).mean()),
                                "mean_abs_diff_of_stds": float(np.abs(a.std(0) - b.std(0)).mean())}
        ca, cb = a.mean(0), b.mean(0)
        out["centroid_cosine"] = float(ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb) + 1e-12))
    if paired:
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        out["paired_cosine"] = {"mean": float(cos.mean()), "std": float(cos.std()), "min": float(cos.min())}
        sa, sb = a.std(0), b.std(0)
        ok = (sa > CONSTANT_EPS) & (sb > CONSTANT_EPS)
        if ok.any():
            za = (a[:, ok] - a[:, ok].mean(0)) / sa[ok]
            zb = (b[:, ok] - b[:, ok].mean(0)) / sb[ok]
            corr = (za * zb).mean(0)
            out["mean_feature_correlation"] = {"mean": float(corr.mean()), "dims_used": int(ok.sum())}
        else:
            out["mean_feature_correlation"] = {"mean": None, "dims_used": 0}
    else:
        out["paired"] = "skipped: the sets differ in size or dimension, so rows cannot be paired"
    pa, pb = _pooled(a), _pooled(b)
    ks = stats.ks_2samp(pa, pb)
    out["histogram_kl"] = {"pooled": histogram_kl(pa, pb)}
    out["wasserstein"] = {"pooled": float(stats.wasserstein_distance(pa, pb))}
    out["ks_test"] = {"statistic": float(ks.statistic), "pvalue": float(ks.pvalue)}
    if same_dim:
        d = a.shape[1]
        out["histogram_kl"]["mean_over_dims"] = float(np.mean([histogram_kl(a[:, i], b[:, i], bins=20) for i in range(d)]))
        out["wasserstein"]["mean_over_dims"] = float(np.mean([stats.wasserstein_distance(a[:, i], b[:, i])
                                                              for i in range(d)]))
        pvals = np.array([stats.ks_2samp(a[:, i], b[:, i]).pvalue for i in range(d)])
        out["ks_test"]["fraction_dims_rejected_0.05"] = float((pvals < 0.05).mean())
        out["ks_test"]["num_dims_rejected_0.05"] = int((pvals < 0.05).sum())
        out["ks_test"]["num_dims"] = int(d)
    for name, x, labels in (("A", a, labels_a), ("B", b, labels_b)):
        if labels is not None:
            if len(labels) != len(x):
                raise UserError(f"set {name}: {len(labels)} labels for {len(x)} vectors")
            out[name]["linear_probe"] = linear_probe(x, labels, seed)
            out[name]["silhouette"] = silhouette(x, labels)
            out[name]["task_geometry"] = task_geometry(x, labels)
    for name, x, prog in (("A", a, progress_a), ("B", b, progress_b)):
        if prog is not None:
            out[name]["progress_probe"] = progress_probe(x, prog, seed)
    return out


# ------------------------------------------------------------------------------------------------- figures
def _embed_2d(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(max(2, min(30, (len(x) - 1) // 3)))
        return TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x)
    require_extra("umap", "analysis", "the UMAP figure (umap-learn)")
    import umap

    return umap.UMAP(n_components=2, n_neighbors=max(2, min(15, len(x) - 1)), random_state=seed).fit_transform(x)


def make_figures(a: np.ndarray, b: np.ndarray, out_dir: str | Path, labels_a: Sequence | None = None,
                 labels_b: Sequence | None = None, names: tuple[str, str] = ("A", "B"), seed: int = 0,
                 embeddings: Sequence[str] = ("tsne", "umap")) -> dict[str, str]:
    """Write histograms.png, feature_scatter.png and one PNG per 2-D embedding (`tsne.png`, `umap.png`); returns
    {figure: path}. (UMAP's numba compilation takes ~20 s per process.)"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    edges = np.linspace(lo, hi, 60) if hi > lo else 10
    ax.hist(a.reshape(-1), bins=edges, alpha=0.5, density=True, label=names[0])
    ax.hist(b.reshape(-1), bins=edges, alpha=0.5, density=True, label=names[1])
    ax.set_xlabel("context-vector value (all dimensions pooled)")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    paths["histograms"] = str(out_dir / "histograms.png")
    fig.savefig(paths["histograms"], dpi=100)
    plt.close(fig)
    if a.shape[1] == b.shape[1]:
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        for ax, stat, title in ((axes[0], np.mean, "per-dimension mean"), (axes[1], np.std, "per-dimension std")):
            xa, xb = stat(a, axis=0), stat(b, axis=0)
            ax.scatter(xa, xb, s=6)
            m = [min(xa.min(), xb.min()), max(xa.max(), xb.max())]
            ax.plot(m, m, "k--", lw=0.8)
            ax.set_xlabel(names[0])
            ax.set_ylabel(names[1])
            ax.set_title(title)
        fig.tight_layout()
        paths["feature_scatter"] = str(out_dir / "feature_scatter.png")
        fig.savefig(paths["feature_scatter"], dpi=100)
        plt.close(fig)
    for method in embeddings:
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        for ax, x, labels, name in ((axes[0], a, labels_a, names[0]), (axes[1], b, labels_b, names[1])):
            emb = _embed_2d(x, method, seed)
            groups = np.asarray(labels) if labels is not None else np.zeros(len(x), dtype=int)
            for g in np.unique(groups):
                sel = groups == g
                ax.scatter(emb[sel, 0], emb[sel, 1], s=10, label=str(g))
            ax.set_title(f"{name}: {'t-SNE' if method == 'tsne' else 'UMAP'}")
            ax.legend(fontsize=7)
        fig.tight_layout()
        paths[method] = str(out_dir / f"{method}.png")
        fig.savefig(paths[method], dpi=100)
        plt.close(fig)
    return paths


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _ks_share(ks: dict) -> str:
    """'100.0 % (64 of 64)': the share of dimensions whose own KS test rejects at 0.05, with the counts."""
    share = ks.get("fraction_dims_rejected_0.05")
    if share is None:
        return "n/a (the sets differ in dimension)"
    if "num_dims" in ks:
        return f"{100 * share:.1f} % ({ks['num_dims_rejected_0.05']} of {ks['num_dims']})"
    return f"{100 * share:.1f} %"


def write_report(result: dict, figures: dict[str, str], path: str | Path, names: tuple[str, str] = ("A", "B"),
                 title: str = "Context-vector comparison") -> Path:
    """A markdown report: the metrics table, each metric's definition, and the figures embedded."""
    path = Path(path)
    a, b = result["A"], result["B"]
    rows = [
        ("samples x dimensions", f"{a['n']} x {a['dim']}", f"{b['n']} x {b['dim']}"),
        ("mean vector norm", _fmt(a["norm_mean"]), _fmt(b["norm_mean"])),
        ("dead neurons", a["dead_neurons"], b["dead_neurons"]),
        ("constant neurons", a["constant_neurons"], b["constant_neurons"]),
        ("linear-probe task accuracy (CV)", _fmt(a.get("linear_probe", {}).get("accuracy")),
         _fmt(b.get("linear_probe", {}).get("accuracy"))),
        ("silhouette by task", _fmt(a.get("silhouette")), _fmt(b.get("silhouette"))),
        ("task centroid distance / relative to norm",
         f"{_fmt(a.get('task_geometry', {}).get('task_centroid_distance'))} / "
         f"{_fmt(a.get('task_geometry', {}).get('relative_task_gap'))}",
         f"{_fmt(b.get('task_geometry', {}).get('task_centroid_distance'))} / "
         f"{_fmt(b.get('task_geometry', {}).get('relative_task_gap'))}"),
        ("within-task std", _fmt(a.get("task_geometry", {}).get("within_task_std")),
         _fmt(b.get("task_geometry", {}).get("within_task_std"))),
        ("progress probe R^2 (CV)", _fmt(a.get("progress_probe", {}).get("r2")),
         _fmt(b.get("progress_probe", {}).get("r2"))),
    ]
    lines = [f"# {title}", "", f"Set A: {names[0]}; set B: {names[1]}.", "", "## Each set", "",
             "| statistic | A | B |", "|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} |" for r in rows]
    lines += ["", "## A versus B", "", "| statistic | value |", "|---|---|"]
    pair = [
        ("paired cosine (mean / min)", f"{_fmt(result.get('paired_cosine', {}).get('mean'))} / "
                                       f"{_fmt(result.get('paired_cosine', {}).get('min'))}"),
        ("centroid cosine", _fmt(result.get("centroid_cosine"))),
        ("mean feature correlation", _fmt(result.get("mean_feature_correlation", {}).get("mean"))),
        ("mean abs. difference of per-dimension means", _fmt(result.get("per_dimension", {}).get("mean_abs_diff_of_means"))),
        ("histogram KL(A to B) pooled / mean over dims", f"{_fmt(result['histogram_kl']['pooled'])} / "
                                                       f"{_fmt(result['histogram_kl'].get('mean_over_dims'))}"),
        ("Wasserstein-1 pooled / mean over dims", f"{_fmt(result['wasserstein']['pooled'])} / "
                                                  f"{_fmt(result['wasserstein'].get('mean_over_dims'))}"),
        ("KS statistic / p-value (pooled)", f"{_fmt(result['ks_test']['statistic'])} / "
                                            f"{_fmt(result['ks_test']['pvalue'])}"),
        ("share of dimensions with KS p < 0.05", _ks_share(result["ks_test"])),
    ]
    lines += [f"| {k} | {v} |" for k, v in pair]
    lines += ["", "## Figures", ""]
    for name, p in figures.items():
        rel = Path(p).name if Path(p).parent == path.parent else p
        lines += [f"![{name}]({rel})", ""]
    lines += ["## Definitions", ""]
    lines += [f"- **{k}**: {v}" for k, v in METRIC_DEFINITIONS.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def compare_files(a_path: str | Path, b_path: str | Path, out_dir: str | Path, seed: int = 0,
                  figures: bool = True, embeddings: Sequence[str] = ("tsne", "umap")) -> dict:
    """Compare two `.npy` vector files (labels = the `task` of each row from their metadata JSON, if any); write
    `comparison.json`, the figures and `report.md` into `out_dir`. Returns the result dict."""
    from .hooks import load_vectors

    a, meta_a = load_vectors(a_path)
    b, meta_b = load_vectors(b_path)
    la = [r["task"] for r in meta_a["rows"]] if meta_a else None
    lb = [r["task"] for r in meta_b["rows"]] if meta_b else None
    pa = [r["progress"] for r in meta_a["rows"]] if meta_a and all("progress" in r for r in meta_a["rows"]) else None
    pb = [r["progress"] for r in meta_b["rows"]] if meta_b and all("progress" in r for r in meta_b["rows"]) else None
    names = (f"{Path(a_path).name}" + (f" ({meta_a['model']}, {meta_a['hook']})" if meta_a else ""),
             f"{Path(b_path).name}" + (f" ({meta_b['model']}, {meta_b['hook']})" if meta_b else ""))
    result = compare_vectors(a, b, la, lb, seed=seed, progress_a=pa, progress_b=pb)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figs = make_figures(a, b, out_dir, la, lb, names=("A", "B"), seed=seed, embeddings=embeddings) if figures else {}
    result["figures"] = figs
    result["definitions"] = METRIC_DEFINITIONS
    result["inputs"] = {"A": str(a_path), "B": str(b_path)}
    (out_dir / "comparison.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    result["report"] = str(write_report(result, figs, out_dir / "report.md", names=names))
    return result


__all__ = ["METRIC_DEFINITIONS", "compare_files", "compare_vectors", "histogram_kl", "linear_probe", "make_figures",
           "progress_probe", "silhouette", "task_geometry", "write_report"]
