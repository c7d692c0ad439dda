"""User models for ``feedbench fit --model`` (tests/test_fit_command.py)."""

import keras


def small_cnn(input_shape, num_classes):
    model = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes),
        ]
    )
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    return model


def not_compiled(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)])


def raises():
    raise RuntimeError("the model's own bug")
