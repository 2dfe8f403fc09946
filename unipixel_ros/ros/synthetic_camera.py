"""A camera driver that needs no camera: the endless synthetic stream as ROS images.

Publishes frame ``i`` of :class:`~unipixel_ros.synthetic.scenes.SyntheticStream` (seeded,
so frame ``i`` is the same in every run) as ``sensor_msgs/Image`` (rgb8) on ``image_raw``,
an ideal pinhole ``sensor_msgs/CameraInfo`` on ``camera_info`` and, when
``compressed_format`` is set, ``sensor_msgs/CompressedImage`` on
``image_raw/compressed``, and a registered depth image (each shape a flat surface at a known
depth in front of a farther wall, :func:`~unipixel_ros.synthetic.scenes.depth_image`) on
``depth/image_raw`` with its CameraInfo (the colour one) on ``depth/camera_info``. Topic names are relative, so a namespace or remapping puts the
camera where a launch file wants it. Stamps are the node clock's time of publishing, like
a real driver; a subscriber that needs the frame index recovers it from the pixels
(:meth:`SyntheticStream.index_of`).

Run: ``python -m unipixel_ros.ros.synthetic_camera --ros-args -p rate:=15.0 -p frame_id:=cam``.

Parameters: seed (0), width (320), height (240), rate (10.0 Hz), frame_id ("camera"),
num_objects (0: 2-5 at random), episode_frames (0: one scene forever; N: a new scene
every N frames), start_index (0), horizontal_fov_deg (60.0), compressed_format
("": off, "png" or "jpeg"), jpeg_quality (90), depth_encoding ("16UC1" millimetres, "32FC1"
metres, "": no depth), depth_noise_m (0.0), depth_hole_fraction (0.0).
"""
from __future__ import annotations

import math
import sys

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from unipixel_ros.objects3d import encode_depth_mm
from unipixel_ros.synthetic.scenes import DEFAULT_HEIGHT, DEFAULT_WIDTH, SceneError, SyntheticStream, depth_image

COMPRESSED_FORMATS: tuple[str, ...] = ("png", "jpeg")
DEPTH_ENCODINGS: tuple[str, ...] = ("16UC1", "32FC1")
# Reliable delivery matches both reliable and best-effort subscribers; a shallow queue
# keeps a slow subscriber on recent frames.
_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


class CameraParameterError(ValueError):
    """A synthetic camera parameter out of its range; the message names it."""


def pinhole_k(width: int, height: int, horizontal_fov_deg: float) -> list[float]:
    """Row-major 3x3 intrinsics of an ideal camera: square pixels, principal point at the centre.

    The centre is ((W-1)/2, (H-1)/2) because pixel centres sit at integer coordinates.
    """
    if not 0.0 < horizontal_fov_deg < 180.0:
        raise CameraParameterError(f"horizontal_fov_deg must be in (0, 180), got {horizontal_fov_deg}")
    focal = (width / 2.0) / math.tan(math.radians(horizontal_fov_deg) / 2.0)
    return [focal, 0.0, (width - 1) / 2.0, 0.0, focal, (height - 1) / 2.0, 0.0, 0.0, 1.0]


def camera_info(width: int, height: int, horizontal_fov_deg: float) -> CameraInfo:
    """CameraInfo of the ideal pinhole camera (no distortion, identity rectification)."""
    k = pinhole_k(width, height, horizontal_fov_deg)
    msg = CameraInfo()
    msg.width, msg.height = width, height
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = k
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def rgb_image(image: np.ndarray, header: Header) -> Image:
    """An rgb8 Image message holding ``image`` (H x W x 3 uint8)."""
    msg = Image()
    msg.header = header
    msg.height, msg.width = image.shape[:2]
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = 3 * msg.width
    msg.data = image.tobytes()
    return msg


def depth_msg(depth_m: np.ndarray, header: Header, encoding: str) -> Image:
    """A depth Image: 16UC1 millimetres (0 = no reading) or 32FC1 metres, little-endian."""
    if encoding not in DEPTH_ENCODINGS:
        raise CameraParameterError(f"depth_encoding must be one of {DEPTH_ENCODINGS} or empty, got {encoding!r}")
    pixels = encode_depth_mm(depth_m).astype("<u2") if encoding == "16UC1" else depth_m.astype("<f4")
    msg = Image()
    msg.header = header
    msg.height, msg.width = depth_m.shape
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = pixels.itemsize * msg.width
    msg.data = pixels.tobytes()
    return msg


def compressed_image(image: np.ndarray, header: Header, codec: str, jpeg_quality: int) -> CompressedImage:
    """A CompressedImage in image_transport's format: OpenCV encodes BGR, the source was rgb8."""
    if codec not in COMPRESSED_FORMATS:
        raise CameraParameterError(f"compressed_format must be one of {COMPRESSED_FORMATS} or empty, got {codec!r}")
    options = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if codec == "jpeg" else []
    ok, payload = cv2.imencode(f".{'jpg' if codec == 'jpeg' else 'png'}", image[..., ::-1], options)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {codec}")
    msg = CompressedImage()
    msg.header = header
    msg.format = f"rgb8; {codec} compressed bgr8"
    msg.data = payload.tobytes()
    return msg


class SyntheticCamera(Node):
    """Publishes the synthetic stream at a fixed rate, frame ``start_index`` first."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("synthetic_camera", **node_kwargs)
        seed = self.declare_parameter("seed", 0).value
        width = self.declare_parameter("width", DEFAULT_WIDTH).value
        height = self.declare_parameter("height", DEFAULT_HEIGHT).value
        rate = float(self.declare_parameter("rate", 10.0).value)
        self.frame_id = self.declare_parameter("frame_id", "camera").value
        num_objects = self.declare_parameter("num_objects", 0).value
        episode_frames = self.declare_parameter("episode_frames", 0).value
        self.index = self.declare_parameter("start_index", 0).value
        fov = float(self.declare_parameter("horizontal_fov_deg", 60.0).value)
        self.codec = self.declare_parameter("compressed_format", "").value.strip().lower()
        self.jpeg_quality = self.declare_parameter("jpeg_quality", 90).value
        self.depth_encoding = self.declare_parameter("depth_encoding", "16UC1").value.strip()
        self.depth_noise_m = float(self.declare_parameter("depth_noise_m", 0.0).value)
        self.depth_hole_fraction = float(self.declare_parameter("depth_hole_fraction", 0.0).value)
        self.seed = seed

        if not (math.isfinite(rate) and rate > 0):
            raise CameraParameterError(f"rate must be a positive number of frames per second, got {rate}")
        if width < 16 or height < 16:
            raise CameraParameterError(f"width and height must be at least 16, got {width}x{height}")
        if not 0 <= num_objects <= 5:
            raise CameraParameterError(f"num_objects must be in 0..5 (0: random 2-5), got {num_objects}")
        if self.index < 0:
            raise CameraParameterError(f"start_index must be >= 0, got {self.index}")
        if self.codec and self.codec not in COMPRESSED_FORMATS:
            raise CameraParameterError(
                f"compressed_format must be one of {COMPRESSED_FORMATS} or empty, got {self.codec!r}")
        if not 0 <= self.jpeg_quality <= 100:
            raise CameraParameterError(f"jpeg_quality must be in 0..100, got {self.jpeg_quality}")
        if self.depth_encoding and self.depth_encoding not in DEPTH_ENCODINGS:
            raise CameraParameterError(
                f"depth_encoding must be one of {DEPTH_ENCODINGS} or empty, got {self.depth_encoding!r}")
        if not (self.depth_noise_m >= 0 and 0 <= self.depth_hole_fraction < 1):
            raise CameraParameterError("depth_noise_m must be >= 0 and depth_hole_fraction in [0, 1), got "
                                       f"{self.depth_noise_m}, {self.depth_hole_fraction}")
        if not self.frame_id:
            raise CameraParameterError("frame_id must not be empty")
        try:
            self.stream = SyntheticStream(seed, width, height, num_objects or None, episode_frames)
        except SceneError as error:
            raise CameraParameterError(str(error)) from error
        self.info = camera_info(width, height, fov)

        self.image_pub = self.create_publisher(Image, "image_raw", _QOS)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", _QOS)
        self.compressed_pub = (
            self.create_publisher(CompressedImage, "image_raw/compressed", _QOS) if self.codec else None
        )
        self.depth_pub = self.create_publisher(Image, "depth/image_raw", _QOS) if self.depth_encoding else None
        self.depth_info_pub = self.create_publisher(CameraInfo, "depth/camera_info", _QOS) \
            if self.depth_encoding else None
        self.timer = self.create_timer(1.0 / rate, self.publish_next)
        self.get_logger().info(
            f"synthetic camera: seed {seed}, {width}x{height} at {rate:g} Hz on "
            f"{self.image_pub.topic_name}, frame_id '{self.frame_id}'"
            + (f", {self.codec} on {self.compressed_pub.topic_name}" if self.compressed_pub else "")
        )

    def publish_next(self) -> None:
        """Publish the next frame (image, camera info and, if enabled, its compressed copy)."""
        frame = self.stream.frame(self.index)
        image = frame.image
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        self.info.header = header
        self.info_pub.publish(self.info)
        if self.depth_pub is not None:
            self.depth_info_pub.publish(self.info)
            depth = depth_image(frame, self.depth_noise_m, self.depth_hole_fraction, self.seed)
            self.depth_pub.publish(depth_msg(depth, header, self.depth_encoding))
        self.image_pub.publish(rgb_image(image, header))
        if self.compressed_pub is not None:
            self.compressed_pub.publish(compressed_image(image, header, self.codec, self.jpeg_quality))
        self.index += 1


def main(args: list[str] | None = None) -> None:
    """Run the synthetic camera until interrupted; a bad parameter exits with status 2."""
    rclpy.init(args=args)
    node = None
    try:
        node = SyntheticCamera()
        rclpy.spin(node)
    except CameraParameterError as error:
        print(f"synthetic_camera: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
