"""Natural RGB images (folders, Taskonomy) -> TFRecord slice shards."""
