"""``avsent export``: a trained run's model as ONNX, TorchScript or a torch.export program."""

from __future__ import annotations

import json
from pathlib import Path

import rich_click as click

from avsent.cli import console
from avsent.commands.options import check_run

#: each format and the suffix of its default file name
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}


@click.command()
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(SUFFIXES)),
    required=True,
    help="`onnx` (needs onnx + onnxscript), `torchscript` (torch.jit.trace) or "
    "`exported-program` (torch.export, a `.pt2` file).",
)
@click.option(
    "--checkpoint",
    "which",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write (default: `RUN/export/model.onnx|.pt|.pt2`).",
)
def export(run: Path, fmt: str, which: str, out: Path | None) -> None:
    """Write RUN's model as one file that takes plain tensors and returns probabilities.

    Inputs are the front-ends' features (audio [B,F,T] + mask, face crops [B,C,T,H,W]
    uint8 + mask); the model's own normalisation is inside. `FILE.json` beside it lists
    the inputs, the class names and the front-end settings (docs/export.md). The file is
    checked against PyTorch on fresh inputs before the command succeeds.
    """
    from avsent.export import check_export, export_model
    from avsent.training.checkpoint import load_model

    check_run(run)
    model, config = load_model(run, which)
    run_dir = run if run.is_dir() else run.parent.parent  # RUN/checkpoints/best.safetensors
    out = out or run_dir / "export" / f"model{SUFFIXES[fmt]}"
    export_model(model, config, fmt, out)
    diff = check_export(model, out, fmt)
    described = json.loads(out.with_name(out.name + ".json").read_text())
    shapes = ", ".join(
        f"{i['name']} [{', '.join(map(str, i['shape']))}] {i['dtype']}" for i in described["inputs"]
    )
    console.print(
        f"wrote {out} ({fmt}); inputs: {shapes}; output: probabilities [B, "
        f"{len(model.class_names)}]; details in {out.name}.json; largest difference from "
        f"PyTorch {diff:.1e}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
