"""Model cards and README tables, generated from the zoo table and from measurements (nothing typed twice).

A card is rendered from `CardFacts`: the zoo row (`zoo.MODELS`: genotype, macro config, the paper's numbers),
the weights (a released `zoo.Weights` tag, or `TrainedWeights` of your own), the preprocessing (the timm
pretrained cfg) and measured numbers. For the zoo's rows those come from ``nasnet_zoo/measurements.json``,
which the tests that measure them write and check:

* ``size``: each row's parameters and mult-adds (`zoo.measure`; tests/test_zoo.py);
* ``peers``: exactness against Cadene, timm and Keras (tests/peers/; random weights and BN statistics, eval).

Every test run compares its fresh measurement with the recorded one and fails when they disagree, so no card
states a stale number; ``make cards`` re-measures (``NASNET_ZOO_MEASUREMENTS=update``) and then runs
``nasnet-zoo cards``, which writes ``model_cards/`` (one card per model and tag) and the generated blocks of
README.md. tests/test_cards.py checks that the committed files equal this module's output and parse as Hub
model cards. A card for your own trained model (``nasnet-zoo publish MODEL --weights ...``) measures the model
being published instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from timm.models import get_pretrained_cfg

from .genotype import NASNET_A, Cell, Genotype
from .network import MacroConfig
from .table import format_table
from .train import RECIPES
from .zoo import MODELS, Paper, Weights, create_model

MEASUREMENTS_FILE = Path(__file__).with_name("measurements.json")
#: The Hub organisation the zoo's own repos are published under (``nasnet-zoo publish`` defaults to it).
HUB_ORG = "nasnet-zoo"
PAPER_URL = "https://arxiv.org/abs/1707.07012"
TAGS = ["image-classification", "timm", "nasnet", "nasnet-zoo", "neural-architecture-search"]
DATASETS = {  # Hub dataset id -> (name, the split the numbers are on)
    "imagenet-1k": ("ImageNet-1k", "validation"),
    "cifar10": ("CIFAR-10", "test"),
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
        raise FileNotFoundError(f"{path} is missing: run `make cards` in a source checkout to measure and write it")
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
        raise ValueError(f"{name} has no pretrained tag {tag!r}; its tags: {', '.join(m.pretrained) or 'none'}")
    measured = load_measurements()
    size = measured["size"].get(name)
    if size is None or size["input_size"] != m.input_size:
        raise ValueError(f"{MEASUREMENTS_FILE} has no size measured for {name}: run `make cards`")
    with torch.device("meta"):
        num_features = create_model(name).num_features
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


# --- rendering --------------------------------------------------------------------------------------------------
def render_card(f: CardFacts) -> str:
    """The model card: Hub YAML front matter, then the sections."""
    sections = [
        f"# {f.title}",
        _description(f),
        _details(f),
        _cells(f.genotype),
        _weights(f),
        _exactness(f),
        _size(f),
        _preprocessing(f),
        _usage(f),
        _limitations(f),
        "## Citation\n\n```bibtex\n" + CITATION + "\n```",
    ]
    return f"---\n{yaml.safe_dump(_front_matter(f), sort_keys=False, width=1000)}---\n\n" + "\n\n".join(sections) + "\n"


def _front_matter(f: CardFacts) -> dict[str, Any]:
    meta: dict[str, Any] = dict(
        library_name="timm",
        license=f.pretrained_cfg.get("license", "apache-2.0"),
        pipeline_tag="image-classification",
        tags=TAGS,
        datasets=[f.trained.dataset if f.trained else f.row.dataset],
    )
    if f.trained and f.trained.base_model:  # a Hub repo id; a zoo tag stands for its repo under HUB_ORG
        base = f.trained.base_model
        meta["base_model"] = base if "/" in base else f"{HUB_ORG}/{base}"
    results = [_result(*r) for r in _reported(f)]
    if results:
        meta["model-index"] = [dict(name=f.title, results=results)]
    return meta


def _reported(f: CardFacts) -> list[tuple[str, str | None, str, str | None, list[tuple[str, str, float]]]]:
    """(dataset, split, source, source url, [(metric type, name, value)]) of each reported or measured result."""
    out = []
    if f.trained and f.trained.val_acc is not None:
        where = "nasnet-zoo training run: validation accuracy in metrics.jsonl"
        where += f" at epoch {f.trained.epoch}" if f.trained.epoch is not None else ""
        url = f"https://huggingface.co/{f.repo_id}" if f.repo_id else None
        out.append((f.trained.dataset, "validation", where, url, [("accuracy", "Top-1 accuracy", _pct(f))]))
    w, p = f.weights, f.paper
    if w is not None and w.top1 is not None:
        metrics = [("accuracy", "Top-1 accuracy", w.top1), ("top_5_accuracy", "Top-5 accuracy", w.top5)]
        url = w.timm_cfg()["origin_url"]
        out.append((f.row.dataset, None, f"{w.reported_by}: reported for these weights", url, metrics))
    if p is not None:
        metrics = [
            ("accuracy", "Top-1 accuracy", p.top1),
            ("top_5_accuracy", "Top-5 accuracy", p.top5),
            ("error", "Test error (%)", p.error),
            ("error", "Test error with cutout (%)", p.error_cutout),
        ]
        source = f"Zoph et al. 2018, NASNet-A {p.row}" + (" (the released TF checkpoint)" if w else "")
        out.append((f.row.dataset, None, source, PAPER_URL, metrics))
    return [(d, split, src, url, [m for m in ms if m[2] is not None]) for d, split, src, url, ms in out]


def _pct(f: CardFacts) -> float:
    return round(100 * f.trained.val_acc, 2)


def _result(dataset: str, split: str | None, source: str, url: str | None, metrics: list) -> dict[str, Any]:
    name, default_split = DATASETS.get(dataset, (dataset, "validation"))
    result = dict(
        task=dict(type="image-classification", name="Image Classification"),
        dataset=dict(name=name, type=dataset, split=split or default_split),
        metrics=[dict(type=t, name=n, value=v) for t, n, v in metrics],
    )
    if url:  # the Hub's card format takes a source only with its url
        result["source"] = dict(name=source, url=url)
    return result


def _layout(f: CardFacts) -> str:
    c = f.config
    n = c.num_cells // (c.num_reduction_layers + 1)
    stem = "ImageNet" if c.stem == "imagenet" else "CIFAR"
    return (
        f"{stem} layout, {n} normal cell{'s' if n != 1 else ''} per stack ({c.num_cells} in all, "
        f"{c.num_reduction_layers} reduction cells between the stacks), {c.filters} filters, stem multiplier "
        f"{c.stem_multiplier:g}, {f.num_features} features before the classifier"
    )


def _cell_name(f: CardFacts) -> str:
    return "NASNet-A" if f.genotype == NASNET_A else "a searched cell"


def _description(f: CardFacts) -> str:
    m = f.row
    if f.trained:
        what = "A NASNet-A network" if f.genotype == NASNET_A else "A NASNet with a searched cell"
        what += f" ({_layout(f)})"
        base = f", fine-tuned from `{f.trained.base_model}`" if f.trained.base_model else ""
        return (
            f"{what}, trained with nasnet-zoo{base}: {f.num_classes} classes of `{f.trained.dataset}`. "
            "The network is built by nasnet-zoo's `nasnet_zoo.create_model` from its genotype "
            "(`genotype.json`), with the TF-exact ops of the zoo's NASNet-A."
        )
    text = (
        f"{m.title}: the NASNet-A network of *Learning Transferable Architectures for Scalable Image "
        f"Recognition* (Zoph, Vasudevan, Shlens and Le, CVPR 2018; [arXiv:1707.07012]({PAPER_URL})), rebuilt by "
        "nasnet-zoo from its cell genotype, numerically exact to the authors' TensorFlow code (TF-slim) at every "
        "input size, and registered with timm."
    )
    if f.weights:
        return text + f" Weights: {f.weights.origin}."
    return text + " No weights were released for it: this card describes the architecture (see Limitations)."


def _details(f: CardFacts) -> str:
    p = f.paper
    rows = [
        ("architecture", f"`{f.name}`: {_cell_name(f)}, {_layout(f)}"),
        ("paper row", f"NASNet-A {p.row}" + (f" ({p.note})" if p.note else "") if p else "-"),
        ("input", f"{f.input_size} x {f.input_size}, {f.in_chans} channels"),
        ("classes", f"{f.num_classes} (`{f.trained.dataset if f.trained else f.row.dataset}`)"),
        ("parameters", f"{_millions(f.size['params'])} trainable ({f.size['params']:,})"),
        ("mult-adds", f"{_mult_adds(f.size['mult_adds'])} at {f.input_size} x {f.input_size}"),
        ("paper", f"[arXiv:1707.07012]({PAPER_URL})"),
        ("reference code", "TF-slim `research/slim/nets/nasnet` (tensorflow/models)"),
    ]
    return "## Model details\n\n" + "\n".join(f"* **{k}**: {v}" for k, v in rows)


def _cells(g: Genotype) -> str:
    """Each cell as a table of blocks: two inputs, two ops, one combine."""

    def state(i: int) -> str:
        return f"h{i}"

    def table(cell: Cell) -> str:
        rows = [
            (b, state(blk.inputs[0]), f"`{blk.ops[0]}`", state(blk.inputs[1]), f"`{blk.ops[1]}`", blk.combine,
             state(b + 2))
            for b, blk in enumerate(cell.blocks)
        ]  # fmt: skip
        headers = ["block", "input 1", "op 1", "input 2", "op 2", "combine", "makes"]
        return format_table(rows, headers) + f"\n\nOutput: concat({', '.join(state(s) for s in cell.concat)})."

    return (
        "## The cells\n\n"
        "`h0` is the cell's input (ReLU, 1x1 conv, BN), `h1` the output two cells back brought to the same shape, "
        "and block *b* makes `h(b+2)`. In a reduction cell the ops reading `h0` or `h1` have stride 2. The same "
        "genotype is in `genotype.json` (`nasnet_zoo.Genotype.load`).\n\n"
        f"Normal cell:\n\n{table(g.normal)}\n\nReduction cell:\n\n{table(g.reduction)}"
    )


def _weights(f: CardFacts) -> str:
    head = "## Weights: where they came from\n\n"
    if f.trained:
        t = f.trained
        epoch = f", epoch {t.epoch}" if t.epoch is not None else ""
        acc = ""
        if t.val_acc is not None:
            acc = f" Top-1 validation accuracy during that run: {_pct(f)} % (its `metrics.jsonl`)."
        return head + (
            f"Trained with nasnet-zoo's training loop (`nasnet_zoo.train.fit`): `{t.file}`{epoch}, sha256 "
            f"`{t.sha256}`, recorded in the metadata of `model.safetensors` with the aux head dropped.{acc}"
        )
    if f.weights is None:
        return head + "None were released for this network; see Limitations for training them."
    w = f.weights
    if w.format == "keras":
        source = f"`{w.url}` (md5 `{w.md5}`, the hash Keras publishes; checked on download)"
        how = (
            "converted by `nasnet_zoo.weights.convert_keras` (h5py only: every Keras variable used exactly once, "
            "channels-last kernels transposed), then checked key by key and shape by shape against the model"
        )
    else:
        repo, _, revision = w.hf_hub_id.partition("@")
        source = f"the Hub repo `{repo}` at commit `{revision}`"
        how = (
            "renamed from the timm/Cadene layout into the zoo's by `nasnet_zoo.weights.convert_timm` (cells matched "
            "by kind and number; a 1001-class head loses TF's background row), then checked key by key and shape by "
            "shape against the model"
        )
    return head + (
        f"{w.origin}. Source: {source}; {how}. `model.safetensors` in this repo is the result, its metadata "
        f"naming the source and its hash; `nasnet-zoo publish {f.name}.{f.tag} --out DIR` re-derives it from the "
        f"source. Reported accuracy: {w.top1} / {w.top5} top-1 / top-5 ({w.reported_by})."
    )


def _exactness(f: CardFacts) -> str:
    head = "## Exactness against other implementations (measured)\n\n"
    if not f.same_as_row or not f.peers:
        other = "network" if f.genotype == NASNET_A else "cell"
        return head + (
            f"No other implementation builds this {other}. It is compiled by the same builders and ops as the zoo's "
            "NASNet-A mobile and large, which agree with Cadene's, timm's and Keras's ports (their cards), and its "
            "ops follow TF's `SAME` padding at every size (tests/test_ops.py checks them against JAX)."
        )
    rows = [
        (r["peer"], r["input_size"], _g(r["logits_diff"]), _g(r["logits_max"]), _g(r["features_diff"]),
         _g(r["features_max"]), ("agree: " if r["agrees"] else "differ: ") + r["note"])
        for r in f.peers
    ]  # fmt: skip
    headers = ["peer", "input", "max abs Δ logits", "max abs logit", "max abs Δ features", "max abs feature", ""]
    return head + (
        "The same random weights (randomised BN statistics, eval mode) in this network and in other "
        "implementations, measured by the tests in `tests/peers/` and recorded in `nasnet_zoo/measurements.json` "
        "(re-checked on every test run); float32 rounding varies slightly between CPUs.\n\n"
        + format_table(rows, headers)
    )


def _size(f: CardFacts) -> str:
    p = f.paper
    rows = [
        ("parameters with BN statistics (as the paper counts)", _millions(f.size["params_with_bn_stats"]),
         f"{f.size['params_with_bn_stats']:,}", f"{p.params_m:g}M" if p else "-"),
        ("trainable parameters", _millions(f.size["params"]), f"{f.size['params']:,}", "-"),
        (f"mult-adds at {f.input_size} x {f.input_size}", _mult_adds(f.size["mult_adds"]), f"{f.size['mult_adds']:,}",
         _mult_adds(p.mult_adds_m * 1e6) if p and p.mult_adds_m else "-"),
    ]  # fmt: skip
    note = f"\n\nThe paper's numbers are its row {p.row} ({p.note})." if p and p.note else ""
    how = (
        "Measured on the built model (`nasnet_zoo.zoo.measure`, `nasnet_zoo.complexity`): one multiply-accumulate per "
        "conv and linear weight use, one image, eval mode."
    )
    return (
        "## Size: measured beside the paper's\n\n"
        + how
        + "\n\n"
        + format_table(rows, ["", "measured", "exactly", "paper"])
        + note
    )


def _preprocessing(f: CardFacts) -> str:
    c = f.pretrained_cfg
    size, crop = c["input_size"][-1], c["crop_pct"]
    resize = f"resize the shorter side to {int(size / crop)} ({c['interpolation']}), crop the central {size} x {size}"
    return (
        "## Preprocessing\n\n"
        f"Evaluation: {resize}, scale to [0, 1], normalise with mean {tuple(c['mean'])} and std {tuple(c['std'])}"
        + (" (inputs in [-1, 1], as the TF release)" if tuple(c["mean"]) == (0.5, 0.5, 0.5) else "")
        + ". It is the model's timm pretrained cfg, so timm builds exactly this transform:\n\n```python\n"
        "cfg = timm.data.resolve_model_data_config(model)\n"
        "transform = timm.data.create_transform(**cfg, is_training=False)\n```"
    )


def _usage(f: CardFacts) -> str:
    intro = (
        "## Usage\n\nWith nasnet-zoo installed, importing `nasnet_zoo` registers its architectures and its weight "
        "loader with timm, so timm's own `create_model` builds them and loads `hf-hub:` repos in the zoo's layout.\n\n"
    )
    fit = 'result = fit(model, train_data, val_data, TrainConfig(epochs=10, lr=0.01), out_dir="runs/x")\n```'
    if f.tag is None and f.trained is None:
        return intro + (
            f'```python\nimport timm\n\nimport nasnet_zoo\n\nmodel = timm.create_model("{f.name}")  # random '
            f'initialisation; nasnet_zoo.create_model is the same\nfeatures = timm.create_model("{f.name}", '
            "features_only=True)  # feature maps at each resolution\n```\n\nTraining, with nasnet-zoo's one loop "
            "(the paper's TF optimisers, EMA, aux head, drop path; `nasnet-zoo train` runs the paper's recipes):\n\n"
            f'```python\nfrom nasnet_zoo.train import TrainConfig, fit\n\nmodel = nasnet_zoo.create_model("{f.name}", '
            f"num_classes=10)\n{fit}\n\nCommand line: `nasnet-zoo info {f.name}` (measured size beside the "
            "paper's, genotype)."
        )
    hub = f"hf-hub:{f.repo_id or 'ORG/NAME'}"
    load = f'model = timm.create_model("{hub}", pretrained=True).eval()  # this repo'
    if f.tag:
        load += f'\nsame = nasnet_zoo.create_model("{f.name}.{f.tag}", pretrained=True)  # from the original source'
    cli = [f"nasnet-zoo info {f.name}  # measured size beside the paper's, genotype, weights"]
    if f.tag:
        cli.insert(0, f"nasnet-zoo predict {f.name}.{f.tag} cat.jpg  # top-5 classes, this card's preprocessing")
        cli.append(f"nasnet-zoo publish {f.name}.{f.tag} --out {f.name}.{f.tag}  # this folder, from the source")
    return intro + (
        f"```python\nimport timm\nimport torch\n\nimport nasnet_zoo\n\n{load}\n"
        "cfg = timm.data.resolve_model_data_config(model)\n"
        "transform = timm.data.create_transform(**cfg, is_training=False)\n"
        "with torch.no_grad():\n    probs = model(transform(image).unsqueeze(0)).softmax(-1)  # image: a PIL image\n"
        f'features = timm.create_model("{hub}", pretrained=True, features_only=True)\n'
        "```\n\nFine-tuning, with nasnet-zoo's training loop (the paper's TF optimisers, EMA, aux head, drop path):\n\n"
        f"```python\nfrom nasnet_zoo.train import TrainConfig, fit\n\n"
        f'model = timm.create_model("{hub}", pretrained=True, num_classes=10)  # a new head\n{fit}\n\n'
        "Command line:\n\n```bash\n" + "\n".join(cli) + "\n```"
    )


def _limitations(f: CardFacts) -> str:
    items = []
    if f.weights:
        items.append(
            "The accuracy above is reported, not re-measured here (nasnet-zoo has no ImageNet offline): the "
            f"publisher's ({f.weights.reported_by}) for these weights in its own port, whose padding differs from "
            "TF's (see the exactness table), and the paper's for the original checkpoint run by TF, which is what "
            "this network computes."
        )
        items.append(
            "The released files have no aux head: training with `aux_head=True` starts it from scratch. TF's "
            "1001-class checkpoints were reduced to ImageNet's 1000 classes (the background class dropped)."
        )
    if f.trained:
        items.append(
            "The accuracy above was measured on the training run's own validation data, not on a held-out "
            "benchmark split."
        )
    if f.trained is None and f.weights is None:
        items.append("No weights were released for this network: `pretrained=True` fails with a message.")
        if f.row.dataset != "cifar10":
            items.append(
                f"`nasnet-zoo train imagenet-large --model {f.name} --data-dir ~/data/imagenet` trains it with the "
                "`imagenet-large` recipe, TF-slim's for the large model (the paper gives none per size)."
            )
    items.append(_train_them(f))
    return "## Limitations\n\n" + "\n".join(f"* {i}" for i in items)


def _train_them(f: CardFacts) -> str:
    """No released CIFAR weights, and the command that trains them with the paper's recipe."""
    r = RECIPES["cifar10"]
    c = r.config
    recipe = (
        f"{c.epochs} epochs of {c.optimizer.upper()} (momentum {c.momentum:g}) at lr {c.lr:g} for batch "
        f"{c.batch_size}, {c.schedule} schedule, weight decay {c.weight_decay:g}, aux loss weight {c.aux_weight:g}, "
        f"gradient norm clipped at {c.clip_grad_norm:g}, drop-path keep {r.drop_path_keep:g}, cutout {r.cutout}"
    )
    cifar = [n for n, m in MODELS.items() if m.dataset == "cifar10" and not m.generic]
    model = f.name if f.name in cifar else cifar[0]
    flag = "" if model == r.model else f" --model {model}"
    return (
        f"No CIFAR-10 weights were ever released (for {', '.join(f'`{n}`' for n in cifar)}). The paper's recipe, "
        f"`cifar10` ({recipe}), trains them: `nasnet-zoo train cifar10{flag} --data-dir ~/data/cifar10 --out "
        f"runs/cifar` (add `--download` the first time), then `nasnet-zoo publish {model} --weights "
        f"runs/cifar/best.safetensors --repo-id ORG/NAME --out hub/{model}` writes a folder like this one."
    )


# --- numbers ------------------------------------------------------------------------------------------------------
def _millions(n: float) -> str:
    return f"{n / 1e6:.2f}M"


def _mult_adds(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _g(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


# --- the README's generated blocks ----------------------------------------------------------------------------
def readme_blocks() -> dict[str, str]:
    """The README's generated tables: the models, the released weights, the exactness against the peers."""
    measured = load_measurements()
    models = []
    for name, tag in zoo_cards():
        m, s = MODELS[name], measured["size"][name]
        if tag not in (None, next(iter(m.pretrained), None)):
            continue  # one row per model
        p = m.paper
        cards = ", ".join(f"[{t}](model_cards/{name}.{t}.md)" for t in m.pretrained) or f"[card](model_cards/{name}.md)"
        models.append(
            (f"`{name}`", f"NASNet-A {p.row}", m.input_size, m.dataset,
             f"{_millions(s['params_with_bn_stats'])} ({p.params_m:g}M)",
             f"{_mult_adds(s['mult_adds'])} ({_mult_adds(p.mult_adds_m * 1e6) if p.mult_adds_m else '-'})", cards)
        )  # fmt: skip
    weights = [
        (f"`{name}.{tag}`",
         f"Keras `{w.url.rsplit('/', 1)[-1]}`, md5 `{w.md5}`" if w.format == "keras" else f"Hub `{w.hf_hub_id}`",
         w.format, f"{w.top1} / {w.top5} ({w.reported_by.split(' (')[0]})")
        for name, m in MODELS.items()
        for tag, w in m.pretrained.items()
    ]  # fmt: skip
    peers = [
        (f"`{name}`", r["peer"], r["input_size"], _g(r["logits_diff"]), _g(r["logits_max"]),
         ("agree: " if r["agrees"] else "differ: ") + r["note"])
        for name, rows in measured["peers"].items()
        for r in rows
    ]  # fmt: skip
    return {
        "models": format_table(
            models, ["model", "paper row", "input", "dataset", "params (paper)", "mult-adds (paper)", "cards"]
        ),
        "weights": format_table(weights, ["tag (first = default)", "source", "format", "reported top-1 / top-5"]),
        "exactness": format_table(peers, ["model", "peer", "input", "max abs Δ logits", "max abs logit", ""]),
    }


def _block_re(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated: {name} \(nasnet-zoo cards\) -->\n).*?(<!-- end generated: {name} -->)", re.DOTALL
    )


def render_readme(text: str) -> str:
    """``text`` (README.md) with every generated block replaced by the generator's output."""
    for name, block in readme_blocks().items():
        pattern = _block_re(name)
        if not pattern.search(text):
            raise ValueError(f"README.md lacks the generated block '<!-- generated: {name} (nasnet-zoo cards) -->'")
        text = pattern.sub(lambda m, block=block: m[1] + block + "\n" + m[2], text)
    return text


def render_all(root: Path) -> dict[Path, str]:
    """Every generated file of the checkout ``root``: ``model_cards/*.md`` and README.md."""
    out = {root / "model_cards" / f"{name}.{tag}.md" if tag else root / "model_cards" / f"{name}.md":
           render_card(zoo_facts(name, tag)) for name, tag in zoo_cards()}  # fmt: skip
    out[root / "README.md"] = render_readme((root / "README.md").read_text())
    return out


def source_root() -> Path:
    """The source checkout this package runs from (cards live beside it, not in an installed package)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / "README.md").is_file():
        raise FileNotFoundError(f"{root} is not a nasnet-zoo source checkout: run `nasnet-zoo cards` from one")
    return root


def stale_files(root: Path) -> list[Path]:
    """Generated files that differ from the generator's output, and cards it would not write."""
    expected = render_all(root)
    stale = [p for p, text in expected.items() if not p.is_file() or p.read_text() != text]
    extra = [p for p in sorted((root / "model_cards").glob("*.md")) if p not in expected]
    return stale + extra


def write_all(root: Path) -> list[Path]:
    """Write the generated files that changed and remove cards of rows that are gone; return what changed."""
    changed = []
    expected = render_all(root)
    (root / "model_cards").mkdir(exist_ok=True)
    for path, text in expected.items():
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    for path in sorted((root / "model_cards").glob("*.md")):
        if path not in expected:
            path.unlink()
            changed.append(path)
    return changed
