"""The whole description of a run, as one attrs tree that reads and writes TOML.

A recipe (``mavsa-di``) is a partial run config; :func:`default_run_config` lays it over
the defaults below. ``avsent config show RECIPE`` prints the result, ready to edit.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import attrs
from attrs import validators as v

from avsent.config import Choice, apply_overrides, choice_field, from_dict, merge, to_dict
from avsent.errors import ConfigError

#: The model's slots, in the order of the paper's Fig. 1, and the component kind of each.
#: The slot fields below, ``avsent.model.build_model`` and ``reproduce`` all read this one table.
MODEL_SLOTS: dict[str, str] = {
    "audio": "audio_encoder",
    "video": "video_encoder",
    "audio_intra": "intra_modal",
    "video_intra": "intra_modal",
    "fusion": "fusion",
    "head": "head",
}


def _off_or_at_least_32(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value != 0 and value < 32:
        raise ValueError(f"{attribute.name} must be 0 (off) or at least 32, got {value!r}")


@attrs.define
class FacesConfig:
    """The video front-end: which frames, how faces are found and cropped."""

    num_frames: int = attrs.field(default=8, validator=v.ge(1))
    sample_fps: float | None = None  #: None = ``num_frames`` spread uniformly over the clip
    crop_size: int = attrs.field(default=32, validator=v.ge(8))  #: low-resolution faces
    grayscale: bool = False
    margin: float = attrs.field(default=0.25, validator=v.ge(0.0))
    detect_width: int = attrs.field(default=320, validator=v.ge(64))  #: detect on this width
    #: search a whole frame on a copy this wide first, then on ones twice as wide while
    #: under half ``detect_width``, and at ``detect_width`` only when none finds a face
    #: (0 = at ``detect_width`` only)
    coarse_width: int = attrs.field(default=48, validator=_off_or_at_least_32)
    #: after the first find, search a square this many face sizes wide around the last box,
    #: scaled to ``roi_width`` pixels (0 = search the whole downscaled frame every time)
    track_roi: float = attrs.field(default=1.6, validator=v.ge(0.0))
    roi_width: int = attrs.field(default=48, validator=v.ge(32))
    #: a detection is the same face if its centre moved at most this many face sizes
    max_shift: float = attrs.field(default=0.5, validator=v.gt(0.0))
    lost_after: int = attrs.field(default=2, validator=v.ge(1))  #: misses before re-choosing
    smooth_window: int = attrs.field(default=5, validator=v.ge(1))  #: frames averaged per box
    no_face: Literal["error", "skip", "center"] = "skip"
    detector: Choice = choice_field("face_detector", "haar")
    landmarks: Choice = choice_field("landmark_backend", "none")
    #: a frozen network run once per crop in preprocessing, its vectors cached in place of
    #: the crops (pair with video "timm-frames-cached"); "none" = the crops themselves
    embedding: Choice = choice_field("face_embedding", "none")


@attrs.define
class OuterSplit:
    """The outer fold of nested cross-validation, kept out of sight of the split below.

    With ``fold`` set, the clips are first split by the same method into ``folds`` folds
    and that outer fold's test clips are left out; the split proper (``method``, ``folds``,
    ``fold``) is then made on the clips that remain. Settings chosen on such inner splits
    never saw the outer test speakers (``avsent tune``). None = no nesting.
    """

    fold: int | None = attrs.field(default=None, validator=v.optional(v.ge(0)))
    folds: int = attrs.field(default=5, validator=v.ge(2))


@attrs.define
class SplitConfig:
    """How clips are divided; ``speaker-kfold`` and ``loso`` keep speakers apart.

    ``auto`` (the default; paper silent) is ``speaker-kfold`` when every clip has a speaker
    and there are at least ``folds`` of them, else ``random``: a model tested on speakers
    it trained on scores the speaker as much as the emotion, so test speakers are kept
    unseen whenever the data allows (:func:`avsent.data.splits.resolve_method`).
    """

    method: Literal["auto", "random", "speaker-kfold", "loso", "predefined"] = "auto"
    folds: int = attrs.field(default=5, validator=v.ge(2))
    fold: int = attrs.field(default=0, validator=v.ge(0))
    val_fraction: float = attrs.field(default=0.15, validator=[v.ge(0.0), v.lt(1.0)])
    test_fraction: float = attrs.field(default=0.15, validator=[v.ge(0.0), v.lt(1.0)])
    outer: OuterSplit = attrs.Factory(OuterSplit)


@attrs.define
class DataConfig:
    dataset: Choice = choice_field("dataset", "synthetic")
    split: SplitConfig = attrs.Factory(SplitConfig)
    #: feature cache folder; "" = $AVSENT_CACHE_DIR, else the user's cache folder
    #: (~/.cache/avsent/features; avsent.data.cache.cache_dir decides)
    cache_dir: str = ""
    workers: int = attrs.field(default=2, validator=v.ge(0))
    #: standardise each row of a clip's audio features over that clip's own frames (zero
    #: mean, unit std), applied to the cached features as each clip is read, before the
    #: per-speaker step and augmentation (avsent.data.normalise); needs only the clip, so
    #: single-file prediction can use it. Was mel-chroma's per_utterance_norm
    utterance_norm: bool = False
    #: standardise each clip's audio features with its speaker's statistics (over all of
    #: that speaker's clips, no labels) — the openSMILE peer's per-speaker standardisation;
    #: needs a speaker for every clip, so single-file prediction cannot use it
    speaker_norm: bool = False
    #: preprocessing stops (listing the clips) when more than this share of the clips fail
    max_failed_fraction: float = attrs.field(default=0.5, validator=[v.ge(0.0), v.le(1.0)])
    #: byte-identical clips (same content hash) under different names: "group" keeps each
    #: set in one split part and reports them; "refuse" stops the run listing them
    duplicates: Literal["group", "refuse"] = "group"


@attrs.define
class AugmentConfig:
    """Training-time augmentation (what each option does: :mod:`avsent.training.augment`).

    On by default: the light, generally safe ones (SpecAugment masks, face flips and
    jitter); the rest are off (zero amounts and counts, no SNR)."""

    noise_min_snr_db: float | None = None  #: None = no background noise
    noise_snr_span_db: float = attrs.field(default=20.0, validator=v.ge(0.0))
    noise_std: float = attrs.field(default=0.0, validator=v.ge(0.0))
    gain_db: float = attrs.field(default=0.0, validator=v.ge(0.0))  #: gain drawn in ±gain_db
    time_masks: int = attrs.field(default=2, validator=v.ge(0))
    time_mask_width: int = attrs.field(default=20, validator=v.ge(1))  #: frames, at most
    freq_masks: int = attrs.field(default=2, validator=v.ge(0))
    freq_mask_width: int = attrs.field(default=12, validator=v.ge(1))  #: frequency rows, at most
    time_stretch: float = attrs.field(default=0.0, validator=[v.ge(0.0), v.lt(1.0)])
    pitch_shift_bins: int = attrs.field(default=0, validator=v.ge(0))
    mixup_alpha: float = attrs.field(default=0.0, validator=v.ge(0.0))  #: 0 = no mixup
    #: share of clips trained with one modality (audio or video, at random) removed, so an
    #: audio-visual model learns each branch and can predict when one is missing
    modality_dropout: float = attrs.field(default=0.0, validator=[v.ge(0.0), v.le(1.0)])
    video_flip: bool = True
    video_crop_jitter: int = attrs.field(default=2, validator=v.ge(0))  #: pixels

    @property
    def audio_active(self) -> bool:
        return any(
            (
                self.noise_min_snr_db is not None,
                self.noise_std,
                self.gain_db,
                self.time_masks,
                self.freq_masks,
                self.time_stretch,
                self.pitch_shift_bins,
            )
        )

    @property
    def video_active(self) -> bool:
        return self.video_flip or self.video_crop_jitter > 0

    @property
    def active(self) -> bool:
        """Whether :func:`augment_batch` changes anything (mixup is separate)."""
        return self.audio_active or self.video_active or self.modality_dropout > 0


def _frames(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f'must be "auto" or a number of frames >= 0, got {value!r}', attribute)


def _needs_aux_heads(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value > 0 and instance.aux_loss <= 0:
        raise ValueError(
            "gradient modulation judges each branch by its auxiliary head: set train.aux_loss > 0"
        )


@attrs.define
class TrainConfig:
    epochs: int = attrs.field(default=30, validator=v.ge(1))
    batch_size: int = attrs.field(default=16, validator=v.ge(1))
    lr: float = attrs.field(default=3e-4, validator=v.gt(0.0))
    weight_decay: float = attrs.field(default=1e-4, validator=v.ge(0.0))
    optimizer: Literal["adam", "adamw"] = "adam"  #: adam (the paper's) = L2 decay; adamw decoupled
    schedule: Literal["constant", "cosine", "onecycle"] = "cosine"
    warmup_epochs: int = attrs.field(default=1, validator=v.ge(0))
    patience: int = attrs.field(default=10, validator=v.ge(0))  #: 0 = no early stopping
    class_weighting: bool = True
    label_smoothing: float = attrs.field(default=0.0, validator=[v.ge(0.0), v.lt(1.0)])
    grad_clip: float = attrs.field(default=0.0, validator=v.ge(0.0))  #: max grad norm; 0 = off
    #: weight of the unimodal auxiliary losses: each branch's own linear head on its pooled
    #: tokens, cross-entropy over the clips that have the modality; 0 = none (paper silent)
    aux_loss: float = attrs.field(default=0.0, validator=v.ge(0.0))
    #: OGM-GE's α: slow the leading branch's gradients, judged by the auxiliary heads, so
    #: it needs aux_loss > 0 (avsent.training.modulation); 0 = off (paper silent)
    grad_modulation: float = attrs.field(default=0.0, validator=[v.ge(0.0), _needs_aux_heads])
    #: random training crop of longer clips, in audio frames, and the window long clips are
    #: scored by in evaluation and prediction; "auto" = 10 s at the front-end's frame rate
    #: (avsent.data.windows; the paper is silent); 0 = whole clips (memory grows with length)
    max_audio_frames: int | Literal["auto"] = attrs.field(default="auto", validator=_frames)
    loader_workers: int = attrs.field(default=0, validator=v.ge(0))  #: DataLoader processes
    #: mixed precision (autocast), see amp_dtype; "auto" = on where the device has bf16
    #: units (AMX / AVX512-BF16 CPUs, bf16 GPUs), fp32 elsewhere (training/precision.py)
    amp: bool | Literal["auto"] = False
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"  #: float16 (+ grad scaling) needs CUDA
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    probes: bool = False  #: per-branch linear probes each epoch → probes.csv (training/probes.py)
    #: per-epoch scalars → RUN/tensorboard/ (needs the tensorboard package; tensorboard_log.py)
    tensorboard: bool = False
    augment: AugmentConfig = attrs.Factory(AugmentConfig)


#: what a recipe name may be: it names the run folder (``runs/RECIPE-DATE-TIME``), so a
#: name from a config file must not climb out of ``runs_dir`` (``../..``) or be a path
RECIPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _check_recipe_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not RECIPE_NAME.fullmatch(value):
        raise ConfigError(
            "recipe",
            f"{value!r} is not a recipe name (letters, digits and . _ + -, starting with a "
            "letter or digit); it names the run folder",
        )


@attrs.define
class RunConfig:
    """Everything a run needs. Model slots are top-level: ``--set video.growth_rate=16``."""

    recipe: str = attrs.field(default="mavsa-di", validator=_check_recipe_name)
    audio_frontend: Choice = choice_field("audio_frontend", "mel-chroma")
    faces: FacesConfig = attrs.Factory(FacesConfig)
    audio: Choice = choice_field(MODEL_SLOTS["audio"], "drsn")
    video: Choice = choice_field(MODEL_SLOTS["video"], "i3dd")
    audio_intra: Choice = choice_field(MODEL_SLOTS["audio_intra"], "ima")
    video_intra: Choice = choice_field(MODEL_SLOTS["video_intra"], "ima")
    fusion: Choice = choice_field(MODEL_SLOTS["fusion"], "cma")
    head: Choice = choice_field(MODEL_SLOTS["head"], "linear")
    data: DataConfig = attrs.Factory(DataConfig)
    train: TrainConfig = attrs.Factory(TrainConfig)
    runs_dir: str = "runs"


def default_run_config(
    recipe: str = "mavsa-di", overrides: dict[str, Any] | None = None, base: dict | None = None
) -> RunConfig:
    """The recipe's config (its partial config over the defaults), then ``overrides``.

    ``base`` is a full config dict (e.g. a run's saved file) used instead of the defaults.
    """
    if base is None:
        base = run_config_dict(recipe)
    data = apply_overrides(base, overrides or {}, RunConfig)
    return from_dict(RunConfig, data)


def run_config_dict(recipe: str) -> dict[str, Any]:
    """The defaults with the recipe (and the recipes it derives from) laid over them."""
    from avsent.recipe import get_recipe

    found = get_recipe(recipe)
    base = run_config_dict(found.base) if found.base else to_dict(RunConfig())
    data = merge(base, found.config, RunConfig)
    data["recipe"] = recipe
    return data


def with_overrides(config: RunConfig, changes: dict[str, Any]) -> RunConfig:
    """``config`` with dotted overrides applied (every field re-checked)."""
    return from_dict(RunConfig, apply_overrides(to_dict(config), changes, RunConfig))


#: mel-chroma's former per-clip standardisation, which is ``data.utterance_norm`` now
_MOVED_UTTERANCE, _MOVED_EPS, _FORMER_EPS = "per_utterance_norm", "norm_eps", 1e-5


def upgrade_config_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A config written by an older avsent in today's fields (a new dict).

    Mel-chroma's ``per_utterance_norm`` became ``data.utterance_norm`` — the same numbers,
    now applied as each clip is read — and its ``norm_eps`` went: the stage floors the std
    at 1e-5, so a file that asked for another floor cannot be reproduced and is refused.
    Run folders and checkpoints of earlier releases load through this."""
    frontend = data.get("audio_frontend")
    if not isinstance(frontend, dict) or not {_MOVED_UTTERANCE, _MOVED_EPS} & set(frontend):
        return data
    frontend = dict(frontend)
    utterance = frontend.pop(_MOVED_UTTERANCE, False)
    eps = frontend.pop(_MOVED_EPS, _FORMER_EPS)
    if utterance and eps != _FORMER_EPS:
        raise ConfigError(
            f"audio_frontend.{_MOVED_EPS}",
            f"{eps} cannot be reproduced: data.utterance_norm, which replaced "
            f"{_MOVED_UTTERANCE}, floors the std at {_FORMER_EPS}",
        )
    upgraded = {**data, "audio_frontend": frontend}
    if utterance:
        upgraded["data"] = {**(data.get("data") or {}), "utterance_norm": True}
    return upgraded


def config_digest(config: RunConfig, ignore: tuple[str, ...] = ("data.cache_dir",)) -> str:
    """A short hash of everything in ``config`` but the dotted fields in ``ignore`` (by
    default where features are cached): a folder name that only the same settings reuse."""
    data = to_dict(config)
    for dotted in ignore:
        *tables, field = dotted.split(".")
        table = data
        for name in tables:
            table = table[name]
        table.pop(field, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A saved run config file plus overrides; every field checked (older files upgraded)."""
    from avsent.config import load_toml

    return default_run_config(base=upgrade_config_dict(load_toml(path)), overrides=overrides)
