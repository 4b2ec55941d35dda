"""scikit-learn MLPClassifier, SGDClassifier or another linear model with partial_fit, as flat vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn import config_context  # type: ignore[import-untyped]
from sklearn.linear_model import SGDClassifier  # type: ignore[import-untyped]
from sklearn.neural_network import MLPClassifier  # type: ignore[import-untyped]

from fedcore.backends.base import EvalResult, FitResult, TrainConfig
from fedcore.backends.batches import check_flat, check_xy, plan_batches
from fedcore.layout import ParamLayout


class SklearnAdapter:
    """Flat weights are coefs_ then intercepts_ (MLP) or coef_ then intercept_ (SGD).

    Another estimator with `partial_fit` and `coef_`/`intercept_` (Perceptron, PassiveAggressiveClassifier)
    trains with its own settings, taking only those of lr / weight decay it has (`eta0`, `alpha`).
    All classes must be known up front: the weights are created (seeded) in the constructor so
    `get_weights` works before any `fit`. One SGD step is one `partial_fit` call on one
    mini-batch (SGDClassifier steps per sample inside it). `weight_decay` maps to sklearn's
    `alpha`, which does not decay intercepts. FedProx and SCAFFOLD are not supported.
    """

    def __init__(
        self,
        estimator: Any,
        n_features: int,
        classes: Sequence[int] | NDArray[np.int64],
        seed: int = 0,
    ) -> None:
        if not hasattr(estimator, "partial_fit"):
            raise ValueError(f"{type(estimator).__name__} has no partial_fit; it cannot train round by round")
        self.classes = np.asarray(classes, dtype=np.int64)
        if self.classes.ndim != 1 or len(self.classes) < 2:
            raise ValueError(f"need at least two classes, got {self.classes!r}")
        self.estimator = estimator
        self._is_mlp = isinstance(estimator, MLPClassifier)
        # One labelled zero row per class makes sklearn allocate every array it keeps;
        # the seeded weights below then replace whatever that call learned.
        probe_x = np.zeros((len(self.classes), n_features), dtype=np.float32)
        self._partial_fit(probe_x, self.classes, classes=self.classes)
        if not self._is_mlp and not all(hasattr(estimator, a) for a in ("coef_", "intercept_")):
            raise ValueError(
                f"{type(estimator).__name__} keeps no coef_/intercept_ to average; use a linear model "
                "(SGDClassifier, Perceptron, ...) or MLPClassifier"
            )
        arrays = self._arrays()
        self._layout = ParamLayout.from_shapes(
            [(name, a.shape) for name, a in zip(self._names(len(arrays)), arrays, strict=True)]
        )
        self.set_weights(self._initial_weights(np.random.default_rng(seed)))

    @property
    def layout(self) -> ParamLayout:
        return self._layout

    def get_weights(self) -> NDArray[np.float32]:
        return np.concatenate([a.reshape(-1) for a in self._arrays()]).astype(np.float32)

    def set_weights(self, flat: NDArray[np.float32]) -> None:
        check_flat(flat, self._layout.size, "weights")
        for entry, array in zip(self._layout, self._arrays(), strict=True):
            np.copyto(array, self._layout.view(flat, entry.name))

    def fit(
        self,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        config: TrainConfig,
        control: NDArray[np.float32] | None = None,
    ) -> FitResult:
        if config.prox_mu > 0:
            raise ValueError("SklearnAdapter does not support FedProx (prox_mu > 0); use torch or mlx")
        if control is not None:
            raise ValueError("SklearnAdapter does not support SCAFFOLD control variates; use torch or mlx")
        check_xy(x, y)
        plan = plan_batches(len(y), config)
        self._configure(config)
        losses = []
        # Inputs were checked once above; sklearn's per-call validation would otherwise dominate.
        with config_context(assume_finite=True, skip_parameter_validation=True):
            for start, stop in plan.bounds:
                if self._is_mlp and self.estimator.batch_size != stop - start:
                    self.estimator.set_params(batch_size=stop - start)  # one partial_fit = one step
                idx = plan.order[start:stop]
                self._partial_fit(x[idx], y[idx])
                if self._is_mlp:
                    losses.append(float(self.estimator.loss_))
        loss = float(np.mean(losses)) if losses else self.evaluate(x, y).loss
        return FitResult(num_examples=len(y), num_steps=plan.num_steps, loss=loss)

    def evaluate(self, x: NDArray[np.float32], y: NDArray[np.int64]) -> EvalResult:
        check_xy(x, y)
        proba = self._probabilities(x)
        column = np.searchsorted(self.classes, y)
        known = (column < len(self.classes)) & (self.classes[np.minimum(column, len(self.classes) - 1)] == y)
        if not known.all():
            raise ValueError(f"labels {np.unique(y[~known])} are not among the adapter's classes")
        picked = proba[np.arange(len(y)), column]
        loss = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
        accuracy = float(np.mean(self.classes[proba.argmax(axis=1)] == y))
        return EvalResult(num_examples=len(y), loss=loss, accuracy=accuracy)

    def _configure(self, config: TrainConfig) -> None:
        """Apply this round's TrainConfig and start with fresh optimizer state, as torch/mlx do."""
        if self._is_mlp:
            self.estimator.set_params(
                learning_rate_init=config.lr,
                learning_rate="constant",
                momentum=config.momentum,
                nesterovs_momentum=False,
                batch_size=config.batch_size,
                alpha=config.weight_decay * config.batch_size,
                shuffle=False,
            )
            if hasattr(self.estimator, "_optimizer"):
                del self.estimator._optimizer
        elif isinstance(self.estimator, SGDClassifier):
            self.estimator.set_params(
                learning_rate="constant", eta0=config.lr, alpha=config.weight_decay, shuffle=False
            )
        else:
            known = self.estimator.get_params()
            wanted = {"eta0": config.lr, "alpha": config.weight_decay, "shuffle": False}
            self.estimator.set_params(**{k: v for k, v in wanted.items() if k in known})

    def _partial_fit(self, x: NDArray[np.float32], y: NDArray[np.int64], **kwargs: Any) -> None:
        self.estimator.partial_fit(np.asarray(x, dtype=np.float32), y, **kwargs)

    def _probabilities(self, x: NDArray[np.float32]) -> NDArray[np.float64]:
        """Class probabilities; a hinge-loss SGDClassifier gets a softmax of its decision values."""
        if self._is_mlp or getattr(self.estimator, "loss", None) in ("log_loss", "modified_huber"):
            proba: NDArray[np.float64] = self.estimator.predict_proba(x)
            return proba
        scores = np.asarray(self.estimator.decision_function(x), dtype=np.float64)
        if scores.ndim == 1:
            scores = np.stack([-scores, scores], axis=1)
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        result: NDArray[np.float64] = exp / exp.sum(axis=1, keepdims=True)
        return result

    def _arrays(self) -> list[NDArray[np.floating]]:
        est = self.estimator
        if self._is_mlp:
            return [*est.coefs_, *est.intercepts_]
        return [est.coef_, est.intercept_]

    def _names(self, count: int) -> list[str]:
        if not self._is_mlp:
            return ["coef", "intercept"]
        layers = count // 2
        return [f"coefs.{i}" for i in range(layers)] + [f"intercepts.{i}" for i in range(layers)]

    def _initial_weights(self, rng: np.random.Generator) -> NDArray[np.float32]:
        """Glorot-uniform like sklearn's own MLP init, but from our generator; linear models start at 0."""
        flat = np.zeros(self._layout.size, dtype=np.float32)
        if not self._is_mlp:
            return flat
        factor = 2.0 if self.estimator.activation == "logistic" else 6.0
        coefs = [e for e in self._layout if e.name.startswith("coefs.")]
        intercepts = [e for e in self._layout if e.name.startswith("intercepts.")]
        for coef, intercept in zip(coefs, intercepts, strict=True):
            fan_in, fan_out = coef.shape
            bound = np.sqrt(factor / (fan_in + fan_out))
            flat[coef.offset : coef.stop] = rng.uniform(-bound, bound, coef.size)
            flat[intercept.offset : intercept.stop] = rng.uniform(-bound, bound, intercept.size)
        return flat
