"""The NASNet search: the paper's controller RNN + PPO over a global work queue (imported as nasnet_zoo.search).

    space -> controller -> ppo, baselines -> evaluators -> tasks -> report -> runfolder -> loop -> retrain

Entry points: `loop.run_search(loop.SearchConfig(...))`, `retrain.retrain(out)`, `loop.PRESETS`; the CLI is
``nasnet-zoo search`` / ``nasnet-zoo retrain``.

A searched cell is a `nasnet_zoo.Genotype`, so it goes straight into the zoo's builders.
"""
