"""dispatch: ship a source bundle and a command line to a backend (Kaggle or local) and track the run.

It knows nothing about X-rays and never imports torch, so `status`, `logs` and `fetch` answer quickly.
Nothing happens at import: the registry is opened explicitly, the Kaggle SDK is imported inside its adapter.
The public API the CLI calls lives in `dispatch.runs`.
"""

__all__: list[str] = []
