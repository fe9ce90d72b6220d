#!/usr/bin/env bash
# The GPU throughput table: cnn, ae and cond_ae at 128 and 416 px, fp32 eager against bf16
# autocast and bf16 + torch.compile; each row is bench/throughput.py's (a) artzoo data path,
# (b) the model's ceiling and (c) the naive PIL path, with their ratios. Built to finish within
# 5 minutes on one modern GPU: 2 s timed per path and row, and a time budget past which rows not yet
# started are listed as skipped (the rows run mode by mode, so the compiled ones go first).
# Then bench/scale.py at 128 and 224 px on the GPU (every entry one epoch on a 15,000-painting
# folder, its analysis included), once per --scale-modes mode: the WikiArt-size table.
#
#   bash bench/gpu.sh                        # on a CUDA machine
#   bash bench/gpu.sh --device cpu --tiny    # the CPU smoke run the tests use (seconds; no scale pass)
#   bash bench/gpu.sh --dry-run              # print the commands, run nothing
#   bash bench/gpu.sh -- --images 4000       # anything after -- goes to bench/throughput.py
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

options:
  --device DEV     cuda (default), cuda:N, or cpu
  --tiny           smoke run: 24 JPEGs of 64 px, 16 and 24 px in place of 128 and 416,
                   fp32 and bf16 (no compile: its C++ build takes minutes on a CPU), 1 step each
  --seconds S      timed seconds per path and round, two rounds per row (default 1)
  --budget S       start no row after S seconds (default 240); 0: no limit
  --workers N      loader worker processes for (a), as the runner's data.workers (default 4)
  --out DIR        where the JPEGs and the decode caches go (default bench/out)
  --scale-images N paintings in bench/scale.py's folder (default 15000)
  --scale-modes M  bench/scale.py passes, comma-separated: bf16, bf16+compile (default both)
  --no-scale       the throughput table only
  --dry-run        print the commands and exit
  -h, --help       this text
EOF
}

die() { echo "bench/gpu.sh: $*" >&2; echo "try: bash bench/gpu.sh --help" >&2; exit 2; }
value() { [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "$1 needs a value"; }
number() { [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$1 takes a number, not '$2'"; }

device=cuda tiny=0 seconds=1 budget=240 workers=4 out="" dry=0 extra=()
scale=1 scale_images=15000 scale_modes=bf16,bf16+compile
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) value "$@"; device="$2"; shift 2 ;;
    --device=*) device="${1#*=}"; shift ;;
    --tiny) tiny=1; shift ;;
    --seconds) value "$@"; number "$1" "$2"; seconds="$2"; shift 2 ;;
    --budget) value "$@"; number "$1" "$2"; budget="$2"; shift 2 ;;
    --workers) value "$@"; [[ "$2" =~ ^[0-9]+$ ]] || die "--workers takes a whole number, not '$2'"
               workers="$2"; shift 2 ;;
    --out) value "$@"; out="$2"; shift 2 ;;
    --scale-images) value "$@"; [[ "$2" =~ ^[0-9]+$ ]] || die "--scale-images takes a whole number, not '$2'"
                    scale_images="$2"; shift 2 ;;
    --scale-modes) value "$@"; [[ "$2" =~ ^(bf16|bf16\+compile)(,(bf16|bf16\+compile))*$ ]] \
                     || die "--scale-modes takes bf16 and/or bf16+compile, not '$2'"; scale_modes="$2"; shift 2 ;;
    --no-scale) scale=0; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[[ "$device" =~ ^(cuda(:[0-9]+)?|cpu)$ ]] || die "--device takes cuda, cuda:N or cpu, not '$device'"

if [[ $tiny == 1 ]]; then
  args=(cnn,ae,cond_ae data.image_size=16,24 --images 24 --source-size 64 --batch-size 4
        --modes fp32,bf16 --steps 1 --warmup 1 --rounds 1 --seconds 0 --workers 0)
else
  args=(cnn,ae,cond_ae data.image_size=128,416 --images 3072 --source-size 416 --batch-size 256,64
        --modes fp32,bf16,bf16+compile --steps 3 --warmup 5 --rounds 2 --seconds "$seconds" --workers "$workers")
fi
args+=(--device "$device" --budget "$budget")
[[ -n "$out" ]] && args+=(--out "$out")
cmd=("$PY" "$ROOT/bench/throughput.py" "${args[@]}" ${extra[@]+"${extra[@]}"})

# bench/scale.py on the GPU: one pass per mode, each in its own folder, sharing the paintings
scale_out="${out:-$ROOT/bench/out}"
scales=()
if [[ $scale == 1 && $tiny == 0 ]]; then
  IFS=, read -r -a modes <<< "$scale_modes"
  for mode in "${modes[@]}"; do
    sets=("train.device=$device" "train.precision=bf16" "data.workers=$workers")
    [[ "$mode" == *compile ]] && sets+=("train.compile=true")
    scales+=("$(printf '%q ' "$PY" "$ROOT/bench/scale.py" --images "$scale_images" --sizes 128,224 \
                --out "$scale_out/scale-gpu-${mode/+/-}" --paintings "$scale_out/scale" --set "${sets[@]}")")
  done
fi

if [[ $dry == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
  for line in ${scales[@]+"${scales[@]}"}; do echo "$line"; done
  exit 0
fi
if [[ "$device" == cuda* ]] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "bench/gpu.sh: no CUDA device here (torch.cuda.is_available() is False)." >&2
  echo "For the CPU smoke run: bash bench/gpu.sh --device cpu --tiny" >&2
  exit 1
fi
[[ "$device" == cuda* ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"${cmd[@]}"
for line in ${scales[@]+"${scales[@]}"}; do eval "$line"; done
echo "bench/gpu.sh: ${SECONDS} s wall time in all"
