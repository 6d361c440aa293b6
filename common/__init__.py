"""The shared layer: I/O, CLI, checkpoints, run metadata. Imports no other package of ours."""
