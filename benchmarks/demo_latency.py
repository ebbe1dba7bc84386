"""Demo latency: time to the first answer after `chexvision demo` starts, and per-image latency of the page's work.

    python benchmarks/demo_latency.py [--size 320] [--rounds 5] [--threads 2] [--skip-startup] [--out DIR]

Models: the real architectures (`densenet`, DenseNet-121 with our heads, 7.5 M parameters; `seresnet`, 21.7 M) at
`--size` px with UNTRAINED weights (random init, no ImageNet download), written by `CheXModel.save_pretrained`
into folders `chexvision.load` reads, so loading and preprocessing (CLAHE included, as for NIH-trained models) are
the real ones. Untrained weights cost the
same compute as trained ones; the probabilities are meaningless and not reported.

1. Per image (in this process, torch on `--threads` threads), on a bundled 512-px NIH sample, interleaved over
   `--rounds` rounds: the prediction alone (`predict_ensemble`) and the page's whole analysis (`analyse`:
   prediction + Grad-CAM of the top 3 findings), for one model (DenseNet) and the two-model ensemble, with and
   without TTA (4 views). Baseline: one model, no TTA, prediction only.
2. Time to first answer (wall, from process start): `chexvision demo` (one model, then the ensemble) until the
   page shows the first sample's probabilities in headless Chromium (Playwright + /usr/bin/chromium); baseline
   in the same run: `chexvision predict SAMPLE --model DENSENET` (a cold CLI start that loads the same model and
   answers for the same image). Skipped without Playwright or Chromium (`--skip-startup` skips it anyway).

Prints JSON (medians and minima in seconds) and writes it to `--out` (default: a temp folder).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("CHEXVISION_CHROMIUM", "/usr/bin/chromium"))


def write_models(folder: Path, size: int) -> dict[str, Path]:
    """Untrained densenet and seresnet at `size` px, as folders `chexvision.load` reads."""
    import torch

    from chexvision.config import load_config
    from chexvision.models import create_model

    out = {}
    for name in ("densenet", "seresnet"):
        torch.manual_seed(0)
        net = create_model(name, pretrained=False)
        # CLAHE as the NIH-trained models apply it to image files (and no warning about an unknown source)
        overrides = [f'model.name="{name}"', f"data.size={size}", "model.pretrained=false", 'data.aug.clahe="always"']
        cfg = load_config("smoke", None, overrides)
        net.run_config = cfg.to_dict()
        net.save_pretrained(folder / name)
        out[name] = folder / name
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 4), "min_s": round(min(values), 4), "n": len(values)}


def per_image(models: dict[str, Path], rounds: int) -> dict[str, Any]:
    from chexvision.demo.analysis import analyse, decode_input, load_samples
    from chexvision.hub.resolve import load_predictor
    from chexvision.inference.predictor import predict_ensemble

    dense = load_predictor(str(models["densenet"]), device="cpu")
    se = load_predictor(str(models["seresnet"]), device="cpu")
    sample = load_samples()[0]
    image = decode_input(sample.image_index, sample.read_bytes())
    cases = {
        "one model": [dense],
        "two-model ensemble": [dense, se],
    }
    times: dict[str, list[float]] = {}
    for kind in ("predict", "page analysis (predict + Grad-CAM top 3)"):
        for name in cases:
            for tta in (False, True):
                times[f"{kind} | {name} | {'TTA' if tta else 'no TTA'}"] = []
    for predictors in cases.values():  # warm-up: first calls allocate
        analyse(predictors, image, tta=True, top_k=3)
    for _ in range(rounds):  # interleaved: every configuration once per round
        for name, predictors in cases.items():
            for tta in (False, True):
                label = "TTA" if tta else "no TTA"
                t = time.perf_counter()
                predict_ensemble(predictors, [image.name], [image.pixels], tta=tta)
                times[f"predict | {name} | {label}"].append(time.perf_counter() - t)
                t = time.perf_counter()
                analyse(predictors, image, tta=tta, top_k=3)
                times[f"page analysis (predict + Grad-CAM top 3) | {name} | {label}"].append(time.perf_counter() - t)
    out = {key: _stats(v) for key, v in times.items()}
    base = out["predict | one model | no TTA"]["median_s"]
    for row in out.values():
        row["x_baseline"] = round(row["median_s"] / base, 2)
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _first_answer(specs: list[str], env: dict[str, str]) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    args = [sys.executable, "-m", "chexvision", "demo", "--port", str(port)]
    for spec in specs:
        args += ["--model", spec]
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            page = browser.new_page()
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}", timeout=5000)
                    break
                except Exception:  # not listening yet
                    if proc.poll() is not None or time.perf_counter() - start > 300:
                        raise RuntimeError("chexvision demo did not start") from None
                    time.sleep(0.2)
            served = time.perf_counter() - start
            page.get_by_text("Probabilities of the 14 findings — 00000211_000.png").wait_for(timeout=300_000)
            answered = time.perf_counter() - start
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    return {"page_served_s": round(served, 2), "first_answer_s": round(answered, 2)}


def startup(models: dict[str, Path], out: Path) -> dict[str, Any]:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return {"skipped": "playwright is not installed"}
    if not CHROMIUM.exists():
        return {"skipped": f"no Chromium at {CHROMIUM}"}
    from chexvision.demo.analysis import load_samples

    sample = out / "sample.jpg"
    sample.write_bytes(load_samples()[0].read_bytes())
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "chexvision", "predict", str(sample), "--model", str(models["densenet"]),
                    "--device", "cpu", "--json"], env=env, check=True, capture_output=True)  # fmt: skip
    baseline = round(time.perf_counter() - t, 2)
    one = _first_answer([str(models["densenet"])], env)
    two = _first_answer([str(models["densenet"]), str(models["seresnet"])], env)
    return {
        "baseline: chexvision predict (cold CLI, one model, one image)": {"wall_s": baseline},
        "chexvision demo, one model": one,
        "chexvision demo, two-model ensemble": two,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="demo-latency-"))
    out.mkdir(parents=True, exist_ok=True)
    models = write_models(out / "models", args.size)
    result: dict[str, Any] = {
        "size": args.size,
        "threads": args.threads,
        "weights": "untrained (random init): latency only",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "per_image": per_image(models, args.rounds),
    }
    if not args.skip_startup:
        result["startup"] = startup(models, out)
    text = json.dumps(result, indent=2)
    (out / "demo_latency.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
