#!/usr/bin/env bash
# Throughput per batch size: ais_bench on PREFIX_bs<N>.om where ais_bench is installed, else
# segmenter_infer.py --loop on the ONNX model. Prints a table and writes a CSV.
#
# Usage: bash perf.sh MODEL [options]
#   MODEL                      an .onnx file, or the .om prefix given to convert_om.sh
#   --batch-sizes "1 4 8 16"   batch sizes to measure (default: 1 4 8 16)
#   --loop N                   timed runs per batch size (default: 100 with ais_bench, 20 otherwise)
#   --device D                 engine for segmenter_infer.py, a device of the engine table (segmenter/engines/
#                              table.py; segmenter_infer.py --help lists them) (default: cpu)
#   --precision P              a precision that device offers (default: fp32)
#   --csv FILE                 where to write the table, each row with what produced it (model file and sha256,
#                              time, CPU and GPUs, versions) (default: perf.csv)
#   --data-root DIR            also count the windows of a data set and project its inference time
#   --cfg-path FILE            with --data-root: the model's variant.yml (default: variant.yml beside MODEL)
#   --views "ARGS"             with --data-root: view flags of segmenter_eval.py, e.g. "--multiscale"
# Python: $PYTHON, else the repository's .venv, else python3.
# Example: bash perf.sh runs/demo/model.onnx --batch-sizes "1 4" --loop 5 --csv runs/demo/perf.csv
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "error: $*" >&2; exit 2; }
if [ -n "${PYTHON:-}" ]; then
    python=$PYTHON
elif [ -x "$here/.venv/bin/python" ]; then
    python=$here/.venv/bin/python
else
    python=python3
fi
case ${1:-} in
    -h|--help) usage; exit 0 ;;
    ""|-*) usage >&2; exit 2 ;;
esac
model=$1
shift
batch_sizes="1 4 8 16" loop="" device=cpu precision=fp32 csv=perf.csv data_root="" cfg_path="" views=""
while [ $# -gt 0 ]; do
    case $1 in
        --batch-sizes|--loop|--device|--precision|--csv|--data-root|--cfg-path|--views)
            [ $# -ge 2 ] && { [[ $2 != --* ]] || [ "$1" = --views ]; } || die "$1 needs a value (see bash perf.sh --help)"
            case $1 in
                --batch-sizes) batch_sizes=$2 ;;
                --loop) loop=$2 ;;
                --device) device=$2 ;;
                --precision) precision=$2 ;;
                --csv) csv=$2 ;;
                --data-root) data_root=$2 ;;
                --cfg-path) cfg_path=$2 ;;
                --views) views=$2 ;;
            esac
            shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see bash perf.sh --help)" ;;
    esac
done
read -r -a sizes <<<"$batch_sizes"
[ ${#sizes[@]} -gt 0 ] || die "--batch-sizes is empty; give e.g. \"1 4 8 16\""
for bs in "${sizes[@]}"; do
    [[ $bs =~ ^[1-9][0-9]*$ ]] || die "--batch-sizes: '$bs' is not a positive integer"
done
[ -z "$loop" ] || [[ $loop =~ ^[1-9][0-9]*$ ]] || die "--loop: '$loop' is not a positive integer"
[ -d "$csv" ] && die "--csv $csv: is a folder; give a file path such as $csv/perf.csv"
csv_dir=$(dirname -- "$csv")
mkdir -p -- "$csv_dir" 2>/dev/null && [ -w "$csv_dir" ] && touch -- "$csv_dir/.perf-write-test.$$" 2>/dev/null \
    || die "--csv $csv: cannot write in $csv_dir; choose a writable path"
rm -f -- "$csv_dir/.perf-write-test.$$"
"$python" -c "import numpy, onnxruntime" 2>/dev/null \
    || die "$python lacks the requirements; run 'bash setup.sh' (creates .venv) or set PYTHON to a set-up interpreter"
offered=$(PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" -c 'import sys
from segmenter.engines.table import device_record
from segmenter.errors import SegmenterError
try:
    device_record(sys.argv[1], sys.argv[2])
except SegmenterError as exc:
    sys.exit(str(exc))' "$device" "$precision" 2>&1) || die "--device $device --precision $precision: $offered"
clash=$(PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" -c 'import sys
from segmenter.errors import SegmenterError
from segmenter.files import refuse_overwrite
try:
    refuse_overwrite({"CSV file": sys.argv[1]}, {"model": sys.argv[2], "data root": sys.argv[3] or None,
                                                 "config": sys.argv[4] or None})
except SegmenterError as exc:
    sys.exit(str(exc))' "$csv" "$model" "$data_root" "$cfg_path" 2>&1) || die "--csv $clash"
if [[ $model != *.onnx ]] && "$python" -c "import ais_bench" 2>/dev/null; then
    engine=ais_bench
else
    engine=segmenter_infer
    [ -f "$model" ] || die "$model: ONNX model not found (ais_bench is not installed, so .om files cannot run here)"
fi
total=""
if [ -n "$data_root" ]; then
    read -r -a view_args <<<"$views"
    census=$("$python" "$here/segmenter_eval.py" --model "$model" ${cfg_path:+--cfg-path "$cfg_path"} \
             --data-root "$data_root" --dry-run "${view_args[@]}" 2>&1) || { echo "$census" >&2; exit 2; }
    echo "$census"
    total=$(echo "$census" | sed -n 's/.*, \([0-9][0-9]*\) in all for .*/\1/p')
fi
provenance=$(PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$python" -c 'import csv, io, sys
from segmenter.evaluation.provenance import perf_columns
columns = perf_columns(sys.argv[1])
out = io.StringIO()
csv.writer(out, lineterminator="\n").writerows([columns.keys(), columns.values()])
print(out.getvalue(), end="")' "$model") || die "$model: cannot describe the run ($provenance)"
prov_header=$(echo "$provenance" | sed -n 1p)
prov_values=$(echo "$provenance" | sed -n 2p)
rows=("batch_size,windows_per_s,ms_per_batch,engine,device,precision,$prov_header")
for bs in "${sizes[@]}"; do
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
    ms=$(awk -v f="$fps" -v b="$bs" 'BEGIN { printf "%.3f", 1000 * b / f }')
    rows+=("$bs,$fps,$ms,$name,$device,$precision,$prov_values")
    projected=""
    [ -z "$total" ] || projected=$(awk -v n="$total" -v f="$fps" 'BEGIN { t = n / f
        if (t < 120) printf "  %.1f s", t; else if (t < 7200) printf "  %.1f min", t / 60; else printf "  %.1f h", t / 3600
        printf " for the data set (%d windows)", n }')
    printf 'batch %-3s %10.3f windows/s  %10s ms/batch%s  (%s)\n' "$bs" "$fps" "$ms" "$projected" "$name"
done
tmp="$csv_dir/.$(basename -- "$csv").$$.tmp"  # created with the user's umask, renamed into place
printf '%s\n' "${rows[@]}" >"$tmp"
mv -f -- "$tmp" "$csv"
echo "wrote $csv"
