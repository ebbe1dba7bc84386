"""dispatch: ship a source bundle and command lines (a `JobSpec`) to a backend and track the run.

It knows nothing about X-rays, imports nothing from chexvision and never imports torch, so `status`, `logs` and
`fetch` answer quickly. Nothing happens at import: the registry is opened explicitly, backends are imported when
named (`dispatch.backends`), the Kaggle SDK inside its adapter. The caller builds the JobSpec (`dispatch.job`)
and names the home folder; the public API is `dispatch.runs`; errors are `dispatch.errors`.
"""

__all__: list[str] = []
