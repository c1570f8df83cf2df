#!/usr/bin/env bash
# Throughput per batch size: ais_bench on PREFIX_bs<N>.om where ais_bench is installed, else
# segmenter_infer.py --loop on the ONNX model. Prints a table and writes a CSV.
# Usage: bash perf.sh MODEL [options]
#   MODEL             an .onnx file, or the .om prefix given to convert_om.sh
#   --batch-sizes "1 4 8 16"   batch sizes to measure (default: 1 4 8 16)
#   --loop N          timed runs per batch size (default: 100 with ais_bench, 20 otherwise)
#   --device D        engine target for segmenter_infer.py, e.g. cpu, openvino, cuda, tensorrt (default: cpu)
#   --precision P     precision for segmenter_infer.py, e.g. fp32, bf16, fp16, int8 (default: fp32)
#   --csv FILE        where to write the table (default: perf.csv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
if [ $# -lt 1 ] || [[ $1 == -* ]]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
    exit 2
fi
model=$1
shift
batch_sizes="1 4 8 16" loop="" device=cpu precision=fp32 csv=perf.csv
while [ $# -gt 0 ]; do
    case $1 in
        --batch-sizes) batch_sizes=$2; shift 2 ;;
        --loop) loop=$2; shift 2 ;;
        --device) device=$2; shift 2 ;;
        --precision) precision=$2; shift 2 ;;
        --csv) csv=$2; shift 2 ;;
        *) echo "error: unknown option $1 (see bash perf.sh without arguments)" >&2; exit 2 ;;
    esac
done
if [[ $model != *.onnx ]] && "$python" -c "import ais_bench" 2>/dev/null; then
    engine=ais_bench
else
    engine=segmenter_infer
    if [ ! -f "$model" ]; then
        echo "error: $model: ONNX model not found (ais_bench is not installed, so .om files cannot run here)" >&2
        exit 2
    fi
fi
rows=("batch_size,windows_per_s,ms_per_batch,engine")
for bs in $batch_sizes; do
    if [ $engine = ais_bench ]; then
        log=$("$python" -m ais_bench --model "${model}_bs${bs}.om" --loop="${loop:-100}" --batchsize="$bs" 2>&1) \
            || { echo "$log" >&2; exit 1; }
        name="ais_bench ${model}_bs${bs}.om"
    else
        log=$("$python" "$here/segmenter_infer.py" --model "$model" --loop "${loop:-20}" --batchsize "$bs" \
              --device "$device" --precision "$precision" 2>&1) || { echo "$log" | grep -v '%|' >&2; exit 1; }
        name=$(echo "$log" | sed -n 's/^\[INFO\] \([^:]*\): .*/\1/p' | head -n 1)
    fi
    line=$(echo "$log" | grep -i "throughput" | tail -n 1)
    fps=${line##*:}
    fps=$(echo "$fps" | tr -d ' ')
    ms=$(awk -v f="$fps" -v b="$bs" 'BEGIN { printf "%.2f", 1000 * b / f }')
    rows+=("$bs,$fps,$ms,$name")
    printf 'batch %-3s %10.3f windows/s  %10s ms/batch  (%s)\n' "$bs" "$fps" "$ms" "$name"
done
tmp=$(mktemp "$csv.XXXXXX")
printf '%s\n' "${rows[@]}" >"$tmp"
mv "$tmp" "$csv"
echo "wrote $csv"
