"""Contract checks for plugin authors: does a registered component keep its kind's promises?

:mod:`avsent.contracts` says what each component kind takes and returns, and
:mod:`avsent.layers.masks` what padding may and may not do. A component that breaks them
still builds and runs; it just trains worse, or predicts differently for a clip padded in
a batch than for the same clip alone. These checks build the component with small inputs
and fail with a :class:`ContractError` that names the component and the broken rule::

    from avsent.testing import check_component

    def test_my_encoder_keeps_the_contract():
        check_component("my-encoder", kind="audio_encoder")

avsent runs the same checks over every registered component (``tests/test_contracts.py``),
so a third party's plugin is held to exactly the rules the shipped ones are.

Each ``check_<kind>`` takes the :class:`~avsent.registry.Component` or its name, an optional
``config`` (an instance of the component's config class, or a dict of fields changed from
the defaults, e.g. ``{"hidden": 8}`` to keep a large default small) and the input sizes.
A component that cannot be built on this machine (its weights are absent) raises
:class:`ComponentUnavailable`, for a test to skip with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from avsent.config import from_dict
from avsent.contracts import (
    Clip,
    DatasetSource,
    FaceDetector,
    FaceEmbedding,
    LandmarkBackend,
    Tokens,
)
from avsent.errors import ConfigError, WeightsUnavailableError
from avsent.registry import Component, get_registry

__all__ = [
    "CHECKED_KINDS",
    "ComponentUnavailable",
    "ContractError",
    "check_audio_encoder",
    "check_audio_frontend",
    "check_component",
    "check_dataset",
    "check_face_detector",
    "check_face_embedding",
    "check_fusion",
    "check_head",
    "check_intra_modal",
    "check_landmark_backend",
    "check_video_encoder",
]

#: magnitude of what the checks put into padded steps: any leak shows at once
JUNK = 1e3
#: a clip alone and in a batch may differ by float rounding only (batch-size dependent
#: kernels), never by what its neighbours hold; ATOL is a fraction of the output's scale
RTOL, ATOL = 1e-3, 1e-4


class ContractError(AssertionError):
    """A component breaks its kind's contract; the message names it and the rule."""


class ComponentUnavailable(Exception):
    """The component cannot be built here (its weights are not on this machine): skip it."""


# -- building ------------------------------------------------------------------------------


def _resolve(component: Component | str, kind: str) -> Component:
    if isinstance(component, str):
        return get_registry().get(kind, component)
    if component.kind != kind:
        raise ValueError(f"{component.kind} {component.name!r} given to the {kind} check")
    return component


def _config(component: Component, config: Any) -> Any:
    """The config to build with: the defaults, an instance, or the defaults with ``config``'s
    fields changed (parsed and validated as ``--set`` would)."""
    if config is None and component.config is not None:
        return component.config()
    if not isinstance(config, Mapping):
        return config
    if component.config is None:
        raise ValueError(f"{_label(component)} has no config class; cannot set {sorted(config)}")
    return from_dict(component.config, dict(config), path=component.kind)


def _build(component: Component, config: Any, **dims: Any) -> Any:
    try:
        return component.build(config, **dims)
    except WeightsUnavailableError as exc:
        raise ComponentUnavailable(f"{_label(component)}: {exc}") from exc


def _label(component: Component) -> str:
    return f"{component.kind} {component.name!r} (plugin {component.plugin!r})"


def _fail(component: Component, rule: str, detail: str = "") -> ContractError:
    return ContractError(f"{_label(component)}: {rule}" + (f": {detail}" if detail else ""))


def _out_dim(component: Component, module: Any) -> int:
    if not isinstance(module, nn.Module):
        raise _fail(component, "the factory must return an nn.Module", f"got {type(module)!r}")
    out_dim = getattr(module, "out_dim", None)
    if not isinstance(out_dim, int) or out_dim < 1:
        raise _fail(component, "needs an int attribute out_dim ≥ 1", f"got {out_dim!r}")
    return out_dim


# -- padded inputs ---------------------------------------------------------------------------


def _lengths(steps: int) -> list[int]:
    """A full clip, a shorter one, a one-step one and an all-padding one, in one batch."""
    return [steps, steps // 2 + 1, 1, 0]


def _mask(lengths: list[int], steps: int) -> torch.Tensor:
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


def _time_mask(mask: torch.Tensor, ndim: int, time_axis: int) -> torch.Tensor:
    """Mask [B, T] shaped to broadcast over an ``ndim`` tensor with time on ``time_axis``."""
    shape = [1] * ndim
    shape[0], shape[time_axis] = mask.shape
    return mask.view(shape)


def _padded(
    shape: tuple[int, ...], mask: torch.Tensor, time_axis: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random input with zeros in padding (what the loader gives), the same with junk there,
    and the same with the real steps changed."""
    real = _time_mask(mask, len(shape), time_axis)
    x = torch.randn(shape, generator=gen)
    junk = torch.where(real, x, JUNK * torch.randn(shape, generator=gen))
    other = torch.where(real, torch.randn(shape, generator=gen), 0.0)
    return x * real, junk, other


def _alone(x: torch.Tensor, clip: int, length: int, time_axis: int) -> torch.Tensor:
    return x.narrow(0, clip, 1).narrow(time_axis, 0, length)


def _worst(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"max difference {(a - b).abs().max().item():.3g}"


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float rounding, judged against ``b``'s scale: a leak into tiny outputs
    is as wrong as one into large outputs."""
    if a.shape != b.shape:
        return False
    scale = b.abs().max().item() if b.numel() else 0.0
    return torch.allclose(a, b, rtol=RTOL, atol=ATOL * scale)


# -- sequence components (encoders, intra-modal blocks) ---------------------------------------


def _tokens(component: Component, out: Any, batch: int, out_dim: int) -> Tokens:
    if not isinstance(out, Tokens):
        raise _fail(component, "forward must return avsent.contracts.Tokens", f"got {type(out)!r}")
    if out.x.shape[0] != batch or out.x.shape[2] != out_dim:
        raise _fail(
            component,
            f"tokens must be [B={batch}, T', out_dim={out_dim}]",
            f"got {tuple(out.x.shape)}",
        )
    if out.mask.dtype != torch.bool:
        raise _fail(component, "the token mask must be bool", f"got {out.mask.dtype}")
    if not torch.isfinite(out.x).all():
        raise _fail(component, "tokens must be finite (no NaN/inf), also for a 0- or 1-step clip")
    return out


def _check_sequence(
    component: Component,
    module: nn.Module,
    call: Callable[[torch.Tensor, torch.Tensor], Any],
    shape: tuple[int, ...],
    time_axis: int,
    mask_kept: bool = False,
) -> None:
    """The padding rules of :mod:`avsent.layers.masks` for anything that maps a padded
    sequence (time on ``time_axis`` of ``shape``) to Tokens."""
    out_dim = _out_dim(component, module)
    steps = shape[time_axis]
    lengths = _lengths(steps)
    mask = _mask(lengths, steps)
    gen = torch.Generator().manual_seed(0)
    x, junk, other = _padded(shape, mask, time_axis, gen)
    batch = shape[0]

    module.eval()
    with torch.no_grad():
        out = _tokens(component, call(x, mask), batch, out_dim)
        real = out.mask
        if mask_kept and not torch.equal(real, mask):
            raise _fail(component, "must keep the input mask unchanged")
        has_real = real.any(dim=1)
        for clip, length in enumerate(lengths):
            if bool(has_real[clip]) != (length > 0):
                raise _fail(
                    component,
                    "a token is real when any input step it covers is real "
                    "(avsent.layers.masks.downsample_mask)",
                    f"clip {clip} with {length} real steps has {int(real[clip].sum())} real tokens",
                )
        padded = out.x[~real]
        if padded.numel() and padded.abs().max() > 0:
            raise _fail(
                component,
                "padded tokens must be zero (avsent.layers.masks.zero_padding)",
                f"max |value| at padding {padded.abs().max().item():.3g}",
            )
        with_junk = _tokens(component, call(junk, mask), batch, out_dim)
        rule = f"real tokens must not depend on what padded input steps hold (±{JUNK:g})"
        if not torch.equal(with_junk.mask, real):
            raise _fail(component, rule, "the token mask changed")
        if not _close(with_junk.x[real], out.x[real]):
            raise _fail(component, rule, _worst(with_junk.x[real], out.x[real]))
        changed = _tokens(component, call(other, mask), batch, out_dim)
        if _close(changed.x[0][real[0]], out.x[0][real[0]]):
            raise _fail(component, "the tokens must depend on the real input steps")
        clip, length = 1, lengths[1]
        alone_input = _alone(x, clip, length, time_axis)
        alone = _tokens(component, call(alone_input, mask[1:2, :length]), 1, out_dim)
        rule = (
            f"a clip's tokens alone must equal its tokens in a batch with longer clips "
            f"(clip of {length} of {steps} steps, eval mode)"
        )
        n, own = alone.x.shape[1], alone.mask[0]
        if n > real.shape[1] or not torch.equal(real[clip, :n], own) or real[clip, n:].any():
            raise _fail(
                component,
                rule,
                f"real tokens alone {own.tolist()}, in the batch {real[clip].tolist()}",
            )
        if not _close(alone.x[0][own], out.x[clip, :n][own]):
            raise _fail(component, rule, _worst(alone.x[0][own], out.x[clip, :n][own]))
    _check_gradients(component, module, lambda: call(x, mask).x)


def _check_gradients(
    component: Component, module: nn.Module, forward: Callable[[], torch.Tensor]
) -> None:
    """Training mode, a batch with a one-step and an empty clip: finite, non-zero gradients."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return  # nothing to train (e.g. an identity block)
    module.train()
    module.zero_grad()
    out = forward()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    grads = [p.grad for p in params if p.grad is not None]
    if any(not torch.isfinite(g).all() for g in grads):
        raise _fail(component, "gradients must be finite, also with a 0- or 1-step clip")
    if not any(g.abs().max() > 0 for g in grads):
        raise _fail(component, "no parameter gets a non-zero gradient from the output")
    module.zero_grad()
    module.eval()


def check_audio_encoder(
    component: Component | str, config: Any = None, *, in_features: int = 16, steps: int = 32
) -> None:
    """Features [B, F, T] + mask → Tokens that honour the padding rules."""
    comp = _resolve(component, "audio_encoder")
    module = _build(comp, _config(comp, config), in_features=in_features)
    _check_sequence(comp, module, module, (4, in_features, steps), time_axis=2)


def check_video_encoder(
    component: Component | str,
    config: Any = None,
    *,
    in_channels: int = 3,
    frames: int = 8,
    size: int = 32,
) -> None:
    """Frames [B, C, T, H, W] + mask → Tokens that honour the padding rules (padding =
    padded frames). ``size`` must suit the encoder's spatial downsampling."""
    comp = _resolve(component, "video_encoder")
    module = _build(comp, _config(comp, config), in_channels=in_channels, frames=frames, size=size)
    _check_sequence(comp, module, module, (4, in_channels, frames, size, size), time_axis=2)


def check_intra_modal(
    component: Component | str, config: Any = None, *, dim: int = 16, steps: int = 12
) -> None:
    """Tokens → Tokens of width ``out_dim``, the same mask, padding ignored and zeroed."""
    comp = _resolve(component, "intra_modal")
    module = _build(comp, _config(comp, config), dim=dim)

    def call(x: torch.Tensor, mask: torch.Tensor) -> Any:
        return module(Tokens(x, mask))

    _check_sequence(comp, module, call, (4, steps, dim), time_axis=1, mask_kept=True)


# -- fusion and head -------------------------------------------------------------------------


def check_fusion(
    component: Component | str,
    config: Any = None,
    *,
    audio_dim: int = 16,
    video_dim: int = 12,
    steps: int = 10,
) -> None:
    """(Tokens | None, Tokens | None) → [B, out_dim], for every modality pairing the fusion
    accepts (it refuses the others with a ConfigError when built); padding never matters,
    each present modality's real content does."""
    comp = _resolve(component, "fusion")
    cfg = _config(comp, config)
    refusals = []
    checked = 0
    for dims in ((audio_dim, video_dim), (audio_dim, None), (None, video_dim)):
        try:
            module = _build(comp, cfg, audio_dim=dims[0], video_dim=dims[1])
        except ConfigError as exc:
            refusals.append(f"{dims}: {exc}")
            continue
        _check_fusion_pairing(comp, module, dims, steps)
        checked += 1
    if not checked:
        raise _fail(comp, "refused every modality pairing", "; ".join(refusals))


def _check_fusion_pairing(
    component: Component, module: nn.Module, dims: tuple[int | None, int | None], steps: int
) -> None:
    out_dim = _out_dim(component, module)
    lengths = _lengths(steps)
    mask = _mask(lengths, steps)
    gen = torch.Generator().manual_seed(0)
    inputs = [None if d is None else _padded((4, steps, d), mask, 1, gen) for d in dims]
    which = "+".join(n for n, d in zip(("audio", "video"), dims, strict=True) if d is not None)

    def call(pick: Callable[[int, tuple[torch.Tensor, ...]], torch.Tensor]) -> torch.Tensor:
        tokens = [None if t is None else Tokens(pick(i, t), mask) for i, t in enumerate(inputs)]
        out = module(*tokens)
        if not isinstance(out, torch.Tensor) or out.shape != (4, out_dim):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)
            raise _fail(component, f"{which}: must return [B=4, out_dim={out_dim}]", f"got {got}")
        if not torch.isfinite(out).all():
            raise _fail(component, f"{which}: output must be finite, also for 0- or 1-step clips")
        return out

    module.eval()
    with torch.no_grad():
        out = call(lambda i, t: t[0])
        with_junk = call(lambda i, t: t[1])
        if not _close(with_junk, out):
            raise _fail(
                component,
                f"{which}: the output must not depend on what padded tokens hold (±{JUNK:g})",
                _worst(with_junk, out),
            )
        for modality, t in enumerate(inputs):
            if t is None:
                continue
            changed = call(lambda i, u, m=modality: u[2] if i == m else u[0])
            if _close(changed[0], out[0]):
                name = ("audio", "video")[modality]
                raise _fail(component, f"{which}: the output must depend on the real {name} tokens")
        length = lengths[1]
        alone = module(
            *(None if t is None else Tokens(t[0][1:2, :length], mask[1:2, :length]) for t in inputs)
        )
        if not _close(alone[0], out[1]):
            raise _fail(
                component,
                f"{which}: a clip's output alone must equal its output in a batch with longer "
                f"clips (eval mode)",
                _worst(alone[0], out[1]),
            )
    _check_gradients(component, module, lambda: call(lambda i, t: t[0]))


def check_head(
    component: Component | str, config: Any = None, *, in_dim: int = 16, num_classes: int = 4
) -> None:
    """[B, D] → logits [B, K]; an ``extra_loss(features, targets)`` is a finite scalar."""
    comp = _resolve(component, "head")
    module = _build(comp, _config(comp, config), in_dim=in_dim, num_classes=num_classes)
    if not isinstance(module, nn.Module):
        raise _fail(comp, "the factory must return an nn.Module", f"got {type(module)!r}")
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(6, in_dim, generator=gen)
    targets = torch.arange(6) % num_classes
    module.eval()
    with torch.no_grad():
        logits = module(features)
    if not isinstance(logits, torch.Tensor) or logits.shape != (6, num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
        raise _fail(comp, f"must return logits [B=6, K={num_classes}]", f"got {got}")
    if not torch.isfinite(logits).all():
        raise _fail(comp, "logits must be finite")
    extra_loss = getattr(module, "extra_loss", None)
    if extra_loss is not None:
        loss = extra_loss(features, targets)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not torch.isfinite(loss):
            raise _fail(comp, "extra_loss(features, targets) must be a finite scalar tensor")
    _check_gradients(comp, module, lambda: module(features))


# -- media components ------------------------------------------------------------------------


def check_audio_frontend(
    component: Component | str, config: Any = None, *, seconds: float = 0.5
) -> None:
    """Mono float32 samples at ``sample_rate`` → float32 [rows, T]; the rows agree with
    the front-end's ``spec`` and the factory's ``describe(config)`` where they exist."""
    comp = _resolve(component, "audio_frontend")
    cfg = _config(comp, config)
    frontend = _build(comp, cfg)
    rate = getattr(frontend, "sample_rate", None)
    if not isinstance(rate, int) or rate < 1:
        raise _fail(comp, "needs an int attribute sample_rate ≥ 1", f"got {rate!r}")
    samples = 0.1 * np.random.default_rng(0).standard_normal(int(rate * seconds))
    features = frontend(samples.astype(np.float32))
    if not isinstance(features, np.ndarray) or features.dtype != np.float32 or features.ndim != 2:
        got = (features.dtype, features.shape) if isinstance(features, np.ndarray) else features
        raise _fail(comp, "must return a float32 numpy array [F, T]", f"got {got!r}")
    if features.shape[0] < 1 or features.shape[1] < 1 or not np.isfinite(features).all():
        raise _fail(comp, "features must be non-empty and finite", f"shape {features.shape}")
    spec = getattr(frontend, "spec", None)
    if spec is not None and spec.rows != features.shape[0]:
        raise _fail(comp, f"spec says {spec.rows} rows, the features have {features.shape[0]}")
    if hasattr(comp.obj, "describe"):
        described = comp.obj.describe(cfg)
        if described.rows != features.shape[0] or (spec is not None and described != spec):
            raise _fail(
                comp,
                "describe(config) must say what the built front-end does",
                f"describe: {described}; built: {spec}, {features.shape[0]} rows",
            )


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)


def check_face_detector(component: Component | str, config: Any = None) -> None:
    """RGB uint8 [H, W, 3] → int boxes [N, 4] (x, y, w, h) inside the image."""
    comp = _resolve(component, "face_detector")
    detector = _build(comp, _config(comp, config))
    if not isinstance(detector, FaceDetector):
        raise _fail(comp, "must have detect(image) (avsent.contracts.FaceDetector)")
    for image in (np.zeros((96, 128, 3), np.uint8), _image(0)):
        boxes = detector.detect(image)
        if (
            not isinstance(boxes, np.ndarray)
            or not np.issubdtype(boxes.dtype, np.integer)
            or boxes.ndim != 2
            or boxes.shape[1] != 4
        ):
            got = (boxes.dtype, boxes.shape) if isinstance(boxes, np.ndarray) else boxes
            raise _fail(comp, "detect must return int boxes [N, 4]", f"got {got!r}")
        x, y, w, h = boxes.T
        inside = (x >= 0) & (y >= 0) & (w > 0) & (h > 0) & (x + w <= 128) & (y + h <= 96)
        if not inside.all():
            raise _fail(comp, "boxes must lie inside the 128×96 image", f"got {boxes.tolist()}")


def check_landmark_backend(component: Component | str, config: Any = None) -> None:
    """RGB uint8 image + boxes [N, 4] → float32 [N, 68, 2], also for N = 0."""
    comp = _resolve(component, "landmark_backend")
    backend = _build(comp, _config(comp, config))
    if not isinstance(backend, LandmarkBackend):
        raise _fail(comp, "must have landmarks(image, boxes) (avsent.contracts.LandmarkBackend)")
    image = _image(1)
    for boxes in (np.array([[24, 16, 64, 64], [70, 30, 40, 48]]), np.zeros((0, 4), np.int64)):
        points = backend.landmarks(image, boxes)
        want = (len(boxes), 68, 2)
        if (
            not isinstance(points, np.ndarray)
            or points.dtype != np.float32
            or points.shape != want
            or not np.isfinite(points).all()
        ):
            got = (points.dtype, points.shape) if isinstance(points, np.ndarray) else points
            raise _fail(comp, f"landmarks must be finite float32 {list(want)}", f"got {got!r}")


def check_face_embedding(
    component: Component | str, config: Any = None, *, in_channels: int = 3, size: int = 32
) -> None:
    """uint8 crops [T, S, S, C] → finite float32 [T, dim], ``dim`` as ``describe(config)``
    says, each frame's vector its own (the same crop alone or among others)."""
    comp = _resolve(component, "face_embedding")
    cfg = _config(comp, config)
    embedding = _build(comp, cfg, in_channels=in_channels)
    if not isinstance(embedding, FaceEmbedding):
        raise _fail(comp, "must have dim and __call__(crops) (avsent.contracts.FaceEmbedding)")
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (3, size, size, in_channels), dtype=np.uint8)
    vectors = embedding(crops)
    want = (3, embedding.dim)
    if (
        not isinstance(vectors, np.ndarray)
        or vectors.dtype != np.float32
        or vectors.shape != want
        or not np.isfinite(vectors).all()
    ):
        got = (vectors.dtype, vectors.shape) if isinstance(vectors, np.ndarray) else vectors
        raise _fail(comp, f"must return finite float32 {list(want)}", f"got {got!r}")
    alone = embedding(crops[1:2])
    if not np.allclose(alone[0], vectors[1], atol=1e-4):
        raise _fail(comp, "a crop's vector must not depend on the other frames")
    if hasattr(comp.obj, "describe") and comp.obj.describe(cfg) != embedding.dim:
        raise _fail(
            comp,
            "describe(config) must give the built embedding's dim",
            f"describe: {comp.obj.describe(cfg)}; built: {embedding.dim}",
        )


def check_dataset(component: Component | str, config: Any = None) -> None:
    """``clips()`` → list of Clip, every label one of ``class_names`` (distinct str)."""
    comp = _resolve(component, "dataset")
    source = _build(comp, _config(comp, config))
    if not isinstance(source, DatasetSource):
        raise _fail(comp, "must have clips() and class_names (avsent.contracts.DatasetSource)")
    clips = source.clips()
    names = source.class_names
    if not isinstance(names, tuple) or not all(isinstance(n, str) for n in names):
        raise _fail(comp, "class_names must be a tuple of str", f"got {names!r}")
    if len(set(names)) != len(names):
        raise _fail(comp, "class_names must be distinct", f"got {names!r}")
    if not isinstance(clips, list) or not all(isinstance(c, Clip) for c in clips):
        raise _fail(comp, "clips() must return a list of avsent.contracts.Clip")
    unknown = sorted({c.label for c in clips} - set(names))
    if unknown:
        raise _fail(comp, "every clip's label must be one of class_names", f"not: {unknown}")


_CHECKS: dict[str, Callable[..., None]] = {
    "audio_frontend": check_audio_frontend,
    "audio_encoder": check_audio_encoder,
    "video_encoder": check_video_encoder,
    "intra_modal": check_intra_modal,
    "fusion": check_fusion,
    "head": check_head,
    "dataset": check_dataset,
    "face_detector": check_face_detector,
    "landmark_backend": check_landmark_backend,
    "face_embedding": check_face_embedding,
}
#: the kinds a check exists for (recipes and commands have no runtime contract)
CHECKED_KINDS: tuple[str, ...] = tuple(_CHECKS)


def check_component(
    component: Component | str, config: Any = None, *, kind: str | None = None, **dims: Any
) -> None:
    """Run the check of ``component``'s kind (a name needs ``kind``); ``dims`` go to it."""
    if isinstance(component, str):
        if kind is None:
            raise ValueError(f"checking {component!r} by name needs its kind")
        component = get_registry().get(kind, component)
    if component.kind not in _CHECKS:
        raise ValueError(f"no contract check for kind {component.kind!r}")
    _CHECKS[component.kind](component, config, **dims)
