"""Inference: a trained model from a folder (safetensors only), its one preprocessing, prediction and TTA.

Below `evaluate`, `hub`, `cam`, `predict` and the demo, above `models` and `data`: nothing here imports
`chexvision.evaluate` or `chexvision.hub`. Modules: `load` (folder -> `LoadedModel`), `preprocess` (the one CLAHE
rule, `eval_transform`), `images` (`read_image`), `predict` (`predict_images`, `predict_files`), `tta`,
`predictor` (`Predictor`: what `chexvision.load` returns, with the operating-point decisions), `export` (ONNX /
TorchScript with a parity check).
Import submodules directly; this package imports nothing, so it stays cheap and torch-free.
"""
