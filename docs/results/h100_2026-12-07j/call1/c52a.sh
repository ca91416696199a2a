# session 52 (first): GPU tests of the last session's code (collaborator_rows, channels-last pipeline, lockstep); the sweep's features float32 against float16, alternated in one process, 512 frames
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
left() { [ $SECONDS -lt $1 ] || { echo "== skipped from here at ${SECONDS}s"; return 1; }; }
gt 150 gpu_tests tests/core/test_pipeline.py tests/perception/test_fusion.py
N=12 b 330 f16_ab python3 $R/tmp_dev/f16_ab.py $R 2 512 32
