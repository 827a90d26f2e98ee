"""COCO caption metrics with pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE, lengths."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import datasets
import evaluate

logger = logging.getLogger(__name__)

_DESCRIPTION = """
The COCO caption evaluation protocol computed by pycocoevalcap (the reference implementation):
captions are lower-cased and tokenized with the Stanford PTB tokenizer (punctuation removed), then

- `Bleu_1` .. `Bleu_4`: corpus BLEU (pycocoevalcap's `Bleu(4)`, closest reference length);
- `METEOR`: METEOR 1.5 (`-l en -norm`), corpus score;
- `ROUGE_L`: mean sentence ROUGE-L F (beta 1.2);
- `CIDEr`: CIDEr-D (pycocoevalcap's `Cider`: sigma 6 length penalty, clipped n-gram counts, x10), IDF over
  the references of this call, so it depends on the whole evaluated set;
- `SPICE` (optional): needs the Stanford CoreNLP 3.6.0 jars; when they are missing the other metrics are
  still returned, `SPICE` is None and `SPICE_error` says where to put the jars;
- `avg_pred_len` / `avg_ref_len`: mean number of PTB tokens per prediction / per reference.

Java runs once per scorer per call: one PTB tokenizer process for predictions and references together,
one METEOR process, (one SPICE process).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of str, one caption per sample.
    references: list of list of str, one or more reference captions per sample.
    spice: bool, compute SPICE too (default False).
    spice_download: bool, let pycocoevalcap try to download the CoreNLP jars when missing (default False).
Returns:
    dict with Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr, (SPICE, SPICE_error), avg_pred_len, avg_ref_len,
    num_samples, protocol.
Examples:
    >>> from hf_vlmdrive.metrics import load_metric
    >>> metric = load_metric("caption")  # doctest: +SKIP
    >>> metric.compute(predictions=["a car on the road"], references=[["a car drives on the road"]])  # doctest: +SKIP
"""

_CITATION = """
@article{chen2015microsoft, title={Microsoft COCO Captions: Data Collection and Evaluation Server}, year={2015}}
@inproceedings{vedantam2015cider, title={CIDEr: Consensus-based Image Description Evaluation}, year={2015}}
@inproceedings{anderson2016spice, title={SPICE: Semantic Propositional Image Caption Evaluation}, year={2016}}
"""

CORENLP_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
CORENLP_URL = "http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip"
PROTOCOL = (
    "COCO caption protocol, pycocoevalcap: PTB tokenization (lower-case, punctuation removed); BLEU-1..4 "
    "corpus; METEOR 1.5; ROUGE-L F(beta=1.2); CIDEr = CIDEr-D (sigma 6, x10, IDF over this set's references); "
    "lengths in PTB tokens"
)


def spice_lib_dir() -> Path:
    """The folder where pycocoevalcap's SPICE looks for the Stanford CoreNLP 3.6.0 jars."""
    import pycocoevalcap.spice as spice_pkg

    return Path(spice_pkg.__file__).parent / "lib"


def missing_spice_jars() -> list[str]:
    """Names of the CoreNLP jars SPICE needs that are not in `spice_lib_dir()`."""
    lib = spice_lib_dir()
    return [name for name in CORENLP_JARS if not (lib / name).is_file()]


def spice_setup_message() -> str:
    """What to do when SPICE's jars are missing."""
    return (
        f"SPICE needs the Stanford CoreNLP 3.6.0 jars {list(CORENLP_JARS)} in {spice_lib_dir()}. "
        f"Download {CORENLP_URL} on a machine with internet access, and copy "
        "stanford-corenlp-full-2015-12-09/stanford-corenlp-3.6.0.jar and "
        "stanford-corenlp-full-2015-12-09/stanford-corenlp-3.6.0-models.jar into that folder "
        "(or pass spice_download=True where the download is possible)."
    )


def _check_java() -> None:
    import shutil

    if shutil.which("java") is None:
        raise RuntimeError(
            "pycocoevalcap needs Java (PTB tokenizer, METEOR): install a JRE (e.g. `apt-get install default-jre`)"
        )


def ptb_tokenize(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[dict, dict]:
    """PTB-tokenize predictions and references in ONE Java process; returns pycocoevalcap's (gts, res).

    Keys are the sample indices 0..N-1. The tokenizer treats each line independently, so this gives the
    same strings as tokenizing references and predictions in two separate calls (as `COCOEvalCap` does).
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    combined: dict = {}
    for i, refs in enumerate(references):
        combined[("ref", i)] = [{"caption": r} for r in refs]
    for i, pred in enumerate(predictions):
        combined[("pred", i)] = [{"caption": pred}]
    tokenized = PTBTokenizer().tokenize(combined)
    gts = {i: tokenized[("ref", i)] for i in range(len(references))}
    res = {i: tokenized[("pred", i)] for i in range(len(predictions))}
    return gts, res


def _close_meteor(meteor) -> None:
    proc = getattr(meteor, "meteor_p", None)
    if proc is not None and proc.poll() is None:
        proc.stdin.close()
        proc.kill()
        proc.wait()


def _validate(predictions, references) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("no predictions to evaluate")
    for i, (p, refs) in enumerate(zip(predictions, references)):
        if not isinstance(p, str):
            raise ValueError(f"prediction {i} must be a string, got {type(p).__name__}")
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references[{i}] must be a non-empty list of strings, got {refs!r}")


def caption_metrics(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    spice: bool = False,
    spice_download: bool = False,
    return_timings: bool = False,
) -> dict:
    """Compute the metrics described in `_DESCRIPTION` (see the module docstring); plain function.

    With `return_timings=True` the result has a `timings` dict (seconds): `ptb` (tokenizer process,
    start-up included), `meteor_startup` (JVM start + METEOR model load), `meteor`, `bleu`, `rouge`,
    `cider`, `spice`.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    predictions = list(predictions)
    references = [list(r) if not isinstance(r, str) else r for r in references]
    _validate(predictions, references)
    _check_java()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    gts, res = ptb_tokenize(predictions, references)
    timings["ptb"] = time.perf_counter() - t

    out: dict = {}
    t = time.perf_counter()
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    timings["bleu"] = time.perf_counter() - t
    for n, value in enumerate(bleu, start=1):
        out[f"Bleu_{n}"] = float(value)

    t = time.perf_counter()
    meteor = Meteor()
    try:
        meteor._stat("warm up", ["warm up"])  # returns once the JVM is up and METEOR's tables are loaded
        timings["meteor_startup"] = time.perf_counter() - t
        t = time.perf_counter()
        out["METEOR"] = float(meteor.compute_score(gts, res)[0])
        timings["meteor"] = time.perf_counter() - t
    finally:
        _close_meteor(meteor)

    t = time.perf_counter()
    out["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    timings["rouge"] = time.perf_counter() - t
    t = time.perf_counter()
    out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    timings["cider"] = time.perf_counter() - t

    if spice:
        t = time.perf_counter()
        out["SPICE"], out["SPICE_error"] = _spice(gts, res, spice_download)
        timings["spice"] = time.perf_counter() - t

    out["avg_pred_len"] = sum(len(res[i][0].split()) for i in res) / len(res)
    ref_lengths = [len(r.split()) for i in gts for r in gts[i]]
    out["avg_ref_len"] = sum(ref_lengths) / len(ref_lengths)
    out["num_samples"] = len(predictions)
    out["protocol"] = PROTOCOL
    if return_timings:
        out["timings"] = timings
    return out


def _spice(gts: dict, res: dict, download: bool) -> tuple[float | None, str | None]:
    """SPICE score or (None, reason). Never downloads unless `download`; never hangs on a missing jar."""
    missing = missing_spice_jars()
    if missing and not download:
        # Said once, here: one plain line in the log; the full instructions go to the result's SPICE_error.
        logger.warning("SPICE not computed: the Stanford CoreNLP 3.6.0 jars are missing (where to put them: the "
                       "result's SPICE_error); the other metrics are complete; --spice false skips SPICE")
        return None, spice_setup_message()
    import socket

    previous_timeout = socket.getdefaulttimeout()
    try:
        if missing:
            socket.setdefaulttimeout(30)  # a blocked download fails in 30 s instead of hanging
        from pycocoevalcap.spice.spice import Spice

        score, _ = Spice().compute_score(gts, res)
        return float(score), None
    except Exception as err:  # noqa: BLE001 - SPICE failing must not lose the other metrics
        logger.warning("SPICE failed (%s); the other metrics are complete; --spice false skips SPICE", err)
        return None, f"SPICE failed: {err}. " + spice_setup_message()
    finally:
        socket.setdefaulttimeout(previous_timeout)


class Caption(evaluate.Metric):
    """COCO caption metrics (pycocoevalcap): BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE, lengths."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
            ],
        )

    def _compute(self, predictions, references, spice=False, spice_download=False):
        return caption_metrics(predictions, references, spice=spice, spice_download=spice_download)


__all__ = [
    "CORENLP_JARS",
    "Caption",
    "caption_metrics",
    "missing_spice_jars",
    "ptb_tokenize",
    "spice_lib_dir",
    "spice_setup_message",
]
