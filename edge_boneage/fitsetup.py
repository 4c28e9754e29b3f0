"""How a Keras age model is set up for fitting: its losses and metrics (``compile_model``), optimizer and learning-rate
schedule with optional EMA (``make_optimizer``), BatchNorm momentum (``set_bn_momentum``), and the devices it runs
on (``setup_distribution``: data parallel over several JAX devices; ``has_gpu``). The loss is explained in
edge_boneage.train's docstring.
"""

from __future__ import annotations

from edge_boneage import EdgeBoneageError
from edge_boneage.train_config import TrainConfig


def _builder_params(name: str) -> set[str]:
    import inspect

    from keras_models.registry import get_entry

    return set(inspect.signature(get_entry(name).builder).parameters)


def set_bn_momentum(model, momentum: float) -> int:
    """Set the moving-statistics momentum of every BatchNormalization layer (nested models included).

    keras.applications' MobileNetV3 uses 0.999: its inference-mode statistics need thousands of steps to
    follow the weights, so short runs validate far worse than they train; 0.99 (or 0.9) fixes that.
    Returns the number of layers changed (saved in the .keras config, so it survives resume)."""
    import keras

    if not 0.0 <= momentum < 1.0:
        raise EdgeBoneageError(f"BatchNorm momentum must be in [0, 1), got {momentum}")
    n = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            n += 1
    return n


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    """Adam / AdamW with a constant or warmup + cosine learning rate, optional EMA (see TrainConfig)."""
    import keras

    lr = config.lr
    if config.schedule == "cosine":
        total = max(1, int(config.epochs * steps_per_epoch))
        warm = int(round(config.warmup_epochs * steps_per_epoch))
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warm else config.lr, decay_steps=max(1, total - warm), alpha=0.0,
            warmup_target=config.lr if warm else None, warmup_steps=warm)
    elif config.schedule != "constant":
        raise EdgeBoneageError(f"unknown schedule {config.schedule!r}; use constant or cosine")
    ema = dict(use_ema=True, ema_momentum=float(config.ema), ema_overwrite_frequency=int(steps_per_epoch)) \
        if config.ema and config.ema > 0 else {}
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay, **ema)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, **ema)
    raise EdgeBoneageError(f"unknown optimizer {config.optimizer!r}; use adam or adamw")


def compile_model(model, config: TrainConfig, steps_per_epoch: int = 1) -> None:
    import keras

    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss={"probs": keras.losses.CategoricalCrossentropy(), "age": keras.losses.MeanAbsoluteError()},
        loss_weights={"probs": config.probs_loss_weight, "age": config.age_loss_weight / 12.0},
        metrics={"age": [keras.metrics.MeanAbsoluteError(name="mae")]},
    )


def _devices() -> list[str]:
    import keras

    try:
        return list(keras.distribution.list_devices())
    except Exception:  # backend without the distribution API (tensorflow)
        return []


def _setup_distribution(config: TrainConfig) -> dict:
    import keras

    info = {"backend": keras.backend.backend(), "devices": [], "distribution": None}
    if keras.backend.backend() != "jax":
        return info
    devices = _devices()
    info["devices"] = [str(d) for d in devices]
    if len(devices) > 1:
        if config.batch % len(devices):
            raise EdgeBoneageError(
                f"batch {config.batch} is not a multiple of the {len(devices)} visible devices (data parallel)")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        info["distribution"] = f"DataParallel over {len(devices)} devices"
    return info


def _has_gpu() -> bool:
    import keras

    if keras.backend.backend() == "jax":
        return any("gpu" in str(d).lower() or "cuda" in str(d).lower() for d in _devices())
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    return False


builder_params = _builder_params
setup_distribution = _setup_distribution
has_gpu = _has_gpu

__all__ = ["builder_params", "compile_model", "has_gpu", "make_optimizer", "set_bn_momentum", "setup_distribution"]
