"""Through the node: a query that takes seconds leaves its objects behind, and tracking
steps them through the frames that came meanwhile before the newest (node process, DDS on
loopback, pipeline doubled; the double logs the stamp of every tracking step).

The camera streams at 10 Hz, tracking asks for 10 Hz, and the query takes about 1.2 s.
With ``tracking.catch_up_frames`` at its default the first steps after the query are the
frames between the query's newest frame and the first one published; at 0 the object
jumps straight to the newest frame. About 15 s.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402

from helpers.perception_client import Client, NodeProcess, image_msg, stamp_of, wait_for  # noqa: E402
from unipixel_ros.msg import ObjectMasksArray, VisualPrompt  # noqa: E402
from unipixel_ros.srv import Query  # noqa: E402

pytestmark = pytest.mark.ros

W, H, RATE_HZ, TOKEN_DELAY_S = 32, 24, 10.0, 0.3          # the double writes 4 tokens: 1.2 s


def stream(client: Client, topic: str, stop: threading.Event, stamps: list[int]) -> None:
    pub = client.publisher(Image, topic)
    i = 0
    while not stop.wait(1 / RATE_HZ):
        rgb = np.random.default_rng(i).integers(40, 230, (H, W, 3), dtype=np.uint8)
        stamps.append(time.time_ns())
        pub.publish(image_msg(rgb, stamps[-1], "cam_optical"))
        i += 1


def query_then_track(namespace: str, catch_up_frames: int) -> tuple[list[int], list[int], int, int]:
    """(stamps streamed, stamps tracking stepped after the query, query's newest stamp, first stamp
    published with the object after it)."""
    params = {"cameras": ["cam"], "tracking.rate_hz": RATE_HZ, "tracking.catch_up_frames": catch_up_frames,
              "query.window_seconds": 0.5, "model.id": "test-model"}
    node = NodeProcess(namespace, params, token_delay=TOKEN_DELAY_S)
    client = Client(f"{namespace.strip('/')}_client")
    stop, streamed = threading.Event(), []
    streamer = threading.Thread(target=stream, args=(client, f"{namespace}/cam/image_raw", stop, streamed),
                                daemon=True)
    try:
        node.wait_ready()
        tracked = client.subscribe(ObjectMasksArray, f"{namespace}/unipixel/tracked_objects")
        streamer.start()
        wait_for(lambda: len(streamed) > 10, 20, "a second of frames")
        prompt = VisualPrompt(type=VisualPrompt.POINT, object_index=0, x0=8.0, y0=8.0)
        resp = wait_for(lambda: (r := client.call(Query, f"{namespace}/unipixel/query", Query.Request(
            camera="cam", text="[0]", prompts=[prompt], remember=True))).success and r, 30, "a query served")
        newest = stamp_of(resp.frame_stamps[-1])
        first = wait_for(lambda: min((stamp_of(m.header.stamp) for m in client.snapshot(tracked)
                                      if m.objects and stamp_of(m.header.stamp) > newest), default=None), 20,
                         "the object tracked after the query")     # (empty ones come while it runs)
        wait_for(lambda: any(c["stamp"] >= first for c in node.calls("track")), 10, "the step onto it")
        steps = sorted(c["stamp"] for c in node.calls("track") if c["stamp"] > newest)
        return list(streamed), steps, newest, first
    finally:
        stop.set()
        if streamer.is_alive():
            streamer.join()
        client.close()
        node.stop()


def test_objects_a_long_query_left_behind_are_tracked_through_the_frames_they_missed() -> None:
    streamed, steps, newest, first = query_then_track("/catchup_on", 50)
    missed = [s for s in streamed if newest < s < first]
    caught_up = [s for s in steps if s < first]
    assert len(missed) >= 8                                  # the query took over a second at 10 Hz
    assert set(caught_up) <= set(missed)
    assert len(caught_up) >= len(missed) // 2                # spaced at the rate, allowing for jitter
    assert caught_up[-1] >= missed[len(missed) // 2]         # up to near the newest (a frame may be lost)


def test_with_catching_up_off_the_object_jumps_to_the_newest_frame() -> None:
    streamed, steps, newest, first = query_then_track("/catchup_off", 0)
    assert [s for s in streamed if newest < s < first]       # frames came while the query ran
    assert [s for s in steps if s < first] == []
