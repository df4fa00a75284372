"""The optimisation loop: epochs, validation, checkpoints, early stopping, exact resume.

Exact resume rests on two things. Everything stateful (weights, optimizer moments, step
counter, best score, history, grad-scaler) is in the last checkpoint, written after every
epoch. Everything random in an epoch (shuffle order, DataLoader worker seeds, dropout,
augmentation) is seeded from ``(seed, epoch, rank)`` when the epoch starts, so epoch k
draws the same numbers whether or not the process was restarted before it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler, Subset

from avsent.data.loader import make_loader
from avsent.data.windows import crop_frames, windowed_logits
from avsent.errors import ConfigError
from avsent.model import AVModel, Batch, audio_feature_spec
from avsent.training import distributed, modulation, precision
from avsent.training.augment import augment_batch, mixup
from avsent.training.checkpoint import (
    CheckpointError,
    checkpoint_path,
    config_header,
    optimizer_state_problem,
    read_checkpoint,
    save_checkpoint,
)
from avsent.training.distributed import DistContext
from avsent.training.metrics import classification_report
from avsent.training.report import write_metrics
from avsent.training.schedule import lr_factor, set_lr

#: called on the main rank after each epoch's checkpoint and metrics files are on disk, with
#: that epoch's record (the keys of :data:`avsent.training.report.METRIC_COLUMNS`); one that
#: holds something open (a log writer) may have ``close()``, called when ``fit`` ends
EpochCallback = Callable[[dict[str, Any]], None]


@attrs.define
class TrainData:
    """What the loop trains on: datasets of samples that ``collate`` turns into a Batch."""

    train: Dataset
    val: Dataset | None
    train_labels: np.ndarray  #: class index per training sample (for class weights)
    class_names: tuple[str, ...]


@attrs.frozen
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int | None  #: 1-based; None when there was no validation set
    best_score: float | None  #: validation macro-F1 of the best epoch
    stopped_early: bool


@attrs.frozen
class Evaluation:
    y_true: np.ndarray
    y_pred: np.ndarray
    loss: float  #: mean (unweighted) cross-entropy


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A well-mixed seed for one epoch of one rank."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse class frequency, normalised so a balanced set gets weight 1 everywhere."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def autocast(config: Any, device: torch.device) -> AbstractContextManager:
    """Mixed precision per ``train.amp``/``train.amp_dtype`` (:func:`precision.amp_dtype`);
    a no-op in fp32."""
    dtype = precision.amp_dtype(config.train, device)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class _LossModule(nn.Module):
    """Model + loss in one forward, so DistributedDataParallel syncs every parameter's grad
    (including a head's ``extra_loss`` parameters)."""

    def __init__(
        self,
        model: AVModel,
        criterion: nn.CrossEntropyLoss,
        aux_loss: float = 0.0,
        track_confidence: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.aux_loss = aux_loss
        self.track_confidence = track_confidence
        #: the last forward's per-branch confidence (gradient modulation reads it)
        self.confidence: dict[str, float] = {}

    def forward(
        self,
        batch: Batch,
        targets: torch.Tensor,
        targets_b: torch.Tensor | None = None,
        lam: float = 1.0,
    ) -> torch.Tensor:
        out = self.model(batch)
        logits = out.logits.float()
        loss = self.criterion(logits, targets)
        if targets_b is not None:
            loss = lam * loss + (1.0 - lam) * self.criterion(logits, targets_b)
        extra = getattr(self.model.head, "extra_loss", None)
        if extra is not None:
            loss = loss + extra(out.fused.float(), targets)
        if self.track_confidence:
            self.confidence = {
                name: modulation.branch_confidence(branch_logits, targets, present)
                for name, (branch_logits, present) in out.branches.items()
            }
        for branch_logits, present in out.branches.values():
            aux = self._branch_loss(branch_logits.float(), targets, present)
            if targets_b is not None:
                aux = lam * aux + (1.0 - lam) * self._branch_loss(
                    branch_logits.float(), targets_b, present
                )
            loss = loss + self.aux_loss * aux
        return loss

    def _branch_loss(
        self, logits: torch.Tensor, targets: torch.Tensor, present: torch.Tensor
    ) -> torch.Tensor:
        """Class-weighted cross-entropy over the clips that have the branch's modality (a
        clip whose modality was dropped says nothing about that branch)."""
        each = nn.functional.cross_entropy(
            logits, targets, weight=self.criterion.weight, reduction="none"
        )
        weights = present.float() * (
            self.criterion.weight[targets] if self.criterion.weight is not None else 1.0
        )
        return (each * present.float()).sum() / weights.sum().clamp_min(1e-12)


@torch.no_grad()
def evaluate(
    model: AVModel,
    dataset: Dataset,
    *,
    config: Any,
    ctx: DistContext | None = None,
    drop: str | None = None,
) -> Evaluation:
    """Predictions for every sample of ``dataset``; sharded over ranks, gathered on all.
    ``drop`` ("audio" or "video") scores every clip as if it lacked that modality."""
    ctx = ctx or DistContext(device=next(model.parameters()).device)
    model.eval()
    indices = distributed.shard(len(dataset), ctx)
    loader = make_loader(
        Subset(dataset, indices),
        batch_size=_rank_batch(config, ctx),
        shuffle=False,
        workers=config.train.loader_workers,
        device=ctx.device,
    )
    window = crop_frames(config)  # long clips: the mean over windows of the training crop
    rows, loss_sum = [], 0.0
    offset = 0
    for batch in loader:
        batch = batch.to(ctx.device)
        if drop is not None:
            batch = batch.without(drop)
        with autocast(config, ctx.device):
            logits = windowed_logits(model, batch, window).float()
        loss_sum += float(nn.functional.cross_entropy(logits, batch.targets, reduction="sum"))
        n = batch.size
        rows.append(
            np.stack(
                [
                    np.asarray(indices[offset : offset + n]),
                    batch.targets.cpu().numpy(),
                    logits.argmax(-1).cpu().numpy(),
                ],
                axis=1,
            )
        )
        offset += n
    local = np.concatenate(rows) if rows else np.zeros((0, 3), dtype=np.int64)
    merged = distributed.gather_rows(local, ctx)
    merged = merged[np.argsort(merged[:, 0], kind="stable")]
    total, count = distributed.all_sum([loss_sum, float(len(local))], ctx)
    return Evaluation(merged[:, 1], merged[:, 2], total / max(count, 1.0))


def _rank_batch(config: Any, ctx: DistContext) -> int:
    """``train.batch_size`` is the global batch: each of N ranks takes 1/N of it."""
    return max(1, config.train.batch_size // ctx.world_size)


def param_groups(model: nn.Module, lr: float) -> list[dict[str, Any]]:
    """One optimizer group per learning-rate scale. A module may set ``lr_scale`` (a float):
    its parameters then train at ``lr × lr_scale`` (the innermost such module decides), e.g.
    a pretrained encoder fine-tuned slower than the layers on top of it."""
    scale_of: dict[int, float] = {}
    for module in model.modules():  # parents before children: the innermost wins
        scale = getattr(module, "lr_scale", None)
        if scale is not None:
            scale_of.update((id(p), float(scale)) for p in module.parameters())
    groups: dict[float, list[nn.Parameter]] = {}
    for p in model.parameters():
        groups.setdefault(scale_of.get(id(p), 1.0), []).append(p)
    return [{"params": ps, "lr": lr * s, "lr_scale": s} for s, ps in groups.items()]


class Trainer:
    """Trains ``model`` on ``data``; writes checkpoints into ``run_dir`` (main rank only)."""

    def __init__(
        self,
        config: Any,
        model: AVModel,
        data: TrainData,
        *,
        run_dir: str | Path,
        ctx: DistContext | None = None,
        console: Console | None = None,
        progress: bool = True,
        callbacks: Sequence[EpochCallback] = (),
    ) -> None:
        self.config = config
        self.train_cfg = config.train
        self.ctx = ctx or DistContext()
        self.model = model.to(self.ctx.device)
        self.data = data
        self.run_dir = Path(run_dir)
        self.console = console or Console()
        self.progress = progress and self.ctx.is_main
        self.callbacks = list(callbacks)
        self.optimizer = self._make_optimizer()
        weights = (
            class_weights(data.train_labels, len(data.class_names))
            if self.train_cfg.class_weighting
            else None
        )
        criterion = nn.CrossEntropyLoss(
            weight=weights, label_smoothing=self.train_cfg.label_smoothing
        )
        if self.train_cfg.compile:
            self.model.compile()
        self.loss_module: nn.Module = _LossModule(
            self.model,
            criterion,
            self.train_cfg.aux_loss,
            track_confidence=self.train_cfg.grad_modulation > 0,
        ).to(self.ctx.device)
        if self.ctx.enabled:
            self.loss_module = DistributedDataParallel(
                self.loss_module,
                device_ids=[self.ctx.device.index] if self.ctx.device.type == "cuda" else None,
                static_graph=True,  # same parts every step; tolerates never-used parameters
            )
        use_scaler = precision.amp_dtype(self.train_cfg, self.ctx.device) is torch.float16
        self.scaler = torch.amp.GradScaler(self.ctx.device.type, enabled=use_scaler)
        self.sampler = DistributedSampler(
            data.train,
            num_replicas=self.ctx.world_size,
            rank=self.ctx.rank,
            shuffle=True,
            seed=self.train_cfg.seed,
        )
        self.batch_size = _rank_batch(config, self.ctx)
        # a one-sample batch cannot train BatchNorm: drop a lone last sample
        n = len(self.sampler)
        self.drop_last = n > 1 and n % self.batch_size == 1
        self.steps_per_epoch = (
            n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        )
        self.augment = self.train_cfg.augment
        self.audio_spec = audio_feature_spec(config) if model.uses_audio else None
        self._noise = modulation.noise_generator(self.train_cfg.seed, 0)  # set each epoch

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cls = torch.optim.AdamW if self.train_cfg.optimizer == "adamw" else torch.optim.Adam
        return cls(
            param_groups(self.model, self.train_cfg.lr), weight_decay=self.train_cfg.weight_decay
        )

    # -- state -------------------------------------------------------------------------
    def _fresh_state(self) -> dict[str, Any]:
        return {
            "epoch": 0,
            "step": 0,
            "history": [],
            "best_epoch": None,
            "best_score": None,
            "bad_epochs": 0,
            "finished": False,
        }

    def _restore(self) -> dict[str, Any] | None:
        path = checkpoint_path(self.run_dir, "last")
        if not path.is_file():
            return None
        ckpt = read_checkpoint(path)
        keys = self._fresh_state().keys()
        missing = [k for k in ("class_names", *keys) if k not in ckpt.state]
        if missing or ckpt.optimizer_state is None:
            lacking = ", ".join(missing or ["optimizer"])
            raise CheckpointError(f"{path}: damaged checkpoint header: no {lacking}")
        if tuple(ckpt.state["class_names"]) != self.data.class_names:
            raise CheckpointError(
                f"{path}: trained on classes {ckpt.state['class_names']}, the data now has "
                f"{list(self.data.class_names)}"
            )
        problem = optimizer_state_problem(self.optimizer, ckpt.optimizer_state)
        if problem:
            raise CheckpointError(f"{path}: damaged optimizer state: {problem}")
        try:
            self.model.load_state_dict(ckpt.model_state)
            self.optimizer.load_state_dict(ckpt.optimizer_state)
            if "scaler" in ckpt.state:
                self.scaler.load_state_dict(ckpt.state["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: does not fit this run's model ({exc})") from None
        return {k: ckpt.state[k] for k in keys}

    def _save(self, state: dict[str, Any], improved: bool) -> None:
        if not self.ctx.is_main:
            return
        header = {**config_header(self.config, self.data.class_names), **state}
        if self.scaler.is_enabled():
            header["scaler"] = self.scaler.state_dict()
        if improved:
            save_checkpoint(checkpoint_path(self.run_dir, "best"), self.model, header)
        save_checkpoint(checkpoint_path(self.run_dir, "last"), self.model, header, self.optimizer)

    # -- loop --------------------------------------------------------------------------
    def fit(self, *, resume: bool = False) -> FitResult:
        """Train to ``train.epochs`` (or early stop); the callbacks are closed however it ends."""
        try:
            return self._fit(resume)
        finally:
            for callback in self.callbacks:
                close = getattr(callback, "close", None)
                if callable(close):
                    close()

    def _fit(self, resume: bool) -> FitResult:
        state = (self._restore() if resume else None) or self._fresh_state()
        if resume and state["epoch"] and self.ctx.is_main:
            self.console.print(f"resuming after epoch {state['epoch']}")
        epochs = self.train_cfg.epochs
        while state["epoch"] < epochs and not state["finished"]:
            epoch = state["epoch"]
            start = time.perf_counter()
            train_loss, data_wait, lr = self._train_epoch(epoch, state)
            record = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": train_loss,
                "data_wait_share": data_wait / max(time.perf_counter() - start, 1e-9),
            }
            improved = True
            distributed.broadcast_buffers(self.model, self.ctx)
            if self.data.val is not None and len(self.data.val):
                ev = evaluate(self.model, self.data.val, config=self.config, ctx=self.ctx)
                report = classification_report(ev.y_true, ev.y_pred, self.data.class_names)
                record.update(
                    val_loss=ev.loss,
                    val_accuracy=report["accuracy"],
                    val_macro_recall=report["macro_recall"],
                    val_macro_f1=report["macro_f1"],
                )
                best = state["best_score"]
                improved = best is None or report["macro_f1"] > best
            record["seconds"] = time.perf_counter() - start  # training + validation
            state["epoch"] = epoch + 1
            state["history"].append(record)
            if improved:
                state.update(best_epoch=epoch + 1, best_score=record.get("val_macro_f1"))
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
            patience = self.train_cfg.patience
            state["finished"] = bool(patience and state["bad_epochs"] >= patience)
            self._save(state, improved)
            if self.ctx.is_main:
                write_metrics(self.run_dir, state["history"], state["best_epoch"])
                self._print_epoch(record, improved, state["finished"])
                for callback in self.callbacks:
                    callback(record)
        distributed.barrier(self.ctx)
        return FitResult(
            state["history"],
            state["best_epoch"],
            state["best_score"],
            stopped_early=state["finished"],
        )

    def _train_epoch(self, epoch: int, state: dict[str, Any]) -> tuple[float, float, float]:
        """One pass over the training data → (mean loss, seconds waiting for data, last LR)."""
        cfg = self.train_cfg
        seed = epoch_seed(cfg.seed, epoch, self.ctx.rank)
        seed_everything(seed)
        generator = torch.Generator().manual_seed(seed)
        self._noise = modulation.noise_generator(cfg.seed, epoch)
        self.sampler.set_epoch(epoch)
        loader = make_loader(
            self.data.train,
            batch_size=self.batch_size,
            shuffle=False,
            workers=cfg.loader_workers,
            device=self.ctx.device,
            sampler=self.sampler,
            seed=seed,
            drop_last=self.drop_last,
        )
        total_steps = cfg.epochs * self.steps_per_epoch
        warmup_steps = cfg.warmup_epochs * self.steps_per_epoch
        self.loss_module.train()
        loss_sum = count = wait = 0.0
        lr = cfg.lr
        with self._bar(epoch) as bar:
            task = bar.add_task("", total=self.steps_per_epoch, loss=float("nan"))
            fetched = time.perf_counter()
            for batch in loader:
                wait += time.perf_counter() - fetched
                lr = set_lr(
                    self.optimizer,
                    cfg.lr,
                    lr_factor(cfg.schedule, state["step"], total_steps, warmup_steps),
                )
                loss = self._step(batch.to(self.ctx.device), generator)
                state["step"] += 1
                loss_sum += loss * batch.size
                count += batch.size
                bar.update(task, advance=1, loss=loss_sum / count)
                fetched = time.perf_counter()
        total, n = distributed.all_sum([loss_sum, count], self.ctx)
        return total / max(n, 1.0), wait, lr

    def _step(self, batch: Batch, generator: torch.Generator) -> float:
        targets, targets_b, lam = batch.targets, None, 1.0
        aug = self.augment
        if aug is not None and aug.active:
            std = self.model.audio_std if self.model.uses_audio else None
            batch = augment_batch(batch, aug, generator, spec=self.audio_spec, feature_std=std)
        if aug is not None and aug.mixup_alpha > 0:
            batch, targets, targets_b, lam = mixup(batch, targets, aug.mixup_alpha, generator)
        with autocast(self.config, self.ctx.device):
            try:
                loss = self.loss_module(batch, targets, targets_b, lam)
            except torch._dynamo.exc.TorchDynamoException as exc:  # only with train.compile
                raise ConfigError(
                    "train.compile",
                    f"torch.compile cannot compile this model ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0]}); set train.compile=false",
                ) from exc
        if not torch.isfinite(loss):
            raise ConfigError(
                "train.lr",
                f"the training loss became {loss.item()}; lower it or turn off train.amp",
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.train_cfg.grad_modulation > 0:
            self._modulate()
        if self.train_cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.train_cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def _modulate(self) -> None:
        """OGM-GE on this step's gradients, from the branch confidences of all ranks."""
        loss_module = getattr(self.loss_module, "module", self.loss_module)  # under DDP
        names = sorted(loss_module.confidence)
        summed = distributed.all_sum([loss_module.confidence[n] for n in names], self.ctx)
        confidence = dict(zip(names, summed, strict=True))
        factors = modulation.coefficients(confidence, self.train_cfg.grad_modulation)
        modulation.modulate_gradients(self.model, factors, self._noise)

    # -- output ------------------------------------------------------------------------
    def _bar(self, epoch: int) -> Progress:
        return Progress(
            TextColumn(f"epoch {epoch + 1}/{self.train_cfg.epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.progress,
        )

    def _print_epoch(self, record: dict[str, Any], improved: bool, stopping: bool) -> None:
        parts = [
            f"epoch {record['epoch']:>3}/{self.train_cfg.epochs}",
            f"loss {record['train_loss']:.4f}",
        ]
        if "val_loss" in record:
            parts += [
                f"val loss {record['val_loss']:.4f}",
                f"acc {100 * record['val_accuracy']:.1f}%",
                f"macro-F1 {100 * record['val_macro_f1']:.1f}%",
            ]
        parts += [f"lr {record['lr']:.2e}", f"{record['seconds']:.1f}s"]
        mark = " [green]★ best[/green]" if improved and "val_loss" in record else ""
        self.console.print("  ".join(parts) + mark, highlight=False, soft_wrap=True)
        if stopping:
            self.console.print(
                f"early stop: no better validation macro-F1 for {self.train_cfg.patience} epochs"
            )
