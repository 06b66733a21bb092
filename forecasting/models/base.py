"""The interface every model shares: ``fit(panel, horizon)``, ``predict(panel, num_samples)``,
``save``/``load``. Hyperparameters go in ``__init__``; learned state in attributes ending in ``_``."""
from __future__ import annotations

import abc
from pathlib import Path

import torch

from ..data.panel import Panel, PanelError
from ..forecast import Forecast, atomic_write, load_torch_file

__all__ = ["Model", "NotFittedError", "check_nonnegative", "floor_rows", "resolve_device"]


class NotFittedError(RuntimeError):
    """``predict`` was called before ``fit``."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; ``"cuda"`` without a GPU is a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but torch sees no CUDA device; use device='cpu' or 'auto'")
    return device


def check_nonnegative(nonnegative) -> bool | None:
    """The ``nonnegative`` argument the models share: None, True or False (anything else is an error)."""
    if nonnegative is not None and not isinstance(nonnegative, bool):
        raise ValueError(f"nonnegative must be None, True or False, got {nonnegative!r}")
    return nonnegative


def floor_rows(values: torch.Tensor, observed: torch.Tensor, nonnegative: bool | None) -> torch.Tensor | None:
    """``[N]`` bool: the series whose samples a ``nonnegative`` setting floors at zero, or None for
    none (``False``). ``None``: the series whose observed ``values [N, T]`` never go below zero;
    ``True``: every series."""
    if nonnegative is False:
        return None
    if nonnegative is None:
        return ((values >= 0) | ~observed).all(1)
    return torch.ones(values.shape[0], dtype=torch.bool, device=values.device)


def check_same_freq(model: "Model", fitted: str | None, panel: Panel) -> None:
    """A model fitted on one frequency refuses a panel of another (its lags, seasons and calendar
    features mean other spans of time). ``fitted`` None (models saved before it was kept): no check."""
    if fitted is None:
        return
    import pandas as pd
    if pd.tseries.frequencies.to_offset(fitted) != pd.tseries.frequencies.to_offset(panel.freq):
        raise PanelError(f"{type(model).__name__} was fitted on {fitted!r} data, the panel's frequency is "
                         f"{panel.freq!r}: fit a model on this frequency")


class Model(abc.ABC):
    """A probabilistic forecaster over Panels."""

    #: short name used in leaderboards and on the command line
    name: str = "model"

    @abc.abstractmethod
    def fit(self, panel: Panel, horizon: int) -> "Model":
        """Learn from every series of ``panel`` (up to each series' ``end``) for ``horizon`` steps ahead."""

    @abc.abstractmethod
    def predict(self, panel: Panel, num_samples: int = 100, seed: int | None = None) -> Forecast:
        """Sample paths ``[N, num_samples, horizon]`` starting after each series' ``end``."""

    def used_known_covariates(self) -> frozenset[str] | None:
        """The known covariates (by name) the fitted model reads when it predicts, so a what-if that
        changes another one is known to change nothing; None: this model cannot tell."""
        return None

    def _check_fitted(self, num_samples: int | None = None) -> int:
        """The fitted horizon; an unfitted model (or ``num_samples`` < 1) is an error."""
        horizon = getattr(self, "horizon_", None)
        if horizon is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(panel, horizon) first")
        if num_samples is not None and num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        return horizon

    def save(self, path) -> Path:
        """Write the model (hyperparameters and learned state) to ``path`` atomically."""
        return atomic_write(path, lambda tmp: torch.save(self, tmp))

    @classmethod
    def load(cls, path, map_location="cpu") -> "Model":
        model = load_torch_file(path, "Model.save", map_location)
        if not isinstance(model, cls):
            what = "a forecast (load it with Forecast.load)" if isinstance(model, dict) and "samples" in model \
                else f"a {type(model).__name__}"
            raise TypeError(f"{path} holds {what}, not a {cls.__name__}")
        return model

    def __repr__(self) -> str:
        params = {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"
