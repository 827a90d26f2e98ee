"""The embedded quick paths that learn, one module per family: synthetic data -> a tiny model trained with the
family's recipe -> held-out metrics next to trivial baselines -> a figure, `results.json` and a model card.

- `demos.roadscene`: tiny SmolVLM2 SFT on synthetic road scenes (BVPI + captions), `run_roadscene_demo`
- `demos.flamingo`: tiny Flamingo caption SFT on the same scenes, `run_flamingo_demo`
- `demos.geovla`: tiny GeoVLA on synthetic pick-and-place LeRobot data, `run_geovla_demo`
- `demos.common`: what they share (threads, prediction files, caption scores, tables, the results tail)

The waypoint quick path is `examples/demo_waypoint.py` (`make demo`); RoboVLM's and SimLingo's are their
recipes' defaults (`hf-vlmdrive train robovlm`, `hf-vlmdrive train simlingo`).
"""

from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "FlamingoDemoConfig": ".flamingo",
    "run_flamingo_demo": ".flamingo",
    "GeoVLADemoConfig": ".geovla",
    "run_geovla_demo": ".geovla",
    "RoadSceneDemoConfig": ".roadscene",
    "run_roadscene_demo": ".roadscene",
})

__all__ = ["FlamingoDemoConfig", "GeoVLADemoConfig", "RoadSceneDemoConfig", "run_flamingo_demo", "run_geovla_demo",
           "run_roadscene_demo"]
