"""Real execution of compressed models on deployment runtimes, as opposed to simulation.

``autoslim.runtime.onnx_int8``: export to ONNX, static int8 quantization and inference with onnxruntime
(in the base install). Runtime libraries are imported lazily: importing autoslim does not load them.
"""
