"""The demo in a real browser: `chexvision demo` on 127.0.0.1, headless Chromium driven by Playwright.

Debian's Chromium (`apt-get install chromium`; Playwright cannot download its own browser here) at /usr/bin/chromium
or $CHEXVISION_CHROMIUM. Skipped when it or Playwright is missing, except in CI (CI=true), where it must run.
The screenshot goes to the test's folder, and to $CHEXVISION_DEMO_SCREENSHOT when set (how docs/images/demo.png
is refreshed); $CHEXVISION_DEMO_TEST_MODELS (specs joined by os.pathsep) serves those models instead of the
fixtures (the README's screenshot uses the quick start's published model).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CHEXVISION_CHROMIUM", "/usr/bin/chromium"))
START_TIMEOUT_S = 180  # a cold start imports torch and Streamlit on a shared 2-core box


def _browser_or_skip() -> Any:
    problems = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problems.append("playwright is not installed (pip install playwright)")
        sync_playwright = None
    if not CHROMIUM.exists():
        problems.append(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if problems:
        if os.environ.get("CI") == "true":
            pytest.fail("the browser test must run in CI: " + "; ".join(problems))
        pytest.skip("; ".join(problems))
    return sync_playwright


_DRAWN = """() => {
  const imgs = Array.from(document.querySelectorAll('[data-testid="stImage"] img'));
  const idle = !document.querySelector('[data-testid="stStatusWidget"]');
  return idle && imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def _save_small(shot: Path, target: Path) -> None:
    """A copy small enough for the README (about 1000 px wide, 256 colours)."""
    from PIL import Image

    with Image.open(shot) as img:
        rgb = img.convert("RGB")
    ink = np.asarray(rgb.convert("L"))[:, rgb.width // 4 :] < 235  # the main column, below the sidebar
    rows = np.flatnonzero(ink.any(axis=1))
    if len(rows):  # the viewport is taller than the page: cut the empty bottom
        rgb = rgb.crop((0, 0, rgb.width, min(rgb.height, int(rows[-1]) + 40)))
    small = rgb.resize((1000, round(rgb.height * 1000 / rgb.width)), Image.Resampling.LANCZOS)
    small.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, format="PNG", optimize=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`chexvision demo` exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"`chexvision demo` did not answer within {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, make_run_dir: Callable[..., Path]) -> list[str]:
    given = os.environ.get("CHEXVISION_DEMO_TEST_MODELS")
    if given:
        return [s for s in given.split(os.pathsep) if s]
    from chexvision.rundir import RunDir

    base = tmp_path_factory.mktemp("demo-browser")
    dense = make_run_dir(base / "densenet", test_metrics=True)
    points = {"youden": {"threshold": 0.4}, "sensitivity_0.95": {"threshold": 0.2}}
    RunDir(dense).write_metrics_section("test", {"macro_auc": 0.72, "binary_auc": 0.77, "fitted_on": "validation",
                                                 "operating_points": points})  # fmt: skip
    se = make_run_dir(base / "seresnet", run_id="seresnet-20261126-0913-aaaa", model="seresnet", seed=1)
    return [str(dense), str(se)]


@pytest.fixture(scope="module")
def server(models: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _browser_or_skip()
    port = _free_port()
    log = tmp_path_factory.mktemp("demo-log") / "demo.log"
    args = [sys.executable, "-m", "chexvision", "demo", "--port", str(port), "--host", "127.0.0.1"]
    for spec in models:
        args += ["--model", spec]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the CLI and the Streamlit server it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_upload_a_real_xray_and_read_the_probabilities(server: str, sample_images_dir: Path, tmp_path: Path) -> None:
    sync_playwright = _browser_or_skip()
    xray = sorted(sample_images_dir.glob("*.png"))[0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2700})
            page.goto(server, timeout=60_000)
            # the page opens on the first bundled NIH case
            page.get_by_text("Probabilities of the 14 findings — 00000211_000.png").wait_for(timeout=240_000)
            page.locator('input[type="file"]').set_input_files(str(xray))
            page.get_by_text(f"Probabilities of the 14 findings — {xray.name}").wait_for(timeout=240_000)
            page.get_by_text("Grad-CAM: where the top findings").wait_for(timeout=120_000)
            page.wait_for_function(_DRAWN, timeout=120_000)  # the X-ray and the Grad-CAM figure, run finished
            page.wait_for_timeout(1000)  # let the charts finish drawing
            value = page.locator('[data-testid="stMetricValue"]').first.inner_text()
            assert 0.0 <= float(value) <= 1.0
            assert page.locator('[data-testid="stException"]').count() == 0
            assert page.get_by_text("not for clinical use").count() >= 1
            shot = tmp_path / "demo.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if target := os.environ.get("CHEXVISION_DEMO_SCREENSHOT"):
                _save_small(shot, Path(target))
            # a corrupt upload: a message on the page, no traceback
            page.locator('input[type="file"]').set_input_files(
                files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\nbroken"}]
            )
            page.get_by_text("Cannot use this file").wait_for(timeout=120_000)
            assert "broken.png" in page.locator('[data-testid="stAlert"]').all_inner_texts()[-1]
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
