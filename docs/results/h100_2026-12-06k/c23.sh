# APs with DeepJSCC's decoded maps in float16 (codec fp16; detector fp32 and fp16): as session 42's ap_table
source tmp_dev/common.sh
for p in "fp32 fp16" "fp16 fp16"; do set -- $p
( cd /tmp && timeout 140 python3 -m v2x.apps.sweep --config-name sweep_main data.num_frames=120 'grid.channels=[awgn]' 'grid.codecs=[deepjscc]' 'grid.fusions=[max]' 'grid.snr_db=[-5,10]' eval.precision=$1 "++codec_options.deepjscc.precision=$2" output_dir=$OUT/ap_$1_$2 quiet=true table=false plots=false hydra.run.dir=/tmp/hydra_$1_$2 ) > $OUT/ap_$1_$2.txt 2>&1
echo "== $1 $2 rc=$? $(date +%T)"; grep -v -i warn $OUT/ap_$1_$2.txt | tail -2
done
