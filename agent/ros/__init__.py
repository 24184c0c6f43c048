"""The cell agent's ROS 2 face: nodes, message conversions, the ROS robot and sim bridges, the client.

The only package (with ``launch/``) that imports rclpy. It stays thin: it turns
messages into calls on the plain-Python executive in :mod:`anycell.agent` and
publishes what the executive reports (the py_trees / py_trees_ros split).
"""
