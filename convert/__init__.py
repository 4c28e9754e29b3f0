"""Conversion: Keras -> LiteRT export and quantisation, ONNX -> LiteRT import."""
