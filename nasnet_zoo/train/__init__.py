"""Training: THE loop (`fit`), through which the paper's recipes, the search's child networks and fine-tuning
all train, and its pieces.

Public API::

    TrainConfig(...)                    every setting of the loop; frozen; ``.scaled(batch_size)`` for another batch
    fit(model, train_data, val_data=None, config=TrainConfig(), out_dir=None, *, resume=False, overwrite=False,
        device=None, num_workers=0, progress=False, quiet=False, on_epoch=None, param_groups=None) -> FitResult
    FitResult                           history (one dict per epoch), final/best validation accuracy, EMA model
    evaluate(model, data, *, batch_size=256, device=None, precision="auto", num_workers=0, progress=False) -> dict
    learning_rate(config, step, steps_per_epoch) -> float   the schedule: a pure function of the global step
    RMSpropTF, ModelEma                 TensorFlow's RMSProp and ExponentialMovingAverage
    scored_accuracy(record) -> float | None   the accuracy an epoch counts by: the EMA model's when kept
    Recipe, RECIPES, run_recipe(name, data_dir, ...)         the paper's named runs ("cifar10", "imagenet-*")

Modules: `config` (TrainConfig), `optim` (RMSpropTF, ModelEma, learning_rate), `loop` (fit), `batches` (data
to batches on a device), `evaluate` (evaluate, scored_accuracy), `checkpoint` (last.pt and RNG states),
`outputs` (metrics.jsonl, curves.png, the epoch line), `divergence` (the loss and weight checks), `run_folder`
(one owner per output folder, what a new run may find there), `recipes` (the paper's runs), `distributed`
(replicas under torchrun: shards, sums, BatchNorm across replicas), `launch` (torchrun for ``--nproc N``).

For example, a searched cell as a small child network on the bundled digits (about 4 s an epoch on one core)::

    train, val = nasnet_zoo.data.digits()
    model = create_model("nasnet_cifar", genotype=g, num_cells=3, filters=8, in_chans=1, num_classes=10, img_size=8)
    result = fit(model, train, val, TrainConfig(epochs=5, lr=0.05, weight_decay=5e-4, clip_grad_norm=5.0))
    result.final_val_acc, result.history[-1]   # keys: epoch step lr train_loss train_acc val_loss val_acc
                                               # val_acc5 [ema_val_loss ema_val_acc ema_val_acc5] seconds images_per_s

``fit`` takes any ``nn.Module`` classifier. A NASNet built with ``aux_head=True`` returns
`NASNetOutput(logits, aux_logits)` in training mode and gets ``aux_weight`` x the aux loss; a model with
``set_drop_path_progress`` is told ``step / total_steps`` before every step (ScheduledDropPath). Data may be a
``DataLoader`` (used as it is), a ``TensorDataset`` or an ``(x, y)`` pair of tensors (a fast path without a
DataLoader, the data moved to the device once), or any map-style ``Dataset`` (a DataLoader is built for it).
By default every parameter that requires a gradient trains at the scheduled learning rate; ``param_groups``
(timm's convention: dicts with ``params`` and an optional ``lr_scale``) give parts of the model a fraction of
it, as fine-tuning does for a backbone.

Semantics, chosen to match the authors' TensorFlow training:

* Weight decay is TF-slim's ``l2_regularizer``: ``weight_decay * w`` is added to the gradient of every conv
  and FC weight (the tensors with more than one dimension; never BN parameters or biases) *before* global-norm
  clipping, as a loss term would be. The optimizer itself has no decay.
* RMSProp is TF's (`RMSpropTF`): eps inside the square root, mean square starting at 1, lr inside momentum.
* The exponential schedule is TF's staircase ``exponential_decay``: ``lr * decay ** floor(t / decay_steps)``
  with ``decay_steps = int(steps_per_epoch * lr_decay_epochs)``; cosine is TF's single-period ``cosine_decay``.
  Warm-up (linear) comes first; the decay then runs over the remaining steps. Steps, not epochs, drive both.
* EMA is TF's ``ExponentialMovingAverage(decay, num_updates=step)`` over parameters and BN statistics. When it
  is on, the EMA weights are the ones scored for ``best``/``final`` (as TF evaluates the averaged model).
* Label smoothing applies to the main and the aux loss alike (TF-slim's ``softmax_cross_entropy``).

Reproducibility: ``fit`` seeds torch, numpy and random with ``config.seed`` (seed before building the model for a
fully reproducible run); each epoch's shuffle is drawn from a generator seeded by ``(seed, epoch)``. With
``out_dir``, a checkpoint ``last.pt`` is written after every epoch (model, optimizer, EMA, RNG states, epoch,
step, history; the schedule is a function of the step) and ``resume=True`` continues from it: on CPU the result
is bit-identical to an uninterrupted run. ``out_dir`` also gets ``metrics.jsonl`` (one line per epoch),
``curves.png`` and ``best.safetensors`` (the scored weights of the best validation epoch).

Run folders and divergence: ``fit`` holds ``out_dir`` for the run's life (`nasnet_zoo.files.RunLock`; a second
process gets `RunError` naming the holder). A folder with an earlier run's outputs is refused unless
``resume=True`` continues it or ``overwrite=True`` replaces it. The loss is checked every
``config.check_loss_every`` steps and the weights (and EMA) at the end of every epoch, before anything is written:
a diverged run raises `TrainingError` naming the step, and never leaves non-finite weights as best or last.

Data parallel: under ``torchrun`` the same ``fit`` runs on every replica (DistributedDataParallel; NCCL on
CUDA, gloo on CPU). ``batch_size`` is the global batch; each replica takes its slice of every batch of the one
(seed, epoch) order, so the steps, the schedule and ScheduledDropPath follow the global step as in one process.
BatchNorm normalises per replica (``sync_bn=True``: over the global batch); its running statistics are averaged
after every step, so the weights and the EMA are the same on every replica. Evaluation is sharded and reduced
exactly; the main replica (rank 0) alone writes; a checkpoint holds every replica's RNG states and resumes on
any number of replicas that divides the global batch. A Dataset's examples are read with generators seeded by
(seed, epoch, example) (`distributed.SeededExamples`), so augmentation does not depend on the DataLoader
workers, the number of replicas or a resume. `distributed` has the details.
"""

from __future__ import annotations

from .checkpoint import CHECKPOINT
from .config import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig
from .evaluate import evaluate, scored_accuracy
from .loop import FitResult, fit
from .optim import ModelEma, RMSpropTF, learning_rate
from .recipes import RECIPES, Recipe, run_recipe

__all__ = [
    "CHECKPOINT",
    "OPTIMIZERS",
    "PRECISIONS",
    "RECIPES",
    "SCHEDULES",
    "FitResult",
    "ModelEma",
    "RMSpropTF",
    "Recipe",
    "TrainConfig",
    "evaluate",
    "fit",
    "learning_rate",
    "run_recipe",
    "scored_accuracy",
]
