"""Bayesian structural state-space models in Pyro, fitted to every series of a Panel at once.

- ``design.py``: Panel -> tensors (right-aligned windows, calendar positions, regressors)
- ``model.py``: the generative story (level, damped trend, seasonality, regression, likelihoods)
- ``estimator.py``: ``StateSpace`` (SVI fit, sample paths, components, save/load)
"""
from .estimator import StateSpace
from .model import LIKELIHOODS

__all__ = ["StateSpace", "LIKELIHOODS"]
