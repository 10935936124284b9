"""tfmot-lite: the TensorFlow Model Optimization Toolkit's training-time API on Keras 3."""

from setuptools import find_packages, setup

setup(
    name="tfmot-lite",
    version="0.1.0",
    description=(
        "Pruning, quantization-aware training and weight clustering for Keras 3, "
        "with tfmot's public API."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfmot_lite", "tfmot_lite.*"]),
    python_requires=">=3.10",
    # Training runs on any Keras 3 backend; TensorFlow is needed for the
    # TensorFlow backend and for TFLite export. Pick the build that fits:
    # `[tf]` (GPU-capable) or `[cpu]` (the lighter CPU-only wheel).
    install_requires=["keras>=3.4", "numpy"],
    extras_require={
        # tensorboard: `PruningSummaries` / `ClusteringSummaries` write with
        # TensorBoard's summary ops, which TensorFlow 2.21 no longer installs.
        "tf": ["tensorflow>=2.16", "tensorboard"],
        "cpu": ["tensorflow-cpu>=2.16", "tensorboard"],
        "data": ["scikit-learn", "tensorflow-datasets"],
        "export": ["ai-edge-litert", "tflite", "matplotlib"],
        "plots": ["matplotlib"],
        "tensorboard": ["tensorboard"],
        # KerasHub models (optimized inside their blocks; tests build them
        # from config, no download).
        "hub": ["keras-hub"],
        # benchmarks/training_overhead.py also trains tfmot's techniques on
        # tf_keras (Keras 2) in the same process when these are installed.
        "bench": ["tensorflow-model-optimization>=0.8", "tf_keras~=2.21.0"],
        "test": [
            "jax[cpu]",
            "tensorboard",
            "scikit-learn",
            "tensorflow-datasets",
            "ai-edge-litert",
            "tflite",
            "matplotlib",
            "pytest",
            "pytest-xdist",
            "hypothesis",
            "keras-hub",
        ],
    },
    entry_points={"console_scripts": ["tfmot-lite=tfmot_lite.cli:main"]},
)
