"""The ROS 2 side of unipixel_ros: the lifecycle node and what it composes.

Only this subpackage imports rclpy; it converts messages and calls the ROS-free
pipeline. Its modules:

* ``node``: the lifecycle node and its entry point; ``component``: the interface its parts implement;
* ``params``: every parameter, declared and validated in one place; ``qos``: named QoS profiles;
* ``conversions``: image messages to RGB arrays; ``ingest``: camera subscriptions feeding
  :class:`unipixel_ros.frames.FrameWindow`; ``diagnostics``: ``/diagnostics``;
* ``perception``: the model side (built from the parts below); ``model_host``: loads the
  pipeline in the background and runs one request at a time (queue or refuse);
* ``query_server``: the ``~/query`` service and action; ``messages``: results and prompts to
  and from messages; ``tracking``: memory-bank objects tracked on new frames and published;
  ``clicks``: rqt / RViz click-to-segment; ``memory_services``: list / remove / reset;
* ``synthetic_camera``: a seeded synthetic camera for demos and tests.
"""
