"""The benchmark's bookkeeping (no timing here: speed is measured by ``python -m benchmarks.run``)."""

from benchmarks.models import MODELS, eval_configs, train_configs
from benchmarks.run import markdown, targets, update_readme


def test_configuration_labels_are_unique_per_group():
    for model in MODELS:
        for configs in (eval_configs(model), train_configs(model)):
            labels = [c.label for c in configs]
            assert len(set(labels)) == len(labels)
    assert [c.label for c in eval_configs("large")] == [
        "ours (NCHW)", "ours", "ours + torch.compile", "timm nasnetalarge", "timm nasnetalarge + channels_last",
        "Cadene", "Cadene + channels_last",
    ]  # fmt: skip


def eval_row(model, config, img_s, peer, pct_peak=40.0):
    return dict(model=model, batch=8, config=config, img_s=img_s, peer=peer, pct_peak=pct_peak)


def train_row(model, config, seconds, peak_mib, vs_cadene=None, grad_ckpt=False):
    return dict(model=model, config=config, seconds=seconds, peak_mib=peak_mib, vs_cadene=vs_cadene,
                vs_cadene_cl=vs_cadene, grad_ckpt=grad_ckpt)  # fmt: skip


def test_targets_are_ratios_within_the_run():
    ev = [eval_row("mobile", "ours", 30.0, False), eval_row("large", "ours", 2.0, False, pct_peak=55.0),
          eval_row("mobile", "ours + torch.compile", 40.0, False),
          eval_row("large", "Cadene + channels_last", 1.5, True, pct_peak=40.0),
          eval_row("large", "Cadene", 1.0, True, pct_peak=25.0)]  # fmt: skip
    ev[0]["vs_fastest_peer"], ev[1]["vs_fastest_peer"], ev[2]["vs_fastest_peer"] = 1.4, 1.2, 1.6
    tr = [
        train_row("mobile", "ours", 1.0, 1000.0, vs_cadene=1.3),
        train_row("mobile", "ours + grad checkpointing", 1.4, 500.0, grad_ckpt=True),
    ]
    got = {t["target"]: (t["measured"], t["met"]) for t in targets(ev, tr)}
    assert got["eval mobile bs8 >= 1.5x the fastest peer configuration (eager)"] == ("1.40x", False)
    compiled = "eval mobile bs8 >= 1.5x the fastest peer configuration (compiled optimize_for_inference)"
    assert got[compiled] == ("1.60x", True)
    assert got["eval large bs8 >= 1.5x the fastest peer configuration (eager)"] == ("1.20x", False)
    assert got["eval large bs8 >= 50 % of the matmul peak"] == ("55 %", True)
    assert got["(for reference) large bs8 at the matmul peak, vs the fastest peer (a ceiling)"] == ("2.50x", None)
    assert got["training mobile bs16 >= 1.2x Cadene (as released, NCHW)"] == ("1.30x", True)
    assert got["grad checkpointing cuts mobile peak training memory >= 40 %"] == ("50.0 %", True)
    assert got["grad checkpointing costs mobile <= 35 % extra time"] == ("+40 %", False)


def test_report_and_readme_block(tmp_path):
    results = dict(
        machine=dict(date="d", cpu="c", device="cpu", threads=2, dtype="fp32", torch="t", quick=True, warmup=1,
                     repeats=2, min_seconds=2.0),
        matmul=dict(n=8, dtype="float32"),
        eval=[dict(model="mobile", batch=1, config="ours", seconds=0.01, img_s=100.0, gflops=1.0, pct_peak=1.0,
                   vs_fastest_peer=1.25, compile_s=None, matmul_gflops=100.0)],
        train=[], search=None, targets=[dict(target="t", measured="1.25x", met=False)],
    )  # fmt: skip
    md = markdown(results)
    assert "| mobile | 1 | ours | 10.0 | 100.00 | 1 | 1 | 1.25x |" in md
    assert "skipped in this run" in md and "| t | 1.25x | no |" in md and "100-100 GFLOP/s" in md
    readme = tmp_path / "README.md"
    start, end = "<!-- generated: benchmarks (python -m benchmarks.run) -->", "<!-- end generated: benchmarks -->"
    readme.write_text(f"# x\n{start}\nold\n{end}\ntail\n")
    assert update_readme(md, readme)
    text = readme.read_text()
    assert "old" not in text and md in text and text.endswith("tail\n")
    no_markers = tmp_path / "OTHER.md"
    no_markers.write_text("x")
    assert not update_readme(md, no_markers) and no_markers.read_text() == "x"


def test_search_hook_reports_what_the_search_benchmark_measured(monkeypatch):
    import benchmarks.search as search_bench

    measured = dict(backend="process", workers=2, children=4, children_per_minute=3.5, controller_share=0.01)
    monkeypatch.setattr(search_bench, "run_one", lambda backend, workers, budget: dict(measured, children=budget))
    got = search_bench.measure(quick=True)
    assert got["children_per_minute"] == 3.5 and got["children"] == 4 and "process backend, 2 workers" in got["setup"]
    results = dict(
        machine=dict(date="d", cpu="c", device="cpu", threads=2, dtype="fp32", torch="t", quick=True, warmup=1,
                     repeats=2, min_seconds=2.0),
        matmul=dict(n=8, dtype="float32"), eval=[], train=[], search=got, targets=[],
    )  # fmt: skip
    assert "**Search**: 3.50 children per minute (cpu-digits, PPO, process backend" in markdown(results)


def test_a_try_replaces_fields_of_any_dataclass_and_refuses_unknown_ones():
    from nasnet_zoo.search.shared_training import SharingConfig
    from nasnet_zoo.search.tasks import ShapesTask

    from benchmarks.tries import parse_try

    name, config = parse_try("t:bn=recalibrate,lr=0.3,filters=none,shared_steps=150", SharingConfig(filters=4))
    assert name == "t" and config.bn == "recalibrate" and config.lr == 0.3
    assert config.filters is None and config.shared_steps == 150
    assert parse_try("base:", ShapesTask()) == ("base", ShapesTask())
    assert parse_try("e2:epochs=2", ShapesTask())[1].epochs == 2
    import pytest

    with pytest.raises(SystemExit, match="unknown ShapesTask field 'epoch'"):
        parse_try("x:epoch=2", ShapesTask())


def test_standalone_scores_read_the_mean_of_several_seeds_and_skip_failed_cells():
    from benchmarks.sharing import standalone_scores

    rows = [
        {"genotype": "a", "standalone": [0.5, 0.7], "standalone_test": 0.6},  # several stand-alone seeds
        {"genotype": "b", "standalone": 0.4},  # one seed, older results
        {"genotype": "c", "standalone": [0.2, 0.4]},  # a list without its mean
        {"genotype": "d", "standalone": [], "standalone_test": None},  # every stand-alone run failed
    ]
    got = standalone_scores({"rows": rows})
    assert [(c["genotype"], round(c["standalone"], 6)) for c in got] == [("a", 0.6), ("b", 0.4), ("c", 0.3)]


def test_the_sharing_probe_pools_draw_their_ops_from_the_first_n_probe_ops():
    from benchmarks.sharing_probe import PROBE_OPS, genotype_pool

    def ops(pool):
        return {o for g in pool for c in (g.normal, g.reduction) for b in c.blocks for o in b.ops}

    assert ops(genotype_pool("all", 30, 0, 2)) == set(PROBE_OPS[:2])
    assert ops(genotype_pool("ops", 30, 0, 1)) == {PROBE_OPS[0]}
    assert genotype_pool("all", 30, 0) == genotype_pool("all", 30, 0, len(PROBE_OPS))  # 13: uniform genotypes
    assert len(ops(genotype_pool("all", 30, 0))) == len(PROBE_OPS)


def test_the_sharing_probe_with_all_13_ops_draws_as_before_the_option_existed():
    import random

    from nasnet_zoo.search.space import random_genotype

    from benchmarks.sharing_probe import genotype_pool, rewired
    from nasnet_zoo.genotype import OPS

    rngs = [random.Random(i) for i in range(3)]  # seed 0: genotype i is drawn with seed i
    before = [rewired(random_genotype(0), lambda r=r: r.choice(OPS)) for r in rngs]
    assert genotype_pool("ops", 3, 0) == before


def test_a_report_says_other_work_was_running_only_when_the_load_before_says_so():
    from benchmarks.measure import load_note

    assert load_note(0.1, 1.0) == "load average 0.1 before and 1.0 after"
    assert load_note(1.7, 2.6).endswith("(other work was running when it began)")
