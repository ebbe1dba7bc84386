"""Training engine: loss, optimizer/schedule, the loop (`fit`), checkpoints, DDP helpers, launching a run.

Import submodules directly (`from chexvision.engine.train import fit`); this package imports nothing itself, so
`chexvision.engine.launch` stays usable without torch. The run directory's contract is `chexvision.rundir`.
"""
