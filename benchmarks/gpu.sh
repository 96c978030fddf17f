#!/usr/bin/env bash
# The whole report at one profile's sizes on one GPU, then per notebook its minutes and
# images/s, and the total (benchmarks/gpu_summary.py). `full` is meant to take 10 min on one H200.
#
#   bash benchmarks/gpu.sh [PROFILE [REPORT ARGS...]]   # PROFILE full (default), cpu or smoke
#   make gpu [PROFILE_GPU=full]
#   bash benchmarks/gpu.sh prepare       # here, with pip and ../shared/data, before a GPU machine
#
# Python: $PYTHON, else .venv/bin/python, else python3; it needs torch and torchvision. The
# report's own packages (papermill, nbconvert, ipykernel, ...) come from the wheels in .whl/
# (installed into /tmp/labkit-site) when that python cannot import them. `prepare` fills .whl/
# for CPython $GPU_PYVER (3.12) on manylinux x86-64, pinned to this venv's versions, less those
# in $ON_DEVICE (the H200 image has them); it is the same as
#   pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 ... -d .whl papermill==V nbconvert==V ipykernel==V
# Data (smoke needs none): $LABKIT_DATA/MNIST/raw (the four .gz files suffice) and an ImageFolder
# tree $LABKIT_CIFAR10_FOLDER (train/, test/); unset, both come from .gpu/data/ when it exists,
# which `prepare` copies from ../shared/data (MNIST .gz 12 MB, cifar10-images 116 MB: 10 class
# folders of 10-12 MB, so it can travel in parts where a copy is size-limited; .whl/ is 16 MB).
# GPU_TIME_LIMIT=S stops the report after S s (SIGTERM: finished notebooks are kept, the
# summary still prints). With $OUT set (a folder), the report goes there as a .tgz with the log.
# Writes $LABKIT_REPORTS/<profile>/ (default reports/<profile>/). Exits non-zero when the
# report failed (its status), 3 when packages or data are missing.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
WHEELS=${GPU_WHEELS:-.whl}
ON_DEVICE=${ON_DEVICE-attrs certifi charset_normalizer click idna jinja2 markupsafe packaging
psutil pygments python_dateutil pyyaml requests six tqdm typing_extensions urllib3}
die() { echo "gpu.sh: error: $*" >&2; exit 3; }

if [ "${1:-}" = prepare ]; then
    pins=$("$PY" -c "import importlib.metadata as m
for n in ('papermill', 'nbconvert', 'ipykernel'):
    try: print(f'{n}=={m.version(n)}')
    except m.PackageNotFoundError: print(n)")
    plats=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux1_x86_64)
    "$PY" -m pip download -q --only-binary=:all: --python-version "${GPU_PYVER:-3.12}" \
        --implementation cp "${plats[@]/#/--platform=}" -d "$WHEELS" $pins || die "pip download"
    shopt -s nocaseglob
    for n in $ON_DEVICE; do rm -f "$WHEELS/$n"-*.whl; done
    src=${SHARED_DATA:-../shared/data}
    if [ -d "$src/MNIST/raw" ] && [ ! -d .gpu/data/MNIST ]; then
        mkdir -p .gpu/data/MNIST/raw && cp "$src"/MNIST/raw/*.gz .gpu/data/MNIST/raw/
    fi
    [ -d "$src/cifar10-images" ] && [ ! -d .gpu/data/cifar10-images ] &&
        mkdir -p .gpu/data && cp -r "$src/cifar10-images" .gpu/data/
    du -sh --apparent-size "$WHEELS" .gpu/data/* 2>/dev/null
    exit 0
fi

PROFILE=${1:-full}
shift $(( $# > 0 ? 1 : 0 ))
echo "== device"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
    echo "nvidia-smi: none"
fi
"$PY" -c "import os, platform, torch, torchvision as tv
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else '-'
print(f'python {platform.python_version()} | torch {torch.__version__} | torchvision',
      f'{tv.__version__} | cuda available {torch.cuda.is_available()} ({gpu})',
      f'| {os.cpu_count()} cpus')
" || die "$PY cannot import torch and torchvision"

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # the kernels import labkit from here
have() { "$PY" -c "import papermill, nbconvert, nbformat, nbclient, ipykernel" 2>/dev/null; }
why() { "$PY" -c "import papermill, nbconvert, nbformat, nbclient, ipykernel" 2>&1 | tail -1; }
if ! have; then
    shopt -s nullglob; whl=("$WHEELS"/*.whl); shopt -u nullglob
    [ ${#whl[@]} -gt 0 ] || die "$PY cannot import papermill, nbconvert and ipykernel, and" \
        "$WHEELS/ holds no wheels. Run 'bash benchmarks/gpu.sh prepare' on a machine with pip" \
        "(or pip install -e '.[dev]') and bring $WHEELS/ along."
    site=${GPU_SITE:-/tmp/labkit-site}
    # only the wheels of packages this python lacks: none shadows what it has
    need=$("$PY" - "${whl[@]}" <<'EOF'
import importlib.metadata as md, os, re, sys
for w in sys.argv[1:]:
    try:
        md.version(re.sub(r"[-_.]+", "-", os.path.basename(w).split("-")[0]))
    except md.PackageNotFoundError:
        print(w)
EOF
)
    [ -n "$need" ] || die "$PY has every package of $WHEELS/, yet: $(why)"
    echo "installing $(echo $need | wc -w) wheels from $WHEELS/ into $site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" $need || die "pip install from $WHEELS/ failed"
    export PYTHONPATH="$site:$PYTHONPATH"
    export JUPYTER_PATH="$site/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"   # nbconvert templates
    have || die "after installing $WHEELS/: $(why)"
fi

echo "== data"
if [ "$PROFILE" = smoke ]; then
    echo "smoke: synthetic stand-ins, no files"
else
    [ -z "${LABKIT_DATA:-}" ] && [ -d .gpu/data ] && export LABKIT_DATA=$PWD/.gpu/data
    data=${LABKIT_DATA:-data}
    [ -z "${LABKIT_CIFAR10_FOLDER:-}" ] && [ -d "$data/cifar10-images/train" ] &&
        export LABKIT_CIFAR10_FOLDER=$data/cifar10-images
    ls "$data"/MNIST/raw/train-images-idx3-ubyte* >/dev/null 2>&1 ||
        die "no MNIST in $data/MNIST/raw: set LABKIT_DATA or bring .gpu/data (prepare)"
    echo "MNIST: $data/MNIST/raw"
    cifar=${LABKIT_CIFAR10_FOLDER:-}
    if [ -n "$cifar" ]; then
        [ -d "$cifar/train" ] && [ -d "$cifar/test" ] || die "$cifar lacks train/ or test/"
        echo "CIFAR-10: $cifar: $(find "$cifar/train" -type f | wc -l) train," \
            "$(find "$cifar/test" -type f | wc -l) test images"
    elif [ -d "$data/cifar-10-batches-py" ]; then
        echo "CIFAR-10: $data/cifar-10-batches-py"
    else
        die "no CIFAR-10: set LABKIT_CIFAR10_FOLDER or bring .gpu/data/cifar10-images (prepare)"
    fi
    "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" ||
        echo "warning: no CUDA device; profile $PROFILE is sized for one GPU"
fi

echo "== report (profile $PROFILE)"
log=${GPU_LOG:-$(mktemp -t labkit-gpu-XXXXXX.log)}
limit=()
[ -n "${GPU_TIME_LIMIT:-}" ] && limit=(timeout -s TERM "$GPU_TIME_LIMIT")
PYTHONUNBUFFERED=1 "${limit[@]}" "$PY" -m labkit report --profile "$PROFILE" --no-progress "$@" \
    2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

echo "== summary (profile $PROFILE; runner exit status $rc; log $log)"
reports=${LABKIT_REPORTS:-reports}
"$PY" benchmarks/gpu_summary.py "$reports/$PROFILE" --log "$log"
src=$?
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    tar -czf "$OUT/report-$PROFILE.tgz" --exclude='.*' --exclude='*.lock' \
        -C "$reports" "$PROFILE" &&
        cp "$log" "$OUT/gpu-$PROFILE.log" && echo "copied the report and the log to $OUT"
fi
[ "$rc" -ne 0 ] && exit "$rc"
exit "$src"
