"""Parameter sweeps: one base scenario, a grid of dotted keys, one row per point.

``spec`` reads and checks a sweep file, ``points`` expands the grid and keeps each finished
point on disk, ``execute`` runs the points on local processes or a Dask cluster, ``plot``
draws a metric against a parameter. A sweep reads run results; it never looks inside the
simulator.
"""
