#!/usr/bin/env bash
# Convert the exported ONNX model to one Ascend .om per batch size with ATC (the guide's call).
# Usage: bash convert_om.sh ONNX OUTPUT_PREFIX CHIP [BATCH_SIZE ...]
#   CHIP: the name `npu-smi info` shows, e.g. 310P3 (gives --soc_version=Ascend310P3)
#   BATCH_SIZE: default 1 4 8 16 32 64; writes OUTPUT_PREFIX_bs<N>.om for each.
# Example: bash convert_om.sh runs/demo/model.onnx runs/demo/segmenter 310P3 1 4 8
set -euo pipefail
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
case ${1:-} in -h|--help) usage; exit 0 ;; esac
if [ $# -lt 3 ]; then
    usage >&2
    exit 2
fi
onnx=$1 prefix=$2 chip=$3
shift 3
batch_sizes=("${@:-}")
[ -n "${batch_sizes[0]}" ] || batch_sizes=(1 4 8 16 32 64)
if [ ! -f "$onnx" ]; then
    echo "error: $onnx: ONNX model not found; export it with segmenter_pytorch2onnx.py" >&2
    exit 2
fi
if ! command -v atc >/dev/null 2>&1; then
    echo "error: atc not found; run on an Ascend host after 'source /usr/local/Ascend/ascend-toolkit/set_env.sh'" \
         "(without an Ascend card, run the ONNX model with segmenter_infer.py instead)" >&2
    exit 2
fi
# input height and width from the ONNX graph (the batch axis is dynamic there)
read -r height width < <("${PYTHON:-python3}" -c "
import onnx, sys
dims = [d.dim_value for d in onnx.load(sys.argv[1], load_external_data=False).graph.input[0].type.tensor_type.shape.dim]
print(dims[2], dims[3])" "$onnx")
for bs in "${batch_sizes[@]}"; do
    echo "converting $onnx to ${prefix}_bs${bs}.om (input ${bs}x3x${height}x${width}, Ascend${chip})"
    atc --framework=5 --model="$onnx" --output="${prefix}_bs${bs}" --input_format=NCHW \
        --input_shape="input:${bs},3,${height},${width}" --log=error --soc_version="Ascend${chip}" \
        --optypelist_for_implmode="Gelu" --op_select_implmode=high_performance
done
