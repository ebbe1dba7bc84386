"""CheXVision: train, evaluate and publish chest X-ray pathology classifiers (NIH ChestX-ray14).

Nothing heavy happens at import: torch is imported only by the modules that hold tensors.
"""

__version__ = "0.1.0"
