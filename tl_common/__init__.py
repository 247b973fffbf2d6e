"""Shared by tfrecords_tools and tl_keras: atomic files, folder locks, console, progress,
run records and the CLI convention. It imports neither package (docs/architecture.md)."""
