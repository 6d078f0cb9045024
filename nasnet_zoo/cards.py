"""Model cards, generated from the zoo table and from measurements (nothing typed twice).

A card is rendered from `CardFacts`: the zoo row (`zoo.MODELS`: genotype, macro config, the paper's numbers),
the weights (a released `Weights` tag, or `TrainedWeights` of your own), the preprocessing (the timm pretrained
cfg) and measured numbers. Its Hub metadata is huggingface_hub's `ModelCardData` with an `EvalResult` per
reported number (`card_data`); its text is the jinja2 template ``templates/model_card.md``, rendered by
`ModelCard.from_template` (`render_card`). For the zoo's rows the measured numbers come from
``nasnet_zoo/measurements.json``, which the tests that measure them write and check:

* ``size``: each row's parameters and mult-adds (`zoo.measure`; tests/test_zoo.py);
* ``peers``: exactness against Cadene, timm and Keras (tests/peers/; random weights and BN statistics, eval).

Every test run compares its fresh measurement with the recorded one and fails when they disagree, so no card
states a stale number. `generated` writes the cards into ``model_cards/`` (``nasnet-zoo cards``). A card for your
own trained model (``nasnet-zoo publish MODEL --weights ...``) measures the model being published instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from timm.models import get_pretrained_cfg

from .errors import ConfigError, NotFoundError
from .genotype import NASNET_A, Cell, Genotype
from .network import MacroConfig
from .table import format_table
from .train import RECIPES
from .weights import Weights
from .zoo import MODELS, Paper, template

MEASUREMENTS_FILE = Path(__file__).with_name("measurements.json")
TEMPLATE = Path(__file__).with_name("templates") / "model_card.md"
#: The Hub organisation the zoo's own repos are published under (``nasnet-zoo publish`` defaults to it).
HUB_ORG = "nasnet-zoo"
PAPER_URL = "https://arxiv.org/abs/1707.07012"
TAGS = ["image-classification", "timm", "nasnet", "nasnet-zoo", "neural-architecture-search"]
DATASETS = {  # Hub dataset id -> (name, the split the numbers are on)
    "imagenet-1k": ("ImageNet-1k", "validation"),
    "cifar10": ("CIFAR-10", "test"),
}
CONVERSIONS = {  # a released file's layout -> how its download is checked, and how it becomes the zoo's layout
    "keras": dict(
        check="the hash Keras publishes; checked on download",
        how="converted by `nasnet_zoo.weights.convert_keras` (h5py only: every Keras variable used exactly once, "
        "channels-last kernels transposed), then checked key by key and shape by shape against the model",
    ),
    "timm": dict(
        check="a download checked against the sha256 the Hub lists for the file",
        how="renamed from the timm/Cadene layout into the zoo's by `nasnet_zoo.weights.convert_timm` (cells matched "
        "by kind and number; a 1001-class head loses TF's background row), then checked key by key and shape by "
        "shape against the model",
    ),
    "zoo": dict(
        check="a download checked against the sha256 the Hub lists for the file",
        how="in the zoo's layout already (`nasnet-zoo publish`), checked key by key and shape by shape against the "
        "model",
    ),
}
CITATION = """\
@inproceedings{zoph2018learning,
  title     = {Learning Transferable Architectures for Scalable Image Recognition},
  author    = {Zoph, Barret and Vasudevan, Vijay and Shlens, Jonathon and Le, Quoc V.},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {8697--8710},
  year      = {2018}
}"""


def load_measurements(path: Path = MEASUREMENTS_FILE) -> dict[str, Any]:
    if not path.is_file():
        raise NotFoundError(f"{path} is missing: run `make cards` in a source checkout to measure and write it")
    return json.loads(path.read_text())


# --- what a card says -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainedWeights:
    """Weights you trained or fine-tuned, as a card describes them."""

    file: str  # the file published (its name)
    sha256: str
    dataset: str  # Hub dataset id of the training data, e.g. "cifar10"
    epoch: int | None = None  # the epoch the file holds (from its metadata)
    val_acc: float | None = None  # top-1 validation accuracy measured during training (fraction), metrics.jsonl
    base_model: str | None = None  # what it was fine-tuned from, e.g. "nasnet_a_mobile.tf_in1k"


@dataclass(frozen=True)
class CardFacts:
    """Everything one card states."""

    name: str  # the zoo row: its architecture
    title: str  # the card's heading and model-index name
    repo_id: str | None  # where the folder goes on the Hub (None: "ORG/NAME" in the usage)
    genotype: Genotype
    config: MacroConfig
    num_classes: int
    in_chans: int
    input_size: int
    num_features: int
    size: dict[str, int]  # measured: params, params_with_bn_stats, mult_adds
    pretrained_cfg: dict[str, Any]  # preprocessing
    tag: str | None = None  # a released tag
    weights: Weights | None = None  # ... and its entry in the zoo table
    trained: TrainedWeights | None = None  # or your own weights
    peers: list[dict[str, Any]] = field(default_factory=list)  # measured exactness rows
    same_as_row: bool = True  # the zoo row's architecture (cells, layout, input channels): the peer rows apply

    @property
    def row(self) -> Any:
        return MODELS[self.name]

    @property
    def paper(self) -> Paper | None:
        """The paper's numbers, when they are for this very network (its architecture and class count)."""
        same = self.same_as_row and self.num_classes == self.row.num_classes
        return self.row.paper if same else None


def zoo_facts(name: str, tag: str | None = None, repo_id: str | None = None) -> CardFacts:
    """The facts of a zoo row (and one of its released tags), measurements from `MEASUREMENTS_FILE`."""
    m = MODELS[name]
    if tag is not None and tag not in m.pretrained:
        raise ConfigError(f"{name} has no pretrained tag {tag!r}; its tags: {', '.join(m.pretrained) or 'none'}")
    measured = load_measurements()
    size = measured["size"].get(name)
    if size is None or size["input_size"] != m.input_size:
        raise ConfigError(f"{MEASUREMENTS_FILE} has no size measured for {name}: run `make cards`")
    num_features = template(name).num_features
    cfg = get_pretrained_cfg(f"{name}.{tag}" if tag else name).to_dict()
    return CardFacts(
        name=name,
        title=f"{name}.{tag}" if tag else name,
        repo_id=repo_id or (f"{HUB_ORG}/{name}.{tag}" if tag else None),
        genotype=m.genotype,
        config=m.config,
        num_classes=m.num_classes,
        in_chans=3,
        input_size=m.input_size,
        num_features=num_features,
        size={k: size[k] for k in ("params", "params_with_bn_stats", "mult_adds")},
        pretrained_cfg=cfg,
        tag=tag,
        weights=m.pretrained[tag] if tag else None,
        peers=measured["peers"].get(name, []),
    )


def zoo_cards() -> list[tuple[str, str | None]]:
    """(model, tag) of every card in ``model_cards/``: each released tag, and each paper row without weights."""
    return [(name, tag) for name, m in MODELS.items() if not m.generic for tag in (list(m.pretrained) or [None])]


# --- the card's metadata -----------------------------------------------------------------------------------------
class _SourcedResult(EvalResult):
    """An `EvalResult` whose model-index entry is its own per source: huggingface_hub groups results by task and
    dataset alone, which would file the paper's numbers under the publisher's source."""

    @property
    def unique_identifier(self) -> tuple:
        return (*super().unique_identifier, self.source_name, self.source_url)


def card_data(f: CardFacts) -> ModelCardData:
    """The card's Hub metadata: library, license, tags, dataset, base model, and the model-index."""
    base = f.trained.base_model if f.trained else None
    return ModelCardData(
        library_name="timm",
        license=f.pretrained_cfg.get("license", "apache-2.0"),
        pipeline_tag="image-classification",
        tags=TAGS,
        datasets=[f.trained.dataset if f.trained else f.row.dataset],
        base_model=(base if "/" in base else f"{HUB_ORG}/{base}") if base else None,  # a zoo tag: its repo
        model_name=f.title,
        eval_results=_eval_results(f) or None,
    )


def _eval_results(f: CardFacts) -> list[EvalResult]:
    """One result per reported or measured number: the training run's, the publisher's, the paper's."""
    out = []
    if f.trained and f.trained.val_acc is not None:
        where = "nasnet-zoo training run: validation accuracy in metrics.jsonl"
        where += f" at epoch {f.trained.epoch}" if f.trained.epoch is not None else ""
        url = f"https://huggingface.co/{f.repo_id}" if f.repo_id else None
        out += _results(f.trained.dataset, "validation", where, url, [("accuracy", "Top-1 accuracy", _pct(f))])
    w, p = f.weights, f.paper
    if w is not None and w.top1 is not None:
        metrics = [("accuracy", "Top-1 accuracy", w.top1), ("top_5_accuracy", "Top-5 accuracy", w.top5)]
        out += _results(f.row.dataset, None, f"{w.reported_by}: reported for these weights", w.source_url, metrics)
    if p is not None:
        metrics = [
            ("accuracy", "Top-1 accuracy", p.top1),
            ("top_5_accuracy", "Top-5 accuracy", p.top5),
            ("error", "Test error (%)", p.error),
            ("error", "Test error with cutout (%)", p.error_cutout),
        ]
        source = f"Zoph et al. 2018, NASNet-A {p.row}" + (" (the released TF checkpoint)" if w else "")
        out += _results(f.row.dataset, None, source, PAPER_URL, metrics)
    return out


def _results(dataset: str, split: str | None, source: str, url: str | None, metrics: list) -> list[EvalResult]:
    name, default_split = DATASETS.get(dataset, (dataset, "validation"))
    task = dict(task_type="image-classification", task_name="Image Classification")
    data = dict(dataset_type=dataset, dataset_name=name, dataset_split=split or default_split)
    where = dict(source_name=source, source_url=url) if url else {}  # the Hub takes a source only with its url
    return [
        _SourcedResult(**task, **data, metric_type=kind, metric_name=label, metric_value=value, **where)
        for kind, label, value in metrics
        if value is not None
    ]


def _pct(f: CardFacts) -> float:
    return round(100 * f.trained.val_acc, 2)


# --- the card's text ----------------------------------------------------------------------------------------------
def render_card(f: CardFacts) -> str:
    """The model card: the Hub YAML front matter (`card_data`), then the template's sections."""
    data = card_data(f)
    card = ModelCard.from_template(data, template_path=str(TEMPLATE), **_context(f))
    card.data = data  # its results, one per source: parsed back from the YAML they would merge per dataset
    return card.content.rstrip("\n") + "\n"


def _context(f: CardFacts) -> dict[str, Any]:
    """What the template fills in besides the facts themselves: numbers formatted, tables, commands."""
    c, p = f.pretrained_cfg, f.paper
    size = c["input_size"][-1]
    recipe = RECIPES["cifar10"]
    cifar = [n for n, m in MODELS.items() if m.dataset == "cifar10" and not m.generic]
    cifar_model = f.name if f.name in cifar else cifar[0]
    return dict(
        f=f, w=f.weights, p=p, paper_url=PAPER_URL, citation=CITATION, nasnet_a=f.genotype == NASNET_A,
        layout=_layout(f), dataset=f.trained.dataset if f.trained else f.row.dataset,
        params=fmt_millions(f.size["params"]), mult_adds=fmt_mult_adds(f.size["mult_adds"]),
        normal_cell=_cell_table(f.genotype.normal), reduction_cell=_cell_table(f.genotype.reduction),
        conversion=CONVERSIONS[f.weights.format] if f.weights else None,
        val_acc=_pct(f) if f.trained and f.trained.val_acc is not None else None,
        exactness=_exactness(f), size=_size(f), cfg=c, resize=int(size / c["crop_pct"]), crop=size,
        mean=tuple(c["mean"]), std=tuple(c["std"]), tf_inputs=tuple(c["mean"]) == (0.5, 0.5, 0.5),
        hub=f"hf-hub:{f.repo_id or 'ORG/NAME'}",
        fit='result = fit(model, train_data, val_data, TrainConfig(epochs=10, lr=0.01), out_dir="runs/x")',
        cifar_rows=", ".join(f"`{n}`" for n in cifar), recipe=_recipe(recipe), cifar_model=cifar_model,
        recipe_flag="" if cifar_model == recipe.model else f" --model {cifar_model}",
    )  # fmt: skip


def _layout(f: CardFacts) -> str:
    c = f.config
    n = c.num_cells // (c.num_reduction_layers + 1)
    stem = "ImageNet" if c.stem == "imagenet" else "CIFAR"
    return (
        f"{stem} layout, {n} normal cell{'s' if n != 1 else ''} per stack ({c.num_cells} in all, "
        f"{c.num_reduction_layers} reduction cells between the stacks), {c.filters} filters, stem multiplier "
        f"{c.stem_multiplier:g}, {f.num_features} features before the classifier"
    )


def _cell_table(cell: Cell) -> str:
    """A cell as a table of blocks (two inputs, two ops, one combine), then its output."""
    rows = [
        (b, f"h{blk.inputs[0]}", f"`{blk.ops[0]}`", f"h{blk.inputs[1]}", f"`{blk.ops[1]}`", blk.combine, f"h{b + 2}")
        for b, blk in enumerate(cell.blocks)
    ]
    headers = ["block", "input 1", "op 1", "input 2", "op 2", "combine", "makes"]
    return format_table(rows, headers) + f"\n\nOutput: concat({', '.join(f'h{s}' for s in cell.concat)})."


def _exactness(f: CardFacts) -> str | None:
    if not f.same_as_row or not f.peers:
        return None
    rows = [
        (r["peer"], r["input_size"], fmt_g(r["logits_diff"]), fmt_g(r["logits_max"]), fmt_g(r["features_diff"]),
         fmt_g(r["features_max"]), ("agree: " if r["agrees"] else "differ: ") + r["note"])
        for r in f.peers
    ]  # fmt: skip
    headers = ["peer", "input", "max abs Δ logits", "max abs logit", "max abs Δ features", "max abs feature", ""]
    return format_table(rows, headers)


def _size(f: CardFacts) -> str:
    p = f.paper
    rows = [
        ("parameters with BN statistics (as the paper counts)", fmt_millions(f.size["params_with_bn_stats"]),
         f"{f.size['params_with_bn_stats']:,}", f"{p.params_m:g}M" if p else "-"),
        ("trainable parameters", fmt_millions(f.size["params"]), f"{f.size['params']:,}", "-"),
        (f"mult-adds at {f.input_size} x {f.input_size}", fmt_mult_adds(f.size["mult_adds"]),
         f"{f.size['mult_adds']:,}", fmt_mult_adds(p.mult_adds_m * 1e6) if p and p.mult_adds_m else "-"),
    ]  # fmt: skip
    return format_table(rows, ["", "measured", "exactly", "paper"])


def _recipe(r: Any) -> str:
    c = r.config
    return (
        f"{c.epochs} epochs of {c.optimizer.upper()} (momentum {c.momentum:g}) at lr {c.lr:g} for batch "
        f"{c.batch_size}, {c.schedule} schedule, weight decay {c.weight_decay:g}, aux loss weight {c.aux_weight:g}, "
        f"gradient norm clipped at {c.clip_grad_norm:g}, drop-path keep {r.drop_path_keep:g}, cutout {r.cutout}"
    )


# --- numbers ------------------------------------------------------------------------------------------------------
def fmt_millions(n: float) -> str:
    return f"{n / 1e6:.2f}M"


def fmt_mult_adds(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def fmt_g(x: float | None) -> str:
    """Three significant digits, ``-`` for nothing (measured differences)."""
    return "-" if x is None else f"{x:.3g}"
