"""Train the frozen-VLM waypoint predictor with `transformers.Trainer`.

Usage (CPU, tiny model on synthetic scenes, about a minute):

    python examples/train_waypoint.py --config examples/configs/waypoint_tiny.yaml

The reference recipe (SmolVLM tower, needs the backbone weights), on one or more GPUs:

    accelerate launch examples/train_waypoint.py --config examples/configs/waypoint_smolvlm.yaml

Any argument of `WaypointScriptArguments` or `TrainingArguments` can be given on the command line and
overrides the YAML file, e.g. `--num_train_epochs 3`; any `WaypointVLMConfig` field goes under
`model_config` (`--model_config.pooling attention`). Resume an interrupted run with
`--resume_from_checkpoint last`.
"""

import sys

import hf_vlmdrive  # noqa: F401  (first: it drops an import-time warning of transformers' peft / bitsandbytes import)

# isort: split
from transformers import TrainingArguments

from hf_vlmdrive.arguments import parse_args
from hf_vlmdrive.distributed import is_main_process
from hf_vlmdrive.trainers.waypoint_config import WaypointScriptArguments
from hf_vlmdrive.trainers.waypoint_recipe import train_waypoint


def main(argv=None):
    script_args, training_args = parse_args(
        (WaypointScriptArguments, TrainingArguments), argv if argv is not None else sys.argv[1:]
    )
    trainer = train_waypoint(script_args, training_args)
    if trainer.eval_dataset is not None:
        metrics = trainer.evaluate()  # every rank: Trainer shards the evaluation over the processes
        if is_main_process(training_args):
            print(metrics)


if __name__ == "__main__":
    main()
