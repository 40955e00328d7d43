"""DOSA: differentiable model-based one-loop search for DNN accelerators.

A clean-room reimplementation of Hong et al., MICRO 2023. The package is organised by the
paper's vocabulary: ``workload`` (layers, networks), ``hardware`` (the Gemmini-TL template),
``mapping`` (loop nests), ``model`` (the differentiable analytical model), ``search`` (DOSA
gradient search and baselines), ``learned`` (RTL latency predictors).
"""

__version__ = "0.1.0"
