"""Convert a RoboVLMs checkpoint into a hf_vlmdrive RoboVLM `save_pretrained` directory.

Usage:

    python scripts/convert_robovlms_checkpoint.py path/to/epoch=4-step=1000.ckpt \
        --backbone microsoft/kosmos-2-patch14-224 --output_dir runs/robovlm_converted
    python scripts/convert_robovlms_checkpoint.py path/to/deepspeed_dir --backbone /models/kosmos-2 \
        --output_dir out --config '{"window_size": 16}'

Same as `hf-vlmdrive convert robovlms ...`. The checkpoint is read with `torch.load(weights_only=True)` only (a
file that needs other globals is refused, naming them); the key mapping is documented in
`hf_vlmdrive/models/robovlm/convert_robovlms.py` and docs/robovlm.md. Missing / unexpected keys are reported on
stdout and in `<output_dir>/conversion_report.json`.
"""

from __future__ import annotations

import sys

from hf_vlmdrive.cli import main as cli_main

if __name__ == "__main__":
    sys.exit(cli_main(["convert", "robovlms", *sys.argv[1:]]))
