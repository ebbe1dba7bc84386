"""The Streamlit script of the demo: `chexvision demo --model SPEC`, or `streamlit run` with CHEXVISION_DEMO_MODELS set.

Kept to one call so a Hugging Face Space's `app.py` (written by `chexvision demo export`) runs the same page.
"""

from chexvision.demo.page import main

main()
