"""`hf-vlmdrive push DIR --repo-id ORG/NAME [--dry-run] [--private] [--revision BRANCH]`: publish a model folder.

    hf-vlmdrive push runs/waypoint --repo-id my-org/waypoint-smolvlm --dry-run   # validate, list, no network
    hf-vlmdrive push runs/waypoint --repo-id my-org/waypoint-smolvlm --private

The folder is validated first (model card YAML, config, safetensors weights, processor, norm stats; the model
loads with the Auto classes): see `hf_vlmdrive.push`. Authentication is huggingface_hub's own (HF_TOKEN or
`hf auth login`); HF_ENDPOINT selects another Hub endpoint.
"""

from __future__ import annotations

from ..arguments import ArgumentParser


def run(argv: list[str]) -> int:
    """Parse the arguments, validate the folder, print the plan, and upload unless --dry-run."""
    from ..push import plan_as_json, push_model_dir

    parser = ArgumentParser(prog="hf-vlmdrive push", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="model directory (a training run's output_dir)")
    parser.add_argument("--repo-id", "--repo_id", dest="repo_id", required=True, help="Hub repo, ORG/NAME")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="validate the folder and list what would be uploaded; no network")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--revision", default=None, help="branch to upload to (created if missing)")
    parser.add_argument("--commit-message", "--commit_message", dest="commit_message", default=None)
    parser.add_argument("--json", action="store_true", help="print the plan as JSON instead of a listing")
    args = parser.parse_args(argv)
    plan, url = push_model_dir(args.folder, args.repo_id, private=args.private, revision=args.revision,
                               commit_message=args.commit_message, dry_run=args.dry_run)
    if args.json:
        print(plan_as_json(plan, url))
    else:
        print(plan.summary())
        print("dry run: nothing uploaded" if args.dry_run else f"uploaded: {url}")
    return 0


def register(registry) -> None:
    """Add `push`."""
    registry.add(("push",), run, "validate a model folder and upload it to the Hub (--dry-run: validate only)")


__all__ = ["register", "run"]
