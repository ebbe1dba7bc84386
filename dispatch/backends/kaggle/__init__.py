"""The Kaggle backend: one private GPU script kernel per run, every call pinned to `owner/slug/N`.

`backend` (the Backend), `client` (the one HTTP boundary, over the official client), `metadata`
(kernel-metadata.json). Importing this package never imports the `kaggle` SDK.
"""

from dispatch.backends.kaggle.backend import KaggleBackend, translate_error

__all__ = ["KaggleBackend", "translate_error"]
