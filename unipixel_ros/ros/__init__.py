"""The ROS 2 side of unipixel_ros: the lifecycle node and what it composes.

This subpackage (and :mod:`unipixel_ros.replay`, which drives its components offline)
imports rclpy; it converts messages and calls the ROS-free pipeline. Its modules:

* ``node``: the lifecycle node and its entry point; ``component``: the interface its parts implement;
* ``params``: every parameter, declared and validated in one place; ``qos``: named QoS profiles;
* ``conversions``: image messages to RGB arrays; ``ingest``: camera subscriptions feeding
  :class:`unipixel_ros.frames.FrameWindow`; ``diagnostics``: ``/diagnostics``;
* ``perception``: the model side (built from the parts below); ``model_host``: loads the
  pipeline in the background and runs one request at a time (queue or refuse);
* ``query_server``: the ``~/query`` service and action; ``messages``: results and prompts to
  and from messages; ``tracking``: memory-bank objects tracked on new frames and published;
  ``clicks``: rqt / RViz click-to-segment; ``memory_services``: list / remove / reset;
* ``objects3d_output``: objects located in 3-D from registered depth, their ``Object3D``,
  markers and point clouds; ``tf``: the tf2 listener shared by clicks and 3-D;
* ``process``: signals and the ordered stop; ``spinner``: the executor's thread, which also
  runs the transitions; ``entities``: releasing subscriptions, services and publishers
  without pulling them from under a callback;
* ``synthetic_camera``: a seeded synthetic RGB-D camera for demos and tests.
"""
