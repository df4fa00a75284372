"""``avsent export``: each format reproduces the eager model's probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from command_helpers import run_cli

from avsent.export import ExportWrapper, example_inputs, input_names, run_export
from avsent.model import Batch
from avsent.training.checkpoint import load_model


def padded_inputs(model: torch.nn.Module, interface: dict) -> tuple[torch.Tensor, ...]:
    """Inputs unlike the traced ones where the file allows (batch 3, 90 audio frames), the
    second clip's audio padded."""
    shapes = {i["name"]: i["shape"] for i in interface["inputs"]}
    frames = 90 if "T" in shapes["audio"] else shapes["audio"][2]
    batch = 3 if shapes["audio"][0] == "B" else shapes["audio"][0]
    inputs = example_inputs(model, batch=batch, audio_frames=frames, seed=7)
    named = dict(zip(input_names(model), inputs, strict=True))
    named["audio_mask"][1, frames // 2 :] = False  # the second clip is shorter
    named["audio"][1, :, frames // 2 :] = 0.0
    return tuple(named.values())


def exported(run: Path, out: Path, fmt: str) -> dict:
    """Export ``run`` through the CLI → the interface written beside the file."""
    if fmt == "onnx":
        pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript")
        pytest.importorskip("onnxruntime", reason="the check runs the file under onnxruntime")
    printed = run_cli("export", run, "--format", fmt, "--out", out).output
    assert "largest difference from PyTorch" in printed and "audio [" in printed
    return json.loads(out.with_name(out.name + ".json").read_text())


@pytest.mark.parametrize(
    ("fmt", "suffix"),
    [("torchscript", ".pt"), ("exported-program", ".pt2"), ("onnx", ".onnx")],
)
def test_exported_file_matches_eager_pytorch(
    trained_run: Path, tmp_path: Path, fmt: str, suffix: str
) -> None:
    out = tmp_path / f"model{suffix}"
    interface = exported(trained_run, out, fmt)
    model, _ = load_model(trained_run)
    inputs = padded_inputs(model, interface)
    with torch.no_grad():
        eager = ExportWrapper(model)(*inputs)
    got = run_export(out, fmt, inputs)
    assert got.shape == (inputs[0].shape[0], len(model.class_names))
    torch.testing.assert_close(got, eager, atol=1e-5, rtol=1e-4)
    assert torch.allclose(got.sum(-1), torch.ones(len(got)), atol=1e-5)
    assert interface["class_names"] == list(model.class_names)
    names = [i["name"] for i in interface["inputs"]]
    assert names == list(input_names(model))
    assert names[:4] == ["audio", "audio_mask", "video", "video_mask"]
    assert interface["inputs"][2]["dtype"] == "uint8"
    assert interface["audio_frontend"]["name"] == "mel-chroma"
    assert interface["audio_standardised_first"] == []  # the run standardises only globally


@pytest.mark.parametrize(
    ("data", "first"),
    [
        ({}, []),
        ({"data.utterance_norm": True}, ["per-utterance"]),
        (
            {"data.utterance_norm": True, "data.speaker_norm": True},
            ["per-utterance", "per-speaker"],
        ),
    ],
)
def test_the_interface_names_the_standardisations_left_to_the_caller(data, first) -> None:
    """Per-utterance and per-speaker steps are not in the graph (they need the whole clip
    or the speaker's clips): the interface says which to apply before ``audio``."""
    from avsent.export import interface
    from avsent.model import build_model, inputs_for
    from avsent.run_config import default_run_config

    config = default_run_config("drsn-audio", {**data, "audio.widths": [4, 8]})
    model = build_model(config, inputs_for(config), ("a", "b"))
    assert interface(model, config, "onnx")["audio_standardised_first"] == first


def test_batch_and_audio_length_stay_free_in_an_exported_program(
    trained_run: Path, tmp_path: Path
) -> None:
    """Clips differ in length: a graph that fixed T would take only one clip length."""
    interface = exported(trained_run, tmp_path / "model.pt2", "exported-program")
    audio = next(i for i in interface["inputs"] if i["name"] == "audio")
    assert audio["shape"][0] == "B" and audio["shape"][2] == "T", (
        f"torch.export fixed {audio['shape']}: some encoder's shape arithmetic is not "
        "symbolic (TORCH_LOGS=+dynamic names it)"
    )


def test_wrapper_equals_the_model_on_a_collated_batch(trained_run: Path) -> None:
    """uint8 frames in the wrapper = the float [0, 1] frames collate gives the model."""
    model, _ = load_model(trained_run)
    named = dict(zip(input_names(model), example_inputs(model, batch=2), strict=True))
    as_float = {**named, "video": named["video"].float() / 255.0}
    batch = Batch(**as_float)
    with torch.no_grad():
        expected = torch.softmax(model(batch).logits, -1)
        got = ExportWrapper(model)(*named.values())
        got_float = ExportWrapper(model)(*as_float.values())
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got_float, expected)


def test_default_output_lands_in_the_run_folder(trained_run: Path) -> None:
    run_cli("export", trained_run, "--format", "torchscript", "--checkpoint", "last")
    assert (trained_run / "export" / "model.pt").is_file()
    assert (trained_run / "export" / "model.pt.json").is_file()


def test_the_wrapper_is_in_inference_mode_throughout(trained_run: Path) -> None:
    model, _ = load_model(trained_run)
    wrapper = ExportWrapper(model.train())  # even from a model left in training mode
    assert not any(m.training for m in wrapper.modules())
