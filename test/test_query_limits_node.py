"""Request size limits and out-of-range request fields on a real node process (pipeline doubled).

The node is started with small ``query.max_*`` limits: requests beyond them, and requests
whose numbers are out of range (a window of 1e300 s, 2^32 - 1 frames, coordinates near
float32's maximum, unknown huge memory ids, stamps that are not times), must get
``success = false`` with a message naming the field or parameter, never reach the
pipeline, leave no traceback in the node's log, and the node must keep serving.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from sensor_msgs.msg import Image  # noqa: E402

from helpers.perception_client import Client, NodeProcess, image_msg, publish_until, stamp_of  # noqa: E402
from unipixel_ros.msg import VisualPrompt  # noqa: E402
from unipixel_ros.srv import Query  # noqa: E402

pytestmark = pytest.mark.ros

NS, W, H, FRAMES = "/qlimits", 32, 24, 4
LIMITS = {"max_prompts": 3, "max_text_tokens": 7, "max_prompt_pixels": 1000}
PARAMS = {"cameras": ["cam"], "window.duration_s": 10.0, "window.max_frames": 8, "tracking.rate_hz": 0.0,
          "model.id": "test-model", **{f"query.{k}": v for k, v in LIMITS.items()}}
UINT32_MAX, FLOAT32_MAX = 2**32 - 1, 3.4e38


@pytest.fixture(scope="module")
def served():
    node = NodeProcess(NS, PARAMS)
    client = None
    try:
        node.wait_ready()
        client = Client("query_limits_test_client")
        publisher = client.publisher(Image, f"{NS}/cam/image_raw")
        time.sleep(0.3)
        start = time.time_ns()
        rng = np.random.default_rng(0)
        frames = [image_msg(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), start + i * 100_000_000, "cam")
                  for i in range(FRAMES)]

        def send() -> None:
            for frame in frames:
                publisher.publish(frame)
                time.sleep(0.05)
        # Best effort: frames sent before the node matched the publisher are lost. Sent again,
        # the same stamps fill the gaps (the node drops the ones it holds already).
        publish_until(send, lambda: len(ask(client, "ready?").frame_stamps) == FRAMES, 30, "the frames in the node")
        yield client, node
    finally:
        if client is not None:
            client.close()
        node.stop()


def ask(client: Client, text: str, prompts=(), **fields) -> Query.Response:
    return client.call(Query, f"{NS}/unipixel/query", Query.Request(camera="cam", text=text, prompts=list(prompts),
                                                                     **fields))


def point(k: int = 0, x: float = 4.0, y: float = 5.0) -> VisualPrompt:
    return VisualPrompt(type=VisualPrompt.POINT, object_index=k, x0=x, y0=y)


def mask(k: int, width: int = W, height: int = H, data: bool = True) -> VisualPrompt:
    prompt = VisualPrompt(type=VisualPrompt.MASK, object_index=k)
    prompt.mask = Image(width=width, height=height, step=width, encoding="mono8")
    prompt.mask.data = bytes([255]) * (width * height) if data else b""
    return prompt


def stamped(prompt: VisualPrompt, sec: int, nanosec: int) -> VisualPrompt:
    prompt.stamp.sec, prompt.stamp.nanosec = sec, nanosec
    return prompt


def test_the_limits_reach_the_pipeline_with_each_request(served) -> None:
    client, node = served
    assert ask(client, "What is [0]?", [point()]).success
    assert node.calls("query")[-1]["limits"] == LIMITS


@pytest.mark.parametrize("text, prompts, fields, expected", [
    ("[0] [1] [2] [3]", [point(k) for k in range(4)], {},
     "4 visual prompts in one request; at most 3 are allowed (query.max_prompts)"),
    ("[0] [1]", [mask(0), mask(1)], {},
     f"the mask prompts hold {2 * W * H} pixels; at most 1000 per request are allowed (query.max_prompt_pixels)"),
    ("[0]", [mask(0, 100_000, 100_000, data=False)], {}, "hold 10000000000 pixels"),   # refused before decoding
    ("hi", [], {"window_seconds": 1e300}, "window_seconds must be at most window.duration_s = 10 s"),
    ("hi", [], {"window_seconds": float("inf")}, "window_seconds must be >= 0"),
    ("hi", [], {"max_frames": UINT32_MAX}, f"max_frames must be at most window.max_frames = 8 (the camera window "
                                           f"holds no more frames), got {UINT32_MAX}"),
    ("[0]", [point(x=FLOAT32_MAX)], {}, "is outside the 32x24 image"),
    ("[0]", [VisualPrompt(type=VisualPrompt.BOX, object_index=0, x0=1.0, y0=1.0, x1=FLOAT32_MAX, y1=9.0)], {},
     "is outside the 32x24 image"),
    ("[0]", [VisualPrompt(type=VisualPrompt.MEMORY, object_index=0, memory_id=UINT32_MAX)], {},
     f"no object with id {UINT32_MAX} in memory"),
    ("[0]", [stamped(point(), 5, UINT32_MAX)], {}, "is not a time: needs sec >= 0 and nanosec < 1000000000"),
    ("[0]", [stamped(point(), -3, 0)], {}, "is not a time"),
])
def test_oversize_and_out_of_range_requests_are_refused_by_name(served, text, prompts, fields, expected) -> None:
    client, node = served
    before, logged = len(node.calls()), len(node.log())
    resp = ask(client, text, prompts, **fields)
    assert not resp.success and expected in resp.message, resp.message
    assert len(node.calls()) == before                # refused before the pipeline
    assert "Traceback" not in node.log()[logged:] and "failed inside the model" not in resp.message
    assert ask(client, "still serving?").success


def test_a_request_within_the_limits_is_served(served) -> None:
    client, node = served
    resp = ask(client, "[0] [1] [2]", [point(0), point(1, 9.0), mask(2, data=True)], window_seconds=10.0,
               max_frames=8)
    assert resp.success, resp.message
    assert len(resp.frame_stamps) == FRAMES and [stamp_of(s) for s in resp.frame_stamps] == node.calls("query")[-1][
        "stamps"]
