"""Render docs/images/*.png (one of each picture the product draws), as the README's "Pictures" shows them.

Run from the repository root:

    .venv/bin/python scripts/render_docs_images.py                       # the EDA pictures only
    .venv/bin/python scripts/render_docs_images.py --runs RUN_A RUN_B --data SYNTH --localization SYNTH/bbox.csv \
        --extra report_gradcam_tile.png=EVAL/cam/TILE.png --extra cam.png=CAM/OVERLAY.png

Inputs as rendered on 2026-12-01: the shipped NIH metadata (EDA, `official` split); two smoke runs (densenet and
seresnet, `chexvision train --preset smoke --split-scheme patient`) on `chexvision data synth --images 2000 --size 64
--seed 1`, evaluated here on its test split with `--localization SYNTH/bbox.csv` (this writes each run's metrics.json
`test` section and the evaluation folder `--eval-out`, as `chexvision evaluate` does); and, as `--extra`, a report
Grad-CAM tile from that evaluation and a `chexvision cam --top 1` overlay of one real NIH sample X-ray
(shared/data/nih/sample-images/00000129_000.png, Lanczos-resized to 360 px to keep the PNG small). PNGs of plots are
quantised to 256 colours (Grad-CAM pictures are not: their smooth maps band) to stay under 150 KB.
"""

import argparse
import io
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from chexvision.data.eda import compute_stats, draw_figures
from chexvision.data.metadata import load_metadata
from chexvision.evaluate import evaluation, figures, report


def save(out: Path, name: str, png: bytes, *, quantise: bool = True) -> None:
    img = Image.open(io.BytesIO(png)).convert("RGB")
    if quantise:
        img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(out / name, optimize=True)
    print(name, img.size, (out / name).stat().st_size)


def render_eda(out: Path) -> None:
    stats = compute_stats(load_metadata(), "official")
    for name, fig in draw_figures(stats).items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        save(out, f"eda_{name}", buf.getvalue())


def render_report(out: Path, runs: list[Path], data: Path, bbox: Path | None, eval_out: Path) -> None:
    captured: dict[str, Any] = {}
    write_outputs = evaluation.write_outputs

    def capture(results: Any, preds: Any, loaded: Any, where: Path) -> None:
        captured.update(results=results, preds=preds)
        write_outputs(results, preds, loaded, where)

    evaluation.write_outputs = capture  # type: ignore[assignment]
    try:
        opts = evaluation.EvalOptions(data_dir=data, bootstrap=200, bbox_csv=bbox)
        evaluation.evaluate_runs(runs, opts, eval_out)
    finally:
        evaluation.write_outputs = write_outputs
    results, preds = captured["results"], captured["preds"]
    figures.DPI = 72
    plain = {name: by_key["plain"] for name, by_key in preds.items()}
    scores = report._plain_scores(results)
    first_name, first = scores[0]
    n_bins = first["calibration"]["n_bins"]
    save(out, "report_roc.png", figures.curve_figure(plain, "roc"))
    save(out, "report_pr.png", figures.curve_figure(plain, "pr"))
    save(out, "report_reliability.png", figures.reliability_figure(scores[:1], n_bins))
    per_class = figures.per_class_reliability_figure(first_name, first["calibration"]["per_class"], n_bins)
    save(out, "report_reliability_per_class.png", per_class)
    save(out, "report_per_class_auc.png", figures.bars_figure(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="folder for the PNGs")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="run directories for the report figures")
    parser.add_argument("--data", type=Path, help="the data folder the runs are evaluated on (with --runs)")
    parser.add_argument("--localization", type=Path, help="NIH-format boxes for the Grad-CAM tiles (bbox.csv)")
    parser.add_argument("--eval-out", type=Path, help="where the evaluation writes (default: a temporary folder)")
    parser.add_argument("--extra", action="append", default=[], help="NAME=PATH of a ready PNG (not quantised)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    render_eda(args.out)
    if args.runs:
        if args.data is None:
            parser.error("--runs needs --data")
        with tempfile.TemporaryDirectory() as tmp:
            render_report(args.out, args.runs, args.data, args.localization, args.eval_out or Path(tmp))
    for extra in args.extra:
        name, path = extra.split("=", 1)
        save(args.out, name, Path(path).read_bytes(), quantise=False)


if __name__ == "__main__":
    main()
