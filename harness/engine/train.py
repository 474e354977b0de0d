"""Training: next-token cross-entropy on the labelled positions, reading inputs in segments."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F
from tqdm import tqdm

from harness.engine.checkpoint import Checkpoints, random_states, restore_random_states
from harness.config import TrainConfig
from harness.engine.early_stopping import Plateau, Validation
from harness.layers.model import StreamingLM
from harness.taskkit.task import IGNORE, Task
from harness.engine.training_stream import step_lengths, training_batches


#: steps between two reads of the losses by the host (each read waits for the device)
CHECK_EVERY = 50


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


#: why training ended: all of ``train.steps``; the token budget ``train.max_tokens`` (before ``train.steps``);
#: a plateau of the validation score (harness/engine/early_stopping.py)
STOP_REASONS = ("steps", "budget", "plateau")


@dataclass
class TrainSummary:
    #: steps done (fewer than planned when early stopping ended training)
    steps: int
    final_loss: float  # mean over the last tenth of the steps done
    tokens: int
    wall_time_s: float
    #: per second of training: the early-stopping checks' time is not counted
    tokens_per_s: float
    #: the range of training sequence lengths, to tell evaluation lengths beyond training
    context_len: int
    min_context_len: int
    #: every CHECK_EVERY steps and at the last: {"step": steps done, "loss": mean task loss (no
    #: auxiliary losses) over the steps since the previous entry, "lr": learning rate of the last of them}
    curve: list[dict[str, float]]
    #: steps done when training was resumed from a checkpoint (empty: ran through)
    resumed_at_steps: list[int] = field(default_factory=list)
    #: why training ended (STOP_REASONS)
    stop_reason: str = "steps"
    #: steps the learning-rate schedule spans: train.steps, or those that fit in train.max_tokens
    planned_steps: int = 0
    #: with train.eval_every: what the checks read, the rule, and ``best_step``, the step whose weights were
    #: restored at the end (those evaluated and stored); None without early stopping
    early_stopping: dict[str, Any] | None = None
    #: with train.eval_every: every check, {"step": steps done, "score": validation score, higher is better}
    validation_curve: list[dict[str, float]] | None = None


def learning_rate(step: int, config: TrainConfig, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak at ``total_steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    model: StreamingLM, task: Task, config: TrainConfig, segment_len: int, seed: int,
    device: torch.device, progress: bool = True, autocast: torch.autocast | None = None,
    data_workers: int = 1, checkpoints: Checkpoints | None = None, validation: Validation | None = None,
) -> TrainSummary:
    """Train ``model`` until ``config.steps``, the token budget or (with ``validation``, every
    ``config.eval_every`` steps) a validation plateau, resuming from ``checkpoints`` if one is stored there.
    With ``validation``, the model ends with the weights of its best check."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=config.weight_decay,
                                  fused=device.type in ("cpu", "cuda"))  # one kernel per step: 4.7x faster on a tiny model
    lengths = step_lengths(seed, config)
    total = len(lengths)
    # losses stay on the device, read by the host every CHECK_EVERY steps: no sync in every step
    losses = torch.zeros(total, device=device)
    totals = torch.zeros(total, device=device)
    first, tokens, elapsed, curve, resumed = 0, 0, 0.0, [], []
    plateau = Plateau(config.patience, config.min_delta, config.loss_min_fall) if validation is not None else None
    best_weights, checking = None, 0.0  # checking: seconds spent scoring the early-stopping checks
    stored = checkpoints.load() if checkpoints else None
    if stored is not None:
        model.load_state_dict(stored["model"])
        optimizer.load_state_dict(stored["optimizer"])
        losses.copy_(stored["losses"])
        totals.copy_(stored["totals"])
        restore_random_states(stored["random"])
        first, tokens, elapsed, curve = stored["step"], stored["tokens"], stored["wall_time_s"], stored["curve"]
        resumed = [*stored["resumed_at_steps"], first]
        if plateau is not None:
            plateau = Plateau(**stored["plateau"])
            best_weights = stored["best_model"]
            checking = stored["validation_s"]
    checked = curve[-1]["step"] if curve else 0
    batches = training_batches(task, seed, lengths, config.batch_size, first, data_workers,
                               pin_memory=device.type == "cuda")
    start = time.perf_counter()
    bar = tqdm(batches, desc=f"train {model.mechanism_name}", disable=not progress, leave=False,
               initial=first, total=total)
    done = first
    for step, (inputs, labels) in enumerate(bar, start=first):
        lr = learning_rate(step, config, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast or contextlib.nullcontext():
            loss = task_loss(model, inputs, labels, segment_len, device)
        auxiliary = model.auxiliary_loss()
        total_loss = loss if auxiliary is None else loss + auxiliary
        losses[step], totals[step] = loss.detach(), total_loss.detach()
        optimizer.zero_grad(set_to_none=True)
        total_loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        tokens += inputs.numel()
        done = step + 1
        stopping = False
        if plateau is not None and (done % config.eval_every == 0 or done == total):
            check_start = time.perf_counter()
            score = validation.score(model)
            checking += time.perf_counter() - check_start
            previous = plateau.curve[-1]["step"] if plateau.curve else 0
            loss_since = float(losses[previous:done].double().mean()) if config.loss_min_fall is not None else None
            if plateau.update(done, score, loss_since):
                best_weights = {key: value.detach().clone() for key, value in model.state_dict().items()}
            stopping = plateau.reached
        if done % CHECK_EVERY == 0 or done == total or stopping:
            window_losses, window_totals = torch.stack([losses[checked:done], totals[checked:done]]).cpu()
            _check_finite(window_totals, checked)
            curve.append({"step": done, "loss": float(window_losses.double().mean()), "lr": lr})
            checked = done
            bar.set_postfix(loss=f"{window_losses[-1].item():.3f}", refresh=False)
        if stopping:
            break
        if checkpoints is not None and done < total and checkpoints.due(done):
            checkpoints.save({
                "step": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "losses": losses.cpu(), "totals": totals.cpu(), "random": random_states(), "tokens": tokens,
                "wall_time_s": elapsed + time.perf_counter() - start, "curve": curve, "resumed_at_steps": resumed,
                **({"plateau": plateau.state(), "best_model": best_weights, "validation_s": checking}
                   if plateau is not None else {}),
            })
    bar.close()
    wall = elapsed + time.perf_counter() - start
    tail = losses[:done][-max(1, done // 10) :]
    reason = "plateau" if done < total else "budget" if config.steps is None or total < config.steps else "steps"
    training_s = wall - checking  # the throughput of training, without the early-stopping checks
    summary = TrainSummary(done, float(tail.mean()), tokens, wall, tokens / training_s if training_s > 0 else 0.0,
                           config.context_len, config.min_context_len, curve, resumed, reason, total)
    if plateau is not None:
        model.load_state_dict(best_weights)
        summary.early_stopping = {**validation.description(), "every": config.eval_every, "patience": config.patience,
                                  "min_delta": config.min_delta,
                                  **({"loss_min_fall": config.loss_min_fall} if config.loss_min_fall is not None
                                     else {}),
                                  "best_step": plateau.best_step,
                                  "best_score": plateau.best_score, "weights": "best check (restored)"}
        summary.validation_curve = plateau.curve
    return summary


def task_loss(model: StreamingLM, inputs: torch.Tensor, labels: torch.Tensor, segment_len: int,
              device: torch.device) -> torch.Tensor:
    """The mean cross-entropy of a batch's labelled positions (``inputs`` and ``labels`` on the CPU). The head,
    V x D per position, runs at those positions only (a task labels a few answers: MQAR one in 16 positions
    and more); they are found on the CPU, so that the device is not synchronised."""
    answered = (labels.flatten() != IGNORE).nonzero().squeeze(1)
    targets = labels.flatten()[answered].to(device, non_blocking=True)
    inputs, answered = inputs.to(device, non_blocking=True), answered.to(device, non_blocking=True)
    features, _ = model.stream(inputs, model.init_state(len(inputs)), segment_len, logits=False)
    return F.cross_entropy(model.head(features.flatten(0, 1).index_select(0, answered)).float(), targets)


def _check_finite(totals: torch.Tensor, first_step: int) -> None:
    """Raise Diverged naming the first step (of those starting at ``first_step``) whose loss is not finite."""
    bad = torch.nonzero(~torch.isfinite(totals))
    if len(bad):
        step = int(bad[0])
        raise Diverged(f"training loss became {totals[step].item()} at step {first_step + step}")
