"""The NASNet search: the paper's controller RNN + PPO over a global work queue (imported as nasnet_zoo.search).

    space -> controller -> ppo -> evaluators -> tasks -> loop

A searched cell is a `nasnet_zoo.Genotype`, so it goes straight into the zoo's builders.
"""
