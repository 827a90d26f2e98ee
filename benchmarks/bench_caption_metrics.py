"""Caption suite (BLEU, METEOR, ROUGE-L, CIDEr-D; no SPICE) on synthetic prediction/reference pairs.

    python benchmarks/bench_caption_metrics.py            # 5,000 pairs
    python benchmarks/bench_caption_metrics.py --num 500  # quicker

Compares, in one run, the library (`caption_metrics`: one PTB tokenizer JVM for predictions and
references together, one METEOR JVM per call) with the baseline of calling pycocoevalcap the way
`COCOEvalCap` does (two PTB tokenizer JVMs, one METEOR JVM). Prints wall times, the ratio, and the share
of the library's wall time spent starting JVMs (METEOR start-up + PTB JVM start-up, the latter measured
by tokenizing a single sentence).
"""

from __future__ import annotations

import argparse
import random
import time

from hf_vlmdrive.data.synthetic.roadscene import caption_from_annotation, random_annotation
from hf_vlmdrive.metrics.caption.caption import caption_metrics


def synthetic_pairs(num: int, seed: int = 0):
    """Template captions of random scenes; predictions are references of a perturbed scene."""
    rng = random.Random(seed)
    preds, refs = [], []
    for i in range(num):
        ann = random_annotation(rng, f"{i}.png")
        refs.append([caption_from_annotation(ann), caption_from_annotation(ann, paraphrase=True)])
        other = dict(ann, road_pos=rng.choice(["Left", "Front", "Right", "Not present"]))
        preds.append(caption_from_annotation(other, paraphrase=rng.random() < 0.5))
    return preds, refs


def baseline(preds, refs) -> float:
    """pycocoevalcap as COCOEvalCap calls it: seconds."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    t = time.perf_counter()
    gts = PTBTokenizer().tokenize({i: [{"caption": c} for c in r] for i, r in enumerate(refs)})
    res = PTBTokenizer().tokenize({i: [{"caption": p}] for i, p in enumerate(preds)})
    Bleu(4).compute_score(gts, res, verbose=0)
    Meteor().compute_score(gts, res)
    Rouge().compute_score(gts, res)
    Cider().compute_score(gts, res)
    return time.perf_counter() - t


def ptb_startup() -> float:
    """Seconds for the PTB tokenizer on one sentence (JVM start-up + class loading)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    t = time.perf_counter()
    PTBTokenizer().tokenize({0: [{"caption": "a road"}]})
    return time.perf_counter() - t


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description="caption metric suite benchmark")
    parser.add_argument("--num", type=int, default=5000)
    args = parser.parse_args()
    preds, refs = synthetic_pairs(args.num)
    t = time.perf_counter()
    result = caption_metrics(preds, refs, return_timings=True)
    lib = time.perf_counter() - t
    base = baseline(preds, refs)
    ptb_jvm = ptb_startup()
    timings = result["timings"]
    jvm = timings["meteor_startup"] + ptb_jvm
    print(f"pairs: {args.num} (2 references each), SPICE excluded")
    print(f"library (1 PTB JVM, 1 METEOR JVM): {lib:7.2f} s")
    print(f"baseline COCOEvalCap-style (2 PTB JVMs, 1 METEOR JVM): {base:7.2f} s")
    print(f"ratio baseline/library: {base / lib:.2f}x")
    print(
        "library breakdown: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        + f"; PTB JVM start-up (1-sentence call) {ptb_jvm:.2f}s"
    )
    print(f"share of library wall time in JVM start-ups: {100 * jvm / lib:.1f}% "
          f"(METEOR start-up {timings['meteor_startup']:.2f}s + PTB start-up {ptb_jvm:.2f}s)")
    print("scores: " + ", ".join(f"{k} {result[k]:.4f}" for k in ("Bleu_1", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")))


if __name__ == "__main__":
    main()
