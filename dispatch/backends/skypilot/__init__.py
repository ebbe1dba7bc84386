"""The SkyPilot backend: one SkyPilot managed job per run, on any cloud, Kubernetes or Slurm that SkyPilot reaches.

`backend` (the Backend), `task` (the task description, as a dict SkyPilot's own parser validates), `client` (the one
module that imports `sky`, the optional `chexvision[skypilot]` extra), `status` (SkyPilot's job statuses -> ours).
Importing this package never imports SkyPilot.
"""

from dispatch.backends.skypilot.backend import SkyPilotBackend

__all__ = ["SkyPilotBackend"]
