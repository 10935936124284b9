"""Quantization-aware training to a fully int8 TFLite model, on tfmot-lite.

The TensorFlow guide "Quantization aware training in Keras example", with
`import tfmot_lite as tfmot` in place of `tensorflow_model_optimization`:

1. Train a float Conv-BatchNorm-ReLU CNN (the baseline).
2. Post-training int8 quantization of the float model (the converter
   calibrates on a representative sample): the usual first try.
3. `quantize_model` the trained model and fine-tune it for a few epochs:
   weights int8 symmetric (per channel for convolutions), activations int8,
   BatchNorm folded into the convolutions as the converter folds it.
4. Convert the QAT model with the stock TFLite converter
   (`optimizations=[tf.lite.Optimize.DEFAULT]`): the body of the .tflite
   model is int8, and its predictions agree with the Keras QAT model's.
5. Compare float, post-training int8 and QAT int8 .tflite models: accuracy,
   size (raw and gzipped) and LiteRT latency (one thread, XNNPACK).

Step 3 runs twice: as above, and "distilled", fine-tuned against the float
model's soft targets (`tfmot.distillation.distill(qat, model)`, the same
epochs and learning rate); the table has both rows.

By default it trains on the digits bundled with scikit-learn (upsampled to
32x32x3, no download); `--quick` is a smoke run.

    python tutorials/quantization_aware_training.py
    python tutorials/quantization_aware_training.py --quick
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite import data, export  # noqa: E402
from tfmot_lite.example_models import build_cnn  # noqa: E402


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="float training epochs")
    parser.add_argument("--qat-epochs", type=int, default=3, help="QAT fine-tuning epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.qat_epochs, args.latency_runs = 6, 1, 20
    return args


def main(argv=None):
    import tensorflow as tf

    args = parse_args(argv)
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = data.digits(image_size=32)

    # 1. Float baseline: a small Conv-BatchNorm-ReLU CNN (three stages, then
    #    a Dense head), the convolutions' biases left to the BatchNorms.
    model = build_cnn(use_bias=False)
    compile_model(model, 1e-3)
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
              validation_split=0.1, verbose=args.verbose)
    float_keras_acc = model.evaluate(x_test, y_test, verbose=0)[1]

    # 2. Post-training int8 quantization of the float model.
    float_tflite = export.to_tflite(model)
    ptq_tflite = export.to_tflite(
        model,
        optimizations=[tf.lite.Optimize.DEFAULT],
        representative_data=x_train[:200],
        inference_input_type=tf.int8,
        inference_output_type=tf.int8,
    )

    # 3. Quantization-aware fine-tuning.
    qat = tfmot.quantization.keras.quantize_model(model)
    compile_model(qat, 1e-4)
    qat.fit(x_train, y_train, epochs=args.qat_epochs, batch_size=args.batch_size,
            validation_split=0.1, verbose=args.verbose)
    qat_keras_acc = qat.evaluate(x_test, y_test, verbose=0)[1]

    #    The same fine-tune, distilled: the float model is the teacher.
    qat_distilled = tfmot.quantization.keras.quantize_model(model)
    distiller = tfmot.distillation.distill(qat_distilled, teacher=model)
    compile_model(distiller, 1e-4)
    distiller.fit(x_train, y_train, epochs=args.qat_epochs, batch_size=args.batch_size,
                  validation_split=0.1, verbose=args.verbose)

    # 4. Int8 export of the QAT models with the stock converter.
    int8 = dict(optimizations=[tf.lite.Optimize.DEFAULT],
                inference_input_type=tf.int8, inference_output_type=tf.int8)
    qat_tflite = export.to_tflite(qat, **int8)
    qat_distilled_tflite = export.to_tflite(qat_distilled, **int8)
    qat_runner = export.TFLiteModel(qat_tflite)
    int8_pred = qat_runner.predict(x_test).argmax(-1)
    keras_pred = qat.predict(x_test, verbose=0).argmax(-1)
    agreement = float(np.mean(int8_pred == keras_pred))

    # 5. Compare.
    rows = []
    for name, flatbuffer in [("float", float_tflite), ("post-training int8", ptq_tflite),
                             ("QAT int8", qat_tflite),
                             ("QAT int8 distilled", qat_distilled_tflite)]:
        runner = qat_runner if flatbuffer is qat_tflite else export.TFLiteModel(flatbuffer)
        rows.append({
            "model": name,
            "accuracy": runner.accuracy(x_test, y_test),
            "size_kb": len(flatbuffer) / 1024,
            "gzip_kb": export.gzipped_size(flatbuffer) / 1024,
            "latency_us": export.measure_latency(flatbuffer, x_test[0],
                                                 runs=args.latency_runs),
        })
    print(f"\nKeras accuracy: float {float_keras_acc:.4f}, QAT {qat_keras_acc:.4f}")
    print(f"QAT int8 .tflite vs Keras QAT model: top-1 agreement {agreement:.4f} "
          f"on {len(x_test)} test images")
    print(f"\n{'model':<20} {'accuracy':>9} {'size KB':>9} {'gzip KB':>9} {'latency us':>11}")
    for r in rows:
        print(f"{r['model']:<20} {r['accuracy']:>9.4f} {r['size_kb']:>9.1f} "
              f"{r['gzip_kb']:>9.1f} {r['latency_us']:>11.1f}")
    return {
        "rows": rows,
        "agreement": agreement,
        "float_keras_accuracy": float_keras_acc,
        "qat_keras_accuracy": qat_keras_acc,
        "qat_tflite": qat_tflite,
    }


if __name__ == "__main__":
    main()
