"""The ROS 2 side of unipixel_ros: the lifecycle node and what it composes.

Only this subpackage imports rclpy. Its modules: ``params`` (every parameter,
declared and validated in one place), ``qos`` (named QoS profiles),
``conversions`` (image messages to RGB arrays), ``ingest`` (camera
subscriptions feeding :class:`unipixel_ros.frames.FrameWindow`),
``diagnostics`` (``/diagnostics``), ``component`` (the interface the node's
parts implement) and ``node`` (the lifecycle node and its entry point).
"""
