"""The demo app: a Streamlit page for one chest X-ray under one model or an ensemble.

`app.py` is the Streamlit script (`chexvision demo`, `streamlit run`, Streamlit's AppTest, a Hugging Face Space);
`page.py` draws the page; `analysis.py` is what the page shows, as plain data (no Streamlit), built on
`chexvision.inference` only; `export.py` writes a Hugging Face Space folder. The models come from the environment
variable `CHEXVISION_DEMO_MODELS` (specs as `chexvision predict --model` takes them, joined by `os.pathsep`).
Importing this package imports nothing.
"""
