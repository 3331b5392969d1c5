"""Real execution of compressed models on deployment runtimes (optional extras), as opposed to simulation.

``autoslim.runtime.onnx_int8``: export to ONNX, static int8 quantization and inference with onnxruntime
(``pip install 'autoslim[onnx]'``). Runtime libraries are imported lazily, so importing autoslim never needs them.
"""
