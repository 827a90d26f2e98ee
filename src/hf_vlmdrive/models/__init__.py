"""Model families of hf_vlmdrive, one sub-package each, plus shared building blocks in `common`."""
