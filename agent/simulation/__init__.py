"""Simulation orchestration for the executive: a whole simulated cell, its hooks, and ``anycell sim``'s job run.

No ROS here: :mod:`.runtime` builds the PyBullet world, simulated robots and
simulated machines (each on its real transport) from a CellConfig;
:mod:`.hooks` is the seam through which parts appear and are measured; and
:mod:`.job` runs one job end to end in-process.
"""
