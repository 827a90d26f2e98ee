"""Convert a released OpenFlamingo checkpoint into a transformers directory (model + processor + generation config).

Usage (OpenFlamingo-3B-vitl-mpt1b-style parts; offline, pass local files / directories):

    python scripts/convert_open_flamingo.py \
        --checkpoint checkpoint.pt \
        --vision-encoder ViT-L-14 --vision-pretrained openai \
        --lang-encoder path/to/causal-lm --tokenizer path/to/causal-lm \
        --cross-attn-every-n-layers 1 \
        --output converted/

The same as `hf-vlmdrive convert open-flamingo ...`. The result loads with
`AutoModelForImageTextToText.from_pretrained(output)` and `AutoProcessor.from_pretrained(output)`; the
missing / unexpected keys are printed and written to `output/conversion_report.json`.
"""

from __future__ import annotations

import sys

from hf_vlmdrive.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", "open-flamingo", *sys.argv[1:]]))
