"""The classifier architectures: a small depthwise-separable CNN (DS-CNN, Zhang et al. 2017),
guard's default, and a small VGG-style CNN (Simonyan and Zisserman 2015), a second
architecture for red-team evaluations (do guard's detectors depend on one architecture?).

Both expose, besides class probabilities, what guard's detectors use: ``embedding`` (the
pooled penultimate layer) and ``early`` (mean and max pooling of the first convolution
block's activations: "the first layers of the DNN"), under the same output names, so
export, runtime and detectors work unchanged for either.
"""

from __future__ import annotations

from typing import Any

from guard.features import N_FRAMES, N_MELS

OUTPUT_NAMES = ("probabilities", "embedding", "early")
ARCHITECTURES = ("ds-cnn", "vgg")
DEFAULTS: dict[str, tuple[int, int]] = {"ds-cnn": (64, 4), "vgg": (16, 3)}
"""``(channels, blocks)`` per architecture when none are given."""


def build(
    n_classes: int,
    channels: int = 64,
    blocks: int = 4,
    dropout: float = 0.2,
    kind: str = "ds-cnn",
) -> Any:
    """Return ``(train_model, export_model)`` sharing weights.

    ``train_model`` maps log-mel (batch, 49, 40) to probabilities; ``export_model`` maps
    the same input to a dict of ``OUTPUT_NAMES``; its TFLite signature keeps those names.

    ``kind`` ``"ds-cnn"``: a 10x4 stride-2 convolution of ``channels`` channels, then
    ``blocks`` depthwise-separable blocks. ``kind`` ``"vgg"``: ``blocks`` stages of two
    3x3 convolutions (each with batch norm and ReLU) and a 2x2 max pooling, ``channels``
    wide in the first stage and doubling per stage.
    """
    import keras
    from keras import layers

    if kind not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {kind!r}; known: {', '.join(ARCHITECTURES)}")
    if channels < 1 or blocks < 1:
        raise ValueError(f"channels and blocks must be >= 1, got {channels} and {blocks}")

    def conv_bn_relu(x: Any, filters: int, kernel: Any, strides: Any = 1) -> Any:
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    def mean_max(x: Any) -> Any:
        return layers.Concatenate(name="early")(
            [layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)]
        )

    inp = keras.Input((N_FRAMES, N_MELS), name="log_mel")
    x = layers.Reshape((N_FRAMES, N_MELS, 1))(inp)
    if kind == "ds-cnn":
        x = conv_bn_relu(x, channels, (10, 4), strides=(2, 2))
        early = mean_max(x)
        for _ in range(blocks):
            x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
            x = layers.Conv2D(channels, 1, use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
        name = "ds_cnn"
    else:
        for stage in range(blocks):
            width = channels * 2**stage
            x = conv_bn_relu(x, width, 3)
            x = conv_bn_relu(x, width, 3)
            if stage == 0:
                early = mean_max(x)
            # pool while there is something to pool (49x40 allows 5 stages of 2x2)
            if x.shape[1] >= 2 and x.shape[2] >= 2:
                x = layers.MaxPooling2D(2)(x)
        name = "vgg"
    embedding = layers.GlobalAveragePooling2D(name="embedding")(x)
    dense = layers.Dense(n_classes)
    softmax = layers.Softmax(name="probabilities")
    # Dropout only on the training path: its seed-generator state would otherwise end up
    # in the TFLite graph as variables that full-integer calibration cannot read.
    train_model = keras.Model(inp, softmax(dense(layers.Dropout(dropout)(embedding))), name=name)
    probabilities = softmax(dense(embedding))
    export_model = keras.Model(
        inp,
        {"probabilities": probabilities, "embedding": embedding, "early": early},
        name=f"{name}_export",
    )
    return train_model, export_model
