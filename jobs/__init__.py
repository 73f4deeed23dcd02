"""The product's jobs, built from stages: detect-faces, lipsync, passthrough, auto mode, and what they need (targets, stems, references, the model registry, the request schema, the CLI)."""
