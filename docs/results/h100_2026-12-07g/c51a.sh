# session 51 (first): GPU tests of the Triton modules (kernels built by functools.cache); the sweep's detector channels-last against as it is, alternated in one process, 512 frames
for pid in $(nvidia-smi --query-compute-apps=pid --format=csv,noheader); do kill -9 $pid 2>/dev/null; done
source tmp_dev/common.sh
nvidia-smi -L > $OUT/gpu.txt; nproc >> $OUT/gpu.txt; lscpu | grep "Model name" >> $OUT/gpu.txt
gt 150 gpu_tests tests/semcom/test_analog_noisy_receive.py tests/semcom/test_deepjscc_precision.py tests/semcom/test_qam_triton.py tests/semcom/test_analog_sum_of_squares.py tests/semcom/test_deepjscc.py tests/semcom/test_identity.py tests/channels/test_awgn_fused.py tests/core/test_triton_device.py
N=12 b 260 chl_ab python3 $R/tmp_dev/chl_ab.py $R 2 512 32
