"""Procedural data generators, so that every recipe, test and demo runs offline on real file formats.

- `driving`: a road + an ego trajectory + obstacles, continuous in time, rendered through a pinhole
  front camera; gives waypoint samples (past states, intent, future) whose future is visible in the image.
- `roadscene`: pedestrian-view road scenes with known sidewalk / road / object positions, their BVPI
  annotations and template captions.
"""
