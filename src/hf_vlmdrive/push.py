"""Publishing a trained model directory on the Hugging Face Hub (`hf-vlmdrive push DIR --repo-id ORG/NAME`).

`plan_push(folder, repo_id)` validates the folder without any network access and returns what would be
uploaded: the model card (README.md, whose YAML must parse), the config (config.json, or adapter_config.json for a
PEFT adapter), the weights (*.safetensors), the processor / tokenizer files and the normalisation statistics
(norm_stats.json, required for a GeoVLA model). It also loads the model with the transformers Auto classes (and
the processor with AutoProcessor when processor files are present), so a folder that would not load from the
Hub is refused before anything is uploaded. `push_model_dir(...)` then creates the repo (`HfApi.create_repo`,
exist_ok), the branch when `revision` is given (`create_branch`), and uploads exactly the planned files with
`HfApi.upload_folder`. Before the upload the card's usage snippet is pointed at the repo id (it named the
local directory).

Only top-level files of the folder are uploaded; sub-folders (checkpoint-*, data, backbones) and Trainer state
that is pickled or private to a run (training_args.bin, optimizer.pt, scheduler.pt, rng_state*.pth,
trainer_state.json) are left out and listed as such.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError, UserFileNotFoundError

logger = logging.getLogger(__name__)

UPLOAD_SUFFIXES = (".json", ".safetensors", ".md", ".txt", ".model", ".jinja", ".png", ".tiktoken")
RUN_STATE = ("training_args.bin", "optimizer.pt", "scheduler.pt", "trainer_state.json", "scaler.pt")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
HF_VLMDRIVE_TYPES = ("waypoint_vlm", "simlingo", "geovla", "flamingo", "robovlm")


@dataclass
class PushPlan:
    """What `push_model_dir` would upload, found by `plan_push`.

    Attributes:
        folder: the model directory.
        repo_id: the target Hub repo.
        files: (name, size in bytes) of every file to upload, sorted by name.
        left_out: names of entries that are not uploaded, each with the reason.
        loaded_as: the class the folder loaded as ("WaypointVLMModel", "PeftModel over Idefics3ForConditionalGeneration").
        notes: things the user should know (e.g. an adapter whose base model is a local path).
    """

    folder: Path
    repo_id: str
    files: list[tuple[str, int]] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    loaded_as: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Human-readable listing: files with sizes, what is left out, what the folder loaded as."""
        total = sum(size for _, size in self.files)
        lines = [f"{self.folder} -> https://huggingface.co/{self.repo_id}", f"loads as: {self.loaded_as}",
                 f"{len(self.files)} file(s), {_size(total)}:"]
        lines += [f"  {name:<40} {_size(size):>10}" for name, size in self.files]
        if self.left_out:
            lines.append("left out:")
            lines += [f"  {item}" for item in self.left_out]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if it is a valid Hub model id 'org/name'; else a `UserError` saying what is wrong."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not repo_id or repo_id.count("/") != 1:
        raise UserError(f"--repo-id {repo_id!r}: give the Hub repo as ORG/NAME (e.g. my-org/waypoint-smolvlm)")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UserError(f"--repo-id {repo_id!r} is not a valid Hub repo id: {err}") from err
    return repo_id


def _check_card(folder: Path) -> None:
    from huggingface_hub import ModelCard

    path = folder / "README.md"
    if not path.is_file():
        raise UserError(f"{folder}: no README.md model card; every `hf-vlmdrive train` / `sft` command writes one, "
                        "or write it with hf_vlmdrive.model_card.write_model_card(folder, model, family=...)")
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise UserError(f"{path}: the model card has no YAML metadata block (a first line '---'); re-create it with "
                        "write_model_card")
    try:
        card = ModelCard.load(path)
    except Exception as err:  # yaml.YAMLError, ValueError: the message names the line
        raise UserError(f"{path}: the card's YAML metadata does not parse: {err}".strip()) from err
    if not isinstance(card.data.to_dict(), dict) or not card.data.to_dict():
        raise UserError(f"{path}: the card's YAML metadata is empty; re-create it with write_model_card")


def _load_check(folder: Path, plan: PushPlan, shown: Path | None = None) -> None:
    """Load the folder as a user of the Hub repo would; any failure is a UserError naming the folder (`shown`)."""
    where = shown or folder
    names = {name for name, _ in plan.files}
    try:
        if "adapter_config.json" in names and "config.json" not in names:
            from peft import PeftConfig, PeftModel
            from transformers import AutoModelForImageTextToText

            base = PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
            if base and Path(base).is_absolute():
                plan.notes.append(f"adapter_config.json names the local base model {base}: users of the Hub repo "
                                  "cannot load it; publish the base model too and set base_model_name_or_path")
            if not base or not (Path(base).is_dir() or _hub_reachable()):
                plan.loaded_as = f"PEFT adapter over {base} (not loaded: the base model is not available here)"
                plan.notes.append(f"the adapter was not load-checked: base model {base!r} is not a local directory "
                                  "and the Hub is unreachable")
                return
            model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), str(folder))
            plan.loaded_as = f"PeftModel over {type(model.get_base_model()).__name__}"
        else:
            from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

            import hf_vlmdrive  # noqa: F401  (registers the families with the Auto classes)

            config = AutoConfig.from_pretrained(str(folder))
            model = None
            if config.model_type not in HF_VLMDRIVE_TYPES:
                try:
                    model = AutoModelForImageTextToText.from_pretrained(str(folder))
                except ValueError:  # not an image-text-to-text model: the base Auto class below
                    model = None
            if model is None:
                model = AutoModel.from_pretrained(str(folder))
            plan.loaded_as = f"{type(model).__name__} (model_type {config.model_type})"
            if config.model_type == "geovla" and "norm_stats.json" not in names:
                raise UserError(f"{where}: a GeoVLA model needs norm_stats.json next to its weights (the action / "
                                "state statistics); save it with model.save_pretrained from a model with norm stats")
        if names & set(PROCESSOR_FILES):
            from transformers import AutoProcessor

            processor = AutoProcessor.from_pretrained(str(folder))
            plan.loaded_as += f" + {type(processor).__name__}"
    except UserError:
        raise
    except Exception as err:  # OSError, ValueError, KeyError from transformers / peft
        raise UserError(f"{where}: the model does not load with the transformers Auto classes "
                        f"({type(err).__name__}: {err}); fix the folder before publishing it") from err


def _hub_reachable() -> bool:
    from .hub import hub_offline

    return not hub_offline()


def plan_push(folder: str | Path, repo_id: str, load_check: bool = True) -> PushPlan:
    """Validate `folder` for publishing as `repo_id` and list what would be uploaded (no network access).

    Raises `UserError` for a missing folder, no config, no weights, a missing or unparseable model card, a bad
    repo id, or a model that does not load with the Auto classes.
    """
    check_repo_id(repo_id)
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserFileNotFoundError(f"{folder}: no such directory; give the output_dir of a training run "
                                    "(or a directory written with save_pretrained)")
    plan = PushPlan(folder=folder, repo_id=repo_id)
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            plan.left_out.append(f"{entry.name}/ (sub-folder: checkpoints, data and backbones stay local)")
        elif entry.name in RUN_STATE or entry.name.startswith("rng_state"):
            plan.left_out.append(f"{entry.name} (Trainer run state)")
        elif entry.suffix not in UPLOAD_SUFFIXES:
            plan.left_out.append(f"{entry.name} (not a model file: {entry.suffix or 'no suffix'})")
        else:
            plan.files.append((entry.name, entry.stat().st_size))
    names = {name for name, _ in plan.files}
    if not names & {"config.json", "adapter_config.json"}:
        raise UserError(f"{folder}: no config.json (or adapter_config.json): this is not a saved model; give the "
                        "directory a model was saved to with save_pretrained")
    if not any(name.endswith(".safetensors") for name in names):
        bins = [n for n in ("pytorch_model.bin", "adapter_model.bin") if (folder / n).is_file()]
        hint = f" ({bins[0]} is a pickle: re-save with save_pretrained(safe_serialization=True))" if bins else ""
        raise UserError(f"{folder}: no *.safetensors weights{hint}")
    _check_card(folder)
    if load_check:
        # Load from exactly the files that would be uploaded (linked into a scratch folder), so a model that
        # needs something left behind (a sub-folder, a Trainer file) is caught here and not by its users.
        import tempfile

        with tempfile.TemporaryDirectory(prefix="hf_vlmdrive_push_") as scratch:
            staged = Path(scratch) / folder.resolve().name
            staged.mkdir()
            for name, _ in plan.files:
                try:
                    (staged / name).symlink_to((folder / name).resolve())
                except OSError:  # no symlinks here (e.g. some Windows setups): copy
                    import shutil

                    shutil.copy2(folder / name, staged / name)
            _load_check(staged, plan, shown=folder)
    else:
        plan.loaded_as = "not checked"
    return plan


def retarget_card(folder: str | Path, repo_id: str) -> bool:
    """Point the card's usage snippet and model name at `repo_id` (they named the local directory).

    Returns True when README.md changed.
    """
    from huggingface_hub import ModelCard

    path = Path(folder) / "README.md"
    card = ModelCard.load(path)
    text = card.text
    # The card named the directory it was written to (its model_name); the folder may have been renamed since.
    for local in {Path(folder).resolve().name, str(getattr(card.data, "model_name", None) or "")} - {""}:
        text = text.replace(f'from_pretrained("{local}")', f'from_pretrained("{repo_id}")')
        text = text.replace(f"--model {local} ", f"--model {repo_id} ").replace(f"--model {local}`",
                                                                              f"--model {repo_id}`")
    if getattr(card.data, "model_name", None):
        card.data.model_name = repo_id.split("/")[-1]  # also the model-index name
    new = ModelCard(f"---\n{card.data.to_yaml()}\n---\n{text}")
    if new.content == path.read_text(encoding="utf-8"):
        return False
    new.save(path)
    return True


def push_model_dir(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                   commit_message: str | None = None, endpoint: str | None = None, token: str | None = None,
                   dry_run: bool = False) -> tuple[PushPlan, str | None]:
    """Validate (see `plan_push`) and upload `folder` to the Hub repo `repo_id`; returns (plan, commit URL).

    With `dry_run`, only validates and returns (plan, None): nothing is uploaded, no network is used.
    `endpoint` / `token` default to huggingface_hub's (HF_ENDPOINT, HF_TOKEN or the saved login).
    """
    plan = plan_push(folder, repo_id)
    if dry_run:
        return plan, None
    from .hub import hub_offline

    if hub_offline():
        raise UserError("HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it on a machine with Hub access, "
                        "or pass --dry-run to validate the folder only")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    if retarget_card(plan.folder, repo_id):
        plan.notes.append(f"README.md: the usage snippet now loads from {repo_id}")
        plan.files = [(n, (plan.folder / n).stat().st_size) for n, _ in plan.files]
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision:
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
    info = api.upload_folder(
        repo_id=repo_id, folder_path=str(plan.folder), repo_type="model", revision=revision,
        allow_patterns=[name for name, _ in plan.files],
        commit_message=commit_message or f"Upload {plan.folder.name} with hf_vlmdrive",
    )
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("pushed %d files to %s: %s", len(plan.files), repo_id, url)
    return plan, url


def plan_as_json(plan: PushPlan, url: str | None = None) -> str:
    """The plan (and commit URL) as JSON, for scripts."""
    return json.dumps({"folder": str(plan.folder), "repo_id": plan.repo_id, "files": dict(plan.files),
                       "left_out": plan.left_out, "loaded_as": plan.loaded_as, "notes": plan.notes,
                       "commit_url": url})


__all__ = ["PushPlan", "check_repo_id", "plan_as_json", "plan_push", "push_model_dir", "retarget_card"]
