"""Generated protobuf classes of the WOD-E2E protos (compile: see `docs/waymo.md`)."""
