"""Generated protobuf code for schemas/proto/tracker/v1 (scripts/gen_protos.py)."""
