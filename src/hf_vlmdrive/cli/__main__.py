"""`python -m hf_vlmdrive.cli ...` is the same as `hf-vlmdrive ...`."""

import sys

from . import main

sys.exit(main())
