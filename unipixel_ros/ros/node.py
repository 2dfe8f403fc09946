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

Transitions create and destroy entities while the executor waits on the node's entities
and runs callbacks in its pool. As a program (:func:`run`) they run on the executor's own
thread between two of its waits (:class:`~unipixel_ros.ros.spinner.Spinner`), and the
node releases entities without pulling them from under a callback still using them
(:mod:`unipixel_ros.ros.entities`). The program stops on SIGINT / SIGTERM at any moment,
promptly, quietly and with status 0 (see :mod:`unipixel_ros.ros.process`).
"""
from __future__ import annotations

if __name__ == "__main__":   # python -m unipixel_ros.ros.node: a Ctrl-C while importing exits quietly
    from unipixel_ros.ros.process import exit_on_stop_signal

    exit_on_stop_signal()

import functools  # noqa: E402 - after the signal handling above, on purpose
import threading  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402

from unipixel_ros.ros.component import ComponentFactory, NodeComponent, NodeContext  # noqa: E402
from unipixel_ros.ros.diagnostics import DiagnosticsPublisher  # noqa: E402
from unipixel_ros.ros.entities import ReleasingNode  # noqa: E402
from unipixel_ros.ros.ingest import CameraFeed, CameraIngest  # noqa: E402
from unipixel_ros.ros.model_host import MAX_QUEUED  # noqa: E402
from unipixel_ros.ros.params import (  # noqa: E402
    NodeConfig,
    ParameterError,
    declare_node_parameters,
    load_config,
    read_auto_start,
)
from unipixel_ros.ros.perception import Perception, read_perception_config  # noqa: E402
from unipixel_ros.ros.process import StopRequest, exit_process  # noqa: E402
from unipixel_ros.ros.spinner import Spinner  # noqa: E402

NODE_NAME = "unipixel"

# Components built after camera ingest, in this order; each is a NodeContext -> NodeComponent.
COMPONENTS: tuple[ComponentFactory, ...] = (Perception,)
# Query callbacks block while their request runs (1) or waits for the model (up to
# MAX_QUEUED); the other threads keep camera ingest, tracking, clicks and cancels going.
EXECUTOR_THREADS = 1 + MAX_QUEUED + 4


def _transition(callback: Callable[[UniPixelNode, LifecycleState], TransitionCallbackReturn]
                ) -> Callable[[UniPixelNode, LifecycleState], TransitionCallbackReturn]:
    """A transition callback run through the node's runner (see ``run_transitions_with``).

    Transitions come from the change_state service (an executor thread) and, when the
    process stops, :meth:`UniPixelNode.halt` from the main thread: one at a time, and none
    after the halt (a request already on its way must not build anything again).
    """
    @functools.wraps(callback)
    def transition(node: UniPixelNode, state: LifecycleState) -> TransitionCallbackReturn:
        with node._transition_lock:
            if node._halted:
                return TransitionCallbackReturn.FAILURE
            return node._transition_runner(lambda: callback(node, state))
    return transition


class UniPixelNode(ReleasingNode, LifecycleNode):
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
        self._transition_lock = threading.RLock()     # see _transition
        self._transition_runner: Callable[[Callable[[], Any]], Any] = _inline
        self._halted = False                          # by halt(): the process is stopping

    @property
    def config(self) -> NodeConfig | None:
        """The validated configuration while configured, else None."""
        return self._config

    @property
    def feeds(self) -> Mapping[str, CameraFeed]:
        """Camera name -> feed while configured (empty otherwise)."""
        return self._ingest.feeds if self._ingest else {}

    # -- lifecycle -------------------------------------------------------------------------

    @_transition
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

    @_transition
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for component in self._components:
            component.activate()
        self._active = True
        self.get_logger().info("active")
        return super().on_activate(state)

    @_transition
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        for component in reversed(self._components):
            component.deactivate()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    @_transition
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    @_transition
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    @_transition
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from '{state.label}' raised; releasing everything")
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def run_transitions_with(self, runner: Callable[[Callable[[], Any]], Any] | None) -> None:
        """Run each transition callback as ``runner(callback)``; None: where it is triggered.

        :func:`run` passes :meth:`Spinner.call`, so that the entities a transition creates
        and destroys change between two waits of the executor, never under one.
        """
        self._transition_runner = runner or _inline

    def halt(self) -> None:
        """The process is stopping (see :func:`run`): no transition runs any more, and the work
        under way ends as on deactivate (the running request cancelled, a model load
        abandoned, cameras unsubscribed). Waits for a transition that is running to finish."""
        with self._transition_lock:
            self._halted = True
            if self._active:
                self._active = False
                for component in reversed(self._components):
                    component.deactivate()

    def release(self) -> None:
        """:meth:`halt`, then release every component, whatever the state."""
        with self._transition_lock:
            self.halt()
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


def _inline(job: Callable[[], Any]) -> Any:
    return job()


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


def run(args: list[str] | None = None, components: Sequence[ComponentFactory] = COMPONENTS,
        started: Callable[[], None] | None = None) -> int:
    """Run the node until SIGINT / SIGTERM (or until ROS is shut down); the exit status.

    ``args`` are the process arguments (``sys.argv`` when None), ``components`` the node's
    (tests pass doubles), ``started`` is called once the node spins. Status 1: the node
    could not start (bad parameters); 0 otherwise, a signal at any moment included.

    rclpy's own signal handlers are not installed: they shut the context down at once,
    under callbacks still running and a model load still logging, and leave the rest
    to a ``KeyboardInterrupt`` wherever the main thread is. Here the executor spins in
    a thread of its own (:class:`Spinner`, which also runs the transitions) while the
    main thread waits for the stop, then stops in order: no new callbacks; the work
    under way stopped (:meth:`UniPixelNode.halt`); the callbacks still running finished
    (``executor.shutdown``), so that nothing uses what is released next; the node
    released and destroyed; ROS shut down.
    """
    stop = StopRequest()
    stop.install()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = executor = spinner = None
    try:
        node = UniPixelNode(components=components)
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
        executor.add_node(node)
        if stop.requested or not start(node):
            return 0 if stop.requested else 1
        if stop.requested:
            return 0
        spinner = Spinner(executor, on_exit=stop.set, name="unipixel-executor")
        node.run_transitions_with(spinner.call)
        if started is not None:
            started()
        stop.wait()
        return 1 if spinner.failed else 0
    finally:
        if spinner is not None:
            spinner.stop()
        if node is not None:
            node.halt()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
        stop.close()


def main(args: list[str] | None = None) -> NoReturn:
    """Run the node as a program (``python -m unipixel_ros.ros.node``)."""
    exit_process(run(args))


if __name__ == "__main__":
    main()
