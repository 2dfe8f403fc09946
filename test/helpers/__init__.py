"""Processes and fixtures the ROS tests use to talk to the node as a client would."""
