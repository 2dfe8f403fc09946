"""Offline replay of rosbag2 recordings through the node's own windows, queries, clicks and tracking.

``python -m unipixel_ros.replay BAG OUT --camera front=/front/image_raw --params config/unipixel.yaml
--requests requests.yaml`` reads a recording (MCAP or sqlite3) with the ``rosbags`` library,
feeds its camera messages to the node's :class:`~unipixel_ros.ros.ingest.CameraFeed`\\ s in
recorded order, runs the request script's queries and clicks at their bag times through the
node's :class:`~unipixel_ros.ros.query_server.QueryAnswerer` and
:func:`~unipixel_ros.ros.clicks.segment_click`, tracks kept objects on every frame after them
with the node's :class:`~unipixel_ros.ros.tracking.TrackingCore`, and writes a bag holding the
camera topics next to the node's outputs, plus a JSON / CSV summary of every request.

No ROS graph is needed: messages are (de)serialised with rclpy's CDR functions, so the outputs
are the node's own messages; nothing is published.

Modules: :mod:`.errors`, :mod:`.types` (the rosbags type store with this package's messages),
:mod:`.config` (the node's parameter file through the node's readers), :mod:`.script` (the
request script), :mod:`.reading`, :mod:`.writing`, :mod:`.running`, :mod:`.evaluation`
(J and F against ground-truth label images), :mod:`.summary`, :mod:`.__main__` (the program), :mod:`.record` (a sample recording of the synthetic
RGB-D camera with ground truth: ``python -m unipixel_ros.replay.record OUT``).
"""
