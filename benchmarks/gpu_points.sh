#!/usr/bin/env bash
# The GPU points of the throughput benchmark (issue 20, item 5), as one prepared run for a lent GPU.
#
#   bash benchmarks/gpu_points.sh OUT_DIR
#
# Tabular Q on AccessPointSelection-v0 with the k = 4 look-ahead twin (M = D averaged rollouts per
# physical step): D = 1,000 / 10,000 / 100,000 digital domains with one seed, then 1 ... 1,024 vmapped
# seeds at D = 1,000; then the environments' own random-action throughput up to 2^20 parallel envs.
# Writes OUT_DIR/throughput.{json,png} and OUT_DIR/env/env_throughput.{json,png}. Needs jax with
# CUDA, gymnax (and gymnasium) importable, and the repository root on PYTHONPATH.
set -uo pipefail
out=${1:?usage: gpu_points.sh OUT_DIR}
mkdir -p "$out/env"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
timeout 330 python3 -m benchmarks.throughput --full --device gpu --cases ql-ap --features lookahead \
    --domains 1000,10000,100000 --seeds 1,32,256,1024 --seed-features lookahead --seed-domains 1000 \
    --no-reference --out "$out"
echo "throughput rc=$?"
timeout 150 python3 -m benchmarks.env_throughput --full --device gpu --out "$out/env"
echo "env_throughput rc=$?"
