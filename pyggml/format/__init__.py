"""GGUF bytes <-> Python values: constants, reader, writer, split sets."""
