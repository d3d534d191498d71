#!/usr/bin/env bash
# One GPU check for a lent GPU machine (H100/H200), under 8 minutes, everything into $OUT:
#   $OUT/gpu_report.json   every figure (per-step JSON merged) + the card's name + step statuses
#   $OUT/gpu_check.log     the whole console output
#
# Steps (each under its own time limit; a failing step is recorded and the next one runs):
#   0. install the carried wheels (wheels/, from benchmarks/prepare_gpu_wheels.sh) with --no-deps
#   1. pytest -m gpu  (tests/test_gpu.py: CUDA vs CPU bit-exactness, train pairs, a training step)
#   2. the converter on CUDA, eager and torch.compile, batch 256 at 224 px (and eager at 128 px),
#      against the official formulation and the device memory-copy bound
#   3. bf16 mixed-precision training steps of ms_resnet18 at 128 px vs the SpikingJelly-built network
#   4. ONNX Runtime CUDA provider: parity and speed when onnxruntime-gpu is installed, else a skip line
#   5. peak CUDA memory per batch size (converter, training step)
#
# On the device (device tool): carry ["wheels"], command `bash benchmarks/gpu_check.sh`.
# Rehearsal on a CPU machine, same code paths at tiny sizes:
#   DEVICE=cpu bash benchmarks/gpu_check.sh --dry-run        (OUT defaults to ./gpu_check_out)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY=0
for arg in "$@"; do
    case "$arg" in
    --dry-run) DRY=1 ;;
    -h | --help)
        sed -n '2,20p' "$0"
        exit 0
        ;;
    *)
        echo "error: unknown option $arg (use --dry-run or --help)" >&2
        exit 2
        ;;
    esac
done
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
PARTS=$(mktemp -d)
LOG=$OUT/gpu_check.log
T0=$(date +%s)

if [[ -n "${PYTHON:-}" ]]; then
    PY=$PYTHON
elif [[ "$DEVICE" == cpu && -x .venv/bin/python ]]; then
    PY=.venv/bin/python
else
    PY=python3
fi
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

step() { # step NAME LIMIT_S CMD... : run with a time limit, record the status
    local name=$1 limit=$2
    shift 2
    local s0
    s0=$(date +%s)
    echo
    echo "=== [$name] limit ${limit}s: $*"
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    local dt=$(($(date +%s) - s0))
    echo "=== [$name] exit $rc after ${dt}s (total $(($(date +%s) - T0))s)"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$dt" >>"$PARTS/status.tsv"
    return 0
}

run_all() {
echo "gpu_check: DEVICE=$DEVICE dry_run=$DRY python=$PY out=$OUT"
date -u

# 0. wheels -----------------------------------------------------------------------------------
if compgen -G "wheels/*.whl" >/dev/null && [[ "$DRY" == 0 ]]; then
    step wheels 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/i2e_site wheels/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/i2e_site"
elif [[ "$DRY" == 0 ]]; then
    echo "note: no wheels/ carried: snntorch, kornia, jsonargparse, spikingjelly must already be importable"
fi
step env 60 "$PY" - "$PARTS/env.json" <<'EOF'
import json, platform, subprocess, sys
import torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count,
                cuda=torch.version.cuda)
    try:
        info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm",
                                             "--format=csv,noheader"], capture_output=True, text=True,
                                            timeout=20).stdout.strip()
    except Exception as exc:  # nvidia-smi is informative only
        info["nvidia_smi"] = f"unavailable: {exc}"
for mod in ("snntorch", "kornia", "jsonargparse", "spikingjelly", "onnxruntime", "lightning"):
    try:
        m = __import__(mod)
        info[mod] = getattr(m, "__version__", "?")
    except Exception as exc:
        info[mod] = f"missing ({type(exc).__name__})"
try:
    import onnxruntime as ort
    info["onnxruntime_providers"] = ort.get_available_providers()
except Exception:
    info["onnxruntime_providers"] = []
print(json.dumps(info, indent=1))
json.dump(info, open(sys.argv[1], "w"))
EOF

# 1. tests marked gpu -------------------------------------------------------------------------
step pytest_gpu 150 "$PY" -m pytest -m gpu tests -q -p no:cacheprovider --continue-on-collection-errors \
    --junitxml="$PARTS/pytest_gpu.xml"

# 2. converter on the device --------------------------------------------------------------------
COMPILE_FLAG=--no_compile
[[ -n "${DRY_COMPILE:-}" ]] && COMPILE_FLAG=
if [[ "$DRY" == 1 ]]; then
    step converter_224 120 "$PY" -m benchmarks.converter --device "$DEVICE" --resolutions 24 --batch 4 \
        --repeats 2 --no_onnx $COMPILE_FLAG --json "$PARTS/converter_224.json"
    step converter_128 60 "$PY" -m benchmarks.converter --device "$DEVICE" --resolutions 16 --batch 4 \
        --repeats 2 --no_onnx --no_compile --json "$PARTS/converter_128.json"
else
    step converter_224 200 "$PY" -m benchmarks.converter --device "$DEVICE" --resolutions 224 --batch 256 \
        --repeats 30 --no_onnx --json "$PARTS/converter_224.json"
    step converter_128 60 "$PY" -m benchmarks.converter --device "$DEVICE" --resolutions 128 --batch 256 \
        --repeats 30 --no_onnx --no_compile --json "$PARTS/converter_128.json"
fi

# 3. bf16 training steps vs SpikingJelly ------------------------------------------------------------
if [[ -f benchmarks/train_step.py ]]; then
    if [[ "$DRY" == 1 ]]; then
        step train_step 240 "$PY" benchmarks/train_step.py --device "$DEVICE" --arch ms_resnet18 --resolution 16 \
            --batch 2 --timesteps 2 --warmup 1 --repeats 2 --json "$PARTS/train_step.json"
    else
        step train_step 150 "$PY" benchmarks/train_step.py --device "$DEVICE" --amp bf16 --arch ms_resnet18 \
            --resolution 128 --batch 64 --timesteps 8 --warmup 3 --repeats 10 --json "$PARTS/train_step.json"
    fi
else
    echo "skip: benchmarks/train_step.py not present"
fi

# 4. ONNX Runtime CUDA provider -------------------------------------------------------------------
if "$PY" -c "import onnxruntime as o, sys; sys.exit(0 if 'CUDAExecutionProvider' in o.get_available_providers() else 1)" 2>/dev/null \
    && [[ "$DEVICE" == cuda* ]]; then
    step onnx_cuda 150 "$PY" benchmarks/onnx_speed.py --device cuda --batch 256 --resolution 224 --repeats 20 \
        --json "$PARTS/onnx_cuda.json"
else
    echo "skip: ONNX Runtime CUDA provider not available (onnxruntime-gpu is not installed here); parity and speed not measured"
    printf 'onnx_cuda\tskipped\t0\n' >>"$PARTS/status.tsv"
    if [[ "$DRY" == 1 ]]; then # rehearse the same script on the CPU provider
        step onnx_cpu_dry 120 "$PY" benchmarks/onnx_speed.py --device cpu --batch 2 --resolution 16 --repeats 2 \
            --json "$PARTS/onnx_cpu_dry.json"
    fi
fi

# 5. peak memory ---------------------------------------------------------------------------------
if [[ "$DRY" == 1 ]]; then
    step memory 240 "$PY" -m benchmarks.memory --device "$DEVICE" --resolution 16 --batches 2 \
        --train_resolution 16 --train_batches 2 --timesteps 2 --json "$PARTS/memory.json"
else
    step memory 90 "$PY" -m benchmarks.memory --device "$DEVICE" --resolution 224 --batches '[32,256]' \
        --train_resolution 128 --train_batches '[32,64]' --timesteps 8 --json "$PARTS/memory.json"
fi

# merge ----------------------------------------------------------------------------------------------
"$PY" - "$PARTS" "$OUT/gpu_report.json" "$DRY" "$(($(date +%s) - T0))" <<'EOF'
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
parts, out, dry, total = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
report = {"dry_run": dry, "total_seconds": total, "steps": {}}
if (parts / "status.tsv").exists():
    for line in (parts / "status.tsv").read_text().splitlines():
        name, rc, dt = line.split("\t")
        report["steps"][name] = {"exit": rc, "seconds": int(dt)}
for f in sorted(parts.glob("*.json")):
    try:
        report[f.stem] = json.loads(f.read_text())
    except ValueError as exc:
        report[f.stem] = {"error": f"unreadable JSON: {exc}"}
x = parts / "pytest_gpu.xml"
if x.exists():
    suite = ET.parse(x).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    report["pytest_gpu"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
summary = []
for key in ("converter_224", "converter_128"):
    for t in report.get(key, {}).get("targets", []):
        summary.append(f"{key}: {t['target']}: {t['value']:.4g} -> {'met' if t['met'] else 'MISSED'}")
report["summary"] = summary
report["card"] = report.get("env", {}).get("gpu", "no GPU")
out.write_text(json.dumps(report, indent=1, default=str))
print("\n".join(["", f"card: {report['card']}", *summary, f"steps: {report['steps']}", f"pytest gpu: {report.get('pytest_gpu')}",
                 f"total {total}s; wrote {out}"]))
EOF
}

run_all 2>&1 | tee "$LOG"
rm -rf "$PARTS"
