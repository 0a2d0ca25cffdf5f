#!/usr/bin/env sh
# Regenerates metadata_schema_py_generated.py from metadata_schema.fbs (the public TFLite metadata
# schema, tensorflow/tflite-support tensorflow_lite_support/metadata/metadata_schema.fbs, v1.5.0).
# Needs Debian's flatc: apt-get install -y flatbuffers-compiler  (committed output: flatc 2.0.8).
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
flatc --python --gen-object-api --gen-onefile -o "$tmp" metadata_schema.fbs
mv "$tmp/metadata_schema_generated.py" metadata_schema_py_generated.py
rm -rf "$tmp"
