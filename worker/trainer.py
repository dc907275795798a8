"""The training loop: one recipe, epoch by epoch, reporting to a controller and obeying it.

Read `Trainer.run` top to bottom. An epoch is `training.steps_per_epoch` optimizer steps over the
current stage's content; between optimizer steps the trainer polls the controller and applies its
directive at once (stage, lr override, checkpoint now, pause/stop). At the end of an epoch it
validates, reports, and gets the curriculum's answer. The trainer never decides a stage itself.

Everything a step depends on is in the checkpoint (model, optimizer, lr controller, scaler, task
weights, RNG, data position), and every sample is a pure function of (seed, epoch, content,
rank, index), so a resumed run continues bit-for-bit on CPU.

With several ranks (`group`, worker/distributed.py) the same loop runs on each: the forward pass
goes through DistributedDataParallel, each rank reads its own slice of the data, the controller
broadcasts the leader's directives, and only the leader validates, reports and writes checkpoints.
A checkpoint holds nothing per rank, so a run resumes on any number of ranks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import ConcatDataset, Subset

from worker.checkpoints import CheckpointInfo, CheckpointManager, capture_rng, load_checkpoint, restore_rng
from core import files
from core.protocol import CheckpointRef, CheckpointReport, Directive, EpochReport
from worker.controller import Controller
from worker.distributed import SOLO, Group, parameters_digest
from worker.data import DataSources, build_train_dataset, build_val_dataset, make_loader
from worker.decode import exact_match, greedy_decode, to_lists
from worker.khmer import CHARACTERS, CHARSET_VERSION, CONTENT_LEVELS, NUM_CATEGORIES, NUM_CLASSES, Category
from worker.khmer.categories import category_of
from worker.losses import (
    ConfidenceAwareLoss,
    CurriculumLoss,
    DistillationLoss,
    FocalCTCLoss,
    HierarchicalLoss,
    OnlineHardExampleMining,
    confidence_loss,
    language_model_loss,
    segmentation_loss,
)
from worker.metrics import (
    boundary_f1,
    brier_score,
    character_error_rate,
    edit_distance,
    expected_calibration_error,
    hierarchical_accuracy,
    sequence_accuracy,
)
from worker.models import CRNN, MultiTaskModel
from worker.models.heads import LEVELS
from worker.multitask import TaskWeighting, build_weighting
from worker.precision import GradientAccumulator, PrecisionManager
from core.recipe import Recipe
from worker.schedulers import LRController, build_scheduler

log = logging.getLogger("sala.trainer")

FORMAT = 1
MODIFIER_CATEGORIES = (Category.SUBSCRIPT, Category.DEPENDENT_VOWEL, Category.SIGN)
BOUNDARY_POS_WEIGHT = 3.0  # a boundary falls in roughly one frame of four
STATUS = {"pause": "paused", "stop": "stopped", "complete": "completed"}


# ---------------------------------------------------------------------------------------------
# The model, from the recipe or from a checkpoint


def enabled_tasks(recipe: Recipe) -> list[str]:
    return [t.type for t in recipe.tasks if t.enabled]


def model_config(recipe: Recipe) -> dict[str, Any]:
    """What it takes to rebuild the network; stored in every checkpoint so `predict` needs no recipe."""
    m = recipe.model
    return {
        "image_height": m.image_height, "channels": list(m.conv_channels),
        "hidden_size": m.hidden_size, "lstm_layers": m.lstm_layers, "dropout": m.dropout,
        "tasks": enabled_tasks(recipe), "num_classes": NUM_CLASSES, "charset": CHARSET_VERSION,
    }


def class_categories() -> list[int]:
    """Category of every class index (0 = blank), for the hierarchical head."""
    return [int(Category.BLANK)] + [int(category_of(ch)) for ch in CHARACTERS]


def build_model(config: Mapping[str, Any]) -> MultiTaskModel:
    backbone = CRNN(config["image_height"], config["channels"], config["hidden_size"],
                    config["lstm_layers"], config["dropout"])
    return MultiTaskModel(backbone, config["num_classes"], config["tasks"], num_categories=NUM_CATEGORIES,
                          class_to_category=class_categories(), modifier_categories=set(MODIFIER_CATEGORIES))


Checkpoint = CheckpointInfo | CheckpointReport | CheckpointRef | Mapping[str, Any] | str | Path


def locate(checkpoint: Checkpoint) -> tuple[str, str | None]:
    """``(uri, sha256 or None)`` of whatever names a checkpoint: a record, the server's JSON, a path."""
    if isinstance(checkpoint, (str, Path)):
        return str(checkpoint), None
    if isinstance(checkpoint, Mapping):
        return str(checkpoint["uri"]), checkpoint.get("sha256")
    return checkpoint.uri, checkpoint.sha256


def load_model(checkpoint: Any, device: str | torch.device = "cpu") -> tuple[MultiTaskModel, dict[str, Any]]:
    """The network of a checkpoint, in eval mode, and the checkpoint's state."""
    uri, sha = locate(checkpoint)
    state = load_checkpoint(uri, sha)
    model = build_model(state["model_config"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def build_optimizer(recipe: Recipe, model: torch.nn.Module, weighting: TaskWeighting) -> torch.optim.Optimizer:
    """Model parameters in group 0; learnable task weights in group 1 without weight decay."""
    o = recipe.optimizer
    groups: list[dict[str, Any]] = [{"params": list(model.parameters()), "weight_decay": o.weight_decay}]
    if any(True for _ in weighting.parameters()):
        groups.append({"params": list(weighting.parameters()), "weight_decay": 0.0})
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    # The fused kernel does the whole update in one pass: 2.3 ms a step against 5.3 ms on one CPU core.
    return cls(groups, lr=o.lr, betas=o.betas, fused=True)


def build_lr(recipe: Recipe, optimizer: torch.optim.Optimizer) -> LRController:
    s, t = recipe.scheduler, recipe.training
    return build_scheduler(
        s.name, optimizer, steps_per_epoch=t.steps_per_epoch, max_epochs=t.max_epochs,
        warmup_epochs=s.warmup_epochs, restart_epochs=s.restart_epochs, min_lr_ratio=s.min_lr_ratio,
        monitor=s.plateau_metric, plateau_patience=s.plateau_patience, plateau_factor=s.plateau_factor,
        plateau_min_lr=s.plateau_min_lr, rewarmup_epochs=s.rewarmup_epochs,
    )


def cpu_threads(data_workers: int) -> int:
    """Intra-op threads for training on CPU: the cores left after the DataLoader workers, at least one.

    OpenMP threads spin while they wait for each other, so a model using every core next to busy
    data workers (or anything else on the machine) runs many times slower, not a little: on a
    shared 2-core box a step with 2 threads took 5-15x longer than with 1 (docs/TRAINING.md,
    Throughput). ``OMP_NUM_THREADS``, when set, wins.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - data_workers)


def resolve_device(setting: str | torch.device | None) -> torch.device:
    if setting is None or str(setting) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


# ---------------------------------------------------------------------------------------------
# The objective: every loss the recipe asks for


@dataclass
class Step:
    """One micro-batch's losses and greedy reading (the reading is the confidence head's target)."""

    losses: dict[str, Tensor]
    predictions: list[list[int]]
    references: list[list[int]]


class Objective:
    """Recognition (focal CTC or CTC, curriculum-weighted, confidence-aware, hard-example mined,
    optionally distilled) plus one loss per enabled auxiliary task, keyed by task type."""

    def __init__(self, recipe: Recipe, teacher: MultiTaskModel | None = None) -> None:
        spec = recipe.loss
        gamma = spec.focal_gamma if spec.recognition == "focal_ctc" else 0.0
        self.ctc = FocalCTCLoss(gamma, reduction="none")
        self.curriculum = CurriculumLoss(num_stages=len(CONTENT_LEVELS)) if spec.curriculum_weighting else None
        mining = spec.hard_example_mining
        self.mining = OnlineHardExampleMining(mining.keep_ratio) if mining else None
        self.confidence = ConfidenceAwareLoss(spec.confidence.weight, spec.confidence.uncertainty_threshold)
        h = spec.hierarchical
        self.hierarchical = HierarchicalLoss(h.base, h.modifier, h.combination)
        d = spec.distillation
        self.distillation = DistillationLoss(d.temperature, d.alpha) if d and teacher is not None else None
        self.teacher = teacher

    def __call__(self, model: MultiTaskModel, out: dict[str, Tensor], batch: dict[str, Any], level: int) -> Step:
        targets, lengths, frames = batch["labels_padded"], batch["target_lengths"], out["lengths"]
        predictions, _ = greedy_decode(out["logits"], frames)
        references = to_lists(targets, lengths)
        correct = exact_match(predictions, references).to(frames.device)
        per_line = self.ctc(out["logits"], targets, frames, lengths)
        if self.curriculum is not None:  # difficulty level 1-5 against the stage content's level
            per_line = per_line * self.curriculum.weights(batch["difficulty"] / len(CONTENT_LEVELS), level - 1)
        if "confidence_logit" in out:
            per_line = per_line * self.confidence.sample_weights(out["confidence_logit"])
        recognition = self.mining(per_line) if self.mining else per_line.mean()
        if self.distillation is not None and self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(batch["images"], batch["widths"])["logits"]
            recognition = self.distillation(out["logits"], teacher_logits, recognition, frames)
        losses = {"character_recognition": recognition}
        if "confidence_logit" in out:
            losses["confidence_prediction"] = confidence_loss(out["confidence_logit"], correct)
        if "base_logits" in out:
            head = model.heads["hierarchical_classification"]
            losses["hierarchical_classification"] = self.hierarchical(out, head.level_targets(targets, lengths), frames)
        if "boundary_logits" in out:
            losses["sequence_segmentation"] = self.segmentation(out, batch)
        if "lm_logits" in out:
            losses["language_modeling"] = language_model_loss(out["lm_logits"], targets, lengths)
        return Step(losses, predictions, references)

    @staticmethod
    def segmentation(out: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        """Boundary BCE over the lines whose boundaries are known (synthetic ones)."""
        logits = out["boundary_logits"]
        known = out["lengths"] * batch["has_boundaries"].to(logits.device)
        if not bool(known.any()):
            return logits.sum() * 0.0
        return segmentation_loss(logits, frame_boundaries(batch["boundaries"], logits.shape[0]), known,
                                 BOUNDARY_POS_WEIGHT)


def frame_boundaries(pixels: Tensor, num_frames: int) -> Tensor:
    """Pixel boundary marks ``[B, W]`` to frame targets ``[T, B]`` (a frame holds a boundary if any pixel does)."""
    per_frame = pixels.shape[1] // num_frames
    return F.max_pool1d(pixels[:, None, : num_frames * per_frame], per_frame)[:, 0].T


# ---------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def evaluate(model: MultiTaskModel, batches: list[dict[str, Any]], device: torch.device,
             amp: PrecisionManager | None = None) -> dict[str, float]:
    """CER, sequence accuracy and validation loss, plus each enabled head's metric."""
    was_training = model.training
    model.eval()
    ctc = FocalCTCLoss(0.0, reduction="sum")
    preds: list[list[int]] = []
    refs: list[list[int]] = []
    loss_sum, confidences, levels = 0.0, [], {lv: ([], []) for lv in LEVELS}
    f1_sum, lm_nll, lm_tokens = 0.0, 0.0, 0
    for batch in batches:
        batch = to_device(batch, device)
        with amp.autocast() if amp else contextlib.nullcontext():
            out = model(batch["images"], batch["widths"], batch["labels_padded"])
        targets, lengths, frames = batch["labels_padded"], batch["target_lengths"], out["lengths"]
        predictions, _ = greedy_decode(out["logits"], frames)
        preds += predictions
        refs += to_lists(targets, lengths)
        loss_sum += float(ctc(out["logits"], targets, frames, lengths))
        if "confidence_logit" in out:
            confidences.append(torch.sigmoid(out["confidence_logit"].float()).cpu())
        if "base_logits" in out:
            level_targets = model.heads["hierarchical_classification"].level_targets(targets, lengths)
            for lv in LEVELS:
                levels[lv][0].extend(greedy_decode(out[f"{lv}_logits"], frames)[0])
                levels[lv][1].extend(to_lists(*level_targets[lv]))
        if "boundary_logits" in out:
            truth = frame_boundaries(batch["boundaries"], out["boundary_logits"].shape[0])
            known = frames * batch["has_boundaries"]
            f1_sum += boundary_f1(out["boundary_logits"] > 0, truth, known, tolerance=1)["f1"] * len(predictions)
        if "lm_logits" in out:
            lm_nll += float(language_model_loss(out["lm_logits"], targets, lengths, reduction="sum"))
            lm_tokens += int((lengths + 1).sum())
    model.train(was_training)
    n = max(1, len(refs))
    cer = character_error_rate(preds, refs)
    metrics = {"val_cer": cer, "val_character_accuracy": max(0.0, 1.0 - cer),
               "val_sequence_accuracy": sequence_accuracy(preds, refs), "val_loss": loss_sum / n}
    if confidences:
        conf, hit = torch.cat(confidences), exact_match(preds, refs)
        metrics |= {"val_confidence_ece": expected_calibration_error(conf, hit),
                    "val_confidence_brier": brier_score(conf, hit)}
    if levels["base"][1]:
        found = hierarchical_accuracy({lv: p for lv, (p, _) in levels.items()},
                                      {lv: r for lv, (_, r) in levels.items()})
        metrics |= {f"val_{k}": v for k, v in found.items()}
    if "sequence_segmentation" in model.heads:
        metrics["val_boundary_f1"] = f1_sum / n
    if lm_tokens:
        nll = lm_nll / lm_tokens  # a diverged model's perplexity is reported as inf, not an overflow
        metrics["val_perplexity"] = math.exp(nll) if nll < 700 else float("inf")
    return metrics


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------
# The trainer


@dataclass
class EpochStats:
    """Running sums of one epoch's training; checkpointed so a mid-epoch resume reports the same epoch."""

    micro_batches: int = 0
    loss: float = 0.0
    task_losses: dict[str, float] = field(default_factory=dict)
    lines: int = 0
    exact: int = 0
    errors: int = 0
    characters: int = 0
    nonfinite: int = 0
    skipped_steps: int = 0
    grad_norm: float = 0.0
    grad_steps: int = 0
    seconds: float = 0.0
    samples: int = 0

    def add(self, loss: float, step: Step) -> None:
        self.micro_batches += 1
        self.loss += loss
        for task, value in step.losses.items():
            self.task_losses[task] = self.task_losses.get(task, 0.0) + float(value.detach())
        self.lines += len(step.references)
        self.exact += sum(p == r for p, r in zip(step.predictions, step.references, strict=True))
        self.errors += sum(edit_distance(p, r) for p, r in zip(step.predictions, step.references, strict=True))
        self.characters += sum(len(r) for r in step.references)

    def metrics(self) -> dict[str, float]:
        n = max(1, self.micro_batches)
        out = {"train_loss": self.loss / n if self.micro_batches else float("nan"),
               "train_sequence_accuracy": self.exact / max(1, self.lines),
               "train_cer": self.errors / max(1, self.characters),
               "train_character_accuracy": max(0.0, 1.0 - self.errors / max(1, self.characters)),
               "nonfinite_steps": float(self.nonfinite + self.skipped_steps),
               "grad_norm": self.grad_norm / max(1, self.grad_steps)}
        out |= {f"train_loss_{task}": value / n for task, value in self.task_losses.items()}
        return out


class Trainer:
    """Trains one recipe under a controller. ``run()`` returns completed | paused | stopped.

    Checkpoints go to ``artifacts_url`` (any fsspec URL), else ``out_dir/checkpoints``. ``sources``
    (fonts, corpus, real folders) and ``teacher`` (a model or checkpoint for distillation) may be
    given to share them between runs; otherwise they are built from the recipe. ``group`` is this
    process's place among the run's ranks (its controller must then be a ``RankController``).
    """

    def __init__(
        self, recipe: Recipe, controller: Controller, out_dir: str | Path | None = None, *,
        artifacts_url: str | None = None, device: str | torch.device | None = None,
        sources: DataSources | None = None, teacher: MultiTaskModel | str | Mapping[str, Any] | None = None,
        group: Group = SOLO,
    ) -> None:
        if artifacts_url is None and out_dir is None:
            raise ValueError("give out_dir or artifacts_url: checkpoints need a home")
        self.recipe, self.controller, self.group = recipe, controller, group
        self.stages = recipe.curriculum.stages
        self.device = resolve_device(device or recipe.training.device)
        if self.device.type == "cpu" and torch.get_num_threads() != (threads := cpu_threads(recipe.data.workers)):
            log.info("training on CPU with %s intra-op threads (%s data workers)", threads, recipe.data.workers)
            torch.set_num_threads(threads)
        seed_everything(recipe.seed)
        self.sources = sources or data_sources(recipe)
        self.model = build_model(model_config(recipe)).to(self.device)
        self.net = group.wrap(self.model, self.device)  # what the forward pass goes through
        weights = {t.type: t.weight for t in recipe.tasks if t.enabled}
        self.weighting = build_weighting(recipe.task_weighting, weights).to(self.device)
        self.optimizer = build_optimizer(recipe, self.model, self.weighting)
        self.lr = build_lr(recipe, self.optimizer)
        self.amp = PrecisionManager(recipe.training.precision, self.device)
        self.acc = GradientAccumulator(recipe.training.accumulation_steps, clip_norm=recipe.training.grad_clip_norm)
        self.objective = Objective(recipe, self._teacher(teacher))
        c = recipe.checkpoint
        root = artifacts_url or str(Path(out_dir, "checkpoints"))  # type: ignore[arg-type]
        self.checkpoints = CheckpointManager(root, compress=c.compression == "zstd", keep_last=c.keep_last,
                                             keep_best=c.keep_best, metric=c.best_metric)
        self.val_sets: dict[str, list[dict[str, Any]]] = {}
        self.overall_set: list[dict[str, Any]] | None = None
        # Where training stands: epochs done, micro-batches done in this epoch, optimizer steps done.
        self.epoch, self.micro, self.step, self.stage = 0, 0, 0, 0
        self.lr.set_stage_multiplier(self.stages[0].lr_multiplier)
        self.stats = EpochStats()
        self.last_metrics: dict[str, float] = {}
        self.acknowledged: set[int] = set()
        self.checkpoint_served = False
        self.train_set: Any = None

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, resume: Checkpoint | None = None) -> str:
        """Train until the controller says complete (or max_epochs), pause or stop."""
        if resume is not None:
            self.restore(resume)
        status = self.obey(self.controller.poll(self.step, self.epoch))
        while status is None and self.epoch < self.recipe.training.max_epochs:
            status = self.train_epoch() or self.end_epoch()
        if status is None:  # max_epochs reached without the controller saying so
            self.save_checkpoint()
            status = "completed"
        if self.group.distributed:  # equal on every rank, or the ranks diverged
            log.info("final parameters sha256 %s at step %s", parameters_digest(self.model), self.step)
        return status

    def train_epoch(self) -> str | None:
        """The epoch's optimizer steps from where it stands; a status when a directive ends the run."""
        t = self.recipe.training
        micro_batches = t.steps_per_epoch * t.accumulation_steps
        self.acc.start_epoch(micro_batches)
        self.model.train()
        batches = self.batches()
        window_losses: list[Step] = []
        window_total: list[float] = []
        started = time.perf_counter()
        while self.micro < micro_batches:
            batch = to_device(next(batches), self.device)
            with self.group.no_sync(self.net, skip=not self.acc.is_boundary(self.micro)):
                with self.amp.autocast():
                    out = self.net(batch["images"], batch["widths"], batch["labels_padded"])
                    step = self.objective(self.model, out, batch, CONTENT_LEVELS[self.train_set.content])
                    loss = self.weighting(step.losses)
                # a non-finite loss (on any rank) is skipped and counted, never backpropagated
                if finite := self.amp.check_loss(loss, everywhere=self.group.all_true):
                    self.amp.backward(loss * self.acc.loss_scale(self.micro))
            if finite:
                window_losses.append(step)
                window_total.append(loss.item())
                self.stats.add(window_total[-1], step)
            else:
                self.on_nonfinite(loss.item())
            self.micro += 1
            if not self.acc.is_boundary(self.micro - 1):
                continue
            lr, schedule = self.optimizer.param_groups[0]["lr"], self.lr.schedule.value()
            norm = self.optimizer_step(applicable=bool(window_losses))
            elapsed, started = time.perf_counter() - started, time.perf_counter()
            samples = t.batch_size * self.acc.window_size(self.micro - 1)
            self.log_step(window_total, window_losses, lr=lr, schedule=schedule, norm=norm, seconds=elapsed,
                          samples=samples)
            window_losses, window_total = [], []
            stage = self.stage
            status = self.obey(self.controller.poll(self.step, self.epoch))
            if status is not None:
                return status
            if self.stage != stage and self.micro < micro_batches:  # the rest of the epoch: the new content
                batches = self.batches()
        return None

    def optimizer_step(self, applicable: bool) -> float:
        """Unscale, clip, step (skipped on non-finite gradients), advance the schedule; returns the norm."""
        norm = float("nan")
        if applicable:
            self.group.average_grads(self.weighting.parameters())  # DDP averaged the model's already
            self.amp.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            norm = self.acc.clip(p for g in self.optimizer.param_groups for p in g["params"])
            applied = self.amp.step(self.optimizer, norm)
        else:  # every loss of the window was non-finite: there is nothing to apply
            applied = False
            self.amp.skip()
        self.optimizer.zero_grad(set_to_none=True)
        self.stats.skipped_steps += applicable and not applied  # non-finite gradients; losses are counted apart
        if math.isfinite(norm):
            self.stats.grad_norm += norm
            self.stats.grad_steps += 1
        self.step += 1
        self.lr.step_update()
        return norm

    def end_epoch(self) -> str | None:
        """Validate, report, and obey the answer; checkpoint when due."""
        self.epoch, self.micro = self.epoch + 1, 0
        stats = self.all_ranks(self.stats)
        metrics = stats.metrics() | self.side_metrics()
        if self.epoch % self.recipe.validation.every_epochs == 0 or self.epoch >= self.recipe.training.max_epochs:
            metrics |= self.validate()
        self.lr.step_epoch(self.epoch, metrics.get(self.recipe.scheduler.plateau_metric))
        summary = EpochReport(
            epoch=self.epoch, stage_index=self.stage, step=self.step, metrics=metrics, lr=self.lr.parts(),
            duration_s=stats.seconds, samples_per_s=stats.samples / max(stats.seconds, 1e-9),
        )
        self.last_metrics, self.stats = metrics, EpochStats()
        directive = self.controller.report_epoch(summary)
        due = self.epoch % self.recipe.checkpoint.every_epochs == 0
        return self.obey(directive, checkpoint_due=due)

    def validate(self) -> dict[str, float]:
        """On the leader only: the validation sets are small and fixed, so one rank reads them about
        as fast as all would, and every rank gets the leader's numbers, which the plateau scheduler
        steps on."""
        metrics = None
        if self.group.is_leader:
            metrics = evaluate(self.model, self.val_batches(), self.device, self.amp) | self.overall_metrics()
        return self.group.broadcast(metrics)

    def all_ranks(self, stats: EpochStats) -> EpochStats:
        """The epoch's running sums over every rank's slice; gradient norms and skipped steps are
        the same on every rank (DDP averaged the gradients) and the epoch took the slowest's time."""
        if not self.group.distributed:
            return stats
        every = self.group.gather(asdict(stats))
        total = EpochStats(**every[0])
        for other in every[1:]:
            for key in ("micro_batches", "loss", "lines", "exact", "errors", "characters", "samples"):
                setattr(total, key, getattr(total, key) + other[key])
            for task, value in other["task_losses"].items():
                total.task_losses[task] = total.task_losses.get(task, 0.0) + value
            total.seconds = max(total.seconds, other["seconds"])
        return total

    # -- steering -------------------------------------------------------------------------------
    def obey(self, directive: Directive, *, checkpoint_due: bool = False) -> str | None:
        """Make the run match the directive now; a status when it ends the run here."""
        if directive.stage_index != self.stage:
            self.change_stage(directive.stage_index)
        if directive.lr != self.lr.override:
            self.lr.set_override(directive.lr)
        requested = directive.checkpoint_now and not self.checkpoint_served
        self.checkpoint_served = directive.checkpoint_now  # one checkpoint per request, however often polled
        new = tuple(i for i in directive.event_ids if i not in self.acknowledged)
        self.acknowledged.update(new)
        status = STATUS.get(directive.action)
        if checkpoint_due or requested or status is not None:
            self.save_checkpoint()
        if new:
            log.info("applied events %s at step %s", ",".join(map(str, new)), self.step)
            self.controller.acknowledge(new, self.step)
        return status

    def change_stage(self, index: int) -> None:
        if not 0 <= index < len(self.stages):
            raise ValueError(f"directive names stage {index}; the recipe has {len(self.stages)}")
        log.info("stage %s -> %s at step %s", self.stages[self.stage].name, self.stages[index].name, self.step)
        self.stage = index
        self.lr.change_stage(self.stages[index].lr_multiplier)

    def on_nonfinite(self, loss: float) -> None:
        self.stats.nonfinite += 1
        patience = self.recipe.training.nonfinite_patience
        if self.amp.consecutive_nonfinite % patience == 0:
            self.controller.alert("nonfinite", {
                "consecutive": self.amp.consecutive_nonfinite, "total": self.amp.nonfinite_losses,
                "loss": loss, "step": self.step, "epoch": self.epoch, "lr": self.lr.effective,
            })

    # -- reporting --------------------------------------------------------------------------------
    def log_step(self, totals: list[float], steps: list[Step], *, lr: float, schedule: float, norm: float, seconds: float,
                 samples: int) -> None:
        """Step scalars; ``lr`` is the one the step ran with (the schedule has already moved on)."""
        self.stats.seconds += seconds
        self.stats.samples += samples
        scalars = {
            "loss": sum(totals) / len(totals) if totals else float("nan"),
            "lr": lr,
            "lr_schedule": schedule, "grad_norm": norm, "amp_scale": self.amp.scale,
            "samples_per_s": samples * self.group.world / max(seconds, 1e-9),  # every rank's, at this rank's pace
        }
        for task in (steps[0].losses if steps else {}):
            scalars[f"loss_{task}"] = sum(float(s.losses[task].detach()) for s in steps) / len(steps)
        self.controller.log_step(self.step, scalars)

    def side_metrics(self) -> dict[str, float]:
        weights = {f"task_weight_{k}": v for k, v in self.weighting.effective_weights().items()}
        return weights | {"amp_scale": self.amp.scale}

    # -- data -----------------------------------------------------------------------------------
    def batches(self) -> Iterator[dict[str, Any]]:
        """The current stage's batches for this epoch, from the micro-batch the run stands at."""
        t, stage = self.recipe.training, self.stages[self.stage]
        length = t.steps_per_epoch * t.accumulation_steps * t.batch_size
        earlier = [s.content for s in self.stages[: self.stage] if s.content != stage.content]
        self.train_set = build_train_dataset(
            self.sources, stage.content, epoch=self.epoch, seed=self.recipe.seed, length=length,
            augmentation=stage.augmentation, replay=stage.replay, replay_contents=list(dict.fromkeys(earlier)),
            real_share=0.5 if self.recipe.data.synthetic is not None else 1.0, rank=self.group.rank,
        )
        rest = Subset(self.train_set, range(self.micro * t.batch_size, length))
        # Its own generator, so making a loader never draws from the global RNG the model uses.
        loader = make_loader(rest, t.batch_size, self.recipe.data.workers, generator=torch.Generator(),
                             pin_memory=self.device.type == "cuda")
        return iter(loader)

    def val_batches(self) -> list[dict[str, Any]]:
        """The current stage's fixed validation set, rendered once and kept."""
        content = self.stages[self.stage].content
        if content not in self.val_sets:
            data = build_val_dataset(self.sources, content, seed=self.recipe.seed,
                                     samples=self.recipe.validation.samples_per_stage)
            self.val_sets[content] = list(make_loader(data, self.recipe.training.batch_size,
                                                      self.recipe.data.workers, generator=torch.Generator()))
        return self.val_sets[content]

    def overall_metrics(self) -> dict[str, float]:
        """CER and sequence accuracy on a fixed set drawn from every stage's content, so progress
        on the whole curriculum is visible beside the current stage's own validation."""
        samples = self.recipe.validation.overall_samples
        if samples == 0:
            return {}
        if self.overall_set is None:
            contents = list(dict.fromkeys(s.content for s in self.stages))
            sets = [build_val_dataset(self.sources, c, seed=self.recipe.seed + 1, samples=samples) for c in contents]
            self.overall_set = list(make_loader(ConcatDataset(sets), self.recipe.training.batch_size,
                                                self.recipe.data.workers, generator=torch.Generator()))
        found = evaluate(self.model, self.overall_set, self.device, self.amp)
        return {"val_overall_cer": found["val_cer"], "val_overall_sequence_accuracy": found["val_sequence_accuracy"]}

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "model_config": model_config(self.recipe),
            "recipe": self.recipe.model_dump(mode="json"), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "weighting": self.weighting.state_dict(),
            "lr": self.lr.state_dict(), "precision": self.amp.state_dict(), "rng": capture_rng(),
            "position": {"epoch": self.epoch, "micro": self.micro, "step": self.step, "stage": self.stage},
            "stats": asdict(self.stats), "metrics": dict(self.last_metrics),
            "acknowledged": sorted(self.acknowledged), "checkpoint_served": self.checkpoint_served,
        }

    def save_checkpoint(self) -> CheckpointReport | None:
        """Write, report, and delete what the controller's retention gives back: on the leader
        only (every rank holds the same state; the others return None)."""
        if not self.group.is_leader:
            return None
        finite = {k: v for k, v in self.last_metrics.items() if math.isfinite(v)}  # JSON-safe for the server
        info = self.checkpoints.save(self.state_dict(), epoch=self.epoch, step=self.step, metrics=finite,
                                     name=self.checkpoint_name())
        saved = CheckpointReport(uri=info.uri, epoch=info.epoch, step=info.step, stage_index=self.stage,
                                 sha256=info.sha256, size=info.size, metrics=dict(info.metrics))
        doomed = [uri for uri in self.controller.report_checkpoint(saved) if uri != info.uri]
        files.delete(doomed, root=self.checkpoints.root_url)
        return saved

    def checkpoint_name(self) -> str:
        """Unique per file: a pause right after an epoch's checkpoint must not overwrite it."""
        base = f"epoch{self.epoch:04d}-step{self.step:09d}"
        suffix = ".pt.zst" if self.checkpoints.compress else ".pt"
        name, n = base + suffix, 1
        while self.checkpoints.fs.exists(f"{self.checkpoints.root.rstrip('/')}/{name}"):
            n += 1
            name = f"{base}-{n}{suffix}"
        return name

    def restore(self, checkpoint: Checkpoint) -> None:
        """Load every piece of state; refuses a checkpoint of another network or alphabet."""
        uri, sha = locate(checkpoint)
        state = load_checkpoint(uri, sha)
        if state.get("format") != FORMAT:
            raise ValueError(f"{uri}: checkpoint format {state.get('format')!r}, expected {FORMAT}")
        if state["model_config"] != model_config(self.recipe):
            raise ValueError(f"{uri}: its model {state['model_config']} differs from the recipe's")
        self.model.load_state_dict(state["model"])
        self.weighting.load_state_dict(state["weighting"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr.load_state_dict(state["lr"])
        self.amp.load_state_dict(state["precision"])
        pos = state["position"]
        self.epoch, self.micro, self.step, self.stage = pos["epoch"], pos["micro"], pos["step"], pos["stage"]
        # the epoch's sums so far: counted once, by the leader (they were the leader's when saved)
        self.stats = EpochStats(**state["stats"]) if self.group.is_leader else EpochStats()
        self.last_metrics = dict(state["metrics"])
        self.acknowledged = set(state["acknowledged"])
        self.checkpoint_served = bool(state["checkpoint_served"])
        restore_rng(state["rng"])
        log.info("resumed from %s at epoch %s step %s stage %s", uri, self.epoch, self.step, self.stage)

    def _teacher(self, teacher: Any) -> MultiTaskModel | None:
        spec = self.recipe.loss.distillation
        if spec is None:
            return None
        if teacher is None:
            ref = spec.teacher_checkpoint
            if "/" not in ref and not ref.endswith((".pt", ".zst")):
                raise ValueError("loss.distillation needs the teacher's checkpoint: pass Trainer(teacher=URI) "
                                 f"or set teacher_checkpoint to a path or URL (got {ref!r})")
            teacher = ref
        model = teacher if isinstance(teacher, torch.nn.Module) else load_model(teacher)[0]
        for p in model.parameters():
            p.requires_grad_(False)
        return model.to(self.device).eval()


def data_sources(recipe: Recipe) -> DataSources:
    synthetic = recipe.data.synthetic
    return DataSources.create(
        fonts=synthetic.fonts if synthetic else None, corpus=synthetic.corpus if synthetic else None,
        val_fonts=recipe.validation.fonts, folders=recipe.data.folders, image_height=recipe.model.image_height,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
