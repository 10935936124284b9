"""Running .tflite models with LiteRT: predictions, latency and size."""

import gzip
import statistics
import time

import numpy as np


class TFLiteModel:
    """A .tflite flatbuffer loaded in the LiteRT interpreter.

    XNNPACK is LiteRT's default CPU delegate and is applied here as in
    deployment. `num_threads=1` matches the single-thread benchmarks of the
    TensorFlow guides.
    """

    def __init__(self, flatbuffer, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        from tfmot_lite.export.source import read_tflite

        self.flatbuffer = read_tflite(flatbuffer, "flatbuffer")
        from tfmot_lite.quiet import silenced_stderr

        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"`num_threads` must be a positive integer; got {num_threads!r}.")
        # LiteRT announces the XNNPACK delegate on stderr; keep it quiet.
        with silenced_stderr():
            self.interpreter = Interpreter(
                model_content=self.flatbuffer, num_threads=num_threads
            )
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def _quantize_input(self, x):
        dtype = self.input["dtype"]
        scale, zero_point = self.input["quantization"]
        if dtype == np.float32 or not scale:
            # A float input, or an integer one that is no quantized value
            # (token ids for an Embedding): passed as they are.
            return np.asarray(x).astype(dtype)
        info = np.iinfo(dtype)
        q = np.round(x / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)

    def _dequantize_output(self, y):
        if self.output["dtype"] == np.float32:
            return y
        scale, zero_point = self.output["quantization"]
        return (y.astype(np.float32) - zero_point) * scale

    def invoke(self, sample):
        """Runs one example (no batch axis); returns the float output."""
        batch = self._quantize_input(np.asarray(sample)[None])
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        return self._dequantize_output(out)[0]

    def predict(self, x):
        """Runs every example of `x` (batch first) one by one."""
        return np.stack([self.invoke(sample) for sample in x])

    def accuracy(self, x, y):
        return float(np.mean(np.argmax(self.predict(x), axis=-1) == y))


def measure_latency(flatbuffer, sample, runs=200, warmup=20, num_threads=1):
    """Median wall time of one inference, in microseconds."""
    model = TFLiteModel(flatbuffer, num_threads=num_threads)
    batch = model._quantize_input(np.asarray(sample)[None])
    interp = model.interpreter
    interp.set_tensor(model.input["index"], batch)
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def gzipped_size(flatbuffer):
    """Bytes after gzip: what an over-the-air update downloads."""
    return len(gzip.compress(bytes(flatbuffer), compresslevel=9))
