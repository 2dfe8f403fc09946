"""The UniPixel lifecycle node: camera ingest plus whatever components are listed.

States follow the ROS 2 managed-node model:

* configure: parameters are read and validated (an invalid one fails the
  transition with an error naming it), the camera windows and every component
  are built;
* activate / deactivate: cameras are subscribed / unsubscribed, components
  start / stop; windows keep their frames in between;
* cleanup / shutdown: everything is released.

With ``auto_start`` (the default) the node configures and activates itself at
start-up and exits with status 1 when configuring fails, so a bad parameter
file stops a launch instead of leaving an idle node. Without it, a lifecycle
manager drives the transitions through the standard ``~/change_state`` service.

``/diagnostics`` is published from configure to cleanup, including while
inactive, so a stuck node still says why.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from unipixel_ros.ros.component import ComponentFactory, NodeComponent, NodeContext
from unipixel_ros.ros.diagnostics import DiagnosticsPublisher
from unipixel_ros.ros.ingest import CameraFeed, CameraIngest
from unipixel_ros.ros.model_host import MAX_QUEUED
from unipixel_ros.ros.params import (
    NodeConfig,
    ParameterError,
    declare_node_parameters,
    load_config,
    read_auto_start,
)
from unipixel_ros.ros.perception import Perception, read_perception_config

NODE_NAME = "unipixel"

# Components built after camera ingest, in this order; each is a NodeContext -> NodeComponent.
COMPONENTS: tuple[ComponentFactory, ...] = (Perception,)
# Query callbacks block while their request runs (1) or waits for the model (up to
# MAX_QUEUED); the other threads keep camera ingest, tracking, clicks and cancels going.
EXECUTOR_THREADS = 1 + MAX_QUEUED + 4


class UniPixelNode(LifecycleNode):
    def __init__(self, node_name: str = NODE_NAME, *,
                 components: Sequence[ComponentFactory] = COMPONENTS, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        declare_node_parameters(self)
        self._factories = tuple(components)
        self._config: NodeConfig | None = None
        self._ingest: CameraIngest | None = None
        self._components: list[NodeComponent] = []
        self._diagnostics: DiagnosticsPublisher | None = None
        self._active = False

    @property
    def config(self) -> NodeConfig | None:
        """The validated configuration while configured, else None."""
        return self._config

    @property
    def feeds(self) -> Mapping[str, CameraFeed]:
        """Camera name -> feed while configured (empty otherwise)."""
        return self._ingest.feeds if self._ingest else {}

    # -- lifecycle -------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config = load_config(self, also=(read_perception_config,))   # one error names them all
            self._ingest = CameraIngest(self, config)
            self._components = [self._ingest]
            context = NodeContext(node=self, config=config, feeds=self._ingest.feeds)
            for factory in self._factories:
                self._components.append(factory(context))
        except ValueError as exc:   # parameter errors, and components refusing their settings
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._config = config
        self._diagnostics = DiagnosticsPublisher(
            self, config.diagnostics_period_s,
            [self._node_status, *(c.diagnostics for c in self._components)])
        cams = ", ".join(f"{c.name} ({c.transport}: {self.resolve_topic_name(c.subscribed_topic)})"
                         for c in config.cameras)
        self.get_logger().info(f"configured: cameras {cams}; window {config.window}; "
                               f"converter {self._ingest.converter_note}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for component in self._components:
            component.activate()
        self._active = True
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        for component in reversed(self._components):
            component.deactivate()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from '{state.label}' raised; releasing everything")
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Release every component now, whatever the state (process exit: a signal has
        already shut the context down, so no lifecycle transition can run)."""
        self._release()

    def _release(self) -> None:
        self._active = False
        if self._diagnostics:
            self._diagnostics.destroy()
        for component in reversed(self._components):
            component.cleanup()
        self._components.clear()
        self._ingest = self._diagnostics = self._config = None

    def _node_status(self) -> list[DiagnosticStatus]:
        ingest = self._ingest
        return [DiagnosticStatus(
            level=DiagnosticStatus.OK, name=f"{self.get_fully_qualified_name()}: node",
            message="active" if self._active else "inactive",
            values=[KeyValue(key="cameras", value=",".join(self.feeds)),
                    KeyValue(key="converter", value=ingest.converter_name if ingest else ""),
                    KeyValue(key="converter_note", value=ingest.converter_note if ingest else "")])]


def start(node: UniPixelNode) -> bool:
    """Configure and activate when ``auto_start`` is set; False if that failed."""
    try:
        auto = read_auto_start(node)
    except ParameterError as exc:
        node.get_logger().error(str(exc))
        return False
    if not auto:
        node.get_logger().info("auto_start is false: waiting for lifecycle transitions")
        return True
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        return False
    return node.trigger_activate() == TransitionCallbackReturn.SUCCESS


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = UniPixelNode()
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        if not start(node):
            raise SystemExit(1)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.release()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
