"""Dataset readers, one module per real format, plus synthetic writers for offline tests and demos."""
