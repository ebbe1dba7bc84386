"""`chexvision data splits|build|download|eda|synth`: thin commands over chexvision.data (no torch here)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

if TYPE_CHECKING:
    from chexvision.data.build import BuildResult
    from chexvision.data.external.build import ExternalBuildResult
from rich.console import Console
from rich.table import Table

from chexvision.errors import BadInputError, UnknownName

_console = Console(soft_wrap=True)  # paths and file names stay whole (grep-able)
_MAX_LISTED = 20  # names listed in full before "... and N more"

DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="A data folder of Parquet shards (data/*.parquet) instead of the metadata."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the validation (and patient-scheme) draw.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print plain JSON to stdout.")]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace what --out holds when it was made with other parameters (only files this command writes).",
    ),
]
SchemeAliasOpt = Annotated[str | None, typer.Option("--scheme", hidden=True, help="Old name of --split-scheme.")]
StrictLabelsOpt = Annotated[
    bool, typer.Option("--strict", help="Stop at a shard row with a bad label (default: report it, skip it, count it).")
]


def _check_scheme(scheme: str) -> None:
    from chexvision.data.splits import SPLIT_SCHEMES

    if scheme not in SPLIT_SCHEMES:
        raise UnknownName("split scheme", scheme, SPLIT_SCHEMES)


def _default_scheme(data: Path | None) -> str:
    """The scheme a data folder's dataset.json names (synthetic data: patient); official for the shipped metadata."""
    from chexvision.data.shards import read_dataset_meta
    from chexvision.data.splits import default_split_scheme

    return default_split_scheme(read_dataset_meta(data) if data is not None else {})


def _listed(names: list[str]) -> str:
    head = ", ".join(names[:_MAX_LISTED])
    return head + (f" ... and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def splits(
    scheme: Annotated[
        str | None,
        typer.Option("--split-scheme", help="official | chexnet | patient (default: the data's own or official)."),
    ] = None,
    seed: SeedOpt = 0,
    data: DataOpt = None,
    as_json: JsonOpt = False,
    strict: StrictLabelsOpt = False,
    scheme_alias: SchemeAliasOpt = None,
) -> None:
    """Show images, patients and per-class prevalence of each split of a scheme."""
    from chexvision.data.metadata import load_metadata, metadata_from_shards
    from chexvision.data.splits import make_split, split_summary

    scheme = scheme or scheme_alias or _default_scheme(data)
    _check_scheme(scheme)
    df = metadata_from_shards(data, strict=strict) if data is not None else load_metadata()
    filenames, labels = df["filename"].tolist(), df["labels"].tolist()
    split = make_split(filenames, scheme, seed)
    summary = split_summary(filenames, labels, split)
    if as_json:
        typer.echo(json.dumps({"scheme": scheme, "splits": summary}))
        return
    _print_split_tables(scheme, summary, getattr(split, "dropped", 0))


def _print_split_tables(scheme: str, summary: dict[str, Any], dropped: int) -> None:
    overview = Table(title=f"{scheme} split (patient-disjoint)")
    overview.add_column("split")
    overview.add_column("images", justify="right")
    overview.add_column("patients", justify="right")
    for name, part in summary.items():
        overview.add_row(name, f"{part['images']:,}", f"{part['patients']:,}")
    _console.print(overview)
    if dropped:
        _console.print(f"{dropped:,} images are in no list of the {scheme} scheme and were dropped.")
    prevalence = Table(title="prevalence (% of images)")
    prevalence.add_column("label")
    for name in summary:
        prevalence.add_column(name, justify="right")
    for label in next(iter(summary.values()))["prevalence"]:
        prevalence.add_row(label, *(f"{100 * part['prevalence'][label]:.2f}" for part in summary.values()))
    _console.print(prevalence)


SourceOpt = Annotated[
    str, typer.Option("--source", help="nih | chexpert | mimic-cxr-jpg | padchest (external sets need --labels).")
]
ExternalLabelsOpt = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        help="External label CSV as published: CheXpert train.csv/valid.csv, mimic-cxr-2.0.0-chexpert.csv, "
        "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.",
    ),
]
ViewsOpt = Annotated[str, typer.Option("--views", help="frontal (PA/AP only) | all, from the set's view columns.")]
UncertainOpt = Annotated[
    str, typer.Option("--uncertain", help="CheXpert/MIMIC uncertain (-1) labels: ignore (missing) | zeros | ones.")
]
PatientsOpt = Annotated[
    Path | None, typer.Option("--patients", help="mimic-cxr-jpg: MIMIC-IV patients.csv for age and sex (optional).")
]


def build(
    images: Annotated[
        Path,
        typer.Option("--images", help="Folder of the images (NIH: raw PNGs, searched recursively; see --source)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output data folder (shards go to OUT/data/).")],
    size: Annotated[int, typer.Option("--size", help="Output side length in pixels.")] = 320,
    metadata: Annotated[
        Path | None,
        typer.Option(
            "--metadata",
            help="NIH: Data_Entry CSV with the labels (default: the shipped one); "
            "mimic-cxr-jpg: mimic-cxr-2.0.0-metadata.csv (views, images per study).",
        ),
    ] = None,
    source: SourceOpt = "nih",
    labels: ExternalLabelsOpt = None,
    views: ViewsOpt = "frontal",
    uncertain: UncertainOpt = "ignore",
    patients: PatientsOpt = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes (default: all cores).")] = 0,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Images per shard.")] = 1000,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first corrupt image (exit 2).")] = False,
    no_clahe: Annotated[bool, typer.Option("--no-clahe", help="Skip CLAHE (applied once here by default).")] = False,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build one-channel Parquet shards from raw NIH PNGs or an external set (resumable: re-run to continue)."""
    if source != "nih":
        external = ExternalBuild(source, labels, metadata, patients, views, uncertain)
        _build_external(external, images, out, size, workers, shard_size, strict, no_clahe, overwrite, as_json)
        return
    _nih_only(labels=labels, patients=patients, views=views != "frontal", uncertain=uncertain != "ignore")
    from chexvision.cli._progress import progress_reporter
    from chexvision.data.build import build_shards

    # stdout holds only the JSON; not a terminal (a kernel's log): plain progress lines every 10 s
    with progress_reporter("building shards", Console(stderr=True) if as_json else _console) as progress:
        result = build_shards(
            images,
            out,
            size=size,
            metadata=metadata,
            workers=workers or os.cpu_count(),
            shard_size=shard_size,
            strict=strict,
            clahe=not no_clahe,
            progress=progress,
            overwrite=overwrite,
        )
    if as_json:
        typer.echo(json.dumps(_build_json(result)))
        return
    _console.print(f"{_built_line(result, 'images')}; labels: {result.labels}", markup=False)
    if result.not_in_metadata:
        _console.print(
            f"[yellow]skipped {len(result.not_in_metadata)} images not in the metadata:[/] "
            f"{_listed(result.not_in_metadata)}"
        )
    _print_corrupt(result.corrupt)


def _print_corrupt(corrupt: list[tuple[str, str]]) -> None:
    if corrupt:
        _console.print(f"[yellow]skipped {len(corrupt)} corrupt images:[/]")
        for file, reason in corrupt[:_MAX_LISTED]:
            _console.print(f"  {file}: {reason}", markup=False)


def _build_json(result: Any) -> dict[str, Any]:
    return {
        "out_dir": str(result.out_dir),
        "images": result.images,
        "size": result.size,
        "clahe": result.clahe,
        "labels": result.labels,
        "shards": [str(p) for p in result.shards],
        "built_shards": result.built_shards,
        "resumed_shards": result.resumed_shards,
        "not_in_metadata": list(result.not_in_metadata),
        "corrupt": [{"file": str(f), "reason": reason} for f, reason in result.corrupt],
        "seconds": round(result.seconds, 3),
    }


class ExternalBuild(NamedTuple):
    """The `--source` options of `data build` for an external set."""

    source: str
    labels: Path | None
    metadata: Path | None
    patients: Path | None
    views: str
    uncertain: str


def _nih_only(**given: object) -> None:
    for name, value in given.items():
        if value not in (None, False):
            raise BadInputError(f"--{name} is for external sets", "add --source chexpert|mimic-cxr-jpg|padchest")


def _build_external(
    ext: ExternalBuild, images: Path, out: Path, size: int, workers: int, shard_size: int, strict: bool,
    no_clahe: bool, overwrite: bool, as_json: bool,
) -> None:  # fmt: skip
    """`data build --source chexpert|mimic-cxr-jpg|padchest` (chexvision.data.external)."""
    from chexvision.cli._progress import progress_reporter
    from chexvision.data.external.build import build_external, read_source

    if ext.labels is None:
        raise BadInputError(f"--source {ext.source} needs --labels CSV", "pass the set's label CSV as published")
    table = read_source(ext.source, images, ext.labels, metadata=ext.metadata, patients=ext.patients,
                        views=ext.views, uncertain=ext.uncertain)  # fmt: skip
    with progress_reporter(f"building {ext.source} shards", Console(stderr=True) if as_json else _console) as bar:
        result = build_external(table, out, images_dir=images, labels_csv=ext.labels, size=size,
                                clahe=not no_clahe, workers=workers or os.cpu_count(), shard_size=shard_size,
                                strict=strict, progress=bar, overwrite=overwrite)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(_build_json_external(result)))
        return
    _console.print(_built_line(result, f"{result.source} images"), markup=False)
    left = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in result.counts.items()
                     if k not in ("rows", "uncertain_cells") and v)  # fmt: skip
    _console.print(f"{result.counts.get('rows', 0):,} rows read; left out: {left or 'none'}", markup=False)
    _console.print(f"labelled: {', '.join(result.classes_any)}; on every image: "
                   f"{', '.join(result.classes) or 'none'}", markup=False)  # fmt: skip
    if result.classes != result.classes_any:
        _console.print(
            f"some labels are missing on some images (blank or uncertain): per-image labels are in "
            f"{result.out_dir / 'labels.csv'}; score a run's predictions on them with `chexvision evaluate "
            f"--predictions EVAL/predictions/RUN.csv --labels {result.out_dir / 'labels.csv'}`",
            markup=False,
        )
    if result.missing_images:
        _console.print(f"[yellow]{len(result.missing_images)} images of the CSV are not under {images}:[/] "
                       f"{_listed(result.missing_images)}")  # fmt: skip
    _print_corrupt(result.corrupt)


def _build_json_external(result: Any) -> dict[str, Any]:
    return {
        "out_dir": str(result.out_dir),
        "source": result.source,
        "images": result.images,
        "size": result.size,
        "clahe": result.clahe,
        "classes": list(result.classes),
        "classes_any": list(result.classes_any),
        "counts": result.counts,
        "missing_images": list(result.missing_images),
        "shards": [str(p) for p in result.shards],
        "built_shards": result.built_shards,
        "resumed_shards": result.resumed_shards,
        "corrupt": [{"file": str(f), "reason": reason} for f, reason in result.corrupt],
        "seconds": round(result.seconds, 3),
    }


def download(
    out: Annotated[Path, typer.Option("--out", help="Output data folder (shards go to OUT/data/).")],
    repo: Annotated[str | None, typer.Option("--repo", help="HF dataset repo id.")] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="Commit sha to pin.")] = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Download the published NIH shards from the Hugging Face Hub (resumable; pinned revision by default)."""
    from chexvision.data.download import REPO_ID, REVISION, download_dataset, downloaded_shards

    path = download_dataset(out, repo or REPO_ID, revision or REVISION, overwrite=overwrite)
    count = len(downloaded_shards(path))
    if as_json:
        payload = {"out_dir": str(path), "repo_id": repo or REPO_ID, "revision": revision or REVISION, "shards": count}
        typer.echo(json.dumps(payload))
        return
    _console.print(f"{count} shards of {repo or REPO_ID}@{(revision or REVISION)[:12]} in {path / 'data'}")


def transcode(
    data: Annotated[Path, typer.Option("--data", help="Folder of shards to convert (e.g. the published RGB PNG set).")],
    out: Annotated[Path, typer.Option("--out", help="Output data folder (shards go to OUT/data/).")],
    workers: Annotated[int, typer.Option("--workers", help="Worker processes (0: all cores).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Convert shards once to one-channel JPEG shards with CLAHE applied (resumable: re-run to continue)."""
    from chexvision.cli._progress import progress_reporter
    from chexvision.data.transcode import transcode_shards

    with progress_reporter("transcoding shards", Console(stderr=True) if as_json else _console) as progress:
        result = transcode_shards(data, out, workers=workers or os.cpu_count(), progress=progress)
    payload = {
        "out_dir": str(result.out_dir),
        "images": result.images,
        "shards": result.shards,
        "transcoded_shards": result.transcoded_shards,
        "resumed_shards": result.resumed_shards,
        "clahe_applied": result.clahe,
        "corrupt": result.corrupt,
        "seconds": round(result.seconds, 3),
    }
    if as_json:
        typer.echo(json.dumps(payload))
        return
    _console.print(
        f"{result.images:,} images in {result.shards} shards -> {result.out_dir} (one channel, JPEG, CLAHE) "
        f"[{result.transcoded_shards} transcoded, {result.resumed_shards} already complete, {result.seconds:.1f} s]"
        + (f"; skipped {result.corrupt} undecodable images" if result.corrupt else ""),
        markup=False,
    )


def eda(
    out: Annotated[Path, typer.Option("--out", help="Folder for eda.md and the plots.")],
    data: DataOpt = None,
    metadata: Annotated[
        Path | None, typer.Option("--metadata", help="Data_Entry CSV (default: the shipped NIH metadata).")
    ] = None,
    scheme: Annotated[
        str | None, typer.Option("--split-scheme", help="Split scheme (default: the data's own or official).")
    ] = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
    strict: StrictLabelsOpt = False,
    overwrite: OverwriteOpt = False,
    scheme_alias: SchemeAliasOpt = None,
) -> None:
    """Label, age, sex, view and patient statistics per split, as Markdown tables and PNG plots."""
    from chexvision.data.eda import run_eda
    from chexvision.data.metadata import load_metadata, metadata_from_shards

    if data is not None and metadata is not None:
        raise BadInputError("--data and --metadata were both given", "pass one of them (or neither: shipped data)")
    scheme = scheme or scheme_alias or _default_scheme(data)
    _check_scheme(scheme)
    df = metadata_from_shards(data, strict=strict) if data is not None else load_metadata(metadata)
    source = f"data {data.resolve()}" if data else f"metadata {metadata.resolve()}" if metadata else "shipped metadata"
    result = run_eda(df, out, split_scheme=scheme, seed=seed, source=source, overwrite=overwrite)
    if as_json:
        groups = {g: {"images": s["images"], "patients": s["patients"]} for g, s in result.stats["groups"].items()}
        typer.echo(
            json.dumps(
                {
                    "report": str(result.report),
                    "plots": [str(p) for p in result.plots],
                    "scheme": scheme,
                    "groups": groups,
                    "seconds": round(result.seconds, 3),
                }
            )
        )
        return
    _console.print(f"wrote {result.report} and {len(result.plots)} plots ({result.seconds:.1f} s)")


def synth(
    out: Annotated[Path, typer.Option("--out", help="Output data folder (shards go to OUT/data/).")],
    images: Annotated[int, typer.Option("--images", help="Number of images.")] = 2000,
    size: Annotated[int, typer.Option("--size", help="Side length in pixels (32-2048).")] = 320,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed writes byte-identical rows.")] = 0,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes (0: all cores); the output does not depend on it.")
    ] = 0,
    as_json: JsonOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write synthetic chest X-rays with planted findings, NIH-style bbox.csv and dataset.json."""
    from chexvision.data.synthetic import write_synthetic

    result = write_synthetic(out, images, size, seed, workers=workers or (os.cpu_count() or 1), overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    table = Table(title=f"synthetic data: {result.images:,} images at {result.size} px (seed {result.seed})")
    table.add_column("label")
    table.add_column("images", justify="right")
    for name, count in sorted(result.label_counts.items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{count:,}")
    _console.print(table)
    if result.reused:
        _console.print(f"nothing to do: {result.out} already holds this synthetic set (same images, size and seed)")
    else:
        _console.print(
            f"wrote {len(result.shards)} shard(s) to {result.out / 'data'}, {result.boxes:,} boxes to "
            f"{result.bbox_csv} in {result.seconds:.1f} s"
        )
    from chexvision.models.registry import list_models  # torch-free: the names only

    models = "|".join(list_models())  # never one model named: a seresnet run's log suggested densenet
    _console.print(f"next: chexvision train --model {{{models}}} --data {result.out} --preset smoke", markup=False)


def register(app: typer.Typer) -> None:
    """Add `splits`, `build`, `download`, `transcode`, `eda` and `synth` to the `data` sub-app."""
    app.command("splits")(splits)
    app.command("build")(build)
    app.command("download")(download)
    app.command("transcode")(transcode)
    app.command("eda")(eda)
    app.command("synth")(synth)


def _built_line(result: BuildResult | ExternalBuildResult, what: str) -> str:
    """The summary line of a shard build (`data build`, NIH or external): images, shards, size, CLAHE, where, resume."""
    return (
        f"{result.images:,} {what} in {len(result.shards)} shards at {result.size} px "
        f"(CLAHE {'on' if result.clahe else 'off'}) -> {result.out_dir} "
        f"[{result.built_shards} built, {result.resumed_shards} already complete, {result.seconds:.1f} s]"
    )
