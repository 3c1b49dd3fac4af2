#!/usr/bin/env bash
# The GRAM study at small scale: does stage 1 (unsupervised pair generation) make a better
# reward model than fine-tuning alone, or than a discriminative Bradley–Terry model?
#
#   scripts/quality-study.sh [OUT]    # OUT defaults to ~/.cache/gram/study (outside the clone)
#
# Arms, each at every label budget (HH-RLHF helpful-rejection-sampled, never helpful-base):
#   untrained   the model as it is (once)
#   bt          discriminative: a scalar value head, Bradley–Terry loss (--objective bt)
#   stage2      generative judge, stage 2 only (label smoothing ε = 0.05, the default)
#   gram        stage 1 on unlabeled pairs, then stage 2 (ε = 0.05)
#   gram-eps0   the same stage 1, then stage 2 with ε = 0
# Stage 1 runs once, on every pair `gram pairs --per-prompt 2` makes from the AlpacaEval and
# Arena-Hard outputs in ../shared/data/unlabeled (2,609 pairs).
#
# Every model is evaluated with `gram eval` (headline, 95 % bootstrap interval, position
# consistency) on the first HH_EVAL helpful-base pairs, RM-Bench (the first RM_BENCH_ROWS rows
# of each domain file; easy/normal/hard) and LLMBar (all five subsets).
#
# Two places: OUT holds the bulky, rebuildable work (data, trained models, checkpoints,
# journals); RECORD (scripts/study-results in the repository) holds what a finished step
# measured — each evaluation's report, each training run's wall time and metrics.csv — and
# results.json / .md / .svg (a forest plot) made from them by scripts/study-report.py. A step
# whose result is in RECORD is never run again, and an arm whose three reports are all recorded
# is not even trained, so the study can be carried on by whoever has the repository, across
# machines: commit RECORD as it fills. An evaluation cut off part-way moves too: copy
# OUT/reports/ARM/BENCH.json.journal.jsonl to RECORD/journals/ARM/BENCH.journal.jsonl and
# commit it; the next machine retrains the arm (training is deterministic: the same data order,
# the same weights) and continues from it.
#
# Every model here keeps the base model's bottom N − TRAIN_LAYERS layers, so runs share them:
# the first evaluation of a benchmark records what those layers output for every pair
# (`gram eval --trunk-cache`, in OUT/trunk) and the others replay it, running only the top
# layers; likewise the first stage-2 run of a budget records its micro-batches
# (`gram finetune --trunk-cache`) and the other arms on the same data replay them. The same
# verdicts, losses and weights, bit for bit, at a fraction of the work (TRUNK=0: off).
#
# Resumable: every step's output is written atomically by gram and a step whose output exists
# is skipped; a training run that was stopped continues from its last checkpoint, an
# evaluation from its journal of verdicts (both with --resume). Each arm is trained and then
# evaluated before the next one starts, so a stop loses at most one arm's unfinished work.
# On the 2-core CI machine, at the rates measured there (stage 2 at these settings about
# 0.15 steps/s, so an hour for 1,000 pairs; judging about 0.3–0.9 pairs/s, so about an hour to
# evaluate one model), the study takes more than a day; a GPU (DEVICE=auto) a fraction of it.
#
# Settings (environment): GRAM (the gram binary), MODEL, SHARED, DEVICE (cpu), RECORD,
# BUDGETS ("200 1000"), ARMS ("bt stage2 gram gram-eps0"), TRAIN_LAYERS (4), MAX_LEN (384),
# LAYERS (the model's layer count, 30), TRUNK (1),
# HH_EVAL (500), RM_BENCH_ROWS (20), STAGE1_PAIRS (all 2,609), EVAL_LIMIT (rows per
# evaluation; unset: all — for a smoke run).
set -euo pipefail

OUT=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/gram/study}
RECORD=${RECORD:-$(cd "$(dirname "$0")" && pwd)/study-results}
GRAM=${GRAM:-gram}
MODEL=${MODEL:-$HOME/.cache/gram/models/SmolLM2-135M-Instruct.Q4_1.gguf}
SHARED=${SHARED:-$(cd "$(dirname "$0")/.." && pwd)/../shared}
DEVICE=${DEVICE:-cpu}
BUDGETS=${BUDGETS-"200 1000"}
ARMS=${ARMS-"bt stage2 gram gram-eps0"}
LAYERS=${LAYERS:-30}
TRUNK=${TRUNK:-1}
TRAIN_LAYERS=${TRAIN_LAYERS:-4}
MAX_LEN=${MAX_LEN:-384}
HH_EVAL=${HH_EVAL:-500}
RM_BENCH_ROWS=${RM_BENCH_ROWS:-20}
STAGE1_PAIRS=${STAGE1_PAIRS:-2609}
EVAL_LIMIT=(${EVAL_LIMIT:+--limit "$EVAL_LIMIT"})
TRUNK_ARGS=() TRUNK_TRAIN=()
if [ "$TRUNK" = 1 ]; then
    TRUNK_ARGS=(--trunk-cache "$OUT/trunk" --trunk-layers $((LAYERS - TRAIN_LAYERS)))
    TRUNK_TRAIN=(--trunk-cache "$OUT/trunk")
fi

DATA=$SHARED/data
mkdir -p "$OUT/data/rm-bench" "$OUT/runs" "$OUT/reports" "$RECORD/runs" "$RECORD/reports"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# ---- data ----------------------------------------------------------------------------
# Written to a temporary name and renamed, so a half-written file never looks complete.
make_file() { # make_file PATH COMMAND...
    local path=$1
    shift
    [ -s "$path" ] && return
    "$@" >"$path.tmp"
    mv "$path.tmp" "$path"
}
for budget in $BUDGETS; do
    make_file "$OUT/data/hh-$budget.jsonl" \
        sh -c "zcat '$DATA/hh-rlhf/helpful-rejection-sampled.test.jsonl.gz' | head -n $budget"
done
make_file "$OUT/data/helpful-base-$HH_EVAL.jsonl" \
    sh -c "zcat '$DATA/hh-rlhf/helpful-base.test.jsonl.gz' | head -n $HH_EVAL"
for domain in chat code safety-refuse safety-response; do
    # The domain is the file's name, so the subsets keep it.
    make_file "$OUT/data/rm-bench/$domain.json" python3 -c "
import json, sys
rows = json.load(open(sys.argv[1]))[: int(sys.argv[2])]
json.dump(rows, sys.stdout)" "$DATA/rm-bench/$domain.json" "$RM_BENCH_ROWS"
done
if [ ! -s "$OUT/data/unlabeled-all.jsonl" ]; then
    "$GRAM" pairs "$DATA"/unlabeled/alpaca_eval/*.json "$DATA"/unlabeled/arena-hard/*.jsonl \
        --per-prompt 2 --seed 0 -o "$OUT/data/unlabeled-all.jsonl"
fi
make_file "$OUT/data/unlabeled.jsonl" head -n "$STAGE1_PAIRS" "$OUT/data/unlabeled-all.jsonl"

# ---- the record -----------------------------------------------------------------------
BENCHES="hh rm-bench llmbar"
# keep SOURCE TARGET: copy a finished result into RECORD (through a temporary name).
keep() {
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2.tmp"
    mv "$2.tmp" "$2"
}
# recorded ARM: whether every benchmark's report of ARM is in RECORD.
recorded() {
    local bench
    for bench in $BENCHES; do
        [ -s "$RECORD/reports/$1/$bench.json" ] || return 1
    done
}

# ---- training --------------------------------------------------------------------------
# train NAME SUBCOMMAND ARGS...: one run into OUT/runs/NAME, resumed if it has a checkpoint;
# its wall time (seconds, summed over resumptions) is kept in OUT/runs/NAME.seconds. When it
# finishes, that and its metrics.csv go into RECORD/runs.
train() {
    local name=$1 command=$2
    shift 2
    local dir=$OUT/runs/$name
    [ -f "$dir/model/config.json" ] && return
    local resume=()
    compgen -G "$dir/checkpoint-*/COMPLETE" >/dev/null && resume=(--resume)
    log "training $name"
    local start
    start=$(date +%s)
    local status=0
    "$GRAM" "$command" --output "$dir" --device "$DEVICE" --train-layers "$TRAIN_LAYERS" \
        --max-len "$MAX_LEN" --save-every 50 --quiet "${resume[@]}" "$@" || status=$?
    # Every segment's time counts, an interrupted one's too (it resumes from a checkpoint).
    echo $(($(date +%s) - start)) >>"$dir.seconds"
    [ $status -eq 0 ] || return $status
    keep "$dir.seconds" "$RECORD/runs/$name.seconds"
    keep "$dir/metrics.csv" "$RECORD/runs/$name.metrics.csv"
}

# ---- evaluation ------------------------------------------------------------------------
evaluate() { # evaluate ARM MODEL
    local arm=$1 model=$2
    local reports=$OUT/reports/$arm
    mkdir -p "$reports"
    local bench
    for bench in $BENCHES; do
        [ -s "$RECORD/reports/$arm/$bench.json" ] && continue
        if [ ! -s "$reports/$bench.json" ]; then
            log "evaluating $arm on $bench"
            local files
            case $bench in
            hh) files=("$OUT/data/helpful-base-$HH_EVAL.jsonl") ;;
            rm-bench) files=("$OUT"/data/rm-bench/*.json) ;;
            llmbar) files=("$DATA"/llmbar/*.json) ;;
            esac
            local journal=$reports/$bench.json.journal.jsonl
            local kept=$RECORD/journals/$arm/$bench.journal.jsonl
            # A journal kept in RECORD by an earlier machine continues here when this model is
            # the same (training is deterministic); gram refuses it otherwise, and it is dropped.
            local restored=0
            if [ ! -f "$journal" ] && [ -s "$kept" ]; then
                cp "$kept" "$journal"
                restored=1
            fi
            run_eval() {
                "$GRAM" eval --model "$model" --device "$DEVICE" "${EVAL_LIMIT[@]}" \
                    --benchmark "${files[@]}" --report "$reports/$bench.json" "${TRUNK_ARGS[@]}" \
                    "$@" >/dev/null
            }
            local resume=()
            [ -f "$journal" ] && resume=(--resume)
            if ! run_eval "${resume[@]}"; then
                [ $restored = 1 ] || return 1
                log "the kept journal of $arm on $bench is not this model's: starting afresh"
                rm -f "$journal"
                run_eval
            fi
            rm -f "$kept"
        fi
        keep "$reports/$bench.json" "$RECORD/reports/$arm/$bench.json"
    done
}

# ---- the study -------------------------------------------------------------------------
# One budget at a time, one arm at a time: trained (unless its results are all recorded),
# then evaluated. Stage 1 runs before the first GRAM arm that still needs training.
for budget in $BUDGETS; do
    data=$OUT/data/hh-$budget.jsonl
    for arm in $ARMS; do
        name=$arm-$budget
        recorded "$name" && continue
        case $arm in
        bt) train "$name" finetune --objective bt --model "$MODEL" --data "$data" "${TRUNK_TRAIN[@]}" ;;
        stage2) train "$name" finetune --model "$MODEL" --data "$data" "${TRUNK_TRAIN[@]}" ;;
        gram | gram-eps0)
            train stage1 pretrain --model "$MODEL" --data "$OUT/data/unlabeled.jsonl"
            smoothing=()
            [ "$arm" = gram-eps0 ] && smoothing=(--label-smoothing 0)
            train "$name" finetune --model "$OUT/runs/stage1/model" --data "$data" \
                "${smoothing[@]}" "${TRUNK_TRAIN[@]}"
            ;;
        *) echo "unknown arm $arm (ARMS: bt stage2 gram gram-eps0)" >&2 && exit 2 ;;
        esac
        evaluate "$name" "$OUT/runs/$name/model"
    done
done
evaluate untrained "$MODEL"

# ---- results ---------------------------------------------------------------------------
# results.{json,md,svg} from everything recorded, whatever BUDGETS this run was given.
python3 "$(dirname "$0")/study-report.py" "$RECORD"
