"""`import hf_vlmdrive` is lazy: it registers every family with the Auto classes without importing modeling code.

Each check runs in a fresh interpreter (`sys.executable -c ...`), since the pytest process has imported the
modeling modules already. The child prints one JSON line, which the test inspects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TINY = """
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig
TINY_SIGLIP = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, image_size=32, patch_size=8)
def tiny_config(**kwargs):
    kwargs.setdefault("vision_config", TINY_SIGLIP)
    kwargs.setdefault("head_hidden_sizes", [32, 32])
    return WaypointVLMConfig(**kwargs)
"""

HF_MODELING = "[m for m in sorted(sys.modules) if m.startswith('hf_vlmdrive.') and '.modeling_' in m]"


def run_child(code: str, cwd: Path | None = None, extra_path: Path | None = None) -> dict:
    """Run `code` in a fresh interpreter; it must print one line `RESULT <json>`; returns the parsed JSON."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra_path), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, f"no RESULT line in the child's output:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[0][len("RESULT ") :])


def test_import_registers_every_family_without_modeling_code():
    got = run_child(
        f"""
        import json, sys
        import hf_vlmdrive
        after_import = {HF_MODELING}
        modeling_utils = "transformers.modeling_utils" in sys.modules
        from transformers import AutoConfig, AutoModel
        from hf_vlmdrive.models import auto
        from hf_vlmdrive.models.geovla import GeoVLAConfig, GeoVLAGeometryConfig
        from hf_vlmdrive.models.simlingo import SimLingoConfig
        from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig
        import hf_vlmdrive.models.common as common
        configs = {{t: type(AutoConfig.for_model(t)).__qualname__
                   for t in ("waypoint_vlm", "geovla", "geovla_geometry", "simlingo", "flamingo", "robovlm",
                             "mapanything")}}
        registered = {{c.__name__: [v.__module__, v.__name__] for c, v in AutoModel._model_mapping._extra_content.items()
                      if c.__module__.startswith("hf_vlmdrive.")}}
        contained = [cfg in AutoModel._model_mapping for cfg in (WaypointVLMConfig, GeoVLAConfig, SimLingoConfig)]
        # the lazy package __init__s: their names are listed, and config names import no modeling code
        dirs = {{m.__name__: sorted(set(m.__all__) - set(dir(m))) for m in (hf_vlmdrive, common)}}
        common.resolve_vision_config, common.VISION_PREFIX_TOKENS
        after_configs = {HF_MODELING} + ["vision"] * ("hf_vlmdrive.models.common.vision" in sys.modules)
        try:
            hf_vlmdrive.models.geovla.NoSuchThing
            missing = "no error"
        except AttributeError as err:
            missing = str(err)
        from hf_vlmdrive.models.geovla import GeoVLAForActionPrediction
        after_model = {HF_MODELING}
        table_autos = sorted({{e.auto_class for e in getattr(auto, "AUTO_CLASSES", ())}})
        print("RESULT " + json.dumps(dict(
            after_import=after_import, modeling_utils=modeling_utils, configs=configs, registered=registered,
            contained=contained, dirs=dirs, after_configs=after_configs, missing=missing, after_model=after_model,
            model_name=GeoVLAForActionPrediction.__name__, model_is_class=isinstance(GeoVLAForActionPrediction, type),
            table_autos=table_autos)))
        """
    )
    assert got["after_import"] == [], f"import hf_vlmdrive imported modeling modules: {got['after_import']}"
    if set(got["table_autos"]) <= {"AutoModel"}:  # a processor row imports transformers' processing_utils
        assert not got["modeling_utils"], "import hf_vlmdrive imported transformers.modeling_utils"
    assert got["configs"] == {
        "waypoint_vlm": "WaypointVLMConfig",
        "geovla": "GeoVLAConfig",
        "geovla_geometry": "GeoVLAGeometryConfig",
        "simlingo": "SimLingoConfig",
        "flamingo": "FlamingoConfig",
        "robovlm": "RoboVLMConfig",
        "mapanything": "MapAnythingConfig",
    }
    prefix = "hf_vlmdrive.models."
    assert got["registered"] == {
        "WaypointVLMConfig": [prefix + "waypoint_vlm.modeling_waypoint_vlm", "WaypointVLMModel"],
        "GeoVLAConfig": [prefix + "geovla.modeling_geovla", "GeoVLAForActionPrediction"],
        "GeoVLAGeometryConfig": [prefix + "geovla.modeling_geovla", "GeoVLAGeometryEncoder"],
        "SimLingoConfig": [prefix + "simlingo.modeling_simlingo", "SimLingoForWaypointPrediction"],
        "FlamingoConfig": [prefix + "flamingo.modeling_flamingo", "FlamingoForConditionalGeneration"],
        "RoboVLMConfig": [prefix + "robovlm.modeling_robovlm", "RoboVLMForActionPrediction"],
        "MosaicGPTConfig": [prefix + "mosaic_gpt.modeling_mosaic_gpt", "MosaicGPTModel"],
        "MapAnythingConfig": [prefix + "mapanything.modeling_mapanything", "MapAnythingModel"],
    }
    assert got["contained"] == [True, True, True]
    assert got["dirs"] == {"hf_vlmdrive": [], "hf_vlmdrive.models.common": []}, "names of __all__ missing from dir()"
    assert got["after_configs"] == [], f"config names imported {got['after_configs']}"
    assert "NoSuchThing" in got["missing"]
    # GeoVLA's default geometry encoder is MapAnything: its modeling module comes along
    assert sorted(got["after_model"]) == ["hf_vlmdrive.models.geovla.modeling_geovla",
                                          "hf_vlmdrive.models.mapanything.modeling_mapanything"]
    assert got["model_name"] == "GeoVLAForActionPrediction" and got["model_is_class"]


def test_auto_model_from_pretrained_and_from_config_import_the_real_class(tmp_path):
    saved = run_child(
        TINY
        + f"""
import json, torch
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMModel
torch.manual_seed(0)
model = WaypointVLMModel(tiny_config()).eval()
model.save_pretrained({str(tmp_path / "model")!r})
g = torch.Generator().manual_seed(1)
inputs = dict(pixel_values=torch.randn(2, 3, 32, 32, generator=g), past_states=torch.randn(2, 16, 6, generator=g),
              intent=torch.tensor([1, 3]))
torch.save(inputs, {str(tmp_path / "inputs.pt")!r})
with torch.no_grad():
    torch.save(model(**inputs).waypoints, {str(tmp_path / "expected.pt")!r})
print("RESULT " + json.dumps(dict(ok=True)))
"""
    )
    assert saved == {"ok": True}

    got = run_child(
        f"""
import json, sys, torch
import hf_vlmdrive
from transformers import AutoModel
before = {HF_MODELING}
model = AutoModel.from_pretrained({str(tmp_path / "model")!r}).eval()
after = {HF_MODELING}
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMModel
inputs = torch.load({str(tmp_path / "inputs.pt")!r})
with torch.no_grad():
    same = torch.equal(model(**inputs).waypoints, torch.load({str(tmp_path / "expected.pt")!r}))
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMConfig
again = AutoModel.from_config(WaypointVLMConfig(**model.config.to_dict()))
print("RESULT " + json.dumps(dict(
    before=before, after=after, cls=type(model).__qualname__, exact=type(model) is WaypointVLMModel, same=same,
    mapping_is_real=AutoModel._model_mapping[WaypointVLMConfig] is WaypointVLMModel,
    from_config_exact=type(again) is WaypointVLMModel)))
"""
    )
    assert got["before"] == []
    assert got["after"] == ["hf_vlmdrive.models.waypoint_vlm.modeling_waypoint_vlm"], "only the used family loads"
    assert got["cls"] == "WaypointVLMModel" and got["exact"], got
    assert got["same"], "the reloaded model's outputs differ from the saved model's"
    assert got["mapping_is_real"], "AutoModel._model_mapping[WaypointVLMConfig] is not the real class"
    assert got["from_config_exact"]


def test_from_config_in_a_fresh_process_returns_the_real_class():
    got = run_child(
        TINY
        + f"""
import json, pickle, sys
import hf_vlmdrive
from transformers import AutoModel
from hf_vlmdrive.models.auto import lazy_class
stand_in = dict.get(AutoModel._model_mapping._extra_content, type(tiny_config()))  # not resolving
checks = dict(repr=repr(stand_in), is_type=isinstance(stand_in, type), name=stand_in.__name__,
              instance_check_before=isinstance(object(), stand_in), before={HF_MODELING})
model = AutoModel.from_config(tiny_config())
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMModel
checks.update(after={HF_MODELING}, exact=type(model) is WaypointVLMModel,
              instance_check=isinstance(model, stand_in), subclass_check=issubclass(WaypointVLMModel, stand_in),
              via_stand_in=type(stand_in(tiny_config())) is WaypointVLMModel,
              attr=stand_in.config_class.__name__, pickled=pickle.loads(pickle.dumps(stand_in)) is WaypointVLMModel)
wrong = lazy_class(".geovla.modeling_geovla", "GeoVLAForActionPrediction", type(tiny_config()))
try:
    wrong.config_class
    checks["mismatch"] = "no error"
except ValueError as err:
    checks["mismatch"] = str(err)
print("RESULT " + json.dumps(checks))
"""
    )
    assert got["repr"] == "<lazy class 'hf_vlmdrive.models.waypoint_vlm.modeling_waypoint_vlm.WaypointVLMModel'>"
    assert got["is_type"] and got["name"] == "WaypointVLMModel"
    assert got["instance_check_before"] is False
    assert got["before"] == [] and got["after"] == ["hf_vlmdrive.models.waypoint_vlm.modeling_waypoint_vlm"]
    assert got["exact"], "AutoModel.from_config did not return a WaypointVLMModel"
    assert got["instance_check"] and got["subclass_check"] and got["via_stand_in"]
    assert got["attr"] == "WaypointVLMConfig"
    assert got["pickled"], "a pickled stand-in does not unpickle to the real class"
    assert "config_class" in got["mismatch"] and "registered for" in got["mismatch"], got["mismatch"]


THROWAWAY = '''
"""A throwaway processor module: the test checks that it is imported only on first use."""
import sys

print("IMPORTED throwaway_processing", file=sys.stderr)


class ThrowawayProcessor:
    def __init__(self, source=None):
        self.source = source

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        return cls(str(path))


try:
    from transformers.image_processing_utils import BaseImageProcessor
except ImportError:  # pragma: no cover
    BaseImageProcessor = object


class ThrowawayImageProcessor(BaseImageProcessor):
    @classmethod
    def from_pretrained(cls, path, **kwargs):
        processor = cls()
        processor.source = str(path)
        return processor
'''


def test_register_lazy_processor_and_image_processor(tmp_path):
    (tmp_path / "throwaway_processing.py").write_text(THROWAWAY)
    got = run_child(
        TINY
        + f"""
import json, sys
import hf_vlmdrive
from hf_vlmdrive import register_lazy
config = tiny_config()
config.save_pretrained({str(tmp_path / "ckpt")!r})
AUTO = "transformers.models.auto.processing_auto"
preloaded = AUTO in sys.modules
register_lazy("AutoProcessor", type(config), "throwaway_processing", "ThrowawayProcessor")
deferred = AUTO not in sys.modules  # registering a processor does not import transformers' processing_auto
hooked = any(type(f).__name__ == "_AfterImport" for f in sys.meta_path)
from transformers import AutoProcessor  # imports processing_auto, which runs the waiting registration
hook_gone = not any(type(f).__name__ == "_AfterImport" for f in sys.meta_path)
loader = type(sys.modules[AUTO].__loader__).__name__, type(sys.modules[AUTO].__spec__.loader).__name__
register_lazy("AutoImageProcessor", type(config), "throwaway_processing", "ThrowawayImageProcessor", backend="pil")
before = "throwaway_processing" in sys.modules
processor = AutoProcessor.from_pretrained({str(tmp_path / "ckpt")!r})
after = "throwaway_processing" in sys.modules
with open({str(tmp_path / "ckpt" / "preprocessor_config.json")!r}, "w") as f:
    json.dump(dict(image_processor_type="ThrowawayImageProcessor"), f)
from transformers import AutoImageProcessor
image_processor = AutoImageProcessor.from_pretrained({str(tmp_path / "ckpt")!r})
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING
import throwaway_processing as mod
print("RESULT " + json.dumps(dict(
    preloaded=preloaded, deferred=deferred, hooked=hooked, hook_gone=hook_gone, loader=loader,
    before=before, after=after, processor=type(processor).__qualname__,
    processor_exact=type(processor) is mod.ThrowawayProcessor, source=processor.source,
    image_processor_exact=type(image_processor) is mod.ThrowawayImageProcessor,
    image_mapping={{k: v is mod.ThrowawayImageProcessor for k, v in IMAGE_PROCESSOR_MAPPING[type(config)].items()}},
    modeling={HF_MODELING})))
""",
        cwd=tmp_path,
        extra_path=tmp_path,
    )
    assert got["preloaded"] is False, "import hf_vlmdrive imported transformers' processing_auto"
    assert got["deferred"] and got["hooked"], "registering a processor imported transformers' processing_auto"
    assert got["hook_gone"], "the import hook stayed on sys.meta_path after its registration ran"
    assert got["loader"] == ["SourceFileLoader", "SourceFileLoader"], got["loader"]
    assert got["before"] is False, "register_lazy imported the processor module"
    assert got["after"] is True
    assert got["processor"] == "ThrowawayProcessor" and got["processor_exact"]
    assert got["source"] == str(tmp_path / "ckpt")
    assert got["image_processor_exact"], "AutoImageProcessor did not return the registered class"
    assert got["image_mapping"] == {"pil": True}
    assert got["modeling"] == [], "registering processors imported modeling code"


def test_register_lazy_falls_back_to_eager_when_transformers_internals_differ():
    got = run_child(
        TINY
        + f"""
import json, logging, sys
import hf_vlmdrive
from hf_vlmdrive.models import auto
from transformers import AutoModel, PretrainedConfig

records = []
handler = logging.Handler()
handler.emit = records.append
auto.logger.addHandler(handler)
auto.logger.setLevel(logging.DEBUG)
auto._lazy_registry = lambda auto_class: None  # as if transformers' Auto mappings had changed shape
registered = auto.register_lazy("AutoModel", type(tiny_config()), ".waypoint_vlm.modeling_waypoint_vlm",
                                "WaypointVLMModel")
imported = {HF_MODELING}
from hf_vlmdrive.models.waypoint_vlm import WaypointVLMModel
print("RESULT " + json.dumps(dict(
    eager=auto.resolve_lazy(registered) is WaypointVLMModel, imported=imported,
    in_mapping=dict.get(AutoModel._model_mapping._extra_content, type(tiny_config())) is WaypointVLMModel,
    logged=[(r.levelname, r.getMessage()) for r in records])))
"""
    )
    assert got["eager"] and got["in_mapping"]
    assert got["imported"] == ["hf_vlmdrive.models.waypoint_vlm.modeling_waypoint_vlm"]
    assert [level for level, _ in got["logged"]] == ["DEBUG"]
    assert "eagerly" in got["logged"][0][1]


@pytest.mark.parametrize("package", ["waypoint_vlm", "simlingo", "geovla", "flamingo", "robovlm", "mapanything",
                                     "common"])
def test_lazy_package_names_resolve(package):
    """In-process: every name in a package's `__all__` resolves to an object defined in the named submodule."""
    import importlib

    module = importlib.import_module(f"hf_vlmdrive.models.{package}")
    assert sorted(module.__all__) == sorted(module._LAZY_ATTRS)
    for name in module.__all__:
        value = getattr(module, name)
        submodule = importlib.import_module(module._LAZY_ATTRS[name], module.__name__)
        assert value is getattr(submodule, name)
        assert name in dir(module)
