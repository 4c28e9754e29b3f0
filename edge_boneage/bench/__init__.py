"""`edge-boneage benchmark`: accuracy against latency over models x variants x runtimes x threads, here or on a device.

* ``harness``  - the plan (models, variants, runtimes, threads, data), export and run phases, one row per result;
* ``worker``   - the child processes: export (Keras -> f32/fp16/dynamic/int8 .tflite and .onnx) and the ONNX Runtime /
  Keras timing rows (LiteRT rows run ``edge_boneage/device_runner.py``, the same file that is copied to devices);
* ``devices``  - where a .tflite runs: ``local`` (child process), ``ssh:user@host[:port]`` and ``adb[:serial]``
  (LiteRT's ``benchmark_model`` binary, whose summary lines ``parse_benchmark_model_output`` reads);
* ``report``   - table, JSON, CSV, Pareto PNG (all atomic), ratios and the CPU's peak-throughput estimate;
* ``macs``     - multiply-accumulates of a Keras model from its layers (the .tflite graph count lives in device_runner).
"""
