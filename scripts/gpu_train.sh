# Train the shipped detector on one GPU and evaluate it per fusion strategy.
set -e
source scripts/gpu_env.sh
T0=$(date +%s)
(cd /tmp && python3 -m v2x.apps.train data.num_sequences=${SEQ:-80} data.frames_per_sequence=10 data.synthetic.device=cuda \
  train.steps=${STEPS:-5000} train.batch_size=8 train.out_dir=$OUT/train train.quiet=true train.checkpoint_every=500) 2>&1 | grep -v Warning | tail -5
echo "train wall: $(( $(date +%s) - T0 )) s"
cp $OUT/train/last.pt $OUT/detector_synthetic.pt
python3 scripts/evaluate_fusions.py --checkpoint $OUT/detector_synthetic.pt --out $OUT/fusion_eval.json
tail -3 $OUT/train/log.csv
