#!/usr/bin/env bash
# LIBERO end to end on one CPU machine: scripted demonstrations -> LeRobot v3.0 dataset -> GeoVLA trained from
# scratch -> closed-loop success through the policy server, with the zero-action and random baselines.
#
#   bash examples/libero_from_scratch.sh [WORK_DIR]        # default WORK_DIR=outputs/libero_from_scratch
#
# Every step resumes: the demonstrations skip what is staged, training resumes from its last checkpoint
# (rerun the script after an interruption), and each evaluation skips the episodes its results JSON holds.
# Measured on 2 shared CPU cores: 83 min of demonstrations (150 at 128 px), 24 min of training
# (4000 steps), ~1.5 min per evaluated episode. Needs the `libero` extra (pip install -e ".[libero]").
# Knobs (environment): TASKS (0,1,2), DEMOS (50 per task), STEPS (4000), EVAL_EPISODES (5), PORT (10093).
set -euo pipefail
WORK=${1:-outputs/libero_from_scratch}
TASKS=${TASKS:-0,1,2}
DEMOS=${DEMOS:-50}
STEPS=${STEPS:-4000}
EVAL_EPISODES=${EVAL_EPISODES:-5}
PORT=${PORT:-10093}
BIN=${BIN:-.venv/bin}
export MUJOCO_GL=${MUJOCO_GL:-egl} HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DATA=$WORK/demos BACKBONES=$WORK/backbones RUN=$WORK/run EVAL=$WORK/eval
mkdir -p "$WORK" "$EVAL"

# 1. Demonstrations of the scripted expert on sampled initial states (the evaluation's fixed states stay unseen).
"$BIN/hf-vlmdrive" data libero-demos --suite libero_object --tasks "$TASKS" --episodes-per-task "$DEMOS" \
    --init-states sampled --image-size 128 --out "$DATA"

# 2. Random-init backbones (real Qwen2.5-VL and DINOv2 classes, small enough for the CPU).
"$BIN/python" - "$BACKBONES" <<'PY'
import sys
from pathlib import Path
from hf_vlmdrive.testing.tiny_qwen import save_tiny_dinov2, save_tiny_qwen2_5_vl
root = Path(sys.argv[1])
if not (root / "qwen2.5-vl" / "config.json").is_file():
    save_tiny_qwen2_5_vl(root / "qwen2.5-vl", hidden_size=64, num_layers=4, vision_depth=2, vision_hidden_size=64,
                         num_heads=4, image_pixels=112 * 112)
if not (root / "dinov2" / "config.json").is_file():
    save_tiny_dinov2(root / "dinov2", image_size=56, hidden_size=64, num_layers=2, num_heads=4)
PY

# 3. Train (resumes from the last checkpoint-N in $RUN).
RESUME=()
if ls -d "$RUN"/checkpoint-* >/dev/null 2>&1; then RESUME=(--resume_from_checkpoint true); fi
"$BIN/hf-vlmdrive" train geovla --config examples/configs/libero_from_scratch.yaml --dataset_root "$DATA" \
    --vlm_name_or_path "$BACKBONES/qwen2.5-vl" --geometry_name_or_path "$BACKBONES/dinov2" \
    --output_dir "$RUN" --max_steps "$STEPS" "${RESUME[@]}"

# 4. Closed loop on the benchmark's fixed initial states 0..EVAL_EPISODES-1, the policy behind the server;
#    cameras rendered at the dataset's 128 px and sent unresized, as the demonstrations were recorded.
PROTOCOL=(--suite libero_object --task-ids "$TASKS" --episodes-per-task "$EVAL_EPISODES" --camera-size 128
          --image-size 128 --replan-steps 5)
"$BIN/hf-vlmdrive" serve --model "$RUN" --port "$PORT" --device cpu --key-map '{"image_shape": [128, 128, 3]}' &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
"$BIN/python" - "$PORT" <<'PY'
import socket, sys, time
for _ in range(240):  # the server loads the checkpoint first
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("the policy server did not start within 2 minutes")
PY
"$BIN/hf-vlmdrive" eval libero --server "127.0.0.1:$PORT" "${PROTOCOL[@]}" --output "$EVAL/geovla.json" \
    --video-dir "$EVAL/videos"
kill $SERVER 2>/dev/null || true
for p in zero random; do
    "$BIN/hf-vlmdrive" eval libero --policy "$p" "${PROTOCOL[@]}" --output "$EVAL/$p.json"
done
"$BIN/python" - "$EVAL"/geovla.json "$EVAL"/zero.json "$EVAL"/random.json <<'PY'
import json, sys
from hf_vlmdrive.sim.libero import format_results_table
for path in sys.argv[1:]:
    print(f"\n== {path}\n" + format_results_table(json.load(open(path))))
PY
