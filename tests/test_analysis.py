"""Analysis toolkit: comparison statistics on known distributions, the stratified sampler, hooks at the action
token, dataset statistics and the `hf-vlmdrive analyze` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("h5py")
pytest.importorskip("sklearn")

from hf_vlmdrive.analysis.compare import compare_files, compare_vectors, histogram_kl  # noqa: E402
from hf_vlmdrive.analysis.dataset_stats import dataset_stats  # noqa: E402
from hf_vlmdrive.analysis.hooks import extract_context_vectors, load_vectors, save_vectors  # noqa: E402
from hf_vlmdrive.analysis.sampling import stratified_sample  # noqa: E402
from hf_vlmdrive.cli import main as cli_main  # noqa: E402
from hf_vlmdrive.data.episodes_hdf5 import open_episodes  # noqa: E402
from hf_vlmdrive.data.synthetic.mobile_robot import write_mobile_robot_hdf5  # noqa: E402


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    return write_mobile_robot_hdf5(tmp_path_factory.mktemp("eps"), num_episodes=12, seed=0)


# ------------------------------------------------------------------------------------------- statistics
def test_identical_sets():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 8))
    r = compare_vectors(a, a.copy())
    assert r["paired_cosine"]["mean"] == pytest.approx(1.0) and r["paired_cosine"]["min"] == pytest.approx(1.0)
    assert r["centroid_cosine"] == pytest.approx(1.0)
    assert r["mean_feature_correlation"]["mean"] == pytest.approx(1.0)
    assert r["ks_test"]["statistic"] == 0.0 and r["ks_test"]["pvalue"] == pytest.approx(1.0)
    assert r["wasserstein"]["pooled"] == pytest.approx(0.0, abs=1e-12)
    assert r["histogram_kl"]["pooled"] == pytest.approx(0.0, abs=1e-9)
    assert r["ks_test"]["fraction_dims_rejected_0.05"] == 0.0


def test_shifted_sets_are_detected():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200, 6))
    b = rng.normal(size=(200, 6)) + 1.0
    r = compare_vectors(a, b)
    assert r["ks_test"]["pvalue"] < 1e-6 and r["ks_test"]["fraction_dims_rejected_0.05"] == 1.0
    assert r["wasserstein"]["pooled"] == pytest.approx(1.0, abs=0.15)  # W1 between N(0,1) and N(1,1) is 1
    assert r["per_dimension"]["mean_abs_diff_of_means"] == pytest.approx(1.0, abs=0.2)
    assert abs(r["mean_feature_correlation"]["mean"]) < 0.2  # independent draws
    # KL of two unit Gaussians one apart is 0.5 nats; the histogram estimate is close
    assert histogram_kl(a.reshape(-1), b.reshape(-1)) == pytest.approx(0.5, abs=0.2)


def test_dead_constant_and_probe():
    rng = np.random.default_rng(2)
    labels = ["left"] * 40 + ["right"] * 40
    sep = rng.normal(size=(80, 5))
    sep[:40, 0] += 6.0  # linearly separable along dim 0
    sep[:, 1] = 0.0  # dead
    sep[:, 2] = 3.0  # constant
    mixed = rng.normal(size=(80, 5))
    r = compare_vectors(sep, mixed, labels, labels)
    assert r["A"]["dead_neurons"] == 1 and r["A"]["constant_neurons"] == 2 and r["B"]["dead_neurons"] == 0
    assert r["A"]["linear_probe"]["accuracy"] > 0.97
    assert r["B"]["linear_probe"]["accuracy"] < 0.8
    assert r["A"]["silhouette"] > 0.3 > r["B"]["silhouette"]
    assert r["A"]["task_geometry"]["task_centroid_distance"] == pytest.approx(6.0, abs=0.6)
    # progress probe: a vector carrying the progress linearly gets R^2 ~ 1, pure noise ~ 0 or below
    prog = np.tile(np.linspace(0, 1, 5), 16)
    follows = np.c_[prog, rng.normal(size=(80, 3)) * 0.01]
    r = compare_vectors(follows, rng.normal(size=(80, 4)), labels, labels, progress_a=prog, progress_b=prog)
    assert r["A"]["progress_probe"]["r2"] > 0.99 and r["B"]["progress_probe"]["r2"] < 0.2


def _vector_files(tmp_path):
    rng = np.random.default_rng(3)
    recs = [{"episode_index": i, "episode_id": f"e{i}", "frame": 0, "progress": 0.0,
             "task": ["l", "r"][i % 2]} for i in range(30)]
    a = rng.normal(size=(30, 4)).astype(np.float32)
    save_vectors(a, recs, tmp_path / "a", "m1", "policy_head:input")
    save_vectors(a + 0.5, recs, tmp_path / "b", "m2", "policy_head:input")
    return tmp_path / "a.npy", tmp_path / "b.npy"


def test_compare_files_writes_report_and_figures(tmp_path):
    a, b = _vector_files(tmp_path)
    r = compare_files(a, b, tmp_path / "cmp", embeddings=())  # t-SNE / UMAP: the slow test below
    assert not (tmp_path / "cmp" / "umap.png").exists()
    for name in ("histograms", "feature_scatter"):
        png = tmp_path / "cmp" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "![histograms](histograms.png)" in report and "Kolmogorov-Smirnov" in report and "linear-probe" in report
    ks = r["ks_test"]  # the share of dimensions rejecting reads as a share, with the counts
    share = f"{100 * ks['fraction_dims_rejected_0.05']:.1f} % ({ks['num_dims_rejected_0.05']} of {ks['num_dims']})"
    assert f"| share of dimensions with KS p < 0.05 | {share} |" in report
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert saved["paired_cosine"]["mean"] == pytest.approx(r["paired_cosine"]["mean"])


@pytest.mark.slow
def test_cli_compare_with_umap(tmp_path, capsys):
    """The full figure set, UMAP included (~25 s: umap-learn's numba compilation)."""
    pytest.importorskip("umap")
    a, b = _vector_files(tmp_path)
    assert cli_main(["analyze", "compare", str(a), str(b), "--output_dir", str(tmp_path / "cmp")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["paired_cosine"]["mean"] < 1.0
    for name in ("tsne", "umap"):
        assert (tmp_path / "cmp" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "![umap](umap.png)" in (tmp_path / "cmp" / "report.md").read_text()


# ------------------------------------------------------------------------------------------- sampler / stats
def test_stratified_sample_is_deterministic_and_balanced(episodes):
    s1 = stratified_sample(episodes, episodes_per_task=3, seed=7)
    s2 = stratified_sample(episodes, episodes_per_task=3, seed=7)
    s3 = stratified_sample(episodes, episodes_per_task=3, seed=8)
    assert s1 == s2 and s1 != s3
    src = open_episodes(episodes)
    for task in src.tasks:
        eps = {r["episode_index"] for r in s1 if r["task"] == task}
        assert len(eps) == 3 and all(src.infos[e].task == task for e in eps)
    assert sorted({r["frame"] for r in s1}) == [0, 4, 8, 13, 17]  # round(p * 17) for p in 0..1 step 0.25
    assert len(s1) == 2 * 3 * 5
    with pytest.raises(ValueError, match="fractions"):
        stratified_sample(episodes, fractions=[1.5])


def test_dataset_stats(episodes):
    s = dataset_stats(episodes)
    assert s["episodes"] == 12 and s["frames"] == 12 * 18
    assert s["episode_length"]["min"] == s["episode_length"]["max"] == 18
    assert s["tasks"]["horizontal left"]["episodes"] == 6 and s["tasks"]["horizontal right"]["frames"] == 108
    assert s["size_on_disk_bytes"] == sum(s["episode_file_bytes"]["per_episode"].values())


def test_cli_dataset_stats_and_sample(episodes, tmp_path, capsys):
    assert cli_main(["analyze", "dataset-stats", str(episodes), "--output-json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["episodes"] == 12
    assert cli_main(["analyze", "sample", str(episodes), "--per_task", "2", "--fractions", "0,50,100",
                     "--output", str(tmp_path / "sample.json")]) == 0
    data = json.loads((tmp_path / "sample.json").read_text())
    assert data["num_samples"] == 2 * 2 * 3 and {r["progress"] for r in data["samples"]} == {0.0, 0.5, 1.0}
    assert cli_main(["analyze", "dataset-stats", str(tmp_path / "missing")]) == 2


# ------------------------------------------------------------------------------------------- hooks
def test_hooks_capture_the_action_token(episodes, tmp_path):
    """The policy-head input hook and the LM-output hook read at the action token both equal the model's context
    vectors, and a hand-built forward's hidden state at the action position."""
    from hf_vlmdrive.models.robovlm import RoboVLMConfig, RoboVLMForActionPrediction
    from hf_vlmdrive.testing.tiny_kosmos2 import build_tiny_robovlm_processor, tiny_kosmos2_config

    torch.manual_seed(0)
    model = RoboVLMForActionPrediction(RoboVLMConfig(backbone_config=tiny_kosmos2_config(), head_hidden_size=16,
                                                     head_num_layers=1, head_mlp_sizes=[8], window_size=2)).eval()
    with torch.no_grad():
        model.action_token.normal_()
    proc = build_tiny_robovlm_processor()
    recs = stratified_sample(episodes, episodes_per_task=2, fractions=[0.0, 1.0], seed=0)
    vecs = extract_context_vectors(model, proc, episodes, recs,
                                   hooks=["policy_head:input", "backbone.text_model.model:output"], batch_size=3,
                                   progress=False)
    a, b = vecs["policy_head:input"], vecs["backbone.text_model.model:output"]
    assert a.shape == (len(recs), 32)
    np.testing.assert_allclose(a, b, atol=1e-6)
    src = open_episodes(episodes)
    r = recs[-1]
    frame = src.load_frames(r["episode_index"], [r["frame"]])[0]
    batch = proc(images=[[frame]], text=[r["task"]])
    with torch.no_grad():
        ctx = model(**batch).context_vectors[0, 0, 0].numpy()
        embeds, mask, act = model.build_sequence(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
        hidden = model.backbone.text_model.model(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state
        n_img = model.config.backbone_config.latent_query_num
        pos = n_img + int(batch["attention_mask"].sum()) - 1  # before </s>
        manual = hidden[0, pos].numpy()
    np.testing.assert_allclose(a[-1], ctx, atol=1e-5)
    np.testing.assert_allclose(a[-1], manual, atol=1e-5)
    npy, meta = save_vectors(a, recs, tmp_path / "ctx", "tiny", "policy_head:input")
    arr, m = load_vectors(npy)
    assert arr.shape == a.shape and m["rows"][0]["task"] == recs[0]["task"] and m["hook"] == "policy_head:input"
    with pytest.raises(ValueError, match="no module"):
        extract_context_vectors(model, proc, episodes, recs, hooks=["nope"], progress=False)


@pytest.mark.slow
def test_context_study_example_end_to_end(tmp_path):
    """examples/analyze_context_vectors.py, shortened: two policies, sample, extract, compare, report."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / "analyze_context_vectors.py"
    spec = importlib.util.spec_from_file_location("analyze_context_vectors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.run_study(tmp_path / "study", max_steps=4, per_task=2, train_episodes=4, heldout_episodes=4,
                               embeddings=("tsne",))
    assert summary["sample"]["records"] == 2 * 2 * 5
    for name in ("frozen", "finetuned"):
        arr = np.load(tmp_path / "study" / "vectors" / f"{name}.npy")
        assert arr.shape == (20, 64)
    report = (tmp_path / "study" / "comparison" / "report.md").read_text()
    assert "paired cosine" in report and "![tsne](tsne.png)" in report
    assert 0.0 <= summary["separability"]["frozen"]["linear_probe_accuracy"] <= 1.0


def test_cli_extract(episodes, tmp_path, capsys):
    """`analyze extract` on a saved policy: .npy (N, D) rows in sample order + metadata naming model and hook."""
    from hf_vlmdrive.models.robovlm import RoboVLMConfig, RoboVLMForActionPrediction
    from hf_vlmdrive.testing.tiny_kosmos2 import build_tiny_robovlm_processor, tiny_kosmos2_config

    torch.manual_seed(0)
    model = RoboVLMForActionPrediction(RoboVLMConfig(backbone_config=tiny_kosmos2_config(), head_hidden_size=16,
                                                     head_num_layers=1, head_mlp_sizes=[8], window_size=2))
    model.save_pretrained(tmp_path / "policy")
    build_tiny_robovlm_processor().save_pretrained(tmp_path / "policy")
    assert cli_main(["analyze", "sample", str(episodes), "--per_task", "1", "--fractions", "0,1",
                     "--output", str(tmp_path / "s.json")]) == 0
    assert cli_main(["analyze", "extract", "--model", str(tmp_path / "policy"), "--data", str(episodes),
                     "--sample", str(tmp_path / "s.json"), "--output", str(tmp_path / "vec")]) == 0
    arr = np.load(tmp_path / "vec.npy")
    meta = json.loads((tmp_path / "vec.json").read_text())
    samples = json.loads((tmp_path / "s.json").read_text())["samples"]
    assert arr.shape == (4, 32) and meta["hook"] == "policy_head:input" and meta["model"] == str(tmp_path / "policy")
    assert [(r["episode_id"], r["frame"]) for r in meta["rows"]] == [(r["episode_id"], r["frame"]) for r in samples]
    assert cli_main(["analyze", "extract", "--model", str(tmp_path / "nope"), "--data", str(episodes),
                     "--sample", str(tmp_path / "s.json"), "--output", str(tmp_path / "v2")]) == 2
