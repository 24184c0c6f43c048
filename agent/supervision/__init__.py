"""Process supervision for ``anycell up`` and the launch file: the cell's node list and its supervisor.

Plain Python (no rclpy): :mod:`.nodes` says which processes make a cell, and
:mod:`.supervisor` starts, watches and stops them.
"""
