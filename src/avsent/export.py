"""A trained model as a file other runtimes can run: plain tensors in, probabilities out.

The model's own input normalisation (per-band audio statistics, the video and geometry
scaling) is inside the exported graph; what stays outside is the front-end work that turns
a media file into features (see docs/export.md): the audio front-end (waveform → [F, T])
and face detection + cropping (frames → [T, S, S, C] uint8).

Inputs, in this order, only for the modalities the model uses:

========== ==================== ======= =========================================
name       shape                dtype   meaning
========== ==================== ======= =========================================
audio      [B, F, T]            float32 audio front-end features (unnormalised)
audio_mask [B, T]               bool    True at real (non-padded) audio frames
video      [B, C, T_v, S, S]    uint8   face crops, 0-255 (float in [0, 1] in eager)
video_mask [B, T_v]             bool    True at real frames
geometry   [B, T_v, G]          float32 landmark geometry (models trained with it)
========== ==================== ======= =========================================

Output: ``probabilities`` [B, K], softmax over the model's classes in ``class_names`` order.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avsent.config import atomic_write_text, to_dict
from avsent.data.normalise import audio_modes
from avsent.errors import ExportError
from avsent.model import AVModel, Batch

#: audio frames in the example inputs the graph is traced with (the time axis stays dynamic
#: where the format allows it)
EXAMPLE_AUDIO_FRAMES = 64
#: largest |exported - eager| probability difference accepted by :func:`check_export`
TOLERANCE = 1e-4


def input_names(model: AVModel) -> tuple[str, ...]:
    """The wrapper's positional inputs for ``model`` (see the module docstring)."""
    names: list[str] = []
    if model.uses_audio:
        names += ["audio", "audio_mask"]
    if model.uses_video:
        names += ["video", "video_mask"]
        if model.geometry_proj is not None:
            names.append("geometry")
    return tuple(names)


class ExportWrapper(nn.Module):
    """``model`` behind a signature of plain tensors, returning class probabilities.

    Takes tensors rather than a :class:`~avsent.model.Batch` because exporters and the
    runtimes they target know nothing of avsent's classes.
    """

    def __init__(self, model: AVModel) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names(model)
        self.eval()  # the whole wrapper, so exporters see (and say) inference mode

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names, inputs, strict=True))
        video = named.get("video")
        if video is not None and video.dtype == torch.uint8:
            video = video.float() / 255.0  # as collate does with cached crops
        batch = Batch(
            audio=named.get("audio"),
            audio_mask=named.get("audio_mask"),
            video=video,
            video_mask=named.get("video_mask"),
            geometry=named.get("geometry"),
        )
        return torch.softmax(self.model(batch).logits.float(), dim=-1)


def example_inputs(
    model: AVModel, batch: int = 2, audio_frames: int = EXAMPLE_AUDIO_FRAMES, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Random inputs of the shapes ``model`` takes (masks all True): for tracing and checks."""
    spec = model.inputs
    g = torch.Generator().manual_seed(seed)
    made: dict[str, torch.Tensor] = {
        "audio": torch.randn(batch, spec.audio_features, audio_frames, generator=g),
        "audio_mask": torch.ones(batch, audio_frames, dtype=torch.bool),
        "video": torch.randint(
            0,
            256,
            (batch, spec.video_channels, spec.video_frames, spec.video_size, spec.video_size),
            generator=g,
            dtype=torch.uint8,
        ),
        "video_mask": torch.ones(batch, spec.video_frames, dtype=torch.bool),
        "geometry": torch.randn(batch, spec.video_frames, spec.geometry_dim, generator=g),
    }
    return tuple(made[name] for name in input_names(model))


def interface(
    model: AVModel, config: Any, fmt: str, fixed: set[tuple[str, int]] = frozenset()
) -> dict[str, Any]:
    """What a deployment needs besides the graph: inputs (free axes by letter, the ones the
    exporter had to fix, ``fixed``, as numbers), classes and the front-end settings."""
    example = example_inputs(model)
    dynamic = _dynamic_axes(model)
    inputs = []
    for name, tensor in zip(input_names(model), example, strict=True):
        shape: list[int | str] = list(tensor.shape)
        for axis, label in dynamic[name].items():
            if (name, axis) not in fixed:
                shape[axis] = label
        inputs.append({"name": name, "shape": shape, "dtype": str(tensor.dtype).split(".")[-1]})
    return {
        "format": fmt,
        "inputs": inputs,
        "output": {"name": "probabilities", "shape": ["B", len(model.class_names)]},
        "class_names": list(model.class_names),
        "recipe": config.recipe,
        "audio_frontend": to_dict(config.audio_frontend) if model.uses_audio else None,
        #: the per-item standardisations the caller applies before ``audio`` (not in the graph)
        "audio_standardised_first": [m for m in audio_modes(config) if m != "global"],
        "faces": to_dict(config.faces) if model.uses_video else None,
    }


def _dynamic_axes(model: AVModel) -> dict[str, dict[int, str]]:
    """Axes left free in exported graphs: the batch everywhere, and audio time."""
    axes = {name: {0: "B"} for name in input_names(model)}
    if model.uses_audio:
        axes["audio"] = {0: "B", 2: "T"}
        axes["audio_mask"] = {0: "B", 1: "T"}
    return axes


def _dynamic_shapes(model: AVModel) -> tuple[tuple[dict[int, Any], ...]]:
    """torch.export's form of :func:`_dynamic_axes` (one entry: the ``*inputs`` tuple)."""
    # AUTO: the exporter finds what the encoders allow (e.g. DRSN needs T >= 17) and keeps
    # the axis free within it instead of refusing
    dims = {"B": torch.export.Dim.AUTO, "T": torch.export.Dim.AUTO}
    axes = _dynamic_axes(model)
    return (
        tuple(
            {axis: dims[label] for axis, label in axes[name].items()} for name in input_names(model)
        ),
    )


def export_model(model: AVModel, config: Any, fmt: str, out: str | Path) -> Path:
    """Write ``model`` as ``fmt`` (``onnx``, ``torchscript`` or ``exported-program``) to
    ``out``, with its interface as ``out.json`` beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.cpu().eval())
    example = example_inputs(model)
    fixed: set[tuple[str, int]] = set()
    try:
        with torch.no_grad():
            if fmt == "torchscript":
                with warnings.catch_warnings():  # shape checks in Python become constants
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    traced = torch.jit.trace(wrapper, example, check_trace=False)
                torch.jit.save(traced, str(out))
            elif fmt == "exported-program":
                program = torch.export.export(
                    wrapper, example, dynamic_shapes=_dynamic_shapes(model)
                )
                torch.export.save(program, str(out))
                fixed = _fixed_axes(program, model)
            elif fmt == "onnx":
                fixed = _fixed_axes(_export_onnx(wrapper, example, model, out), model)
            else:
                raise ExportError(f"unknown export format {fmt!r}")
    except ExportError:
        raise
    except Exception as exc:  # exporters raise many types; name the model and the format
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(
            f"{out}: {config.recipe} cannot be exported as {fmt} ({type(exc).__name__}: {first})"
        ) from exc
    atomic_write_text(
        out.with_name(out.name + ".json"),
        json.dumps(interface(model, config, fmt, fixed), indent=2),
    )
    return out


def _fixed_axes(program: torch.export.ExportedProgram, model: AVModel) -> set[tuple[str, int]]:
    """The axes meant to be free that the exporter fixed (an encoder's shape arithmetic it
    could not keep symbolic): (input name, axis) pairs."""
    from torch.fx.experimental.symbolic_shapes import free_symbols

    placeholders = [
        node
        for node, spec in zip(
            (n for n in program.graph.nodes if n.op == "placeholder"),
            program.graph_signature.input_specs,
            strict=True,
        )
        if spec.kind == torch.export.graph_signature.InputKind.USER_INPUT
    ]
    axes = _dynamic_axes(model)
    return {
        (name, axis)
        for name, node in zip(input_names(model), placeholders, strict=True)
        for axis in axes[name]
        if not free_symbols(node.meta["val"].shape[axis])  # a number, or a symbol set to one
    }


def _export_onnx(
    wrapper: ExportWrapper, example: tuple[torch.Tensor, ...], model: AVModel, out: Path
) -> torch.export.ExportedProgram:
    """Write the ONNX file; the program it was translated from tells which axes stayed free."""
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript"
        ) from None
    program = torch.onnx.export(
        wrapper,
        example,
        input_names=list(input_names(model)),
        output_names=["probabilities"],
        dynamic_shapes=_dynamic_shapes(model),
        dynamo=True,
        verbose=False,
    )
    program.save(str(out))
    return program.exported_program


def run_export(path: str | Path, fmt: str, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Probabilities from an exported file (ONNX via onnxruntime), for checks and tests."""
    path = str(path)
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(path)(*inputs)
    if fmt == "exported-program":
        with torch.no_grad():
            return torch.export.load(path).module()(*inputs)
    try:
        import onnxruntime
    except ImportError:
        raise ExportError(
            "running an ONNX file needs onnxruntime: pip install onnxruntime"
        ) from None
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feed = {name: t.numpy() for name, t in zip(names, inputs, strict=True)}
    return torch.from_numpy(session.run(None, feed)[0])


def check_export(model: AVModel, path: str | Path, fmt: str) -> float:
    """Largest |exported - eager| probability on fresh inputs, with another batch size and
    audio length wherever ``path``'s interface says they are free; raises ExportError
    above :data:`TOLERANCE`."""
    path = Path(path)
    shapes = json.loads(path.with_name(path.name + ".json").read_text())["inputs"]
    free = {label for i in shapes for label in i["shape"] if isinstance(label, str)}
    inputs = example_inputs(
        model,
        batch=3 if "B" in free else 2,
        audio_frames=EXAMPLE_AUDIO_FRAMES + 16 if "T" in free else EXAMPLE_AUDIO_FRAMES,
        seed=1,
    )
    with torch.no_grad():
        eager = ExportWrapper(model.cpu().eval())(*inputs)
    got = run_export(path, fmt, inputs)
    diff = float((got.float() - eager).abs().max())
    if not diff <= TOLERANCE:
        raise ExportError(f"{path}: exported probabilities differ from PyTorch's by {diff:.2e}")
    return diff
