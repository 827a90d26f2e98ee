"""GeoVLA and Flamingo training under 2 real processes (accelerate launch, gloo on CPU), from fresh directories.

Each recipe costs one 2-process launch (two runs inside it: a fresh run that saves a checkpoint halfway, then a
run that resumes from that checkpoint) and one in-process reference run, and checks:
- parity: the losses of 2 processes x batch B equal those of 1 process x batch 2B with the same seed;
- files written once: every file under the run's folders (synthetic data, tiny backbones / tiny model, model,
  processor, norm_stats.json, card, loss curve) comes from one rank (the per-rank `rng_state_<rank>.pth` aside);
- resume: the run resumed from the 2-process checkpoint logs the losses of the uninterrupted run.
Plus the geometry cache with a spill folder shared by two processes (no launcher needed).

GeoVLA's parity is exact because `GeoVLATrainer` draws each sample's flow noise from its position in the sample
stream; the DiT's dropout (a per-rank global-RNG stream) is turned off for it (`--model_config.dit_dropout 0`).
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_vlmdrive.testing.distributed import files_written_by_several_ranks, launch_cpu

ROOT = Path(__file__).resolve().parents[1]

# Runs several command lines, one after the other, in the same launched processes (one start-up for both): each
# entry is ["cli", argv] (`hf-vlmdrive <argv>`) or [script_path, argv] (the script's `run` or `main(argv)`). The
# launcher's trailing arguments (`--use_cpu true`) are appended to every run.
DRIVER = '''
import json, runpy, sys

runs, extra = json.loads(sys.argv[1]), sys.argv[2:]
for target, argv in runs:
    if target == "cli":
        from hf_vlmdrive.cli import main
        rc = main(argv + extra)
    else:
        module = runpy.run_path(target, run_name="driven")
        rc = (module.get("run") or module["main"])(argv + extra)
    if rc:
        sys.exit(rc)
'''


def _launch_runs(tmp_path: Path, runs: list, traced: Path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return launch_cpu([json.dumps(runs)], script=str(driver), cwd=ROOT, trace_writes_under=traced, timeout=600)


def _losses(run_dir: Path) -> np.ndarray:
    return np.array([loss for _, loss in json.loads((run_dir / "loss_curve.json").read_text())])


def _assert_written_once_by_rank0(proc, paths: list[Path], shared_ok: tuple[str, ...] = ()):
    """No file written by two ranks; each of `paths` written by rank 0 (a folder: moved into place by rank 0)."""
    assert files_written_by_several_ranks(proc, ignore=("rng_state_", *shared_ok)) == {}
    for path in paths:
        assert path.exists(), path
        assert proc.writes.get(str(path)) == [0], (path, proc.writes.get(str(path)))


@pytest.mark.slow
def test_geovla_two_processes_parity_files_once_resume(tmp_path):
    """`hf-vlmdrive train geovla` on the tiny config: 2 x batch 2 == 1 x batch 4, files once, exact resume."""
    from hf_vlmdrive.trainers.geovla_recipe import main as train_geovla_main

    data, run, resumed, cache = tmp_path / "data", tmp_path / "run", tmp_path / "resumed", tmp_path / "cache"
    common = ["--config", str(ROOT / "examples/configs/libero_tiny.yaml"), "--dataset_root", str(data),
              "--max_steps", "4", "--warmup_steps", "0", "--learning_rate", "1e-3", "--vlm_learning_rate", "1e-3",
              "--logging_steps", "1", "--save_steps", "2", "--disable_tqdm", "true", "--model_config.dit_dropout", "0"]
    two = ["--per_device_train_batch_size", "2", "--geometry_cache_dir", str(cache), "--geometry_cache_mb", "0.001",
           "--geometry_cache_disk_mb", "0.004"]  # one spill folder for both ranks, small enough to spill and evict
    # the resumed and the one-process runs reuse the first run's tiny backbones (built once: seconds each)
    built = ["--vlm_name_or_path", str(run / "backbones" / "tiny-qwen2.5-vl"),
             "--geometry_name_or_path", str(run / "backbones" / "tiny-dinov2")]
    proc = _launch_runs(tmp_path, [
        ["cli", ["train", "geovla", *common, *two, "--output_dir", str(run)]],
        ["cli", ["train", "geovla", *common, *two, *built, "--output_dir", str(resumed),
                 "--resume_from_checkpoint", str(run / "checkpoint-2")]],
    ], traced=tmp_path)

    # files: the dataset and the tiny backbones (each folder moved into place whole) and every output file from
    # rank 0 alone (the spill folder is shared
    # on purpose: two ranks may spill the same content key, each by an atomic rename)
    _assert_written_once_by_rank0(proc, [
        data, run / "backbones" / "tiny-dinov2", run / "backbones" / "tiny-qwen2.5-vl", run / "model.safetensors",
        run / "config.json", run / "norm_stats.json", run / "README.md", run / "loss_curve.json",
        run / "checkpoint-2" / "model.safetensors", resumed / "model.safetensors", resumed / "README.md",
    ], shared_ok=(str(cache),))
    assert sorted(p.name for p in (run / "checkpoint-2").glob("rng_state_*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    spilled = list(cache.iterdir())
    assert spilled and all(p.suffix == ".safetensors" for p in spilled), spilled  # spilled, no temporary left

    # parity: one process, batch 4, same seed, same data and backbones
    train_geovla_main([*common, *built, "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "one"),
                       "--use_cpu", "true", "--save_strategy", "no"])
    one, two_procs = _losses(tmp_path / "one"), _losses(run)
    print("GeoVLA losses, 1 x 4:", one.round(5).tolist(), "2 x 2:", two_procs.round(5).tolist())
    assert len(one) == len(two_procs) == 4
    np.testing.assert_allclose(two_procs, one, rtol=1e-4)
    # resume: steps 3 and 4 as in the uninterrupted run
    np.testing.assert_allclose(_losses(resumed)[2:], two_procs[2:], rtol=1e-5)


@pytest.mark.slow
def test_flamingo_two_processes_parity_files_once_resume(tmp_path):
    """`examples/sft_flamingo.py --synthetic_data` then `hf-vlmdrive sft flamingo --resume_from_checkpoint`, tiny
    random model: 2 x batch 1 == 1 x batch 2, files once, exact resume."""
    from hf_vlmdrive.trainers.flamingo_recipe import parse_flamingo_args, train_flamingo

    data, run, resumed = tmp_path / "data", tmp_path / "run", tmp_path / "resumed"
    common = ["--config", str(ROOT / "examples/configs/flamingo_tiny.yaml"), "--train_file", str(data / "bvpi_sft.jsonl"),
              "--max_steps", "4", "--warmup_steps", "0", "--learning_rate", "1e-3", "--text_dropout", "0",
              "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "2", "--disable_tqdm", "true"]
    proc = _launch_runs(tmp_path, [
        [str(ROOT / "examples/sft_flamingo.py"), ["--synthetic_data", str(data), *common,
                                                  "--per_device_train_batch_size", "1", "--output_dir", str(run)]],
        ["cli", ["sft", "flamingo", *common, "--per_device_train_batch_size", "1", "--output_dir", str(resumed),
                 "--model_name_or_path", str(run / "tiny-flamingo"), "--resume_from_checkpoint",
                 str(run / "checkpoint-2")]],
    ], traced=tmp_path)

    _assert_written_once_by_rank0(proc, [
        data / "bvpi_sft.jsonl", data / "images" / "scene_00000.png", run / "tiny-flamingo",
        run / "model.safetensors", run / "config.json", run / "generation_config.json", run / "README.md",
        run / "loss_curve.json", run / "checkpoint-2" / "model.safetensors", resumed / "model.safetensors",
    ])
    assert any(p.startswith(str(run)) and "tokenizer" in Path(p).name for p in proc.writes)  # the processor, once

    args = parse_flamingo_args([*common, "--per_device_train_batch_size", "2", "--output_dir", str(tmp_path / "one"),
                                "--model_name_or_path", str(run / "tiny-flamingo"), "--save_strategy", "no",
                                "--use_cpu", "true"])
    train_flamingo(*args)
    one, two_procs = _losses(tmp_path / "one"), _losses(run)
    print("Flamingo losses, 1 x 2:", one.round(5).tolist(), "2 x 1:", two_procs.round(5).tolist())
    assert len(one) == len(two_procs) == 4
    np.testing.assert_allclose(two_procs, one, rtol=1e-4)
    np.testing.assert_allclose(_losses(resumed)[2:], two_procs[2:], rtol=1e-5)


# ------------------------------------------------------------------------------------ shared geometry cache
def _expected(i: int) -> torch.Tensor:
    return torch.arange(96, dtype=torch.float32).reshape(2, 48) + i  # exact in bf16


def _cache_worker(folder: str, worker: int, rounds: int, start, queue) -> None:
    """Encode random samples of 12 contents through a cache that spills to (and evicts from) `folder`."""
    import logging
    import random

    from hf_vlmdrive.features.geometry_cache import GeometryFeatureCache

    unreadable = []  # a partly written file read by the other process would be logged here
    handler = logging.Handler(logging.WARNING)
    handler.emit = unreadable.append
    logging.getLogger("hf_vlmdrive.features.geometry_cache").addHandler(handler)
    try:
        cache = GeometryFeatureCache(memory_budget_mb=2 * 192 / 2**20, spill_dir=folder, log_every=0,
                                     disk_budget_mb=4 * 400 / 2**20)  # RAM: 2 entries; disk: about 4 files
        rng = random.Random(worker)
        contents = torch.stack([torch.full((3, 2, 2), float(i)) for i in range(12)])
        start.wait(timeout=60)  # both processes begin together
        for _ in range(rounds):
            rows = rng.sample(range(12), 3)
            out = cache.encode(contents[rows], lambda x: torch.stack([_expected(int(v[0, 0, 0])) for v in x]))
            for got, i in zip(out, rows):
                if not torch.equal(got, _expected(i)):
                    raise AssertionError(f"worker {worker}: wrong features for content {i}")
        queue.put((worker, {**cache.stats(), "unreadable": len(unreadable)}))
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        queue.put((worker, repr(err)))


def test_geometry_cache_entry_dropped_by_another_process_is_a_miss(tmp_path):
    """Two caches on one spill folder: one drops a file (promotion) the other has spilled too -> a miss there."""
    from hf_vlmdrive.features.geometry_cache import GeometryFeatureCache

    a = GeometryFeatureCache(memory_budget_mb=0, spill_dir=tmp_path, log_every=0)
    b = GeometryFeatureCache(memory_budget_mb=0, spill_dir=tmp_path, log_every=0)
    a.put("k", _expected(1))
    b.put("k", _expected(1))  # the same content key: the same file, replaced atomically
    assert [p.name for p in tmp_path.iterdir()] == ["k.safetensors"]
    a.memory_budget_bytes = 1 << 20  # room in RAM again: a's next hit promotes "k" and deletes its file
    assert torch.equal(a.get("k").float(), _expected(1)) and a.promoted == 1 and not any(tmp_path.iterdir())
    assert b.get("k") is None and b.vanished == 1 and b.misses == 1 and "k" not in b and b.disk_bytes == 0
    assert torch.equal(b.encode(torch.zeros(1, 3, 2, 2), lambda x: _expected(1)[None], keys=["k"]), _expected(1)[None])


def test_geometry_cache_two_processes_share_a_spill_folder(tmp_path):
    """Two processes fill and evict one spill folder at once: every lookup returns the right features, nothing
    crashes, and only whole `.safetensors` files are left (no temporaries). (Forked: the workers touch only tiny
    tensors, never torch's thread pools, and start in milliseconds.)"""
    ctx = multiprocessing.get_context("fork")
    queue, start = ctx.Queue(), ctx.Barrier(2)
    workers = [ctx.Process(target=_cache_worker, args=(str(tmp_path), w, 400, start, queue)) for w in range(2)]
    for w in workers:
        w.start()
    results = dict(queue.get(timeout=90) for _ in workers)
    for w in workers:
        w.join(timeout=30)
    for worker, stats in results.items():
        assert isinstance(stats, dict), f"worker {worker} failed: {stats}"
        assert stats["geom_cache_hits_disk"] > 0 and stats["geom_cache_evicted"] > 0, stats
        assert stats["unreadable"] == 0, stats
    assert all(p.suffix == ".safetensors" and not p.name.startswith(".") for p in tmp_path.iterdir())
    print({w: {k: s[k] for k in ("geom_cache_hits_disk", "geom_cache_misses", "geom_cache_evicted",
                                 "geom_cache_vanished", "unreadable")} for w, s in results.items()})


# ------------------------------------------------------------------------------------ per-sample flow draws
def test_flow_draws_follow_the_sample_not_the_batch_layout():
    """Sample positions of 2 ranks x batch 2 x accumulation 2 cover 1 process x batch 8, and each sample's noise
    and time depend on its position only (so both layouts draw the same for the same sample)."""
    from types import SimpleNamespace

    from hf_vlmdrive.models.common.flow_matching import sample_flow_draws
    from hf_vlmdrive.trainers.geovla_trainer import GeoVLATrainer

    def positions(world, rank, batch, accumulation, steps):
        fake = SimpleNamespace(state=SimpleNamespace(global_step=0), args=SimpleNamespace(
            gradient_accumulation_steps=accumulation, world_size=world, process_index=rank,
            per_device_train_batch_size=batch))
        out = []
        for step in range(steps):
            fake.state.global_step = step
            out.append([list(GeoVLATrainer.sample_positions(fake, batch)) for _ in range(accumulation)])
        return out

    assert positions(1, 0, 8, 1, 2) == [[[0, 1, 2, 3, 4, 5, 6, 7]], [[8, 9, 10, 11, 12, 13, 14, 15]]]
    # Trainer hands rank r the batches r, r + 2, ... of the same shuffled stream: rank 1 holds 2-3 and 6-7
    assert positions(2, 1, 2, 2, 2) == [[[2, 3], [6, 7]], [[10, 11], [14, 15]]]
    noise, time = sample_flow_draws(range(8), seed=3, num_draws=2, shape=(4, 7))
    part_noise, part_time = sample_flow_draws([6, 7], seed=3, num_draws=2, shape=(4, 7))
    assert noise.shape == (16, 4, 7) and time.shape == (16,)
    rows = [6, 7, 14, 15]  # `repeat` order: draw r of sample i is row r * 8 + i (r * 2 + j in the part)
    assert torch.equal(noise[rows], part_noise) and torch.equal(time[rows], part_time)
    assert not torch.equal(noise[0], noise[1]) and not torch.equal(noise[0], noise[8])  # samples and draws differ
    other_seed, _ = sample_flow_draws([6, 7], seed=4, num_draws=2, shape=(4, 7))
    assert not torch.equal(other_seed, part_noise)
    assert ((time > -0.01) & (time < 1.0)).all()


def test_seed_per_rank_moves_ranks_after_the_first_only():
    from types import SimpleNamespace

    from transformers import set_seed

    from hf_vlmdrive.distributed import seed_per_rank

    draws = {}
    for world, rank in ((1, 0), (2, 0), (2, 1), (3, 2)):
        set_seed(5)  # what Trainer does on every rank
        seed_per_rank(SimpleNamespace(world_size=world, process_index=rank, seed=5))
        draws[world, rank] = torch.rand(4)
    assert torch.equal(draws[1, 0], draws[2, 0])  # rank 0 keeps the one-process stream
    assert not torch.equal(draws[2, 1], draws[2, 0]) and not torch.equal(draws[3, 2], draws[2, 1])


def test_atomic_directory_keeps_a_copy_written_meanwhile_and_refuses_a_stale_partial_one(tmp_path):
    import os
    import time

    from hf_vlmdrive.distributed import atomic_directory
    from hf_vlmdrive.errors import UserError

    target = tmp_path / "data"
    with atomic_directory(target) as tmp:  # another process finishes first, while this block writes
        (tmp / "mine.txt").write_text("mine")
        with atomic_directory(target) as other:
            (other / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in target.iterdir()) == ["theirs.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "half.txt").write_text("half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))  # left by a run an hour ago
    with pytest.raises(UserError, match="partial copy"):
        with atomic_directory(stale) as tmp:
            (tmp / "whole.txt").write_text("whole")
    assert sorted(p.name for p in stale.iterdir()) == ["half.txt"]
