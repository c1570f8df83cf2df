#!/usr/bin/env bash
# The guide's whole chain in one command: export, preprocess, inference, postprocess (mIoU), an evaluation
# report, a perf table, overlays of a few predictions, and the model on a few images of your own choosing.
# Default: the shipped demo model on a generated street-scene val set, everything under runs/demo/ (each
# result with the record of what produced it: metrics.yaml's run block, perf.csv's columns, predicted/run.yaml).
#
# Usage: bash demo.sh [options]
#   --checkpoint FILE     released checkpoint.pth, variant.yml beside it (default: models/demo/checkpoint.pth)
#   --data-root DIR       folder that holds the data set's top folder (default: a generated Cityscapes val set)
#   --work-dir DIR        where every output goes (default: runs/demo)
#   --window-stride N     window stride (default: window - 32, the guide's; upstream uses 512 at 768)
#   --route R             files: the guide's steps with .bin files between them (default);
#                         stream: segmenter_eval.py, no intermediate files (for the full Cityscapes val set)
#   --device D            engine target for inference and perf (default: cpu)
#   --batch-sizes "..."   batch sizes of the perf table (default: "1 4 8 16")
#   --perf-loop N         timed runs per batch size in the perf table (default: 20)
#   --images PATH         images (files, folders or a quoted glob) to segment with the model at the end, 8 at
#                         most (default: the first city of the val set)
# Example: bash demo.sh --route stream --device openvino --batch-sizes "1 4" --perf-loop 5
set -euo pipefail
cd "$(dirname "$0")"
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
checkpoint=models/demo/checkpoint.pth data_root="" work=runs/demo stride="" device=cpu batch_sizes="1 4 8 16" loop=20
route=files images=""
while [ $# -gt 0 ]; do
    case $1 in
        --checkpoint|--data-root|--work-dir|--window-stride|--device|--batch-sizes|--perf-loop|--route|--images)
            [ $# -ge 2 ] || { echo "error: $1 needs a value (see bash demo.sh --help)" >&2; exit 2; }
            case $1 in
                --checkpoint) checkpoint=$2 ;;
                --data-root) data_root=$2 ;;
                --work-dir) work=$2 ;;
                --window-stride) stride=$2 ;;
                --device) device=$2 ;;
                --batch-sizes) batch_sizes=$2 ;;
                --perf-loop) loop=$2 ;;
                --route) route=$2 ;;
                --images) images=$2 ;;
            esac
            shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see bash demo.sh --help)" >&2; exit 2 ;;
    esac
done
case $route in files|stream) ;; *) echo "error: --route must be files or stream, got $route" >&2; exit 2 ;; esac
bash setup.sh
py=.venv/bin/python
export PYTHON=$py
run() { printf '\n+'; printf ' %q' "$@"; printf '\n'; "$@"; }  # each command echoed so it can be pasted back
mkdir -p "$work"
if [ -z "$data_root" ]; then
    data_root=$work/data
    [ -d "$data_root/cityscapes" ] || run $py tools/make_dataset.py --data-root "$data_root" --split val \
        --n-images 24 --size 256 512 --seed 2026
fi
variant=$(dirname "$checkpoint")/variant.yml
run $py segmenter_pytorch2onnx.py -c "$checkpoint" -o "$work/model.onnx"
run cp "$variant" "$work/variant.yml"  # beside the ONNX model, where every script looks for its description
if [ "$route" = stream ]; then
    run $py segmenter_eval.py --model "$work/model.onnx" --cfg-path "$variant" --data-root "$data_root" \
        --device "$device" --metrics-path "$work/metrics.yaml" --pred-dir "$work/pred" --report "$work/report" \
        ${stride:+--window-stride "$stride"}
    overlay_source=(--data-root "$data_root")
else
    run $py segmenter_preprocess.py --cfg-path "$variant" --data-root "$data_root" --bin-dir "$work/bins" \
        --gt-path "$work/gt_file.txt" ${stride:+--window-stride "$stride"}
    run $py segmenter_infer.py --model "$work/model.onnx" --input "$work/bins" --output "$work/result" \
        --output_dirname result_bs1 --batchsize 1 --device "$device"
    run $py segmenter_postprocess.py --result-dir "$work/result/result_bs1" --gt-path "$work/gt_file.txt" \
        --metrics-path "$work/metrics.yaml" --pred-dir "$work/pred" --report "$work/report"
    overlay_source=(--gt-path "$work/gt_file.txt")
fi
run bash perf.sh "$work/model.onnx" --batch-sizes "$batch_sizes" --loop "$loop" --device "$device" --csv "$work/perf.csv"
run $py tools/make_overlays.py "${overlay_source[@]}" --pred-dir "$work/pred" --out-dir "$work/overlays"
if [ -z "$images" ]; then
    city=$(find "$data_root" -path '*leftImg8bit/val/*' -name '*.png' | sort | head -n 1)
    images=$(dirname "${city:-$data_root}")
fi
run $py segmenter_predict.py --model "$work/model.onnx" --input "$images" --output-dir "$work/predicted" \
    --device "$device" --precision fp32 --limit 8
echo
echo "metrics: $work/metrics.yaml   report: $work/report/report.html   perf: $work/perf.csv   overlays: $work/overlays/" \
    "  your images: $work/predicted/"
