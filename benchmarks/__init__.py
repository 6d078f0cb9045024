"""Side-by-side speed of nasnet-zoo against the PyTorch ports of NASNet (timm, Cadene), in one process.

``python -m benchmarks.run`` (also ``nasnet-zoo bench`` and ``make bench``); see `benchmarks.run`. The search's
measurements live beside it: ``benchmarks.fidelity`` (does the proxy rank cells as stand-alone training does?) and
``benchmarks.compare`` (PPO, random search and evolution at equal budget, best cells on the test split).
"""
