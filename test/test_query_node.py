"""The ~/query service and action on a real node process over DDS (loopback), pipeline doubled.

A client streams frames to the node, asks, and checks what comes back against what it
sent: masks of the camera's size carrying the source frames' stamps and frame_id, the
stamps used, feedback while generating, cancellation, busy handling, and a clear
message for every bad request while the node keeps serving.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from action_msgs.msg import GoalStatus  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from helpers.fake_pipeline import SCORE, disc, frame_digest  # noqa: E402
from helpers.perception_client import (Client, NodeProcess, image_msg, mono_pixels, publish_until,  # noqa: E402
                                       stamp_of, wait_for)
from unipixel_ros.action import Query as QueryAction  # noqa: E402
from unipixel_ros.msg import VisualPrompt  # noqa: E402
from unipixel_ros.srv import Query  # noqa: E402

pytestmark = pytest.mark.ros

NS, NS_REJECT = "/qtest", "/qtest_reject"
W, H, FRAME_ID = 32, 24, "cam_optical"
NUM_FRAMES, PERIOD_NS = 6, 100_000_000
TOKEN_DELAY = 0.25          # 4 tokens: a query takes about a second
PARAMS = {
    "cameras": ["cam", "stale", "silent"],
    "window.max_frames": 32,
    "query.window_seconds": 4.0,
    "query.max_frames": 16,
    "query.prompt_stamp_tolerance_s": 0.02,
    "query.max_frame_age_s": 30.0,
    "query.busy_policy": "queue",
    "query.max_queued": 1,
    "tracking.rate_hz": 0.0,
    "model.id": "test-model",
}


def frame_image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(20, 230, (H, W, 3), dtype=np.uint8)


def stream(client: Client, topic: str, stamps: list[int], done, what: str) -> None:
    """Publish frames with ``stamps`` until ``done()``: the camera topics are best effort, and
    frames sent before the node matched the publisher are lost; sent again, the same stamps
    fill the gaps (the node drops the ones it holds already)."""
    pub = client.publisher(Image, topic)
    time.sleep(0.3)

    def send() -> None:
        for i, stamp in enumerate(stamps):
            pub.publish(image_msg(frame_image(i), stamp, FRAME_ID))
            time.sleep(0.05)
    publish_until(send, done, 30, what)


@pytest.fixture(scope="module")
def nodes():
    started = [NodeProcess(NS, PARAMS, TOKEN_DELAY),
               NodeProcess(NS_REJECT, {**PARAMS, "cameras": ["cam"], "query.busy_policy": "reject"}, TOKEN_DELAY)]
    try:
        for node in started:
            node.wait_ready()
        yield started
    finally:
        for node in started:
            node.stop()


@pytest.fixture(scope="module")
def setup(nodes):
    client = Client("query_test_client")
    try:
        now = time.time_ns()
        stamps = [now - 2_000_000_000 + i * PERIOD_NS for i in range(NUM_FRAMES)]
        for ns in (NS, NS_REJECT):
            stream(client, f"{ns}/cam/image_raw", stamps,
                   lambda ns=ns: len(query(client, ns, "ready?").frame_stamps) == NUM_FRAMES, f"the frames in {ns}")
        stream(client, f"{NS}/stale/image_raw", [now - 100_000_000_000],
               lambda: "has no frames yet" not in query(client, NS, "ready?", camera="stale").message,
               f"the frame in {NS}/stale")
        yield client, nodes[0], stamps
    finally:
        client.close()


def prompt(kind: int, k: int = 0, stamp_ns: int = 0, **coords) -> VisualPrompt:
    p = VisualPrompt(type=kind, object_index=k, **coords)
    p.stamp.sec, p.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return p


def request(camera: str = "cam", text: str = "", prompts=(), **fields) -> Query.Request:
    return Query.Request(camera=camera, text=text, prompts=list(prompts), **fields)


def query(client: Client, ns: str, text: str, camera: str = "cam", prompts=(), **fields) -> Query.Response:
    return client.call(Query, f"{ns}/unipixel/query", request(camera, text, prompts, **fields))


def test_service_returns_masks_with_the_source_frames_stamps_and_frame_id(setup) -> None:
    client, node, stamps = setup
    before = len(node.calls("query"))
    point = prompt(VisualPrompt.POINT, 0, stamps[2] + 3_000_000, x0=10.0, y0=8.0)   # 3 ms off frame 2
    resp = query(client, NS, "What colour is [0]?", prompts=[point])

    assert resp.success, resp.message
    assert resp.message == ""
    assert resp.answer == f"{NUM_FRAMES} frames of {W}x{H}: What colour is [0]?"
    assert [stamp_of(s) for s in resp.frame_stamps] == stamps
    (obj,) = resp.objects
    assert obj.id == 0 and obj.label == "[0]" and obj.score == pytest.approx(SCORE)
    assert (stamp_of(obj.header.stamp), obj.header.frame_id) == (stamps[-1], FRAME_ID)
    expected = disc(H, W, 10.0, 8.0)
    assert len(obj.masks) == len(obj.boxes) == len(obj.stamps) == NUM_FRAMES
    for mask, box, stamp, sent in zip(obj.masks, obj.boxes, obj.stamps, stamps):
        assert (mask.encoding, mask.width, mask.height) == ("mono8", W, H)
        assert (stamp_of(mask.header.stamp), mask.header.frame_id, stamp_of(stamp)) == (sent, FRAME_ID, sent)
        assert np.array_equal(mono_pixels(mask), np.where(expected, 255, 0))
        # radius-3 disc around (10, 8): columns 7..13, rows 5..11
        assert (box.x_offset, box.y_offset, box.width, box.height) == (7, 5, 7, 7)
    stages = {t.stage for t in resp.timings}
    assert {"select_frames", "wait_for_model", "fake_model", "pipeline", "build_response", "total"} <= stages

    (call,) = node.calls("query")[before:]
    assert call["stamps"] == stamps
    assert call["digests"] == [frame_digest(frame_image(i)) for i in range(NUM_FRAMES)]
    assert call["prompts"] == [{"type": "PointPrompt", "object_index": 0, "frame_index": 2,
                                "x": 10.0, "y": 8.0, "positive": True}]


def test_window_by_count_and_by_seconds(setup) -> None:
    client, _, stamps = setup
    assert [stamp_of(s) for s in query(client, NS, "hi", max_frames=2).frame_stamps] == stamps[-2:]
    # 0.25 s before the newest frame reaches back to frames 3, 4, 5 (0.1 s apart)
    assert [stamp_of(s) for s in query(client, NS, "hi", window_seconds=0.25).frame_stamps] == stamps[-3:]


def test_action_streams_feedback_and_returns_the_result(setup) -> None:
    client, _, stamps = setup
    action = client.action_client(QueryAction, f"{NS}/unipixel/query")
    feedback: list = []
    goal = QueryAction.Goal(camera="cam", text="Please segment the red shape.")
    send = action.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    handle = wait_for(lambda: send.done() and send.result(), 20, "goal acceptance")
    assert handle.accepted
    result_future = handle.get_result_async()
    wrapped = wait_for(lambda: result_future.done() and result_future.result(), 30, "the result")

    assert wrapped.status == GoalStatus.STATUS_SUCCEEDED
    assert wrapped.result.success and wrapped.result.answer.endswith("Please segment the red shape.")
    assert [stamp_of(s) for s in wrapped.result.frame_stamps] == stamps
    decode = [f for f in feedback if f.stage == "decode"]
    assert [f.tokens_generated for f in decode] == [1, 2, 3, 4]
    assert all(wrapped.result.answer.startswith(f.partial_answer) for f in decode)
    assert feedback[0].stage == "prefill"


def test_action_can_be_canceled_and_the_node_keeps_serving(setup) -> None:
    client, _, _ = setup
    action = client.action_client(QueryAction, f"{NS}/unipixel/query")
    feedback: list = []
    send = action.send_goal_async(QueryAction.Goal(camera="cam", text="long question"),
                                  feedback_callback=lambda fb: feedback.append(fb.feedback))
    handle = wait_for(lambda: send.done() and send.result(), 20, "goal acceptance")
    wait_for(lambda: any(f.stage == "decode" for f in feedback), 20, "the first decoded token")
    cancel = handle.cancel_goal_async()
    wait_for(cancel.done, 20, "the cancel response")
    assert len(cancel.result().goals_canceling) == 1
    result_future = handle.get_result_async()
    wrapped = wait_for(lambda: result_future.done() and result_future.result(), 30, "the result")

    assert wrapped.status == GoalStatus.STATUS_CANCELED
    assert not wrapped.result.success and wrapped.result.message.startswith("canceled")
    assert max(f.tokens_generated for f in feedback) < 4
    assert query(client, NS, "still there?").success


@pytest.mark.parametrize("camera, text, prompts, fields, expected", [
    ("nope", "hi", [], {}, "unknown camera 'nope' (configured cameras: cam, stale, silent)"),
    ("silent", "hi", [], {}, "camera 'silent' has no frames yet (subscribed to /qtest/silent/image_raw)"),
    ("stale", "hi", [], {}, "camera 'stale': empty window: the newest frame is 1"),
    ("cam", "", [], {}, "empty request: give a text, a visual prompt, or both"),
    ("cam", "[0]", [("point", -1.0, 10.0, 5.0)], {}, "matches none of the 6 frames used"),
    ("cam", "[0]", [("point", 2, 40.0, 5.0)], {}, "point (40.0, 5.0) is outside the 32x24 image"),
    ("cam", "[0]", [("point", 2, 4.0, 5.0)], {"window_seconds": -1.0}, "window_seconds must be >= 0"),
    ("cam", "what is [1]?", [("point", 2, 4.0, 5.0)], {}, "prompt for [0] but the text names only [1]"),
    ("cam", "[0]", [("memory", 0, 99, 0)], {}, "no object with id 99 in memory"),
])
def test_bad_requests_get_a_message_naming_the_problem(setup, camera, text, prompts, fields, expected) -> None:
    client, node, stamps = setup
    before = len(node.calls())
    msgs = []
    for kind, frame, a, b in prompts:
        if kind == "memory":
            msgs.append(prompt(VisualPrompt.MEMORY, 0, memory_id=a))
        else:
            stamp = stamps[0] - 5_000_000_000 if frame == -1 else stamps[frame]
            msgs.append(prompt(VisualPrompt.POINT, 0, stamp, x0=a, y0=b))
    resp = query(client, NS, text, camera=camera, prompts=msgs, **fields)
    assert not resp.success
    assert expected in resp.message
    assert len(node.calls()) == before           # refused before reaching the model
    assert query(client, NS, "still serving?").success


def test_requests_while_one_runs_are_queued_up_to_the_limit(setup) -> None:
    client, _, _ = setup
    futures = []
    for text in ("first", "second", "third"):
        futures.append(client.call_async(Query, f"{NS}/unipixel/query", request(text=text)))
        time.sleep(0.15)
    wait_for(lambda: all(f.done() for f in futures), 30, "all three replies")
    first, second, third = (f.result() for f in futures)
    assert first.success and first.answer.endswith("first")
    assert second.success and second.answer.endswith("second")      # waited in the queue
    assert not third.success and "already waiting (query.max_queued = 1)" in third.message
    waited = {t.stage: t.seconds for t in second.timings}["wait_for_model"]
    assert waited > TOKEN_DELAY                                      # it really waited for the first


def test_reject_policy_refuses_at_once_while_a_query_runs(setup) -> None:
    client, _, _ = setup
    running = client.call_async(Query, f"{NS_REJECT}/unipixel/query", request(text="slow"))
    time.sleep(0.4)
    began = time.monotonic()
    refused = query(client, NS_REJECT, "impatient")
    assert time.monotonic() - began < 1.0
    assert not refused.success and "query.busy_policy is 'reject'" in refused.message
    wait_for(running.done, 30, "the running query")
    assert running.result().success
    assert query(client, NS_REJECT, "after").success


def change_state(client: Client, node: NodeProcess, transition: str) -> bool:
    request = ChangeState.Request()
    request.transition.label = transition
    return client.call(ChangeState, f"{node.fqn}/change_state", request).success


def test_deactivating_cancels_the_running_query_and_activating_serves_again(setup, nodes) -> None:
    client, _, _ = setup
    node = nodes[1]
    action = client.action_client(QueryAction, f"{NS_REJECT}/unipixel/query")
    feedback: list = []
    send = action.send_goal_async(QueryAction.Goal(camera="cam", text="interrupted"),
                                  feedback_callback=lambda fb: feedback.append(fb.feedback))
    handle = wait_for(lambda: send.done() and send.result(), 20, "goal acceptance")
    wait_for(lambda: any(f.stage == "decode" for f in feedback), 20, "the first decoded token")
    assert change_state(client, node, "deactivate")
    result_future = handle.get_result_async()
    wrapped = wait_for(lambda: result_future.done() and result_future.result(), 20, "the result")
    assert wrapped.status == GoalStatus.STATUS_ABORTED
    assert wrapped.result.message == "canceled: canceled during decoding"

    inactive = query(client, NS_REJECT, "anyone there?")
    assert not inactive.success and "the node is inactive" in inactive.message
    assert change_state(client, node, "activate")
    assert wait_for(lambda: query(client, NS_REJECT, "back?").success, 20, "an answer after activating")
    assert len(node.calls("load")) == 2              # freed on deactivate, loaded again on activate
