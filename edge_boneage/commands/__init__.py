"""CLI verbs. Each module here defines `register(subparsers)`; the CLI discovers them automatically.

A verb module must stay thin: parse arguments, call library functions, print. Heavy imports
(TensorFlow, Keras) go inside the handler so `edge-boneage predict x.tflite` never imports them.
"""
