"""Caption metrics: identical to pycocoevalcap called directly; SPICE without jars fails clearly."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pycocoevalcap")
if shutil.which("java") is None:
    pytest.skip("pycocoevalcap needs Java for the PTB tokenizer and METEOR", allow_module_level=True)

from hf_vlmdrive.metrics import load_metric  # noqa: E402
from hf_vlmdrive.metrics.caption.caption import missing_spice_jars, spice_lib_dir  # noqa: E402

PREDS = [
    "A car drives on the road, the sidewalk is on the left.",
    "Two people walk on the sidewalk next to a bicycle!",
    "The path is clear; keep walking.",
    "there is a traffic light on the right",
]
REFS = [
    ["a car is driving on the road and the sidewalk is on the left", "the sidewalk is left of a road with a car"],
    ["two persons walk along the sidewalk beside a bike"],
    ["the path is clear, keep walking straight", "no obstacles: keep walking", "walk on"],
    ["a traffic light stands on the right side", "traffic light to the right"],
]


def _direct():
    """The reference numbers: pycocoevalcap as COCOEvalCap uses it (two tokenizer calls, fresh scorers)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = PTBTokenizer().tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(REFS)})
    res = PTBTokenizer().tokenize({i: [{"caption": p}] for i, p in enumerate(PREDS)})
    out = dict(zip(["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"], Bleu(4).compute_score(gts, res, verbose=0)[0]))
    out["METEOR"] = Meteor().compute_score(gts, res)[0]
    out["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
    out["CIDEr"] = Cider().compute_score(gts, res)[0]
    lengths = ([len(res[i][0].split()) for i in res], [len(r.split()) for i in gts for r in gts[i]])
    return out, lengths


def test_metric_matches_pycocoevalcap_and_spice_fails_clearly():
    metric = load_metric("caption")
    result = metric.compute(predictions=PREDS, references=REFS, spice=True)
    expected, (pred_lens, ref_lens) = _direct()
    for key, value in expected.items():
        assert result[key] == value, key  # identical, not approximately equal
    assert 0 < result["Bleu_4"] < result["Bleu_1"] < 1 and result["CIDEr"] > 0
    assert result["avg_pred_len"] == sum(pred_lens) / len(pred_lens)
    assert result["avg_ref_len"] == sum(ref_lens) / len(ref_lens)
    assert "CIDEr-D" in result["protocol"]
    if missing_spice_jars():
        assert result["SPICE"] is None
        assert str(spice_lib_dir()) in result["SPICE_error"]
        assert "stanford-corenlp-3.6.0-models.jar" in result["SPICE_error"]
    else:
        assert 0 <= result["SPICE"] <= 1


def test_input_validation():
    from hf_vlmdrive.metrics.caption.caption import caption_metrics

    with pytest.raises(ValueError, match="2 predictions but 1 reference"):
        caption_metrics(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match=r"references\[0\] must be a non-empty list"):
        caption_metrics(["a"], ["a"])
