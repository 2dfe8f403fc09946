"""StopRequest: a stop signal wakes the main thread whichever thread the kernel hands it to."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

# The kernel delivers a process-directed signal to any thread that does not block it: in
# the node that is often a DDS or executor thread. Python runs its handler on the main
# thread only when that thread next executes bytecode, and StopRequest.wait() keeps the
# main thread inside a blocking read, so the request must reach it through the pipe.
PROGRAM = textwrap.dedent("""
    import signal, sys, threading, time
    from unipixel_ros.ros.process import StopRequest

    stop = StopRequest()
    stop.install()
    def signal_from_another_thread():
        time.sleep(0.3)                                       # the main thread is in wait()
        signal.pthread_kill(threading.get_ident(), signal.{name})
        time.sleep(30)
    threading.Thread(target=signal_from_another_thread, daemon=True).start()
    stop.wait()
    print("stopped", stop.requested, flush=True)
    stop.close()
""")


def _run(signal_name: str) -> tuple[str, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(name=signal_name)],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), time.monotonic() - start


def test_a_signal_taken_by_another_thread_ends_the_wait() -> None:
    for name in ("SIGINT", "SIGTERM"):
        out, seconds = _run(name)
        assert out == "stopped True"
        assert seconds < 10


def test_close_gives_the_signals_back() -> None:
    """After close() the pipe is gone: a signal must not be written to a closed (or reused) fd."""
    program = textwrap.dedent("""
        import signal
        from unipixel_ros.ros.process import StopRequest
        stop = StopRequest()
        stop.install()
        stop.close()
        print(signal.set_wakeup_fd(-1))
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "-1"


def test_other_signals_do_not_stop_it() -> None:
    """A signal another library handles (here SIGUSR1) also lands in the wakeup pipe: skipped."""
    program = textwrap.dedent("""
        import os, signal, threading, time
        from unipixel_ros.ros.process import StopRequest
        seen = []
        signal.signal(signal.SIGUSR1, lambda *_: seen.append("usr1"))
        stop = StopRequest()
        stop.install()
        def later():
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.5)
            stop.set()
        threading.Thread(target=later, daemon=True).start()
        start = time.monotonic()
        stop.wait()
        print(seen, time.monotonic() - start > 0.6, flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['usr1'] True"
