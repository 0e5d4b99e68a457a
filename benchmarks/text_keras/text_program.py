# ruff: noqa
# The text's case study, verbatim from "Python Code:" to its evaluation (the custom-image part
# needs a photo the text does not ship). Two repairs only, both of the PDF's layout, not the code:
# the import that the page broke after `import`, and the indentation of `Dense(1, ...)  # Binary
# classification`, whose comment the page wrapped onto a line of its own.
#
# It is never imported by dlrepro and needs TensorFlow, which dlrepro does not depend on:
# `make keras-env` builds `.venv-keras` (tensorflow-cpu 2.21.0) and `make bench` runs this file
# there through keras_reference.py beside it, from the folder that holds
# `plant_disease_dataset/` (so the text's relative paths are the project's data).
# fmt: off
import tensorflow as tf

from tensorflow.keras.preprocessing.image import ImageDataGenerator

import matplotlib.pyplot as plt

import numpy as np

import os


# Load dataset

train_path = 'plant_disease_dataset/train'

test_path = 'plant_disease_dataset/test'


# Preprocess: Resize and normalize images

img_size = (128, 128)

batch_size = 32


train_datagen = ImageDataGenerator(rescale=1./255)

test_datagen = ImageDataGenerator(rescale=1./255)

train_data = train_datagen.flow_from_directory(
    train_path,
    target_size=img_size,
    batch_size=batch_size,
    class_mode='binary'
)

test_data = test_datagen.flow_from_directory(
    test_path,
    target_size=img_size,
    batch_size=batch_size,
    class_mode='binary'
)

# Build CNN Model

model = tf.keras.Sequential([

tf.keras.layers.Conv2D(32, (3,3), activation='relu',
input_shape=(128,128,3)),

tf.keras.layers.MaxPooling2D(2,2),

tf.keras.layers.Conv2D(64, (3,3), activation='relu'),
tf.keras.layers.MaxPooling2D(2,2),

tf.keras.layers.Flatten(),
tf.keras.layers.Dense(128, activation='relu'),
tf.keras.layers.Dense(1, activation='sigmoid') # Binary classification
])

# Compile

model.compile(optimizer='adam', loss='binary_crossentropy',
metrics=['accuracy'])

# Train

history = model.fit(train_data, validation_data=test_data,
epochs=10)

# Evaluate

loss, acc = model.evaluate(test_data)

print(f"\nTest Accuracy: {acc:.2f}")
