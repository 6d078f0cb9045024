#!/usr/bin/env bash
# The CUDA checks, in one run on a GPU machine (README, "Tested on a GPU"): benchmarks/cuda_checks.sh OUT
#
# For a machine whose python3 already has torch, timm, safetensors, scikit-learn and pytest (with xdist) and no
# network: the package goes on PYTHONPATH as it installs (nasnet_zoo/, and search/ as nasnet_zoo.search), nothing
# is installed or downloaded. Each step has its own time limit and log under OUT; a failed step does not stop the
# next one.
set -u
OUT=$(mkdir -p "${1:?usage: benchmarks/cuda_checks.sh OUT}" && cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SITE=$(mktemp -d)
cp -r "$ROOT/nasnet_zoo" "$SITE/nasnet_zoo" && cp -r "$ROOT/search" "$SITE/nasnet_zoo/search"
export PYTHONPATH="$SITE:$ROOT" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
cd "$ROOT" || exit 1
step() { echo "== $1 ($(date -u +%T))"; }

step "machine"
nvidia-smi -L
python3 -c "import sys, torch, timm; print(sys.version.split()[0], torch.__version__, timm.__version__, \
torch.cuda.get_device_name())"

step "1. tests parametrized over tests.helpers.DEVICES, and the training loop's (CUDA is fit's default device)"
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_search_supernet.py \
    tests/test_search_sharing.py tests/test_train_loop.py tests/test_train_evaluate.py >"$OUT/pytest.log" 2>&1
echo "pytest exit $?"; tail -15 "$OUT/pytest.log"

step "2. fine-tuning on CUDA: bf16 autocast + channels_last in one process, then one NCCL replica (torchrun), resumed"
ft=(python3 -m nasnet_zoo.cli finetune nasnet_cifar digits --no-pretrained --num-cells 3 --filters 8 --workers 2)
{
    timeout 90 "${ft[@]}" --epochs 2 --amp --channels-last --out "$SITE/ft-amp"; echo "amp exit $?"
    timeout 90 "${ft[@]}" --epochs 2 --nproc 1 --out "$SITE/ft-nccl"; echo "nccl exit $?"
    timeout 90 "${ft[@]}" --epochs 3 --nproc 1 --out "$SITE/ft-nccl" --resume; echo "nccl resume exit $?"
    tail -n 3 "$SITE"/ft-*/metrics.jsonl
} >"$OUT/finetune.log" 2>&1
grep -E "exit|val_acc" "$OUT/finetune.log" | tail -8

step "3. the weight-sharing search of cifar10-ws on CUDA (random CIFAR-shaped data: rates, not accuracy)"
timeout 300 python3 -m benchmarks.sharing_device --preset cifar10-ws --random-data --minutes 2 --resume-minutes 0.5 \
    --results "$OUT" >"$OUT/sharing.log" 2>&1
echo "sharing exit $?"; tail -22 "$OUT/sharing.log"
step "done"
