"""The classifier architecture: a small depthwise-separable CNN (DS-CNN, Zhang et al. 2017).

Besides class probabilities the model exposes what guard's detectors use:
``embedding`` (the pooled penultimate layer) and ``early`` (mean and max pooling of the
first convolution's activations: "the first layers of the DNN").
"""

from __future__ import annotations

from typing import Any

from guard.features import N_FRAMES, N_MELS

OUTPUT_NAMES = ("probabilities", "embedding", "early")


def build(n_classes: int, channels: int = 64, blocks: int = 4, dropout: float = 0.2) -> Any:
    """Return ``(train_model, export_model)`` sharing weights.

    ``train_model`` maps log-mel (batch, 49, 40) to probabilities; ``export_model`` maps
    the same input to a dict of ``OUTPUT_NAMES``; its TFLite signature keeps those names.
    """
    import keras
    from keras import layers

    inp = keras.Input((N_FRAMES, N_MELS), name="log_mel")
    x = layers.Reshape((N_FRAMES, N_MELS, 1))(inp)
    x = layers.Conv2D(channels, (10, 4), strides=(2, 2), padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    early = layers.Concatenate(name="early")(
        [layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)]
    )
    for _ in range(blocks):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(channels, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    embedding = layers.GlobalAveragePooling2D(name="embedding")(x)
    dense = layers.Dense(n_classes)
    softmax = layers.Softmax(name="probabilities")
    # Dropout only on the training path: its seed-generator state would otherwise end up
    # in the TFLite graph as variables that full-integer calibration cannot read.
    train_model = keras.Model(
        inp, softmax(dense(layers.Dropout(dropout)(embedding))), name="ds_cnn"
    )
    probabilities = softmax(dense(embedding))
    export_model = keras.Model(
        inp,
        {"probabilities": probabilities, "embedding": embedding, "early": early},
        name="ds_cnn_export",
    )
    return train_model, export_model
