"""Keras 3 layers and models for bone-age assessment (keras.ops only; backend-agnostic)."""
