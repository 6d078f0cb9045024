"""Side-by-side speed of nasnet-zoo against the PyTorch ports of NASNet (timm, Cadene), in one process.

``python -m benchmarks.run`` (also ``nasnet-zoo bench`` and ``make bench``); see `benchmarks.run`.
"""
