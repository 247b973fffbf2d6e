"""TFRecord slice shards: writing one, assembling a split from subject caches, checksums."""
