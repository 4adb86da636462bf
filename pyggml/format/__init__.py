"""GGUF bytes <-> Python values.

    constants.py   numbers fixed by the format: magic, versions, value types, file types
    reader.py      one file: header, metadata, tensor index (checked), mmap for the data
    arrays.py      large metadata arrays: found in bulk, decoded lazily
    shards.py      GGUFFile: one file or a whole split set, opened from any shard
    writer.py      write GGUF v3; split and merge

``pyggml.open(path)`` is the entry point (it returns a ``shards.GGUFFile``).
"""
