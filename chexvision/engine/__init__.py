"""Training engine: loss, optimizer/schedule, the loop (`fit`), checkpoints, DDP helpers, the run directory.

Import submodules directly (`from chexvision.engine.train import fit`); this package imports nothing itself, so
`chexvision.engine.rundir` stays usable without torch.
"""
