#!/usr/bin/env bash
# The GPU benchmarks in one call, on a machine set up by the offline install (README, "Offline
# install"; scripts/gpu_env.sh is sourced here). From the repository root, with OUT a folder:
#
#   OUT=/path/to/results bash benchmarks/gpu_run.sh [SET]
#
#   all    (default) channels, ray casting, sweep, NMS, DeepJSCC, digital chain, then the GPU
#          tests: docs/benchmarks.md's GPU rows
#   quick  channels (without TDL) and NMS, then the GPU tests
#   ldpc   the LDPC decoder (issue 16): its GPU tests, throughput against Sionna at the 10 % BLER
#          point and 1 dB above (MCS 5/14/20/27) of the per-layer and the persistent
#          Triton kernels, 3 dB above (MCS 5/20/27, the default kernel), BLER curves with
#          20,000 blocks per point (JSON + figure)
#   time   README's "Time and asynchrony" figures (~5 min): conf/sweep_asynchrony.yaml (AP
#          against an added delay, with and without latency compensation) and
#          conf/sweep_payload_latency.yaml (AP against payload size at 20 MHz / 10 dB and over an
#          ideal link); results under asynchrony/ and payload_latency/, their figures
#          under plots/, the README tables in time_tables.md. A step cut by its timeout
#          (T_A, T_B s) keeps every finished group: the sweep resumes when run again.
#   verify what the 2026-12-01 session built without a GPU (~12 min): the GPU tests of
#          determinism, inference/CUDA graphs, the fused warp+fusion kernel, condition
#          streams (send's block joining), DeepJSCC (channels-last decoder, one-pass
#          de-standardisation with the output bias), the analog receiver, identity's
#          channels-last maps and the sweep (no unwritten memory read); the ego-side fusion
#          kernel's launches; the sweep's rate with its steps timed (--phases) and the
#          groups' computing orders alternated (--order-ab); the detector (eager, CUDA graph, Triton fusion; batch 1 and 8, fp32/fp16);
#          the sweep end to end with the faster scoring, and its host syncs by call site
#          (sweep_syncs.py); Where2comm of the shipped standard detector on the 1,000 test frames
#   codec  DeepJSCC for the standard detector (~9 min): conf/train_codec_pointpillars.yaml
#          (training capped at codec_train.max_seconds = MAX_S, then the SNR gate calibrated on
#          the validation towns); checkpoint, calibration JSON and log in the work folder. A
#          second call resumes it: INIT=<the checkpoint> START=<the log's last step + 1>
#   frontier  the standard detector's DeepJSCC on 400 unseen frames
#          (conf/sweep_deepjscc_pointpillars.yaml, ~4 min), then Where2comm of the shipped
#          standard detector on the 1,000 test frames
#   semantic_train  conf/train_pointpillars_semantic.yaml: the standard detector's payload
#          adapters trained with the semantic_map / object_features modes, the rest frozen
#          (~5 min); log, validation CSV and best.pt's adapter weights (payload_adapters.pt) in
#          the work folder
#   semantic_eval  none / late / max / semantic_map (whole and at 10 % of the cells) /
#          object_features of the standard detector on the 1,000 test frames (~8 min; CKPT=a
#          detector checkpoint, default the shipped one)
#   main   the README's main result at full size (~8 min): conf/sweep_main.yaml (the standard
#          detector, 400 frames, none/late/max, DeepJSCC and identity), then the digital chain
#          at equal channel uses on 20 frames (10 towns); results and ledgers under main/
#   payload  the separable demapper's GPU test, then the digital chain at realistic payloads
#          with the standard detector
#          (conf/sweep_main_payload.yaml: the whole map at 4 and 8 bits per value, exact chain,
#          min-sum LDPC, on 10 of the main result's 20 digital frames; stopped by SIGTERM at T_A
#          s); results under outputs/sweep_main_payload of the tree, so a run cut short resumes
#          when that folder is carried back; then benchmarks/profile_digital_payload.py (one
#          frame's 4 maps at -5/10/20 dB, warm, cProfile + torch.profiler)
#   digital  the digital chain's GPU tests, the block code's Triton ends against the torch path
#          (bench_block_code.py), then the issue-16 setting: 1 Mbit per link
#          (64 x 64 x 64 maps at 4 bits), one frame's 4 links at -5/10/20 dB (as 2026-12-01h)
#          and a sweep's batch of 16 frames x 4 links at 7 SNRs, in one process and with 8
#          source-coding worker processes, the latter profiled with the device's idle time
#          attributed to the host's Python functions (trace_idle.py) (~9 min)
#   overlap  (~9 min) the issue-16 sweep (512 frames, batches of 32, bench_sweep.py against the
#          loop; LOOP=0 leaves it out), then benchmarks/sweep_overlap.py's base / nobook /
#          rowsafter (or VARIANTS) alternated ROUNDS times (default 2): what the scorer's booking and the row
#          threads beside the device's thread cost it; TESTS_S=S then the GPU tests of tests/core
#          and tests/perception for at most S s
#   workers  several sweep workers on the machine's GPUs (~12 min): the GPU tests of
#          device lists (two workers on one GPU; every GPU of a host and the Triton kernels'
#          device, where two are visible), the digital chain in 1, 2 and 3 processes on one GPU
#          (profile_digital_payload.py --processes), then bench_sweep.py with two and three
#          workers on one GPU (and device=all where there are several) against one
#
# Each step writes <name>.txt (warnings filtered out) into a work folder ($W, default
# /tmp/gpu_run) and prints its exit code and last N lines (N=12 unless set); after every step
# the whole folder is packed into $OUT/results.tgz (a lent machine returns only a few files).
# T bounds each step in seconds (45 unless set; longer for ldpc). GPU tests run from a copy of
# the tree without its v2x/ folder, which would shadow the mapped package.
set -o pipefail
SET=${1:-all}
case "$SET" in
  all | quick | ldpc | time | verify | codec | frontier | semantic_train | semantic_eval | main | payload | digital | workers | overlap) ;;
  *)
    echo "benchmarks/gpu_run.sh: SET must be all, quick, ldpc, time, verify, codec, frontier, semantic_train, semantic_eval, main, payload, digital, workers or overlap, got '$SET'" >&2
    exit 2
    ;;
esac
: "${OUT:?set OUT to the folder the results go to}"
source scripts/gpu_env.sh
R=$PWD
W=${W:-/tmp/gpu_run}
mkdir -p "$W"
cd /tmp

pack() {  # the work folder as one file under $OUT, refreshed after every step
  tar czf "$OUT/results.tgz.part" -C "$W" . && mv "$OUT/results.tgz.part" "$OUT/results.tgz"
}

bounded() {  # bounded TIMEOUT_S CMD...: CMD in its own session, stopped at the limit with every
  # process it started (spawned or forked workers outlive a plain timeout's kill and would hold
  # the GPU, or a pipe, until the call ends)
  local limit=$1
  shift
  setsid timeout "$limit" "$@" &
  local pid=$! rc
  wait "$pid"
  rc=$?
  pkill -9 -s "$pid" 2>/dev/null
  return "$rc"
}

step() {  # step NAME TIMEOUT_S ARGS...: python3 ARGS, output to $W/NAME.txt
  local name=$1 limit=$2
  shift 2
  bounded "$limit" python3 "$@" > "$W/$name.log" 2>&1
  local rc=$?
  grep -v -i warn "$W/$name.log" > "$W/$name.txt"
  rm "$W/$name.log"
  echo "== $name rc=$rc"
  tail -"${N:-12}" "$W/$name.txt"
  pack
}
bench() {  # bench NAME ARGS...: benchmarks/NAME.py
  local name=$1
  shift
  step "$name" "${T:-45}" "$R/benchmarks/$name.py" "$@"
}
gpu_tests() {  # gpu_tests NAME TIMEOUT_S [PATHS...]: pytest -m gpu
  local name=$1 limit=$2
  shift 2
  rm -rf /tmp/gpu_run_tree && cp -r "$R" /tmp/gpu_run_tree && rm -rf /tmp/gpu_run_tree/v2x
  # a test file that cannot be imported there (an oracle library missing from the carried
  # wheels) is reported, not allowed to stop every other GPU test
  (cd /tmp/gpu_run_tree && bounded "$limit" python3 -P -m pytest -q -rA -m gpu -p no:cacheprovider \
    --continue-on-collection-errors "${@:-tests}" 2>&1) > "$W/$name.txt"
  tail -15 "$W/$name.txt"
  pack
}

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
case "$SET" in
  all)
    bench bench_channels --device cuda --iters 10
    bench bench_raycast --device cuda --repeats 3 --frames 5
    bench bench_sweep --device cuda --frames 8
    bench bench_nms --device cuda
    bench bench_deepjscc --device cuda
    bench bench_digital --device cuda --channels 64 --size 64
    gpu_tests pytest_gpu 60
    ;;
  quick)
    bench bench_channels --device cuda --iters 10 --skip-tdl
    bench bench_nms --device cuda
    gpu_tests pytest_gpu 90
    ;;
  ldpc)
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
    gpu_tests pytest_gpu_ldpc 180 tests/semcom/test_ldpc_minsum.py
    N=${N:-14}
    # the per-layer launches (compressed state: the default above 8,192 blocks; per edge) against the
    # persistent kernel (auto, the default, takes it up to 8,192 blocks),
    # bits and iterations compared; the GPU tests compare both with the torch path
    step bench_ldpc "${T:-200}" "$R/benchmarks/bench_ldpc.py" --device cuda --blocks 262144 \
      --sionna-blocks 16384 --repeats 3 --mcs 5,14,20,27 --modes triton,triton-edges,triton-persistent
    step bench_ldpc_hi "${T:-120}" "$R/benchmarks/bench_ldpc.py" --device cuda --blocks 262144 \
      --sionna-blocks 16384 --repeats 3 --snr-offset-db 1 --mcs 5,14,20,27 --early on \
      --modes triton,triton-edges,triton-persistent
    # 3 dB above the cliff most blocks converge within 2-3 iterations: where the decode loop's
    # own overheads (checks, compaction, host syncs) weigh most
    step bench_ldpc_3db "${T:-90}" "$R/benchmarks/bench_ldpc.py" --device cuda --blocks 262144 \
      --sionna-blocks 16384 --repeats 3 --snr-offset-db 3 --mcs 5,20,27 --early on --modes triton
    step ldpc_bler "${T:-300}" "$R/benchmarks/ldpc_bler.py" --device cuda --blocks 20000 \
      --batch 20000 --out "$W/ldpc_bler_h200.json" --figure "$W/ldpc_bler_h200.png"
    ;;
  time)
    GPU="device=cuda data.synthetic.device=cuda quiet=true plots=false"
    N=${N:-40}
    step asynchrony "${T_A:-210}" -m v2x.apps.sweep --config-name sweep_asynchrony \
      output_dir="$W/asynchrony" $GPU
    step payload_latency "${T_B:-110}" -m v2x.apps.sweep --config-name sweep_payload_latency -m \
      budget.bandwidth_hz=20e6,1e15 output_dir="$W/payload_latency" \
      hydra.sweep.dir=/tmp/hydra_payload_latency $GPU
    for name in asynchrony payload_latency; do
      step "${name}_table" 120 -m v2x.apps.plot results="[$W/$name]" metric=vehicle_ap_70 \
        out_dir="$W/$name/plots" formats='[png,pdf]'
    done
    python3 "$R/scripts/time_tables.py" "$W/asynchrony" "$W/payload_latency" \
      > "$W/time_tables.md" 2>&1
    cat "$W/time_tables.md"
    pack
    ;;
  verify)
    gpu_tests pytest_gpu_verify 150 tests/core/test_determinism.py \
      tests/perception/test_grid_sample.py tests/perception/test_inference.py \
      tests/perception/test_warp_fusion_triton.py tests/core/test_condition_streams.py \
      tests/semcom/test_deepjscc.py tests/semcom/test_identity.py tests/core/test_sweep.py
    step bench_ego_fusion 60 "$R/benchmarks/bench_ego_fusion.py"
    step bench_sweep_phases 200 "$R/benchmarks/bench_sweep.py" --device cuda \
      --checkpoint shipped --frames 128 --batch-size 16 --codecs identity analog deepjscc \
      --run-sweep-repeats 3 --phases --order-ab 2
    step bench_detector 100 "$R/benchmarks/bench_detector.py" --device cuda \
      --modes eager graph triton --budget-s 90
    step bench_sweep 150 "$R/benchmarks/bench_sweep.py" --device cuda --checkpoint shipped \
      --frames 128 --batch-size 16 --codecs identity analog deepjscc --profile 25
    step sweep_syncs 120 "$R/benchmarks/sweep_syncs.py"
    step where2comm_1000 150 "$R/scripts/evaluate_fusions.py" --model pointpillars \
      --device cuda --sequences 100 --bootstrap 1000 --fusions max where2comm \
      --out "$W/fusions_pointpillars_where2comm_1000.json"
    ;;
  codec)
    gpu_tests pytest_gpu_grid_sample 60 tests/perception/test_grid_sample.py \
      tests/perception/test_segments.py
    N=${N:-25}
    # INIT and START resume a run cut by MAX_S (the weights it saved, the step its log ends on)
    step train_codec_pointpillars "${T:-530}" -m v2x.apps.train_codec \
      --config-name train_codec_pointpillars out="$W/deepjscc_pointpillars.pt" \
      codec_train.log_path="$W/log_pointpillars.csv" codec_train.max_seconds="${MAX_S:-400}" \
      init="${INIT:-null}" codec_train.start_step="${START:-0}" \
      hydra.run.dir=/tmp/hydra_train_codec
    ;;
  semantic_train)
    # checkpoints (26 MB each) stay outside $W: only the adapters' weights come back
    step train_semantic "${T:-480}" -m v2x.apps.train --config-name train_pointpillars_semantic \
      train.out_dir=/tmp/train_semantic hydra.run.dir=/tmp/hydra_train_semantic
    cp /tmp/train_semantic/*.csv "$W/"
    step adapters 60 -c "import torch; s = torch.load('/tmp/train_semantic/best.pt', \
map_location='cpu', weights_only=False); torch.save({'step': s['step'], 'extra': s['extra'], \
'model': {k: v for k, v in s['model'].items() if k.startswith('payload_adapters.')}}, \
'$W/payload_adapters.pt'); print('best step', s['step'], s['extra']['val_metric'])"
    ;;
  semantic_eval)
    step semantic_1000 "${T_A:-330}" "$R/scripts/evaluate_fusions.py" --model pointpillars \
      ${CKPT:+--checkpoint "$CKPT"} --device cuda --sequences 100 --bootstrap 1000 \
      --fusions none late max semantic_map object_features --out "$W/semantic_pointpillars_1000.json"
    step semantic_map10_1000 "${T_B:-150}" "$R/scripts/evaluate_fusions.py" --model pointpillars \
      ${CKPT:+--checkpoint "$CKPT"} --device cuda --sequences 100 --bootstrap 1000 \
      --fusions semantic_map --fusion-options '{"semantic_map": {"max_fraction": 0.1}}' \
      --out "$W/semantic_map10_pointpillars_1000.json"
    ;;
  main)
    step main_sweep "${T_A:-330}" -m v2x.apps.sweep --config-name sweep_main \
      output_dir="$W/main" quiet=true table=false hydra.run.dir=/tmp/hydra_main
    step main_digital "${T_B:-240}" -m v2x.apps.sweep --config-name sweep_main \
      data.num_frames=20 data.frames_per_sequence=2 'grid.codecs=[digital]' 'grid.fusions=[max]' \
      output_dir="$W/main" quiet=true table=false hydra.run.dir=/tmp/hydra_main_digital
    ;;
  payload)
    N=${N:-30}
    gpu_tests pytest_gpu_demap 60 tests/semcom/test_demap.py
    mkdir -p "$R/outputs/sweep_main_payload"
    timeout "${T_A:-480}" python3 -m v2x.apps.sweep \
      --config-name sweep_main_payload output_dir="$R/outputs/sweep_main_payload" quiet=true \
      plots=false hydra.run.dir=/tmp/hydra_payload > "$W/payload.log" 2>&1
    echo "== payload rc=$?"
    grep -v -i warn "$W/payload.log" > "$W/payload.txt" && rm "$W/payload.log"
    tail -"$N" "$W/payload.txt"
    cp -r "$R/outputs/sweep_main_payload" "$W/"
    pack
    # one link's round trip, warm (every MCS compiled first): where the chain's time goes
    T=${T_B:-120} bench profile_digital_payload --device cuda --channels 384 --size 128 \
      --density 0.4 --snr-db=-5,10,20 --profile 40
    ;;
  digital)
    N=${N:-40}
    gpu_tests pytest_gpu_digital 180 tests/semcom/test_digital.py tests/semcom/test_demap.py \
      tests/semcom/test_qam_triton.py tests/semcom/test_digital_payload.py \
      tests/semcom/test_harq.py tests/semcom/test_ldpc_minsum.py tests/core/test_triton_device.py
    step bench_block_code 120 "$R/benchmarks/bench_block_code.py" --device cuda
    step digital_1mbit_4links 150 "$R/benchmarks/profile_digital_payload.py" --device cuda \
      --channels 64 --size 64 --density 1.0 --snr-db=-5,10,20 --profile 30
    step digital_1mbit_64links 240 "$R/benchmarks/profile_digital_payload.py" --device cuda \
      --links 64 --channels 64 --size 64 --density 1.0 --snr-db=-10,-5,0,5,10,15,20 --profile 40
    step digital_1mbit_64links_workers 240 "$R/benchmarks/profile_digital_payload.py" \
      --device cuda --links 64 --channels 64 --size 64 --density 1.0 \
      --snr-db=-10,-5,0,5,10,15,20 --source-workers 8 --profile 30 --trace /tmp/digital_trace.json
    step digital_idle 120 "$R/benchmarks/trace_idle.py" /tmp/digital_trace.json --top 50 \
      --children harq_decode_blocks,reconstruct,encode,_decode
    ;;
  workers)
    N=${N:-14}
    gpu_tests pytest_gpu_workers 300 tests/core/test_sweep.py tests/core/test_triton_device.py
    for p in 1 2 3; do
      step "digital_processes_$p" 150 "$R/benchmarks/profile_digital_payload.py" --device cuda \
        --links 64 --channels 64 --size 64 --density 1.0 --snr-db=-10,-5,0,5,10,15,20 \
        --processes "$p" --passes 3 --source-workers $((p == 1 ? 8 : 16 / p))
    done
    lists="cuda:0,cuda:0 cuda:0,cuda:0,cuda:0"
    if [ "$(nvidia-smi -L | wc -l)" -gt 1 ]; then lists="all $lists"; fi
    # shellcheck disable=SC2086  # one argument per device list
    step sweep_workers 420 "$R/benchmarks/bench_sweep.py" --device cuda --checkpoint shipped \
      --frames 256 --batch-size 16 --codecs identity analog deepjscc --run-sweep-repeats 2 \
      --devices $lists
    ;;
  overlap)
    # (issue 16) the issue-16 sweep, then what the scorer's booking and the row threads beside
    # the device's thread cost it: base / nobook / rowsafter alternated, one process each (~9 min)
    # ROUNDS (default 2) rounds of the VARIANTS (default "base nobook rowsafter"; also inline,
    # pyswitch, fastswitch); LOOP=0 leaves out the sweep against the
    # loop; TESTS_S=S (default 0: none) then runs the GPU tests of tests/core and
    # tests/perception for at most S s
    N=${N:-14}
    if [ "${LOOP:-1}" != 0 ]; then
      step sweep_512_b32 240 "$R/benchmarks/bench_sweep.py" --device cuda --checkpoint shipped \
        --frames 512 --batch-size 32 --codecs identity analog deepjscc --run-sweep-repeats 3
      # like for like: every payload on time, so that run_sweep fuses what the loop fuses
      step sweep_512_b32_onair 240 "$R/benchmarks/bench_sweep.py" --device cuda \
        --checkpoint shipped --frames 512 --batch-size 32 --codecs identity analog deepjscc \
        --run-sweep-repeats 3 --bandwidth-hz 1e11
    fi
    N=3
    for round in $(seq 1 "${ROUNDS:-2}"); do
      for variant in ${VARIANTS:-base nobook rowsafter}; do
        step "overlap_${variant}_$round" 90 "$R/benchmarks/sweep_overlap.py" "$variant" --calls 2
      done
    done
    if [ "${TESTS_S:-0}" != 0 ]; then
      gpu_tests pytest_gpu_core "$TESTS_S" tests/core tests/perception
    fi
    ;;
  frontier)
    N=${N:-30}
    step frontier "${T_A:-300}" -m v2x.apps.sweep --config-name sweep_deepjscc_pointpillars \
      output_dir="$W/frontier" quiet=true hydra.run.dir=/tmp/hydra_frontier
    step where2comm_1000 "${T_B:-270}" "$R/scripts/evaluate_fusions.py" --model pointpillars \
      --device cuda --sequences 100 --bootstrap 1000 --fusions max where2comm \
      --out "$W/fusions_pointpillars_where2comm_1000.json"
    ;;
esac
