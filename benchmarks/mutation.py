"""Mutation scores of the core modules with mutmut: how many small planted bugs the tests catch.

Each module is mutated on its own, in a scratch copy of the tree under
``benchmarks/output/mutation/<module>/``, against only the test files that cover it, so a
run of one small module takes minutes instead of the whole suite per mutant::

    ./run python benchmarks/mutation.py --list
    OMP_NUM_THREADS=1 ./run python benchmarks/mutation.py --only masks,metrics,schedule
    OMP_NUM_THREADS=1 ./run python benchmarks/mutation.py --only loop --again  # survivors only

Results are merged into ``benchmarks/MUTATION.json`` (one entry per module, kept across
runs) and rendered to ``benchmarks/MUTATION.md``: the score per module and every surviving
mutant's diff, with a note where it is equivalent (no behaviour can tell it apart). The
modules and their tests are listed here and, for a whole-tree ``mutmut run``, in
``setup.cfg``; the script refuses to run when the two lists disagree.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "output" / "mutation"
RESULTS = ROOT / "benchmarks" / "MUTATION.json"
REPORT = ROOT / "benchmarks" / "MUTATION.md"

#: module → the test files that cover it (tests mirror the package; a few reach further)
MODULES: dict[str, tuple[str, ...]] = {
    "src/avsent/plugins/drsn.py": ("tests/plugins/test_drsn.py",),
    "src/avsent/layers/spd_conv.py": ("tests/plugins/test_i3dd.py",),
    "src/avsent/layers/masks.py": ("tests/layers/test_masks.py", "tests/plugins/test_attention.py"),
    "src/avsent/plugins/attention.py": ("tests/plugins/test_attention.py",),
    "src/avsent/contracts.py": ("tests/test_contracts.py",),
    "src/avsent/plugins/audio_features.py": ("tests/plugins/test_audio_features.py",),
    "src/avsent/faces/pipeline.py": (
        "tests/faces/test_pipeline.py",
        "tests/faces/test_crop_and_roi.py",
    ),
    "src/avsent/media/video.py": ("tests/media/test_video.py",),
    "src/avsent/data/cache.py": ("tests/data/test_cache.py",),
    "src/avsent/data/splits.py": ("tests/data/test_splits.py",),
    "src/avsent/data/manifest.py": ("tests/data/test_manifest.py",),
    "src/avsent/training/metrics.py": ("tests/training/test_metrics.py",),
    "src/avsent/training/checkpoint.py": (
        "tests/training/test_checkpoint.py",
        "tests/training/test_loop.py",
        "tests/training/test_best_and_warmup.py",
    ),
    "src/avsent/training/loop.py": (
        "tests/training/test_loop.py",
        "tests/training/test_best_and_warmup.py",
        "tests/training/test_resume_checks.py",
        "tests/training/test_aux_loss.py",
        "tests/training/test_modulation.py",
        "tests/training/test_evaluate_drop.py",
        "tests/training/test_precision.py",
        "tests/training/test_loss_module.py",
        "tests/training/test_loop_epoch.py",
        "tests/training/test_loop_output.py",
    ),
    "src/avsent/training/schedule.py": (
        "tests/training/test_schedule.py",
        "tests/training/test_best_and_warmup.py",
    ),
    "src/avsent/training/augment.py": ("tests/training/test_augment.py",),
    "src/avsent/registry.py": ("tests/test_registry.py", "tests/test_hooks.py"),
    "src/avsent/config.py": ("tests/test_config.py",),
}

#: tests that run a module in spawned processes (two-process DDP): mutmut maps a test to a
#: mutant by the calls it records in the test process, so it never picks these. Each mutant
#: mutmut leaves alive is run against them too, switched on by MUTANT_UNDER_TEST, which the
#: spawned processes inherit.
SPAWNED: dict[str, tuple[str, ...]] = {
    "src/avsent/training/loop.py": (
        "tests/training/test_distributed.py::test_ddp_two_gloo_processes_train_in_lockstep",
    ),
}

_CPU_ONLY = (
    "equivalent on CPU: device None is the CPU, where these machines keep every tensor and "
    "generator (no GPU is lent to tell them apart)"
)

#: surviving mutants that no behaviour can tell apart from the original, and why
EQUIVALENT: dict[str, str] = {
    "avsent.layers.masks.x_masked_softmax__mutmut_21": 'float("-INF") is float("-inf")',
    "avsent.layers.masks.x_zero_padding__mutmut_2": (
        "`.to(None)` keeps the bool mask; float x times bool promotes to x's dtype, same values"
    ),
    "avsent.layers.masks.x_zero_padded_steps__mutmut_4": "as x_zero_padding__mutmut_2 (audio)",
    "avsent.layers.masks.x_zero_padded_steps__mutmut_8": "as x_zero_padding__mutmut_2 (video)",
    **dict.fromkeys(
        (
            "avsent.training.metrics.x__ratio__mutmut_3",
            "avsent.training.metrics.x__ratio__mutmut_5",
        ),
        "every caller passes a float64 `num` (tp, 2·P·R), so zeros_like keeps float64 anyway",
    ),
    "avsent.training.metrics.x_classification_report__mutmut_38": (
        "`astype(None)` is numpy's default dtype, float64: the same cast"
    ),
    **dict.fromkeys(
        (
            "avsent.training.metrics.x_classification_report__mutmut_8",
            "avsent.training.metrics.x_classification_report__mutmut_16",
            "avsent.training.metrics.x_pooled_report__mutmut_35",
            "avsent.training.metrics.x_pooled_report__mutmut_39",
        ),
        "numpy (2.4) reads any negative size in reshape as 'infer': -2 is -1",
    ),
    **dict.fromkeys(
        (
            "avsent.training.metrics.x_pooled_report__mutmut_21",
            "avsent.training.metrics.x_pooled_report__mutmut_23",
        ),
        "a report's confusion is a list of Python ints, which numpy already reads as int64",
    ),
    **dict.fromkeys(
        (
            "avsent.training.metrics.x_summarize_folds__mutmut_12",
            "avsent.training.metrics.x_summarize_folds__mutmut_14",
        ),
        "report figures are Python floats (float64 inferred); mean/std are floats either way",
    ),
    **dict.fromkeys(
        (
            "avsent.data.manifest.x__csv_rows__mutmut_11",
            "avsent.data.manifest.x__csv_rows__mutmut_45",
        ),
        "the line only orders problems, and this problem is returned alone",
    ),
    **dict.fromkeys(
        (
            "avsent.data.manifest.x__csv_rows__mutmut_5",
            "avsent.data.manifest.x__csv_rows__mutmut_8",
        ),
        "the first piece of a split is the same whatever maxsplit",
    ),
    **dict.fromkeys(
        (
            "avsent.data.manifest.x__csv_rows__mutmut_26",
            "avsent.data.manifest.x__csv_rows__mutmut_28",
        ),
        "read_text already turned every line ending into \\n, so StringIO's newline mode sees none",
    ),
    **dict.fromkeys(
        (
            "avsent.data.manifest.x__csv_rows__mutmut_70",
            "avsent.data.manifest.x__csv_rows__mutmut_73",
            "avsent.data.manifest.x__csv_rows__mutmut_74",
        ),
        "rows of another length were set aside just before: the zip's lengths always agree",
    ),
    "avsent.data.manifest.x_read_manifest__mutmut_14": "codec names are case-insensitive",
    **dict.fromkeys(
        (
            "avsent.data.manifest.x_read_manifest__mutmut_85",
            "avsent.data.manifest.x_read_manifest__mutmut_87",
        ),
        "each line has at most one problem, so (line, text) sorts as line alone",
    ),
    **{
        f"avsent.plugins.audio_features.x\u01c1MelChroma\u01c1{name}": why
        for name, why in {
            "__call____mutmut_21": "librosa.power_to_db's default ref is 1.0",
            "__call____mutmut_33": "librosa.estimate_tuning's default bins_per_octave is 12",
            "__call____mutmut_41": "librosa.util.normalize's default norm is np.inf",
            "__call____mutmut_42": "librosa.util.normalize's default axis is 0",
            "__call____mutmut_51": "np.concatenate's default axis is 0",
            "__call____mutmut_45": "the concatenation is a fresh float32 array: a copy or not, "
            "nobody else holds it",
            "__call____mutmut_47": "as __call____mutmut_45",
            "__call____mutmut_53": "as __call____mutmut_45",
            "_chroma_filters__mutmut_9": "librosa.filters.chroma's default n_chroma is 12",
            "power_spectrogram__mutmut_6": "librosa.stft's only warning is the n_fft one, so "
            "ignoring every UserWarning there ignores the same",
            "power_spectrogram__mutmut_11": "warnings.filterwarnings matches the message "
            "case-insensitively (re.I)",
            "power_spectrogram__mutmut_7": "the n_fft warning is a UserWarning: any category "
            "matches the same warning",
        }.items()
    },
    **{
        f"avsent.faces.pipeline.x_{name}": why
        for name, why in {
            "_smooth__mutmut_1": "a 1-frame window (half 0) averages each box with itself",
            "_smooth__mutmut_2": "as _smooth__mutmut_1",
            "_crop__mutmut_52": "a 1-px border where none is needed moves the frame and the "
            "corner together: the same square",
            "_crop__mutmut_55": "a border wider than needed moves the frame and the corner "
            "together: the same square",
            "_crop__mutmut_57": "as _crop__mutmut_55",
            "_smooth__mutmut_29": "the extra column padded after the four is never read",
            "_crop__mutmut_65": "cv2 reads a border type of None as 0, BORDER_CONSTANT",
            "_crop__mutmut_66": "copyMakeBorder's constant value defaults to 0 (black)",
            "_crop__mutmut_73": "as _crop__mutmut_66",
            "_crop__mutmut_82": "side == crop_size resizes to the same size, a plain copy under "
            "either interpolation",
            "_detect_near__mutmut_77": "a scale of exactly 1 resizes to the same size: a copy",
            "_detect_near__mutmut_78": "as _detect_near__mutmut_77 (the scale is at most 1)",
            "_pick__mutmut_7": "every caller passes float boxes (divided by a scale)",
            "_pick__mutmut_9": "as _pick__mutmut_7",
            "_pick__mutmut_11": "numpy (2.4) reads any negative size in reshape as 'infer'",
            "_find_main_face__mutmut_14": "misses only count while a face is tracked and a find "
            "resets them: the start value is never compared",
            "_find_main_face__mutmut_18": "track_roi = 0 makes a 0-px ROI, which _detect_near "
            "skips (< 8 px): the whole-frame search runs as before",
            "_search__mutmut_2": "resizing at scale 1 returns the same pixels (a slower copy)",
            "_search__mutmut_5": "as _search__mutmut_2",
            "_search_copies__mutmut_3": "coarse_width is 0 or at least 32 (validated): "
            "0 < and 1 < agree",
            "extract_faces__mutmut_11": "a list of Python bools is a bool array anyway",
            "extract_faces__mutmut_13": "as extract_faces__mutmut_11",
            **dict.fromkeys(
                (f"extract_faces__mutmut_{n}" for n in (52, 55, 56, 83, 86, 87)),
                "one box per image: the zip's lengths always agree",
            ),
        }.items()
    },
    "avsent.registry.x__reason__mutmut_3": (
        "extract_tb(None) is [], the same as the else branch for an exception never raised"
    ),
    **dict.fromkeys(
        ("avsent.registry.xǁRegistryǁget__mutmut_16", "avsent.registry.xǁRegistryǁget__mutmut_17"),
        "only close[0] is used, and difflib puts the best match first whatever n is",
    ),
    **{
        f"avsent.config.x_{name}": why
        for name, why in {
            "_merge_slot__mutmut_22": "`current` comes from merge's deep copy of base: no caller holds it",
            "_merge_slot__mutmut_66": "as _merge_slot__mutmut_22: `kept` holds values of that copy",
            **dict.fromkeys(
                ("_merge_slot__mutmut_30", "_merge_slot__mutmut_31"),
                "the only 'name' key of top there is 'none', the value already written",
            ),
            **dict.fromkeys(
                ("_merge_slot__mutmut_61", "_merge_slot__mutmut_62"),
                "a changed name comes from top, so top's 'name' equals the one written first",
            ),
            "_merge_slot__mutmut_50": "merge tests the note for truth only; None and '' are both false",
            "_structure__mutmut_16": (
                "a union keeps only its members' problems, never their field paths"
            ),
            "_structure__mutmut_5": "Any has no origin and no rule below: it reaches `return value`",
            **dict.fromkeys(
                (f"_structure__mutmut_{n}" for n in (88, 91, 92)),
                "the lengths were checked equal just above, so zip's strictness never acts",
            ),
            "_structure__mutmut_95": (
                "bare list/tuple annotations have no typing origin, so a list here always has "
                "args; only the deprecated bare typing.List would reach the else"
            ),
            "atomic_write_text__mutmut_7": "'UTF-8' and 'utf-8' name the same codec",
        }.items()
    },
    **{
        f"avsent.plugins.attention.x{name}": why
        for name, why in {
            **dict.fromkeys(
                ("ǁConcatFusionǁforward__mutmut_7", "ǁMulTFusionǁforward__mutmut_72"),
                "the pooled vectors are [B, D]: dim 1 is dim -1",
            ),
            **dict.fromkeys(
                (f"ǁCrossModalAttentionǁ_other_modality__mutmut_{n}" for n in (8, 11, 14, 17)),
                "a float 0/1 row joined to a bool row is promoted to float; `!=` gives the same "
                "bool matrix",
            ),
            **dict.fromkeys(
                (
                    *(
                        f"ǁCrossModalAttentionǁ_other_modality__mutmut_{n}"
                        for n in (4, 9, 12, 15, 18)
                    ),
                    "ǁIntraModalAttentionǁforward__mutmut_8",
                    "ǁMulTFusionǁforward__mutmut_21",
                    "ǁMulTFusionǁforward__mutmut_32",
                ),
                _CPU_ONLY,
            ),
            "ǁIntraModalAttentionǁ__init____mutmut_44": "cross=None is as false as cross=False",
        }.items()
    },
    **{
        f"avsent.training.augment.x_{name}": why
        for name, why in {
            **dict.fromkeys(
                (
                    "_add_noise_floor__mutmut_4",
                    "_add_noise_floor__mutmut_24",
                    "_add_noise_floor__mutmut_59",
                    "_augment_audio__mutmut_39",
                    "_augment_audio__mutmut_76",
                    "_augment_audio__mutmut_83",
                    "_band_mean__mutmut_2",
                    "_band_std__mutmut_15",
                ),
                "a cast to the features' dtype left out: the cache's features are float32, the "
                "draws are float32, bool masks promote, and a float64 result is cast on assignment",
            ),
            **dict.fromkeys(
                (
                    *(f"_augment_audio__mutmut_{n}" for n in (86, 89)),
                    *(f"_augment_video__mutmut_{n}" for n in (16, 18)),
                    *(f"_randint__mutmut_{n}" for n in (5, 10)),
                    *(f"_uniform__mutmut_{n}" for n in (6, 9)),
                    "_shift_rows__mutmut_18",
                    "augment_batch__mutmut_15",
                    *(f"drop_modalities__mutmut_{n}" for n in (5, 8, 12, 15, 42, 46)),
                    *(f"mixup__mutmut_{n}" for n in (10, 15, 31, 34, 36, 45, 50)),
                ),
                _CPU_ONLY,
            ),
            **dict.fromkeys(
                (f"_augment_audio__mutmut_{n}" for n in range(126, 132)),
                "the empty frequency range is read only by the frequency-mask loop, which "
                "does not run when freq_masks is 0",
            ),
            "_augment_audio__mutmut_98": "std [F] viewed as [F, 1] broadcasts over [B, F, T] alike",
            **dict.fromkeys(
                ("drop_modalities__mutmut_26", "drop_modalities__mutmut_36"),
                "an all-true [T] mask broadcasts with keep[:, None] to the same [B, T] mask",
            ),
            **dict.fromkeys(
                ("drop_modalities__mutmut_16", "drop_modalities__mutmut_19"),
                "`<=` and `<` differ only when a float draw equals the threshold exactly",
            ),
            "_time_stretch__mutmut_31": "the two-clip slice is interpolated and [0] keeps clip b",
            "mixup__mutmut_11": "randint(high) draws from [0, high), as randint(0, high)",
            "mixup__mutmut_16": "the numpy seed's range shifts by one: lam is Beta(α, α) alike",
            "_shift_rows__mutmut_23": (
                "the shift is drawn symmetrically in [-k, k]: shifting by -s is the same "
                "augmentation"
            ),
            "_span__mutmut_3": "a width-0 span masks nothing wherever it starts",
            **dict.fromkeys(
                ("_span__mutmut_1", "_span__mutmut_2"),
                "an empty clip gets a zero-width span either way, and masking a 1-frame clip "
                "with its own mean leaves it as it was; only later draws shift",
            ),
        }.items()
    },
    **{
        f"avsent.media.video.x{name}": why
        for name, why in {
            **dict.fromkeys(
                ("ǁ_Samplerǁ__init____mutmut_14", "ǁ_Samplerǁ__init____mutmut_16"),
                "numpy's default dtype (and dtype=None) is float64",
            ),
            "ǁ_Samplerǁ__init____mutmut_30": "seeked is only read as `not sampler.seeked`",
            "ǁ_Samplerǁrun__mutmut_19": "jumped is only read as `not jumped`",
            "ǁ_Samplerǁrun__mutmut_8": "i starts at 0 and only grows, so i > -2 exactly when "
            "i > -1 until seeked_for is set to an index",
        }.items()
    },
    **{
        f"avsent.training.checkpoint.x_{name}": why
        for name, why in {
            **dict.fromkeys(
                ("_own__mutmut_1", "_own__mutmut_3", "load_model__mutmut_60"), _CPU_ONLY
            ),
            **dict.fromkeys(
                (f"_state_keys__mutmut_{n}" for n in (6, 8, 10)),
                "the probe's gradient is set by hand and an optimizer steps any tensor with a "
                "grad: requires_grad matters only to autograd, which the probe never runs",
            ),
            **dict.fromkeys(
                (
                    *(f"_same_kind__mutmut_{n}" for n in (13, 16, 17)),
                    *(f"optimizer_state_problem__mutmut_{n}" for n in (8, 11, 12)),
                ),
                "the lengths are compared just before: zip's strict can never fire",
            ),
            **dict.fromkeys(
                (f"optimizer_state_problem__mutmut_{n}" for n in (38, 41, 42)),
                "the ids and the parameters have the same count: each group's count was "
                "compared just before",
            ),
            **dict.fromkeys(
                (f"optimizer_state_problem__mutmut_{n}" for n in (18, 19)),
                "the mutant also compares the saved params (integer ids in every state torch "
                "writes) to the live ones (tensors): _same_kind counts both as numbers, and "
                "their count was compared just before",
            ),
            "load_model__mutmut_21": 'checkpoint_path\'s default is "last": the same path',
        }.items()
    },
    **{
        f"avsent.training.loop.x{name}": why
        for name, why in {
            "_class_weights__mutmut_2": "numpy reads dtype None as float64",
            "_epoch_seed__mutmut_5": "SeedSequence's words are one stream: the first is the "
            "same however many are asked for",
            **dict.fromkeys(
                ("ǁTrainerǁ__init____mutmut_102", "ǁTrainerǁ__init____mutmut_107"),
                "the noise generator is replaced at the start of every epoch, before any read",
            ),
            "ǁTrainerǁ__init____mutmut_75": "DistributedSampler shuffles by default",
            "ǁTrainerǁ__init____mutmut_87": "n > 2 and n > 1 differ only at n = 2, where "
            "n % batch == 1 never holds",
            "ǁTrainerǁ_fresh_state__mutmut_15": "the first epoch always counts as improved "
            "(no best yet) and resets bad_epochs before it is read",
            **dict.fromkeys(
                ("ǁTrainerǁ_restore__mutmut_5", "ǁTrainerǁ_save__mutmut_33"),
                'checkpoint_path\'s default is "last": the same path',
            ),
            **dict.fromkeys(
                (f"ǁTrainerǁ_save__mutmut_{n}" for n in (17, 20, 21)),
                'checkpoint_path names the best file for anything but "last"',
            ),
            "ǁTrainerǁ_step__mutmut_2": "lam is read only with targets_b, and mixup sets both",
            **dict.fromkeys(
                (f"ǁTrainerǁ_modulate__mutmut_{n}" for n in (21, 24, 25)),
                "all_sum returns one sum per name: zip's strict can never fire",
            ),
            **dict.fromkeys(
                ("ǁTrainerǁ_train_epoch__mutmut_21", "ǁTrainerǁ_train_epoch__mutmut_35"),
                "make_loader shuffles only without a sampler, and the trainer always gives one",
            ),
            **dict.fromkeys(
                ("ǁTrainerǁ_train_epoch__mutmut_45", "ǁTrainerǁ_train_epoch__mutmut_51"),
                "no column of the bar shows the task's description",
            ),
            "ǁTrainerǁ_train_epoch__mutmut_54": 'float("NAN") is float("nan")',
            **dict.fromkeys(
                (
                    "ǁTrainerǁ__init____mutmut_7",
                    "ǁTrainerǁ__init____mutmut_31",
                    "ǁTrainerǁ_train_epoch__mutmut_81",
                ),
                _CPU_ONLY,
            ),
            "ǁTrainerǁ_train_epoch__mutmut_31": "equivalent on CPU: make_loader's default "
            'device is "cpu", and the device only decides pinned memory for CUDA',
            **dict.fromkeys(
                ("_autocast__mutmut_8", "_autocast__mutmut_10"),
                "equivalent on CPU: torch.autocast's CPU default is bfloat16, the only dtype "
                "train.amp allows there (no GPU is lent to tell them apart)",
            ),
            **dict.fromkeys(
                (
                    *(f"ǁTrainerǁ__init____mutmut_{n}" for n in (55, 62, 63, 64)),
                    *(f"ǁTrainerǁ_save__mutmut_{n}" for n in (7, 8, 9)),
                    *(f"ǁTrainerǁ_restore__mutmut_{n}" for n in (41, 42, 44, 45, 46)),
                    "ǁTrainerǁ_step__mutmut_70",
                ),
                "equivalent on CPU: the grad scaler is on only for float16 autocast, which "
                "train.amp_dtype allows only on CUDA (no GPU is lent to tell them apart)",
            ),
            **dict.fromkeys(
                (f"ǁTrainerǁ__init____mutmut_{n}" for n in (44, 47, 49, 52, 53)),
                "equivalent on CPU: DDP's device_ids are for CUDA replicas; a CPU one takes "
                "None either way",
            ),
        }.items()
    },
}


#: surviving mutants mutmut cannot switch on, each planted by hand and failing its tests:
#: code that runs once at import (its runner imports the module before choosing a mutant)
UNREACHABLE: dict[str, str] = {
    **dict.fromkeys(
        (f"avsent.registry.x__factory_kind__mutmut_{n}" for n in range(1, 22)),
        "Register's methods are made at import; planted by hand, "
        "test_each_registration_keeps_every_field_it_was_given (or the attrs-config and "
        "method-name tests) fails",
    ),
    **dict.fromkeys(
        (f"avsent.config.x_choice_field__mutmut_{n}" for n in range(1, 9)),
        "slot fields are made when a config class is defined, at import; planted by hand, "
        "test_a_choice_field_defaults_to_its_component_and_knows_its_kind (and most slot "
        "tests) fail",
    ),
}

#: survivors the adjusted score leaves out
LEFT_OUT = EQUIVALENT.keys() | UNREACHABLE.keys()

#: statuses that count as caught, and as not caught, in the score
SPAWNED_KILL = "killed in a spawned process"
CAUGHT = ("killed", "timeout", SPAWNED_KILL)
MISSED = ("survived", "no tests", "suspicious")


def short(module: str) -> str:
    """``src/avsent/layers/masks.py`` → ``masks`` (the ``--only`` name)."""
    return Path(module).stem


def check_setup_cfg() -> None:
    """setup.cfg's whole-tree config must list the same modules and tests as MODULES."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    listed = parser.get("mutmut", "only_mutate").split()
    tests = parser.get("mutmut", "pytest_add_cli_args_test_selection").split()
    want_tests = sorted({t for files in MODULES.values() for t in files})
    if sorted(listed) != sorted(MODULES) or sorted(tests) != want_tests:
        sys.exit("setup.cfg [mutmut] and benchmarks/mutation.py MODULES disagree: update both")


def prepare(module: str, tests: tuple[str, ...], work: Path) -> None:
    """A scratch tree (src, tests, docs, pyproject) whose setup.cfg mutates only ``module``."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", work / "src", ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    shutil.copytree(ROOT / "docs", work / "docs")  # test_hooks reads docs/plugins.md
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    lines = [
        "[mutmut]",
        "source_paths = src",
        f"only_mutate = {module}",
        "pytest_add_cli_args_test_selection =",
        *(f"    {t}" for t in tests),
        "pytest_add_cli_args =",
        "    -p",
        "    no:cacheprovider",
        "process_isolation = forkserver",
        "also_copy =",
        "    docs",
    ]
    (work / "setup.cfg").write_text("\n".join(lines) + "\n")


def mutmut(work: Path, *args: str, timeout: float | None = None) -> str:
    """Run ``mutmut ARGS`` in ``work``; its output (raises on a failing exit)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        # the scratch tree is not beside ../shared: point the real-media tests at it
        "AVSENT_SHARED_DATA": os.environ.get(
            "AVSENT_SHARED_DATA", str(ROOT.parent / "shared" / "data")
        ),
    }
    done = subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mutmut {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def source_digest(module: str) -> str:
    """The module's sha256: a rerun of the survivors only is valid while it is unchanged."""
    return hashlib.sha256((ROOT / module).read_bytes()).hexdigest()


def run_module(
    module: str, children: int, timeout: float, *, only: list[str] | None = None
) -> dict[str, str]:
    """Mutate one module (``only``: just those mutants); each tested mutant's status, after
    the :data:`SPAWNED` tests had their try at the survivors."""
    work = WORK / short(module)
    prepare(module, MODULES[module], work)
    mutmut(work, "run", "--max-children", str(children), *(only or []), timeout=timeout)
    statuses: dict[str, str] = {}
    for line in mutmut(work, "results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and (only is None or name in only):
            statuses[name] = status
    return spawned_pass(module, statuses)


def spawned_pass(module: str, statuses: dict[str, str]) -> dict[str, str]:
    """``statuses`` with each missed mutant that fails the module's :data:`SPAWNED` tests
    marked as caught; those tests must pass on the unmutated module first."""
    tests = SPAWNED.get(module)
    if not tests:
        return statuses
    mutants = WORK / short(module) / "mutants"

    def passes(mutant: str) -> bool:
        env = {
            **os.environ,
            "MUTANT_UNDER_TEST": mutant,  # "" = the original code
            "PYTHONPATH": str(mutants / "src"),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
        return subprocess.run(command, cwd=mutants, env=env, capture_output=True).returncode == 0

    if not passes(""):
        raise RuntimeError(f"{', '.join(tests)} fail on the unmutated {module}: fix that first")
    return {
        name: SPAWNED_KILL if status in MISSED and not passes(name) else status
        for name, status in statuses.items()
    }


def survivors_of(module: str, statuses: dict[str, str]) -> list[dict[str, str]]:
    """The missed mutants with their diffs (read from the scratch tree of the last run)."""
    work = WORK / short(module)
    return [
        {"name": name, "status": status, "diff": mutmut(work, "show", name).strip()}
        for name, status in sorted(statuses.items())
        if status in MISSED
    ]


def whole_run(module: str, children: int, timeout: float) -> dict:
    """Every mutant of the module: its counts, run time and survivors."""
    start = time.perf_counter()
    statuses = run_module(module, children, timeout)
    return {
        "module": module,
        "tests": list(MODULES[module]),
        "source_sha256": source_digest(module),
        "counts": dict(Counter(statuses.values())),
        "seconds": round(time.perf_counter() - start),
        "date": time.strftime("%Y-%m-%d"),
        "survivors": survivors_of(module, statuses),
    }


def survivors_again(entry: dict, children: int, timeout: float) -> dict:
    """Retest only the last run's survivors against the current tests. The mutants it
    killed stay killed: the module is unchanged (checked) and tests are only ever added."""
    module = entry["module"]
    if entry.get("source_sha256") != source_digest(module):
        sys.exit(f"{module} changed since its last run (or that run kept no digest): run it whole")
    names = [s["name"] for s in entry["survivors"]]
    start = time.perf_counter()
    statuses = run_module(module, children, timeout, only=names)
    if set(statuses) != set(names):
        sys.exit(
            f"mutmut did not retest every survivor of {module}: {sorted(set(names) - set(statuses))}"
        )
    counts = Counter(entry["counts"])
    counts.subtract(Counter(s["status"] for s in entry["survivors"]))
    counts.update(statuses.values())
    return {
        **entry,
        "tests": list(MODULES[module]),
        "counts": {k: v for k, v in counts.items() if v},
        "survivors": survivors_of(module, statuses),
        "again": {
            "date": time.strftime("%Y-%m-%d"),
            "seconds": round(time.perf_counter() - start),
            "retested": len(names),
        },
    }


def score(entry: dict, *, without_equivalent: bool = False) -> float | None:
    """Caught / (caught + missed), in %; equivalent and unreachable survivors left out when
    asked."""
    caught = sum(entry["counts"].get(s, 0) for s in CAUGHT)
    missed = sum(entry["counts"].get(s, 0) for s in MISSED)
    if without_equivalent:
        missed -= sum(1 for s in entry["survivors"] if s["name"] in LEFT_OUT)
    total = caught + missed
    return 100.0 * caught / total if total else None


def render(results: dict[str, dict]) -> str:
    """MUTATION.md: the table of every module (run or not), then each survivor's diff."""
    out = [
        "# Mutation scores of the core modules",
        "",
        "Written by `benchmarks/mutation.py` (mutmut, each module against its own tests; see",
        "CONTRIBUTING.md). Score = killed (or timed out, or failing a test that runs the",
        "module in spawned processes, which mutmut itself never picks) / all mutants that ran;",
        "*adjusted* leaves out the surviving mutants listed as equivalent below, and those",
        "mutmut cannot switch on (code run at import), each planted by hand against its tests.",
        "",
        "| module | tests | mutants | killed | survived | score | adjusted | run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for module in MODULES:
        entry = results.get(module)
        if entry is None:
            out.append(f"| `{module}` | | | | | not run | | |")
            continue
        c = entry["counts"]
        killed = sum(c.get(s, 0) for s in CAUGHT)
        missed = sum(c.get(s, 0) for s in MISSED)
        raw, adjusted = score(entry), score(entry, without_equivalent=True)
        tests = ", ".join(f"`{Path(t).name}`" for t in entry["tests"])
        run = f"{entry['date']}, {entry['seconds']} s"
        if "again" in entry:
            again = entry["again"]
            run += (
                f"; its {again['retested']} survivors again {again['date']}, {again['seconds']} s"
            )
        out.append(
            f"| `{module}` | {tests} | {sum(c.values())} | {killed} | {missed} | "
            f"{raw:.1f} % | {adjusted:.1f} % | {run} |"
        )
    for module, entry in ((m, results[m]) for m in MODULES if m in results):
        if not entry["survivors"]:
            continue
        out += ["", f"## Surviving mutants of `{module}`", ""]
        for s in entry["survivors"]:
            note = EQUIVALENT.get(s["name"]) or (
                f"unreachable by mutmut: {UNREACHABLE[s['name']]}"
                if s["name"] in UNREACHABLE
                else "not equivalent: a test is missing"
            )
            diff = "\n".join(
                line for line in s["diff"].splitlines() if line.startswith(("+", "-", "@"))
            )
            out += [f"### `{s['name']}` ({s['status']})", "", note, "", "```diff", diff, "```", ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated module names (see --list)")
    parser.add_argument("--list", action="store_true", help="print the module names and exit")
    parser.add_argument("--children", type=int, default=1, help="mutants tested at once")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per module")
    parser.add_argument("--render", action="store_true", help="only rewrite MUTATION.md")
    parser.add_argument(
        "--again",
        action="store_true",
        help="retest only the last run's survivors (the module must be unchanged since)",
    )
    args = parser.parse_args()
    if args.list:
        print("\n".join(f"{short(m):16} {m}" for m in MODULES))
        return
    check_setup_cfg()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    chosen = list(MODULES)
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        chosen = [m for m in MODULES if short(m) in names]
        unknown = names - {short(m) for m in chosen}
        if unknown:
            sys.exit(f"unknown module(s): {', '.join(sorted(unknown))} (see --list)")
    for module in [] if args.render else chosen:
        print(f"mutating {module} ...", flush=True)
        if args.again:
            if module not in results:
                sys.exit(f"{module} has no earlier run to retest the survivors of")
            results[module] = survivors_again(results[module], args.children, args.timeout)
        else:
            results[module] = whole_run(module, args.children, args.timeout)
        print(f"  {results[module]['counts']}  score {score(results[module]):.1f} %", flush=True)
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    REPORT.write_text(render(results))
    print(f"wrote {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
