"""A worker thread dies of an uncaught exception; the main thread goes on and exits normally."""

import threading

import evlog


def work() -> None:
    raise ValueError("worker failed")  # CRASH-LINE


evlog.configure()
thread = threading.Thread(target=work, name="worker-1")
thread.start()
thread.join()
print("main thread finished")
