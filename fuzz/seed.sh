#!/usr/bin/env bash
# Fills corpus/<target>/ (not committed) with the starting inputs of every
# fuzz target: the committed seeds/, the project's own files, and, when
# ../shared is beside the project, its public inputs (never committed).
set -euo pipefail
cd "$(dirname "$0")"
shared=${MINI_XCEPTION_SHARED:-../../shared}
for target in model_text keras_hdf5 native_safetensors checkpoint cascade_xml image fer2013_csv; do
    mkdir -p "corpus/$target"
    if [ -d "seeds/$target" ]; then cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true; fi
done
cp -n ../models/*.yaml ../tests/models/*.yaml ../examples/models/*.yaml corpus/model_text/
cp -n ../docs/*.png corpus/image/
if [ -d "$shared" ]; then
    cp -n "$shared"/reference/images/* corpus/image/ 2>/dev/null || true
    cp -n "$shared"/reference/crops/*.png corpus/image/ 2>/dev/null || true
fi
for target in corpus/*; do
    echo "$target: $(ls "$target" | wc -l) inputs"
done
