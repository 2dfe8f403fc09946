"""Image message -> RGB conversion: every supported encoding, every rejection, backend choice."""
import sys
import types

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from unipixel_ros.ros.conversions import (
    BuiltinConverter,
    ConverterUnavailable,
    CorruptPayload,
    CvBridgeConverter,
    EmptyImage,
    SizeMismatch,
    UnsupportedEncoding,
    camera_intrinsics,
    compressed_to_rgb,
    make_converter,
    raw_to_rgb,
)

H, W = 5, 7
RGB = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
GREY = np.random.default_rng(4).integers(0, 256, (H, W), dtype=np.uint8)
ALPHA = np.random.default_rng(5).integers(0, 256, (H, W, 1), dtype=np.uint8)

# What a camera driver would put in `data` for each encoding, built with plain NumPy
# indexing so the expected values do not come from the code under test.
ENCODED = {
    "rgb8": RGB,
    "bgr8": RGB[..., ::-1],
    "rgba8": np.concatenate([RGB, ALPHA], axis=2),
    "bgra8": np.concatenate([RGB[..., ::-1], ALPHA], axis=2),
    "mono8": GREY,
}


def expected_rgb(encoding: str) -> np.ndarray:
    return np.repeat(GREY[..., None], 3, axis=2) if encoding == "mono8" else RGB


def image_msg(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.full((h, pad), 77, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, step=rows.shape[1])
    msg.data = np.ascontiguousarray(rows).tobytes()
    return msg


def compressed_msg(payload: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = payload
    return msg


def encode(ext: str, pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, pixels)
    assert ok
    return buf.tobytes()


def converters() -> list:
    found = [BuiltinConverter()]
    try:
        found.append(make_converter("cv_bridge")[0])
    except ConverterUnavailable:
        pass
    return found


@pytest.fixture(params=converters(), ids=lambda c: c.name)
def converter(request):
    return request.param


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding", sorted(ENCODED))
def test_raw_encodings_give_rgb(converter, encoding: str, pad: int) -> None:
    out = converter.raw(image_msg(ENCODED[encoding], encoding, pad))
    assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected_rgb(encoding))


def test_unpadded_rgb8_is_not_copied() -> None:
    msg = image_msg(RGB, "rgb8")
    assert np.shares_memory(raw_to_rgb(msg), np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed bgr8", ""])
def test_png_colour_is_exact(converter, fmt: str) -> None:
    out = converter.compressed(compressed_msg(encode(".png", RGB[..., ::-1]), fmt))
    np.testing.assert_array_equal(out, RGB)


def test_png_grey_and_alpha() -> None:
    grey = compressed_to_rgb(compressed_msg(encode(".png", GREY), "mono8; png compressed mono8"))
    np.testing.assert_array_equal(grey, np.repeat(GREY[..., None], 3, axis=2))
    bgra = np.concatenate([RGB[..., ::-1], ALPHA], axis=2)
    np.testing.assert_array_equal(compressed_to_rgb(compressed_msg(encode(".png", bgra), "png")), RGB)


def test_stream_compressed_as_rgb_is_not_swapped() -> None:
    # "compressed rgb8": the codec's channels hold R, G, B in that order.
    out = compressed_to_rgb(compressed_msg(encode(".png", RGB), "rgb8; png compressed rgb8"))
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", ""])
def test_jpeg_matches_a_reference_decode_of_the_same_bytes(fmt: str) -> None:
    # Smooth, channel-distinct content so lossy coding stays close to the source.
    y, x = np.mgrid[0:16, 0:24]
    smooth = np.stack([x * 10, y * 15, np.full_like(x, 60)], axis=2).astype(np.uint8)
    payload = encode(".jpg", smooth[..., ::-1])
    reference = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    out = compressed_to_rgb(compressed_msg(payload, fmt))
    np.testing.assert_array_equal(out, reference)
    assert np.abs(out.astype(int) - smooth).mean() < 4               # the image, in RGB order
    assert np.abs(out.astype(int) - smooth[..., ::-1]).mean() > 30


@pytest.mark.parametrize("mutate, error", [
    (dict(encoding="yuv422"), UnsupportedEncoding),
    (dict(encoding="32FC1"), UnsupportedEncoding),
    (dict(encoding="RGB8"), UnsupportedEncoding),
    (dict(height=0), EmptyImage),
    (dict(width=0, step=0), EmptyImage),
    (dict(step=W * 3 - 1), SizeMismatch),
    (dict(step=W * 3 + 1), SizeMismatch),              # data no longer step * height
    (dict(data=RGB.tobytes()[:-1]), SizeMismatch),      # truncated
    (dict(data=RGB.tobytes() + b"\0"), SizeMismatch),
    (dict(height=H + 1), SizeMismatch),
])
def test_bad_raw_images_are_rejected_with_a_reason(converter, mutate: dict, error: type) -> None:
    msg = image_msg(RGB, "rgb8")
    for key, value in mutate.items():
        setattr(msg, key, value)
    with pytest.raises(error) as err:
        converter.raw(msg)
    assert err.value.reason == error.reason


GOOD_JPEG = encode(".jpg", RGB)


@pytest.mark.parametrize("payload, fmt, error", [
    (b"", "jpeg", EmptyImage),
    (b"\xff\xd8\xff" + bytes(range(200)), "jpeg", CorruptPayload),        # garbage after SOI
    (GOOD_JPEG[: len(GOOD_JPEG) // 2], "jpeg", CorruptPayload),           # truncated
    (encode(".png", RGB), "jpeg", CorruptPayload),                        # PNG under a jpeg label
    (b"hello world", "", CorruptPayload),
    (GOOD_JPEG, "theora", UnsupportedEncoding),
    (encode(".png", GREY), "16UC1; compressedDepth png", UnsupportedEncoding),
])
def test_bad_compressed_images_are_rejected_with_a_reason(payload: bytes, fmt: str, error: type) -> None:
    with pytest.raises(error):
        compressed_to_rgb(compressed_msg(payload, fmt))


def test_camera_info_becomes_intrinsics() -> None:
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob")
    info.k = [500.0, 0.0, 320.5, 0.0, 501.0, 240.5, 0.0, 0.0, 1.0]
    info.d = [0.1, -0.2, 0.0, 0.0, 0.01]
    intr = camera_intrinsics(info)
    assert (intr.width, intr.height, intr.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_array_equal(intr.k, [[500, 0, 320.5], [0, 501, 240.5], [0, 0, 1]])
    assert intr.d == (0.1, -0.2, 0.0, 0.0, 0.01)


def fake_cv_bridge(monkeypatch, convert) -> None:
    module = types.ModuleType("cv_bridge")

    class CvBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            return convert(msg)

    module.CvBridge = CvBridge
    monkeypatch.setitem(sys.modules, "cv_bridge", module)


def test_broken_cv_bridge_falls_back_to_builtin(monkeypatch) -> None:
    def broken(msg):  # what the ROS 1 bridge does on NumPy 2
        raise AttributeError("'numpy.ndarray' object has no attribute 'tostring'")

    fake_cv_bridge(monkeypatch, broken)
    converter, note = make_converter("auto")
    assert converter.name == "builtin" and "tostring" in note
    with pytest.raises(ConverterUnavailable, match="tostring"):
        make_converter("cv_bridge")


def test_cv_bridge_that_swaps_channels_is_not_used(monkeypatch) -> None:
    fake_cv_bridge(monkeypatch, lambda msg: np.frombuffer(msg.data, np.uint8).reshape(2, 3, 3).copy())
    assert make_converter("auto")[0].name == "builtin"


def test_working_cv_bridge_is_chosen_and_its_failures_become_drop_reasons(monkeypatch) -> None:
    calls = []

    def convert(msg):
        calls.append(msg.encoding)
        if msg.height == 3:
            raise RuntimeError("bridge failure")
        return raw_to_rgb(msg)

    fake_cv_bridge(monkeypatch, convert)
    converter, _ = make_converter("auto")
    assert isinstance(converter, CvBridgeConverter)
    np.testing.assert_array_equal(converter.raw(image_msg(RGB[..., ::-1], "bgr8")), RGB)
    calls.clear()
    with pytest.raises(UnsupportedEncoding):
        converter.raw(image_msg(RGB, "yuv422"))
    assert calls == []                                   # header checks run before the bridge
    with pytest.raises(CorruptPayload, match="bridge failure"):
        converter.raw(image_msg(RGB[:3], "rgb8"))


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ConverterUnavailable, match="opencv"):
        make_converter("opencv")
